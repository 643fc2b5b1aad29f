"""Agent health checks: a command that exits 0, an HTTP URL that answers 2xx, a heartbeat file.

This module owns what "healthy" means and nothing else (it starts and stops nothing):

- :meth:`HealthCheck.probe` asks once. Before a recovery (``snap recover --all`` deciding which
  agents are dead) a heartbeat counts when it was touched within ``stale_after``; after a start
  (``since`` given) only when its mtime moved past the start, so a heartbeat file restored
  from a snapshot, or left by the dead process, never passes for a live agent.
- :meth:`HealthCheck.wait` asks again until every check passes or the deadline comes, and
  stops early when the start command fails (``failed`` callback).

Every check given must pass. Each probe keeps the last lines of what it saw (the command's
output, the URL's status or error, the heartbeat's age) for the escalation's diagnostics.
URLs are fetched without proxies: a health URL is a local service, and a proxy from the
environment must not answer for it.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TAIL_LINES = 20


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text`` (without a trailing newline)."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


@dataclass(frozen=True)
class Probe:
    """One answer: healthy or not, why (one line), and the output seen (last lines)."""

    healthy: bool
    detail: str
    output: str = ""


@dataclass(frozen=True)
class HealthCheck:
    """An agent's health check with its paths resolved; commands run with ``sh -c`` in ``cwd``."""

    command: str | None = None
    url: str | None = None
    heartbeat: Path | None = None
    stale_after_s: float = 60.0
    timeout_s: float = 5.0
    cwd: Path | None = None

    def describe(self) -> str:
        parts = []
        if self.command:
            parts.append(f"command {self.command!r} exits 0")
        if self.url:
            parts.append(f"{self.url} answers 2xx")
        if self.heartbeat:
            parts.append(f"heartbeat {self.heartbeat} moves")
        return " and ".join(parts)

    def probe(self, since: float | None = None) -> Probe:
        """Ask once; ``since`` (a ``time.time()``): the moment of the start the heartbeat must follow."""
        results = []
        if self.heartbeat is not None:
            results.append(self._heartbeat(since))
        if self.url is not None:
            results.append(self._url(self.url))
        if self.command is not None:
            results.append(self._command(self.command))
        bad = [r for r in results if not r.healthy]
        shown = bad or results
        return Probe(not bad, "; ".join(r.detail for r in shown),
                     "\n".join(r.output for r in shown if r.output))

    def _heartbeat(self, since: float | None) -> Probe:
        assert self.heartbeat is not None
        try:
            mtime = os.stat(self.heartbeat).st_mtime
        except FileNotFoundError:
            return Probe(False, f"heartbeat {self.heartbeat} does not exist")
        except OSError as exc:
            return Probe(False, f"heartbeat {self.heartbeat}: {exc.strerror or exc}")
        age = time.time() - mtime
        if since is not None:
            if mtime > since:
                return Probe(True, f"heartbeat {self.heartbeat} touched after the start")
            return Probe(False, f"heartbeat {self.heartbeat} not touched since the start",
                         f"last touched {age:.1f} s ago")
        if age <= self.stale_after_s:
            return Probe(True, f"heartbeat {self.heartbeat} touched within {self.stale_after_s:g} s")
        return Probe(False, f"heartbeat {self.heartbeat} not touched for more than {self.stale_after_s:g} s",
                     f"last touched {age:.1f} s ago")

    def _url(self, url: str) -> Probe:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=self.timeout_s) as response:
                status = response.status
                body = response.read(2000).decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            body = exc.read(2000).decode("utf-8", "replace") if exc.fp is not None else ""
            return Probe(False, f"{url} answered {exc.code}", tail(body, 5))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            why = getattr(reason, "strerror", None) or str(reason)
            return Probe(False, f"{url}: {why}".replace("[Errno 111] ", ""))
        if 200 <= status < 300:
            return Probe(True, f"{url} answered {status}")
        return Probe(False, f"{url} answered {status}", tail(body, 5))

    def _command(self, command: str) -> Probe:
        try:
            proc = subprocess.run(["/bin/sh", "-c", command], cwd=self.cwd, capture_output=True,
                                  timeout=self.timeout_s, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"") + (exc.stderr or b"")
            return Probe(False, f"health command timed out after {self.timeout_s:g} s: {command}",
                         tail(out.decode("utf-8", "replace")))
        output = tail((proc.stdout + proc.stderr).decode("utf-8", "replace"))
        if proc.returncode == 0:
            return Probe(True, f"health command exited 0: {command}", output)
        return Probe(False, f"health command exited {proc.returncode}: {command}", output)

    def wait(self, since: float, deadline_s: float, *, failed: Callable[[], str | None] = lambda: None,
             interval_s: float = 0.2) -> tuple[Probe, float]:
        """Probe until healthy or ``deadline_s`` seconds have passed; stop early when ``failed``
        returns a reason (the start command exited non-zero). Returns the last probe and the
        seconds waited."""
        started = time.monotonic()
        while True:
            probe = self.probe(since)
            waited = time.monotonic() - started
            if probe.healthy:
                return probe, waited
            reason = failed()
            if reason:
                return Probe(False, f"{reason}; {probe.detail}", probe.output), waited
            if waited >= deadline_s:
                return Probe(False, f"not healthy within {deadline_s:g} s: {probe.detail}", probe.output), waited
            time.sleep(min(interval_s, max(deadline_s - waited, 0.01)))
