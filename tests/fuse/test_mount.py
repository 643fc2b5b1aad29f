"""Real FUSE mounts through the ``snap`` CLI, the adapter's errno mapping, and bad input.

One module-wide mount of a repository with three snapshots (daily, weekly, on-change) serves the
read-only checks; tests that damage, kill or unmount get their own repository or mount.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapstore.errors import ExitCode
from tests.fuse.conftest import (
    Mounts,
    Result,
    SnapCli,
    alive,
    is_mounted,
    make_agent_tree,
    require_dev_fuse,
    server_pids,
    wait_until,
)

WEIGHTS_BYTES = 50 * 1024 * 1024
TIMES = {"daily": "2026-11-20T07:00:00Z", "weekly": "2026-11-22T23:00:00Z", "on-change": "2026-11-23T08:15:00Z"}


def dirname_of(info: dict) -> str:
    """The mount's directory name of a snapshot from its ``--json`` summary."""
    return info["time"].replace(":", "") + "_" + info["short_id"]


def _take(cli: SnapCli, repo: Path, src: Path, tier: str, when: str, *extra: str) -> dict:
    res = cli("take", ".", "--tier", tier, "--json", *extra, repo=repo, cwd=src, env={"SNAP_NOW": when})
    assert res.code == 0, res.err
    return res.json()  # type: ignore[return-value]


def _mount(cli: SnapCli, mounts: Mounts, repo: Path, mnt: Path) -> dict:
    mnt.mkdir(exist_ok=True)
    mounts.track(mnt)
    res = cli("mount", str(mnt), "--json", repo=repo)
    assert res.code == 0, res.err
    assert is_mounted(mnt)
    return res.json()  # type: ignore[return-value]


@dataclass
class World:
    src: Path
    repo: Path
    mnt: Path
    snaps: dict[str, dict]  # tier -> take summary
    mount: dict  # snap mount --json
    cli: SnapCli

    def snap_dir(self, tier: str) -> Path:
        return self.mnt / "snapshots" / dirname_of(self.snaps[tier])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, snap_cli: SnapCli, runtime_dir: Path) -> Iterator[World]:
    require_dev_fuse()
    base = tmp_path_factory.mktemp("world")
    src, repo, mnt = base / "ws", base / "repo", base / "mnt"
    make_agent_tree(src, weights_bytes=WEIGHTS_BYTES)
    assert snap_cli("init", repo=repo).code == 0
    snaps = {"daily": _take(snap_cli, repo, src, "daily", TIMES["daily"], "--tag", "first")}
    (src / "agents" / "Z" / "memory" / "lessons.md").write_text("- weekly lesson\n")
    snaps["weekly"] = _take(snap_cli, repo, src, "weekly", TIMES["weekly"])
    (src / "agents" / "Z" / "priority_weights.json").write_text('{"weights": {"relevance": 0.5}}')
    snaps["on-change"] = _take(snap_cli, repo, src, "on-change", TIMES["on-change"], "--tag", "first")
    tracker = Mounts(snap_cli, runtime_dir)
    try:
        info = _mount(snap_cli, tracker, repo, mnt)
        yield World(src, repo, mnt, snaps, info, snap_cli)
    finally:
        tracker.cleanup()


@pytest.fixture
def small_repo(tmp_path: Path, snap_cli: SnapCli) -> tuple[Path, Path]:
    """A repository with one snapshot of a small agent tree: (repo, source)."""
    src = tmp_path / "small"
    make_agent_tree(src, weights_bytes=3 * 1024 * 1024)
    repo = tmp_path / "repo"
    assert snap_cli("init", repo=repo).code == 0
    _take(snap_cli, repo, src, "daily", TIMES["daily"])
    return repo, src


