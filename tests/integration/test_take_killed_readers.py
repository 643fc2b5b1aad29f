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


def _blocked_in_write(pid: int) -> bool:
    """Whether process ``pid`` is blocked in write(2) (x86-64 and arm64 numbers, from /proc)."""
    try:
        number = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    except (OSError, IndexError):
        return False
    return number in {"1", "64"} if os.uname().machine in ("x86_64", "aarch64") else False


def test_a_reader_killed_while_it_sends_a_result_fails_the_take_in_one_line(tmp_path: Path) -> None:
    """A reader killed halfway through writing a result (the OOM killer picks the biggest
    process) once left a partial message in the pool's one shared result pipe: the executor
    waited for the rest of it for ever, the take never ended. The take is stopped (SIGSTOP) so
    that a reader fills its socket and blocks inside write(2); that reader is killed there."""
    import random

    repo = tmp_path / "repo"
    assert run_snap("init", repo=repo).code == 0
    src = tmp_path / "src-killed-mid-send"
    src.mkdir()
    rng = random.Random(7)
    for n in range(600):  # incompressible files of one chunk: each batch's result is ~500 KiB
        (src / f"blob-{n:04}.bin").write_bytes(rng.randbytes(200 << 10))
    env = {**os.environ, "SNAP_TEST_SLOW_STORE": "0.002"}
    env.pop("SNAP_REPO", None)
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(repo), "take", "."], cwd=src,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    victim = None
    try:
        deadline = time.monotonic() + 60
        while victim is None and time.monotonic() < deadline and proc.poll() is None:
            readers = _readers_of(str(src))
            if not readers:
                time.sleep(0.02)
                continue
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.3)  # the readers go on until their results fill the socket
            victim = next((pid for pid in readers if _blocked_in_write(pid)), None)
            if victim is None:
                proc.send_signal(signal.SIGCONT)
                time.sleep(0.05)
        assert victim is not None, "no reader was ever seen blocked writing a result"
        os.kill(victim, signal.SIGKILL)
    finally:
        proc.send_signal(signal.SIGCONT)
    _out, err = proc.communicate(timeout=60)  # hung for ever before
    text = err.decode()
    assert proc.returncode == 1 and "reader process" in text, text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    assert run_snap("list", "--json", repo=repo).out.strip() == "[]"  # nothing committed
    res = run_snap("take", ".", repo=repo, cwd=src)
    assert res.code == 0, res.err
