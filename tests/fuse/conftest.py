"""Fixtures for real FUSE mounts through the ``snap`` CLI.

- :func:`require_dev_fuse`: a test that mounts skips when /dev/fuse is absent (saying why), and
  fails instead under ``CI=true``; nothing else is a reason to skip.
- :func:`snap_cli`: runs ``python -m snapstore`` in a subprocess with a private runtime
  directory (``XDG_RUNTIME_DIR``) for mount state files and logs.
- :class:`Mounts`: remembers every mountpoint a test uses and always unmounts it afterwards,
  even when the test fails (``snap umount``, then ``fusermount3 -u -z``, then killing the server).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Result, make_agent_z, run_snap

FUSE_DEVICE = "/dev/fuse"


def require_dev_fuse() -> None:
    if os.path.exists(FUSE_DEVICE):
        return
    reason = f"{FUSE_DEVICE} is absent: FUSE mounts cannot be tested on this machine"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: FUSE tests must run in CI, not be skipped)")
    print(f"skipping: {reason}", file=sys.stderr)
    pytest.skip(reason)  # the one allowed skip: /dev/fuse absent, and never under CI


SnapCli = Callable[..., Result]


def run_cli(runtime: Path, *args: str, repo: Path | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    """The real CLI (tests.conftest.run_snap) with a private runtime dir and no SNAP_NOW."""
    return run_snap(*args, repo=repo, cwd=cwd, env={"SNAP_NOW": "", "XDG_RUNTIME_DIR": str(runtime), **(env or {})},
                    timeout=timeout)


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runtime")
    os.chmod(path, 0o700)
    return path


@pytest.fixture(scope="session")
def snap_cli(runtime_dir: Path) -> SnapCli:
    def run(*args: str, **kw: object) -> Result:
        return run_cli(runtime_dir, *args, **kw)  # type: ignore[arg-type]

    return run


def is_mounted(path: Path) -> bool:
    """Mounted (or stale) at ``path``, judged from the mount table without touching it."""
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        return any(line.split()[4] == target for line in handle)


def server_pids(runtime: Path) -> dict[str, int]:
    """Mountpoint -> pid of every server with a state file in ``runtime``."""
    out = {}
    base = runtime / "snapstore"
    for state in base.glob("*.json") if base.exists() else ():
        try:
            data = json.loads(state.read_text())
            out[data["mountpoint"]] = int(data["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return False


class Mounts:
    """Mountpoints used by a test, unmounted at the end whatever happened."""

    def __init__(self, cli: SnapCli, runtime: Path) -> None:
        self.cli = cli
        self.runtime = runtime
        self.points: list[Path] = []

    def track(self, path: Path) -> Path:
        self.points.append(path)
        return path

    def cleanup(self) -> None:
        pids = server_pids(self.runtime)
        for mp in self.points:
            if is_mounted(mp):
                self.cli("umount", str(mp), timeout=30)
            if is_mounted(mp):
                tool = shutil.which("fusermount3") or "fusermount3"
                subprocess.run([tool, "-u", "-z", str(mp)], capture_output=True)
            pid = pids.get(os.path.abspath(mp))
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def mounts(snap_cli: SnapCli, runtime_dir: Path) -> Iterator[Mounts]:
    tracker = Mounts(snap_cli, runtime_dir)
    try:
        yield tracker
    finally:
        tracker.cleanup()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def make_agent_tree(root: Path, *, weights_bytes: int) -> None:
    """An agent workspace with every kind of entry the mount must show (no newlines in names,
    so that ``find | wc -l`` counts entries)."""
    z = make_agent_z(root, soul_lines=40)
    with open(z / "weights.bin", "wb") as handle:
        left = weights_bytes
        while left > 0:
            block = os.urandom(min(left, 8 << 20))
            handle.write(block)
            left -= len(block)
    jay = root / "agents" / "Jay"
    (jay / "notes").mkdir(parents=True)
    for i in range(300):  # more than one readdir buffer
        (jay / "notes" / f"note-{i:04d}.md").write_text(f"note {i}\n")
    (root / "empty-dir").mkdir()
    (root / "empty-file").write_bytes(b"")
    (root / "name with spaces.txt").write_text("spaces\n")
    Path(os.fsdecode(os.fsencode(str(root)) + b"/bad-\xff\xfe-utf8")).write_bytes(b"not utf-8 name\n")
    os.symlink("agents/Z/SOUL.md", root / "soul-link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(z / "SOUL.md", root / "SOUL-hardlink.md")
    (root / "exec.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "exec.sh", 0o750)
    os.chmod(z / "memory" / "lessons.md", 0o600)
    if os.geteuid() == 0:
        os.chown(jay / "notes" / "note-0001.md", 1234, 5678)
    os.mkfifo(root / "a-fifo")
    os.utime(z / "SOUL.md", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