def _one_line_error(res: Result, code: int, *needles: str) -> None:
    assert res.code == code, (res.code, res.err)
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1, res.err
    assert "Traceback" not in res.err
    assert lines[0].startswith("snap: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- the layout ---------------------------------------------------------------------------------
def test_layout(world: World) -> None:
    m = world.mnt
    names = {tier: dirname_of(info) for tier, info in world.snaps.items()}
    assert sorted(os.listdir(m)) == ["latest", "snapshots", "tags", "tiers"]
    assert set(names.values()) <= set(os.listdir(m / "snapshots"))
    assert names["daily"].startswith("2026-11-20T070000Z_")
    assert {"daily", "weekly", "on-change"} <= set(os.listdir(m / "tiers"))
    for tier, name in names.items():
        assert os.readlink(m / "tiers" / tier / name) == f"../../snapshots/{name}"
        assert (m / "tiers" / tier / name).is_dir()
    assert os.readlink(m / "tiers" / "daily" / "latest") == f"../../snapshots/{names['daily']}"
    assert sorted(os.listdir(m / "tags" / "first")) == sorted([names["daily"], names["on-change"], "latest"])
    newest = max(os.listdir(m / "snapshots"))
    assert os.readlink(m / "latest") == f"snapshots/{newest}"
    assert (m / "tiers" / "weekly" / "latest" / "agents" / "Z" / "SOUL.md").is_file()
    assert stat.S_ISLNK(os.lstat(m / "latest").st_mode)
    assert (m / "snapshots" / names["weekly"] / "agents" / "Z" / "memory" / "lessons.md").read_text() \
        == "- weekly lesson\n"
    assert (m / "snapshots" / names["daily"] / "agents" / "Z" / "memory" / "lessons.md").read_text() \
        == "- keep backups verified\n" * 100


def test_cp_out_of_the_mount_is_identical(world: World, tmp_path: Path) -> None:
    weekly = world.mnt / "tiers" / "weekly" / "latest" / "agents" / "Z"
    for name in ("SOUL.md", "weights.bin"):
        out = tmp_path / name
        subprocess.run(["cp", str(weekly / name), str(out)], check=True, timeout=60)
        original = (world.src / "agents" / "Z" / name).read_bytes()
        assert out.read_bytes() == original, name
    assert (tmp_path / "weights.bin").stat().st_size == WEIGHTS_BYTES
    # random access: a slice in the middle
    with open(weekly / "weights.bin", "rb") as handle:
        handle.seek(WEIGHTS_BYTES // 2 + 12345)
        piece = handle.read(300_000)
    with open(world.src / "agents" / "Z" / "weights.bin", "rb") as handle:
        handle.seek(WEIGHTS_BYTES // 2 + 12345)
        assert piece == handle.read(300_000)


def test_find_counts_every_entry(world: World) -> None:
    listed = world.cli("list", "--json", repo=world.repo)
    assert listed.code == 0, listed.err
    expected = 1  # snapshots/ itself
    for info in listed.json():  # type: ignore[union-attr]
        rows = world.cli("ls", info["id"], "-R", "--json", repo=world.repo)
        assert rows.code == 0, rows.err
        expected += 1 + len(rows.json())  # type: ignore[arg-type]
    out = subprocess.run(f"find '{world.mnt / 'snapshots'}' | wc -l", shell=True, capture_output=True,
                         check=True, timeout=60)
    assert int(out.stdout) == expected


def test_stat_fields_equal_the_originals(world: World) -> None:
    mirror = world.snap_dir("on-change")
    checked = 0
    for dirpath, dirnames, filenames in os.walk(os.fsencode(world.src)):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, os.fsencode(world.src))
            want = os.lstat(full)
            got = os.lstat(os.path.join(os.fsencode(mirror), rel))
            assert got.st_mode == want.st_mode, rel
            assert (got.st_uid, got.st_gid) == (want.st_uid, want.st_gid), rel
            assert got.st_mtime_ns == want.st_mtime_ns, rel
            if not stat.S_ISDIR(want.st_mode):
                assert got.st_size == want.st_size, rel
            checked += 1
    assert checked > 300


def test_symlinks_are_symlinks(world: World) -> None:
    mirror = world.snap_dir("weekly")
    assert os.readlink(mirror / "soul-link") == "agents/Z/SOUL.md"
    assert os.readlink(mirror / "dangling") == "/nonexistent/target"
    assert (mirror / "soul-link").read_text() == (world.src / "agents" / "Z" / "SOUL.md").read_text()
    assert stat.S_ISFIFO(os.lstat(mirror / "a-fifo").st_mode)


def test_hard_links_share_an_inode(world: World) -> None:
    mirror = world.snap_dir("weekly")
    a = os.lstat(mirror / "agents" / "Z" / "SOUL.md")
    b = os.lstat(mirror / "SOUL-hardlink.md")
    assert a.st_ino == b.st_ino
    assert a.st_nlink >= 2
    assert os.lstat(mirror / "exec.sh").st_ino != a.st_ino
    other = os.lstat(world.snap_dir("daily") / "SOUL-hardlink.md")
    assert other.st_ino != a.st_ino  # another snapshot, another inode


def test_listing_order_and_stable_inodes(world: World) -> None:
    notes = world.snap_dir("weekly") / "agents" / "Jay" / "notes"
    listed = os.listdir(notes)  # readdir order, over several readdir calls
    assert listed == sorted(f"note-{i:04d}.md" for i in range(300))
    first = {name: os.lstat(notes / name).st_ino for name in listed}
    assert len(set(first.values())) == 300
    assert {name: os.lstat(notes / name).st_ino for name in listed} == first
    assert os.lstat(world.mnt / "snapshots").st_ino == os.lstat(world.mnt / "snapshots").st_ino


def _write_calls(base: Path) -> dict[str, Callable[[], object]]:
    f = base / "agents" / "Z" / "SOUL.md"
    d = base / "agents" / "Z" / "skills"
    return {
        "open-write": lambda: os.open(f, os.O_WRONLY),
        "open-rdwr": lambda: os.open(f, os.O_RDWR),
        "open-trunc": lambda: os.open(f, os.O_RDONLY | os.O_TRUNC),
        "create": lambda: os.open(base / "new-file", os.O_WRONLY | os.O_CREAT, 0o644),
        "mkdir": lambda: os.mkdir(base / "new-dir"),
        "mknod": lambda: os.mkfifo(base / "new-fifo"),
        "rename": lambda: os.rename(f, base / "renamed"),
        "chmod": lambda: os.chmod(f, 0o600),
        "chown": lambda: os.chown(f, 1, 1),
        "utime": lambda: os.utime(f, (0, 0)),
        "truncate": lambda: os.truncate(f, 0),
        "unlink": lambda: os.unlink(f),
        "rmdir": lambda: os.rmdir(d),
        "symlink": lambda: os.symlink("x", base / "new-link"),
        "link": lambda: os.link(f, base / "new-hardlink"),
        "setxattr": lambda: os.setxattr(f, "user.test", b"1"),
        "removexattr": lambda: os.removexattr(f, "user.test"),
        "top-level-mkdir": lambda: os.mkdir(base.parent.parent / "tiers" / "monthly"),
    }


def test_every_write_call_gets_erofs(world: World) -> None:
    base = world.snap_dir("weekly")
    for what, call in _write_calls(base).items():
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == errno.EROFS, (what, exc.value)
    assert is_mounted(world.mnt)
    assert (base / "agents" / "Z" / "SOUL.md").read_text().startswith("# Z")


def test_the_repository_stays_read_locked_while_mounted(world: World) -> None:
    from snapstore.errors import RepositoryLocked
    from snapstore.repo.repository import Repository

    with pytest.raises(RepositoryLocked):
        Repository.open(str(world.repo), mode="exclusive")


def test_already_mounted_is_refused(world: World) -> None:
    res = world.cli("mount", str(world.mnt), repo=world.repo)
    _one_line_error(res, ExitCode.TARGET, "already a mount point")


def test_a_snapshot_taken_while_mounted_appears(world: World) -> None:
    (world.src / "agents" / "Z" / "SOUL.md").write_text("# Z\nrevised\n")
    info = _take(world.cli, world.repo, world.src, "weekly", "2026-11-29T23:00:00Z")
    name = dirname_of(info)
    assert wait_until(lambda: name in os.listdir(world.mnt / "snapshots"), timeout=10)
    assert wait_until(lambda: name in os.listdir(world.mnt / "tiers" / "weekly"), timeout=10)
    assert wait_until(lambda: os.readlink(world.mnt / "tiers" / "weekly" / "latest") == f"../../snapshots/{name}")
    assert wait_until(lambda: os.readlink(world.mnt / "latest") == f"snapshots/{name}")
    assert (world.mnt / "tiers" / "weekly" / "latest" / "agents" / "Z" / "SOUL.md").read_text() == "# Z\nrevised\n"


# -- damage, unmount, signals, stale mounts -------------------------------------------------------
def test_a_corrupt_chunk_gives_eio_for_its_file_only(small_repo: tuple[Path, Path], tmp_path: Path,
                                                      snap_cli: SnapCli, mounts: Mounts, runtime_dir: Path) -> None:
    require_dev_fuse()
    repo, src = small_repo
    from snapstore.repo.repository import Repository, pack_name
    from snapstore.view.vfs import SnapshotView

    with Repository.open(str(repo), mode="read") as r:
        view = SnapshotView(r)
        entry = view.lookup(r.resolve("latest"), "agents/Z/weights.bin")
        blob_id = next(entry.chunk_refs())[0]
        loc = r.index.get_chunk(blob_id)
        assert loc is not None
        pack = repo / pack_name(loc.pack)
    with open(pack, "r+b") as handle:  # flip bytes in the middle of the chunk's stored payload
        handle.seek(loc.offset + loc.stored_len // 2)
        data = handle.read(16)
        handle.seek(loc.offset + loc.stored_len // 2)
        handle.write(bytes(b ^ 0xFF for b in data))
    mnt = tmp_path / "mnt"
    info = _mount(snap_cli, mounts, repo, mnt)
    with pytest.raises(OSError) as exc:
        (mnt / "latest" / "agents" / "Z" / "weights.bin").read_bytes()
    assert exc.value.errno == errno.EIO
    cp = subprocess.run(["cp", str(mnt / "latest" / "agents" / "Z" / "weights.bin"), str(tmp_path / "w")],
                        capture_output=True, timeout=60)
    assert cp.returncode != 0 and b"Input/output error" in cp.stderr
    # the mount stays up, other files still read
    assert is_mounted(mnt)
    assert (mnt / "latest" / "agents" / "Z" / "SOUL.md").read_bytes() == (src / "agents" / "Z" / "SOUL.md").read_bytes()
    assert len(os.listdir(mnt / "latest" / "agents" / "Jay" / "notes")) == 300
    log = Path(info["log"]).read_text()
    assert "weights.bin" in log and "EIO" in log


def test_umount_leaves_no_process_and_no_mount(small_repo: tuple[Path, Path], tmp_path: Path, snap_cli: SnapCli,
                                               mounts: Mounts) -> None:
    require_dev_fuse()
    repo, _src = small_repo
    mnt = tmp_path / "mnt"
    info = _mount(snap_cli, mounts, repo, mnt)
    pid = info["pid"]
    assert alive(pid)
    res = snap_cli("umount", str(mnt))
    assert res.code == 0, res.err
    assert "unmounted" in res.out
    assert not is_mounted(mnt)
    assert not alive(pid)
    assert mnt.is_dir() and os.listdir(mnt) == []
    from snapstore.repo.repository import Repository

    Repository.open(str(repo), mode="exclusive").close()  # the read lock went with the server
    again = snap_cli("umount", str(mnt))
    _one_line_error(again, ExitCode.TARGET, "not mounted")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_foreground_unmounts_cleanly_on_signal(signum: int, small_repo: tuple[Path, Path], tmp_path: Path,
                                               runtime_dir: Path, mounts: Mounts) -> None:
    require_dev_fuse()
    repo, _src = small_repo
    mnt = mounts.track(tmp_path / "mnt")
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SNAP_REPO"}
    env["XDG_RUNTIME_DIR"] = str(runtime_dir)
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(repo), "mount", "--foreground",
                             str(mnt)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: is_mounted(mnt) or proc.poll() is not None, timeout=20)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert wait_until(lambda: (mnt / "latest").is_symlink(), timeout=10)
        proc.send_signal(signum)
        code = proc.wait(timeout=20)
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert code == 0, err
        assert "Traceback" not in err
        assert not is_mounted(mnt)
        assert os.path.abspath(mnt) not in server_pids(runtime_dir)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_stale_mount_is_reported_and_cleaned(small_repo: tuple[Path, Path], tmp_path: Path, snap_cli: SnapCli,
                                               mounts: Mounts) -> None:
    require_dev_fuse()
    repo, _src = small_repo
    mnt = tmp_path / "mnt"
    info = _mount(snap_cli, mounts, repo, mnt)
    os.listdir(mnt)
    os.kill(info["pid"], signal.SIGKILL)
    assert wait_until(lambda: not alive(info["pid"]))
    with pytest.raises(OSError) as exc:
        os.listdir(mnt)
    assert exc.value.errno == errno.ENOTCONN
    res = snap_cli("mount", str(mnt), repo=repo)
    _one_line_error(res, ExitCode.TARGET, f"stale mount at {mnt}: run snap umount {mnt}")
    res = snap_cli("umount", str(mnt))
    assert res.code == 0, res.err
    assert "stale" in res.out
    assert not is_mounted(mnt) and os.listdir(mnt) == []
    _mount(snap_cli, mounts, repo, mnt)  # usable again
    assert (mnt / "latest").is_symlink()


# -- bad input -----------------------------------------------------------------------------------
def test_mountpoint_missing_or_not_empty(small_repo: tuple[Path, Path], tmp_path: Path, snap_cli: SnapCli) -> None:
    repo, _src = small_repo
    res = snap_cli("mount", str(tmp_path / "nope"), repo=repo)
    _one_line_error(res, ExitCode.TARGET, "mountpoint does not exist")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    res = snap_cli("mount", str(full), repo=repo)
    _one_line_error(res, ExitCode.TARGET, "mountpoint is not empty")
    res = snap_cli("mount", str(full / "x"), repo=repo)
    _one_line_error(res, ExitCode.TARGET, "not a directory")
    res = snap_cli("umount", str(tmp_path / "nope"))
    _one_line_error(res, ExitCode.TARGET, "does not exist")


def test_repository_missing(tmp_path: Path, snap_cli: SnapCli) -> None:
    (tmp_path / "mnt").mkdir()
    for extra in ([], ["--foreground"]):
        res = snap_cli("mount", str(tmp_path / "mnt"), *extra, repo=tmp_path / "no-repo")
        _one_line_error(res, ExitCode.NO_REPO, "no repository")
        assert not is_mounted(tmp_path / "mnt")


def test_fuse_device_missing(small_repo: tuple[Path, Path], tmp_path: Path, snap_cli: SnapCli) -> None:
    repo, _src = small_repo
    (tmp_path / "mnt").mkdir()
    res = snap_cli("mount", str(tmp_path / "mnt"), repo=repo, env={"SNAP_FUSE_DEVICE": str(tmp_path / "no-fuse")})
    _one_line_error(res, ExitCode.FUSE, "FUSE device", "is missing")


def test_pyfuse3_not_installed(small_repo: tuple[Path, Path], tmp_path: Path, runtime_dir: Path) -> None:
    repo, _src = small_repo
    (tmp_path / "mnt").mkdir()
    block = ("import sys; sys.modules['pyfuse3'] = None; sys.argv[0] = 'snap'; "
             "from snapstore.cli.app import main; main()")
    proc = subprocess.run([sys.executable, "-c", block, "--repo", str(repo), "mount", str(tmp_path / "mnt")],
                          capture_output=True, timeout=60, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)})
    res = Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    _one_line_error(res, ExitCode.FUSE, "pip install 'snapstore[fuse]'", "scripts/bootstrap.sh")


def test_other_commands_do_not_import_pyfuse3(small_repo: tuple[Path, Path]) -> None:
    repo, _src = small_repo
    probe = ("import atexit, sys; "
             "atexit.register(lambda: sys.stderr.write('LOADED=%s\\n' % sorted(m for m in ('pyfuse3', 'trio') "
             "if m in sys.modules))); sys.argv[0] = 'snap'; from snapstore.cli.app import main; main()")
    proc = subprocess.run([sys.executable, "-c", probe, "--repo", str(repo), "list"], capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert b"LOADED=[]" in proc.stderr


# -- the adapter alone: errno mapping against a fake namespace --------------------------------------
class _FakeNamespace:
    def __init__(self, failure: BaseException) -> None:
        self.failure = failure

    def lookup(self, parent: int, name: bytes) -> object:
        raise self.failure

    def getattr(self, inode: int) -> object:
        raise self.failure

    def readlink(self, inode: int) -> bytes:
        raise self.failure

    def readdir(self, inode: int) -> list:
        raise self.failure

    def file_entry(self, inode: int) -> object:
        return object()

    def fetch_bytes(self, inode: int, off: int, size: int) -> int:
        return 1 << 30  # expensive: served on a thread

    def read(self, inode: int, off: int, size: int) -> bytes:
        raise self.failure

    def node(self, inode: int) -> object:
        raise FileNotFoundError(errno.ENOENT, "gone")


@pytest.mark.parametrize(("failure", "code"), [
    (FileNotFoundError(errno.ENOENT, "x"), errno.ENOENT),
    (NotADirectoryError(errno.ENOTDIR, "x"), errno.ENOTDIR),
    ("damaged", errno.EIO),
    (RuntimeError("bug"), errno.EIO),
])
def test_adapter_maps_failures_to_errno(failure: BaseException | str, code: int) -> None:
    import pyfuse3
    import trio

    from snapstore.errors import ChunkUnreadable
    from snapstore.fuse.adapter import SnapshotOperations

    if failure == "damaged":
        failure = ChunkUnreadable("chunk 0123 is corrupt")
    ops = SnapshotOperations(_FakeNamespace(failure))  # type: ignore[arg-type]
    for call in (lambda: ops.lookup(1, b"x", None), lambda: ops.getattr(2, None), lambda: ops.readlink(2, None),
                 lambda: ops.opendir(2, None), lambda: ops.read(2, 0, 10)):
        with pytest.raises(pyfuse3.FUSEError) as exc:
            trio.run(call)
        assert exc.value.errno == code


def test_adapter_answers_erofs_to_every_change() -> None:
    import pyfuse3
    import trio

    from snapstore.fuse.adapter import SnapshotOperations

    ops = SnapshotOperations(_FakeNamespace(RuntimeError("unused")))  # type: ignore[arg-type]
    calls = [
        lambda: ops.setattr(2, None, None, None, None), lambda: ops.write(2, 0, b"x"),
        lambda: ops.create(1, b"n", 0o644, os.O_WRONLY, None), lambda: ops.mknod(1, b"n", 0o644, 0, None),
        lambda: ops.mkdir(1, b"n", 0o755, None), lambda: ops.unlink(1, b"n", None), lambda: ops.rmdir(1, b"n", None),
        lambda: ops.symlink(1, b"n", b"t", None), lambda: ops.rename(1, b"a", 1, b"b", 0, None),
        lambda: ops.link(2, 1, b"n", None), lambda: ops.setxattr(2, b"user.x", b"1", None),
        lambda: ops.removexattr(2, b"user.x", None), lambda: ops.open(2, os.O_WRONLY, None),
        lambda: ops.open(2, os.O_RDWR, None),
    ]
    for call in calls:
        with pytest.raises(pyfuse3.FUSEError) as exc:
            trio.run(call)
        assert exc.value.errno == errno.EROFS


def test_gc_dry_run_runs_while_a_mount_is_active(tmp_path: Path, snap_cli: SnapCli, mounts: Mounts) -> None:
    require_dev_fuse()
    repo, src = tmp_path / "repo", tmp_path / "ws"
    src.mkdir()
    (src / "state.json").write_text("{}")
    assert snap_cli("init", str(repo)).code == 0
    old = _take(snap_cli, repo, src, "daily", "2026-11-01T07:00:00Z")
    (src / "state.json").write_text('{"v": 2}')
    _take(snap_cli, repo, src, "daily", "2026-11-02T07:00:00Z")
    _mount(snap_cli, mounts, repo, tmp_path / "mnt")
    res = snap_cli("gc", "--dry-run", "--keep", "daily=1", "--json", repo=repo)
    assert res.code == 0, res.err
    assert [f["id"] for f in res.json()["forgotten"]] == [old["id"]]  # type: ignore[index]
    assert snap_cli("gc", "--keep", "daily=1", repo=repo).code == ExitCode.LOCKED  # the real one still waits
    assert len(snap_cli("list", "--json", repo=repo).json()) == 2  # type: ignore[arg-type]
