"""Restores never write into a repository, clean up after a killed restore, and say what they
skip; gc says what it keeps (issue 14: findings 4 and 14)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import SnapRunner


def ok(res):  # type: ignore[no-untyped-def]
    assert res.code == 0, (res.code, res.out, res.err)
    return res


def test_restore_refuses_a_target_inside_the_repository(snap: SnapRunner, tmp_path: Path) -> None:
    """A snapshot of a directory holding a config.json, restored with --overwrite into the
    repository, once replaced the repository's config.json and no command worked after it."""
    src = tmp_path / "app"
    src.mkdir()
    (src / "config.json").write_text('{"theme": "dark"}\n')
    (src / "packs").mkdir()
    (src / "packs" / "notes.txt").write_text("not a pack\n")
    repo = Path(snap.repo)  # type: ignore[attr-defined]
    ok(snap("init"))
    ok(snap("take", ".", cwd=src))
    config_before = (repo / "config.json").read_bytes()
    listing_before = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if "locks" not in p.parts)
    for target in (repo, repo / "packs", repo / "new-dir"):
        res = snap("restore", "latest", "--target", str(target), "--overwrite")
        assert res.code == ExitCode.TARGET, (res.code, res.err)
        assert "inside the repository" in res.err and res.err.count("\n") == 1 and "Traceback" not in res.err
    assert (repo / "config.json").read_bytes() == config_before
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if "locks" not in p.parts) == listing_before
    ok(snap("list"))
    # --latest-good writes files too
    res = snap("restore", "--latest-good", "config.json", "--check", "json", "--target", str(repo), "--overwrite")
    assert res.code == ExitCode.TARGET and "inside the repository" in res.err
    assert (repo / "config.json").read_bytes() == config_before


def test_restore_into_a_parent_of_the_repository_skips_it(snap: SnapRunner, tmp_path: Path) -> None:
    """The snapshot has a directory named like the repository: restoring it over the
    repository's parent writes everything else and says the repository was not touched."""
    src = tmp_path / "src"
    (src / "repo").mkdir(parents=True)
    (src / "repo" / "config.json").write_text('{"not": "a repository config"}\n')
    (src / "kept.txt").write_text("restored\n")
    ok(snap("init"))
    ok(snap("take", ".", cwd=src))
    repo = Path(snap.repo)  # type: ignore[attr-defined]
    config_before = (repo / "config.json").read_bytes()
    res = ok(snap("restore", "latest", "--target", str(tmp_path), "--overwrite"))
    assert "skipped: repo: not restored over the repository" in res.err
    assert (tmp_path / "kept.txt").read_text() == "restored\n"
    assert (repo / "config.json").read_bytes() == config_before
    ok(snap("list"))


def test_overwrite_removes_what_a_killed_restore_left(snap: SnapRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    (src / "small.txt").write_text("small\n")
    ok(snap("init"))
    ok(snap("take", ".", cwd=src))
    target = tmp_path / "out"
    env = dict(os.environ, SNAP_TEST_SLOW_READ="1")
    env.pop("SNAP_REPO", None)
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(snap.repo),  # type: ignore[attr-defined]
                             "restore", "latest", "--target", str(target)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if target.exists() and any(n.startswith(".snap-restore-") for n in os.listdir(target)):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the restore never wrote a temporary file")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = [n for n in os.listdir(target) if n.startswith(".snap-restore-")]
    assert left
    res = ok(snap("restore", "latest", "--target", str(target), "--overwrite"))
    assert f"removed {len(left)} temporary file(s) left by an interrupted restore" in res.err
    assert sorted(os.listdir(target)) == ["big.bin", "small.txt"]
    assert (target / "big.bin").read_bytes() == (src / "big.bin").read_bytes()


def test_socket_is_skipped_with_a_message(snap: SnapRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "state.json").write_text("{}\n")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(src / "agent.sock"))
    try:
        ok(snap("init"))
        ok(snap("take", ".", cwd=src))
    finally:
        server.close()
    res = ok(snap("restore", "latest", "--target", str(tmp_path / "out")))
    assert "skipped: agent.sock: a socket cannot be restored" in res.err
    assert os.listdir(tmp_path / "out") == ["state.json"]


def test_gc_without_a_policy_says_all_are_kept(snap: SnapRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    ok(snap("init"))
    for i in range(10):
        (src / "n.txt").write_text(f"{i}\n")
        ok(snap("take", str(src), cwd=tmp_path))
    plain = tmp_path / "plain"  # no config file here
    plain.mkdir()
    res = ok(snap("gc", "--dry-run", cwd=plain))
    assert "every snapshot is kept" in res.out
    assert "would forget 0 snapshot(s), 10 remain" in res.out
    assert len(snap("list", "--json").json()) == 10  # type: ignore[arg-type]
