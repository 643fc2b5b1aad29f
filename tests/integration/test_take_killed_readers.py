"""A take killed by SIGKILL takes its small-file reader processes with it.

The readers come from a fork server and wait on queues whose other ends they hold themselves,
so a killed take's readers used to live on, holding the take's stdout and stderr open: the
robustness soak waited forever on such a take's output. Now each reader watches the take's
process and ends with it; the caller's pipes reach end-of-file and no reader is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import run_snap


def _readers_of(repo_marker: str) -> list[int]:
    """Pids of fork-server processes whose sys.path names the take's working directory."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "multiprocessing.forkserver" in cmdline and repo_marker in cmdline:
            found.append(int(pid))
    return found


def test_a_killed_take_leaves_no_reader_and_closes_its_output(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert run_snap("init", repo=repo).code == 0
    src = tmp_path / "src-killed-take"
    src.mkdir()
    for n in range(600):
        (src / f"note-{n:04}.md").write_text(f"note {n}\n" * (50 + n))
    env = {**os.environ, "SNAP_TEST_SLOW_STORE": "0.05"}  # every stored blob waits: a long take
    env.pop("SNAP_REPO", None)
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(repo), "take", "."], cwd=src,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _readers_of(str(src)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert _readers_of(str(src)), "the take never started its reader processes"
    time.sleep(0.5)  # well inside the take: readers are busy or waiting for work
    proc.send_signal(signal.SIGKILL)
    out, _err = proc.communicate(timeout=30)  # hung forever before: the readers held the pipes
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 15
    while _readers_of(str(src)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _readers_of(str(src)) == []
    # and the repository takes the tree afterwards as if nothing had happened
    res = run_snap("take", ".", repo=repo, cwd=src)
    assert res.code == 0, res.err
