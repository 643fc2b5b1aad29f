"""Takes that once saved the wrong thing without a word (issue 14: findings 5, 13 and 14).

A file changed while it is read, by a real concurrent writer: the take pauses mid-file through
the ``SNAP_TEST_PAUSE_READ`` fault hook (off by default) and the test writes to the file, then
lets it go on. A symlink given as ``link/``; a take of the repository, or of a directory holding
it and the snapstore cache; a take whose ``SNAP_NOW`` is before the newest snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import Result, SnapRunner

SIZE = 32 * 1024 * 1024  # several chunks, and more than the chunker reads ahead (2 x 4 MiB)


def ok(res: Result) -> Result:
    assert res.code == 0, (res.code, res.out, res.err)
    return res


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(6000):  # a hang guard, not a timing assertion
        if path.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(f"take ended ({proc.returncode}) before {path.name}")
        time.sleep(0.01)
    raise AssertionError(f"the take never reached {path.name}")


def take_with_writer(snap: SnapRunner, tmp_path: Path, during: dict[int, Callable[[Path], None]]
                     ) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    """Take ``src`` while ``during[n]`` changes ``src/big.bin`` in the n-th read's pause."""
    src = tmp_path / "src"
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SNAP_REPO", "SNAP_CONFIG")}
    env.update(SNAP_TEST_PAUSE_READ="big.bin", SNAP_TEST_PAUSE_DIR=str(ctl))
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(snap.repo),  # type: ignore[attr-defined]
                             "take", "src"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    attempt = 1
    while True:
        paused = ctl / f"paused-{attempt}"
        try:
            wait_for(paused, proc)
        except AssertionError:
            if attempt > 1:
                break  # no further read of the file
            raise
        if attempt in during:
            during[attempt](src / "big.bin")
        (ctl / f"resume-{attempt}").touch()
        attempt += 1
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), ctl


