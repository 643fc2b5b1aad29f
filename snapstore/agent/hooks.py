"""A tier's ``before`` and ``after`` commands, run around each of its takes with a timeout.

``before`` makes the state consistent (flush an agent's memory, pause it); if it fails (exit
status not 0, or still running at the timeout: then its whole process group is killed) the take
does not happen and fails with an alert. ``after`` always runs once ``before`` was tried (to
resume what it paused), whatever the take did; its failure is a warning. Both run with
``/bin/sh -c`` in the config file's directory, with ``SNAP_TIER``, ``SNAP_HOOK`` (before or
after), and for ``after`` ``SNAP_RESULT`` (ok or error) and ``SNAP_SNAPSHOT`` (the new id, when
one was taken) in the environment. Their output goes to the result (the tail, for the history
and the alert), not to the terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass

#: When the tier does not say (``hook_timeout``).
DEFAULT_TIMEOUT_S = 60.0
_TAIL = 2000


@dataclass(frozen=True)
class HookRun:
    """One run of a hook."""

    which: str  # before, after
    command: str
    exit_code: int | None  # None: killed at the timeout, or could not start
    timed_out: bool
    output: str  # the last lines, stdout and stderr together
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def describe(self) -> str:
        if self.timed_out:
            return f"{self.which} command '{self.command}' still running after {self.duration_s:.0f} s (killed)"
        if self.exit_code is None:
            return f"{self.which} command '{self.command}' could not run: {self.output}"
        return f"{self.which} command '{self.command}' exited {self.exit_code}" + (
            f": {self.output.strip().splitlines()[-1]}" if self.output.strip() else "")

    def to_json(self) -> dict[str, object]:
        return {"hook": self.which, "command": self.command, "exit_code": self.exit_code,
                "timed_out": self.timed_out, "duration_s": round(self.duration_s, 3)}


def run_hook(which: str, command: str, *, cwd: str, timeout: float, env: dict[str, str]) -> HookRun:
    """Run ``command`` with ``/bin/sh -c``; kill its process group at ``timeout`` seconds."""
    started = time.monotonic()
    full_env = {**os.environ, **env, "SNAP_HOOK": which}
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return HookRun(which, command, None, False, exc.strerror or str(exc), time.monotonic() - started)
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the shell and whatever it started
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
    text = out.decode(errors="replace")[-_TAIL:]
    return HookRun(which, command, None if timed_out else proc.returncode, timed_out, text,
                   time.monotonic() - started)
