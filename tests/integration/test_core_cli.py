"""The core store through the real ``snap`` command: init, take, list, restore, ls, cat."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import run_snap, tree_state


def _take(snap, src: Path, *extra: str) -> dict:
    res = snap("take", ".", "--json", *extra, cwd=src)
    assert res.code == 0, res.err
    return res.json()


def test_round_trip_keeps_everything(snap, agent_tree: Path, tmp_path: Path) -> None:
    os.chmod(agent_tree, 0o751)
    os.utime(agent_tree, ns=(1_600_000_000_000_000_007, 1_600_000_000_000_000_007))
    assert snap("init").code == 0
    info = _take(snap, agent_tree, "--tier", "weekly", "--tag", "first")
    assert info["tier"] == "weekly" and info["tags"] == ["first"]
    assert info["files"] == 12 and info["bytes"] > 23 * 1024 * 1024
    target = tmp_path / "out"
    res = snap("restore", info["id"][:10], "--target", str(target))
    assert res.code == 0, res.err
    assert tree_state(target) == tree_state(agent_tree)
    # the root directory's own metadata is kept too (the target did not exist before)
    assert os.stat(target).st_mtime_ns == os.stat(agent_tree).st_mtime_ns
    assert os.stat(target).st_mode == os.stat(agent_tree).st_mode
    # the sparse file stays sparse
    assert os.stat(target / "sparse.bin").st_blocks * 512 < 1024 * 1024


def test_large_file_round_trip(snap, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.mkdir()
    block = os.urandom(1 << 20)
    with open(src / "weights-large.bin", "wb") as f:
        for i in range(210):
            f.write(block[i:] + block[:i])
    assert snap("init").code == 0
    _take(snap, src)
    res = snap("restore", "latest", "--target", str(tmp_path / "out"))
    assert res.code == 0, res.err
    assert tree_state(tmp_path / "out") == tree_state(src)


def test_unchanged_retake_reads_nothing(snap, agent_tree: Path) -> None:
    assert snap("init").code == 0
    first = _take(snap, agent_tree)
    hard_linked = (agent_tree / "SOUL-hardlink.md").stat().st_size  # read once for both names
    assert first["read_bytes"] == first["bytes"] - hard_linked
    second = _take(snap, agent_tree)
    assert second["read_bytes"] == 0
    assert second["new_bytes"] == 0
    (agent_tree / "agents" / "Z" / "memory" / "lessons.md").write_text("changed\n")
    third = _take(snap, agent_tree)
    assert third["read_bytes"] == len("changed\n")
    assert 0 < third["new_bytes"] < 4096


def _log_lines(start: int, count: int) -> bytes:
    return b"".join(
        b"2026-11-%02d 07:%02d:%02d INFO agent=Z task=%d latency_ms=%d status=ok request=%08x\n"
        % (start % 28 + 1, i % 60, (i * 7) % 60, start + i, (i * 37) % 997, (start + i) * 2654435761 % 2**32)
        for i in range(count)
    )


def test_appended_and_rotated_log_stores_only_the_tail(snap, tmp_path: Path) -> None:
    src = tmp_path / "logs"
    src.mkdir()
    (src / "app.log").write_bytes(_log_lines(0, 300_000))  # ~25 MB
    assert snap("init").code == 0
    first = _take(snap, src)
    tail = _log_lines(300_000, 3_000)  # ~250 KB of new lines
    with open(src / "app.log", "ab") as f:
        f.write(tail)
    second = _take(snap, src)
    # a chunk boundary or two are re-cut around the tail: allow a few chunks of slack (compressed)
    assert second["new_bytes"] < len(tail) + 3 * 1024 * 1024 // 4, second
    assert second["new_bytes"] < first["new_bytes"] / 5
    os.rename(src / "app.log", src / "app.log.1")
    (src / "app.log").write_bytes(b"")
    third = _take(snap, src)
    assert third["new_bytes"] < 64 * 1024, third  # rotation = a rename: only trees are new
    with gzip.open(src / "app.log.2.gz", "wb") as f:
        f.write(_log_lines(0, 1000))
    assert _take(snap, src)["new_bytes"] < 128 * 1024


def test_list_ls_cat(snap, agent_tree: Path, tmp_path: Path) -> None:
    assert snap("init").code == 0
    _take(snap, agent_tree, "--tier", "daily")
    env = {"SNAP_NOW": "2030-01-01T00:00:00Z"}
    res = snap("take", ".", "--tier", "weekly", "--json", cwd=agent_tree, env=env)
    assert res.code == 0
    listed = snap("list", "--json").json()
    assert [s["tier"] for s in listed] == ["daily", "weekly"]
    assert listed[1]["time"] == "2030-01-01T00:00:00Z"
    for key in ("id", "time", "tier", "tags", "files", "bytes"):
        assert key in listed[0]
    assert len(snap("list", "--tier", "daily", "--json").json()) == 1
    human = snap("list")
    assert human.code == 0 and "weekly" in human.out
    names = {e["name"] for e in snap("ls", "latest:daily", "--json").json()}
    assert {"agents", "empty-file", "soul-link", "name with spaces.txt", "new\nline.txt"} <= names
    deep = snap("ls", "latest", "agents/Z", "-l")
    assert "SOUL.md" in deep.out
    cat = snap("cat", "latest", "agents/Z/SOUL.md")
    assert cat.raw == (agent_tree / "agents" / "Z" / "SOUL.md").read_bytes()
    link = [e for e in snap("ls", "latest", "--json").json() if e["name"] == "soul-link"][0]
    assert link["type"] == "symlink" and link["target"] == "agents/Z/SOUL.md"


def test_selective_restore(snap, agent_tree: Path, tmp_path: Path) -> None:
    assert snap("init").code == 0
    _take(snap, agent_tree)
    target = tmp_path / "one"
    res = snap("restore", "latest", "agents/Z/SOUL.md", "--target", str(target))
    assert res.code == 0, res.err
    restored = target / "agents" / "Z" / "SOUL.md"
    assert restored.read_bytes() == (agent_tree / "agents" / "Z" / "SOUL.md").read_bytes()
    assert restored.stat().st_mtime_ns == 1_700_000_000_123_456_789
    assert sorted(os.listdir(target / "agents" / "Z")) == ["SOUL.md"]
    # --overwrite replaces an existing file atomically
    restored.write_text("corrupted")
    res = snap("restore", "latest", "agents/Z", "--target", str(target), "--overwrite")
    assert res.code == 0, res.err
    assert restored.read_bytes() == (agent_tree / "agents" / "Z" / "SOUL.md").read_bytes()
    assert not [n for n in os.listdir(target / "agents" / "Z") if n.startswith(".snap-restore-")]


def test_absolute_and_relative_sources(snap, agent_tree: Path, tmp_path: Path) -> None:
    assert snap("init").code == 0
    res = snap("take", "agents/Z", "exec.sh", "--json", cwd=agent_tree)
    assert res.code == 0
    names = {e["path"] for e in snap("ls", "latest", "-R", "--json").json()}
    assert "agents/Z/SOUL.md" in names and "exec.sh" in names
    res = snap("take", str(agent_tree / "agents" / "Z" / "memory"), "--json", cwd=tmp_path)
    assert res.code == 0
    stripped = str(agent_tree / "agents" / "Z" / "memory").lstrip("/")
    names = {e["path"] for e in snap("ls", "latest", "-R", "--json").json()}
    assert f"{stripped}/lessons.md" in names


def _fill_snapshots(repo: Path, src: Path, count: int) -> None:
    from datetime import UTC, datetime, timedelta

    from snapstore.ops.backup import source_for, take_snapshot
    from snapstore.repo.repository import Repository

    with Repository.open(str(repo), mode="write") as opened:
        for i in range(count):
            when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=i)
            take_snapshot(opened, [source_for(str(src), str(src.parent))], when=when)


def test_bad_input_gets_one_line_and_exit_code(snap, agent_tree: Path, tmp_path: Path) -> None:
    def one_line(res) -> str:
        lines = res.err.strip().splitlines()
        assert len(lines) == 1, res.err
        assert "Traceback" not in res.err
        return lines[0]

    res = snap("list")
    assert res.code == ExitCode.NO_REPO and "snap init" in one_line(res)
    res = snap("take", "--bogus")
    assert res.code == ExitCode.USAGE and "--bogus" in one_line(res) and "snap take --help" in res.err
    res = snap("no-such-command")
    assert res.code == ExitCode.USAGE and "no-such-command" in one_line(res)
    assert snap("init").code == 0
    before = sorted(os.listdir(snap.repo))
    res = snap("init")
    assert res.code == ExitCode.EXISTS and "already exists" in one_line(res)
    assert sorted(os.listdir(snap.repo)) == before
    res = snap("take", "no/such/path", cwd=agent_tree)
    assert res.code == ExitCode.NOT_FOUND and "does not exist" in one_line(res)
    assert snap("list", "--json").json() == []
    _take(snap, agent_tree)
    _take(snap, agent_tree, "--tier", "other")
    res = snap("restore", "deadbeef", "--target", str(tmp_path / "x"))
    assert res.code == ExitCode.NOT_FOUND and "deadbeef" in one_line(res)
    res = snap("ls", "", "--json")
    assert res.code == ExitCode.NOT_FOUND
    res = snap("ls", "latest:nosuchtier")
    assert res.code == ExitCode.NOT_FOUND and "nosuchtier" in one_line(res)
    # 17 snapshots: two of them must share a first hex digit, an ambiguous prefix
    _fill_snapshots(snap.repo, agent_tree / "agents", 15)
    ids = [s["id"] for s in snap("list", "--json").json()]
    prefix = next(d for d in "0123456789abcdef" if sum(i.startswith(d) for i in ids) > 1)
    res = snap("ls", prefix)
    assert res.code == ExitCode.NOT_FOUND and "ambiguous" in one_line(res)
    nonempty = tmp_path / "nonempty"
    nonempty.mkdir()
    (nonempty / "keep.txt").write_text("mine")
    res = snap("restore", "latest", "--target", str(nonempty))
    assert res.code == ExitCode.TARGET and "not empty" in one_line(res)
    assert os.listdir(nonempty) == ["keep.txt"]
    res = snap("restore", "latest", "agents/nobody", "--target", str(tmp_path / "y"))
    assert res.code == ExitCode.NOT_FOUND and "agents/nobody" in one_line(res)
    assert not (tmp_path / "y").exists()
    res = snap("cat", "latest", "agents")
    assert res.code == ExitCode.NOT_FOUND
    res = snap("restore", "latest", "--json", "--target", str(nonempty))
    assert res.code == ExitCode.TARGET and '"error": "target_not_empty"' in res.err


def test_unreadable_file_is_reported_and_take_goes_on(snap, agent_tree: Path) -> None:
    assert snap("init").code == 0
    secret = agent_tree / "secret.json"
    secret.write_text("{}")
    os.chmod(secret, 0)
    # root reads anything: make the file unreadable by removing it between walk and read instead
    env = {"SNAP_TEST_UNREADABLE": "secret.json"} if os.geteuid() == 0 else {}
    res = snap("take", ".", "--json", cwd=agent_tree, env=env)
    if os.geteuid() == 0:
        assert res.code == ExitCode.PARTIAL, res.err
        data = res.json()
        assert data["unreadable"] == 1 and "secret.json" in data["errors"][0]
        assert "could not be read" in res.err
    else:
        assert res.code == ExitCode.PARTIAL
    names = {e["name"] for e in snap("ls", "latest", "--json").json()}
    assert "secret.json" not in names and "agents" in names


def test_sigkill_mid_take_leaves_repository_consistent(snap, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "first.txt").write_text("first snapshot\n")
    assert snap("init").code == 0
    first = _take(snap, src)
    for i in range(40):
        (src / f"blob{i}.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    env = dict(os.environ, SNAP_TEST_SLOW_STORE="0.05")
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(snap.repo), "take", "."],
                            cwd=src, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    packs = snap.repo / "packs"
    while time.time() < deadline and sum(len(f) for _d, _s, f in os.walk(packs)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    listed = snap("list", "--json").json()
    assert [s["id"] for s in listed] == [first["id"]]
    res = snap("restore", first["id"], "--target", str(tmp_path / "out"))
    assert res.code == 0, res.err
    assert (tmp_path / "out" / "first.txt").read_text() == "first snapshot\n"
    again = _take(snap, src)
    assert again["files"] == 41
    res = snap("restore", "latest", "--target", str(tmp_path / "out2"))
    assert res.code == 0
    assert tree_state(tmp_path / "out2") == tree_state(src)


def test_snap_now_and_default_repo_location(tmp_path: Path, agent_tree: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    assert run_snap("init", env=env).code == 0
    assert (tmp_path / "xdg" / "snapstore" / "config.json").exists()
    env["SNAP_REPO"] = str(tmp_path / "via-env")
    assert run_snap("init", env=env).code == 0
    assert (tmp_path / "via-env" / "config.json").exists()