def setup(snap: SnapRunner, tmp_path: Path) -> bytes:
    src = tmp_path / "src"
    src.mkdir()
    old = os.urandom(SIZE)
    (src / "big.bin").write_bytes(old)
    (src / "other.txt").write_text("unchanged\n")
    os.utime(src / "big.bin", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    ok(snap("init"))
    return old


def overwrite_in_place(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "r+b") as f:  # same inode, same size: only the bytes and the mtime change
            f.write(data)
    return write


def stored(snap: SnapRunner) -> bytes:
    return ok(snap("cat", "latest", "src/big.bin")).raw


def test_file_overwritten_mid_read_is_read_again(snap: SnapRunner, tmp_path: Path) -> None:
    old = setup(snap, tmp_path)
    new = os.urandom(SIZE)
    done, ctl = take_with_writer(snap, tmp_path, {1: overwrite_in_place(new)})
    assert done.returncode == 0, done.stderr
    assert (ctl / "paused-2").exists()  # it was read a second time
    got = stored(snap)
    assert digest(got) == digest(new) != digest(old)  # not a mix of both
    entry = next(e for e in snap("ls", "latest", "src", "--json").json() if e["name"] == "big.bin")  # type: ignore[union-attr]
    assert entry["mtime_ns"] == os.stat(tmp_path / "src" / "big.bin").st_mtime_ns  # metadata of what was read


def test_file_truncated_mid_read_is_read_again(snap: SnapRunner, tmp_path: Path) -> None:
    old = setup(snap, tmp_path)
    done, _ = take_with_writer(snap, tmp_path, {1: lambda path: os.truncate(path, 10 * 1024 * 1024 + 7)})
    assert done.returncode == 0, done.stderr
    assert stored(snap) == old[: 10 * 1024 * 1024 + 7]


def test_file_still_changing_is_stored_with_a_warning(snap: SnapRunner, tmp_path: Path) -> None:
    setup(snap, tmp_path)
    second = os.urandom(SIZE)
    third = os.urandom(SIZE // 2)

    def write_again(path: Path) -> None:
        with open(path, "r+b") as f:
            f.write(third)
            f.truncate(len(third))

    done, ctl = take_with_writer(snap, tmp_path, {1: overwrite_in_place(second), 2: write_again})
    assert done.returncode == ExitCode.PARTIAL, done.stderr
    err = done.stderr.decode()
    assert "big.bin: changed while it was read, twice" in err and "1 file(s) changed while they were read" in err
    assert not (ctl / "paused-3").exists()  # read twice, not more
    record = snap("list", "--json").json()[-1]  # type: ignore[index]
    assert record["files"] == 2
    events = [json.loads(line) for line in (tmp_path / "system-history.jsonl").read_text().splitlines()]
    take = events[-1]
    assert take["command"] == "take" and take["result"] == "partial" and take["exit_code"] == ExitCode.PARTIAL
    assert any("big.bin: changed while it was read" in w for w in take["warnings"])
    # the next take reads it again (no files-cache entry for a file that was changing)
    res = ok(snap("take", "src", "--json", cwd=tmp_path))
    assert res.json()["read_bytes"] >= len(third)  # type: ignore[index]
    assert stored(snap) == third


def test_trailing_slash_follows_a_symlink_to_a_directory(snap: SnapRunner, tmp_path: Path) -> None:
    real = tmp_path / "releases" / "v2"
    real.mkdir(parents=True)
    (real / "app.py").write_text("print('v2')\n")
    (real / "lib").mkdir()
    (real / "lib" / "util.py").write_text("X = 1\n")
    os.symlink("releases/v2", tmp_path / "current")
    ok(snap("init"))
    res = ok(snap("take", "current/", "--json", cwd=tmp_path))
    assert res.json()["files"] == 2  # type: ignore[index]
    names = sorted(e["path"] for e in snap("ls", "latest", "-R", "--json").json())  # type: ignore[union-attr]
    assert names == ["current", "current/app.py", "current/lib", "current/lib/util.py"]
    assert ok(snap("cat", "latest", "current/lib/util.py")).out == "X = 1\n"
    # without the slash the link itself is stored, as tar does
    res = ok(snap("take", "current", "--json", cwd=tmp_path))
    assert res.json()["files"] == 0  # type: ignore[index]
    assert snap("ls", "latest", "--json").json()[0]["type"] == "symlink"  # type: ignore[index]


def test_take_of_the_repository_and_of_what_holds_it(tmp_path: Path) -> None:
    from tests.conftest import run_snap

    home = tmp_path / "home"
    repo = home / "backups" / "repo"
    cache = home / ".cache"
    (cache / "snapstore" / "0123abcd" / "index").mkdir(parents=True)
    (cache / "snapstore" / "0123abcd" / "index" / "data.mdb").write_bytes(b"\0" * 4096)
    (home / "notes.txt").write_text("keep me\n")
    env = {"XDG_CACHE_HOME": str(cache)}
    assert run_snap("--repo", str(repo), "init", env=env).code == 0
    for inside in (repo, repo / "packs", cache / "snapstore"):
        res = run_snap("--repo", str(repo), "take", str(inside), env=env, cwd=tmp_path)
        assert res.code == ExitCode.USAGE and "which a take never stores" in res.err, res.err
        assert res.err.count("\n") == 1
    assert os.listdir(repo / "snapshots") == []

    res = run_snap("--repo", str(repo), "take", ".", env=env, cwd=home)
    assert res.code == 0, res.err
    assert f"excluded: {repo} (the repository)" in res.out
    assert f"excluded: {cache / 'snapstore'} (the snapstore cache)" in res.out
    listed = run_snap("--repo", str(repo), "ls", "latest", "-R", "--json", env=env).json()
    paths = sorted(e["path"] for e in listed)  # type: ignore[union-attr]
    assert "notes.txt" in paths and "backups" in paths and ".cache" in paths
    assert not any(p.startswith(("backups/repo", ".cache/snapstore")) for p in paths)


def test_snapshot_older_than_the_newest_is_announced(snap: SnapRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("1\n")
    ok(snap("init"))
    newest = ok(snap("take", str(src), "--json", env={"SNAP_NOW": "2026-11-20T07:00:00Z"})).json()
    res = ok(snap("take", str(src), "--json", env={"SNAP_NOW": "2026-11-01T07:00:00Z"}))
    assert f"before that of the newest snapshot {newest['short_id']}" in res.err  # type: ignore[index]
    assert "'latest' will not name it" in res.err
    assert res.json()["warnings"]  # type: ignore[index]
    # in order: no warning
    res = ok(snap("take", str(src), env={"SNAP_NOW": "2026-11-21T07:00:00Z"}))
    assert "warning" not in res.err
