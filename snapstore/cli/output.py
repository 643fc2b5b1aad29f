"""Rendering for the CLI: human text or ``--json``, progress on a terminal, one-line errors.

Progress goes to stderr and only when stderr is a terminal, so piped or scripted use stays
quiet; ``--json`` output is one JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from snapstore.errors import SnapError


class OutputMode(StrEnum):
    HUMAN = "human"
    JSON = "json"  # one JSON document on stdout; errors as JSON objects on stderr
    QUIET = "quiet"  # -q: no progress, fewer words


@dataclass(frozen=True)
class Output:
    """How this run speaks. Decided from the parsed options: ``-q`` in the global options, then
    a command's ``--json`` (:mod:`snapstore.cli.app` sets it before the command runs)."""

    mode: OutputMode = OutputMode.HUMAN

    @property
    def json(self) -> bool:
        return self.mode is OutputMode.JSON

    @classmethod
    def of(cls, *, json_out: bool, quiet: bool) -> Output:
        return cls(OutputMode.JSON if json_out else OutputMode.QUIET if quiet else OutputMode.HUMAN)

    def error(self, exc: SnapError) -> None:
        """The one line an error gets on stderr: a JSON object in JSON mode."""
        if self.json:
            sys.stderr.write(json.dumps({"error": exc.kind, "message": exc.message, "exit_code": exc.exit_code}) + "\n")
        else:
            sys.stderr.write(f"snap: error: {exc.message}\n")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def echo(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def warn(text: str) -> None:
    sys.stderr.write(text + "\n")


class Progress:
    """A one-line status on stderr, redrawn at most 5 times a second; silent when not a tty."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        self.started = time.monotonic()
        self._shown = False

    def __call__(self, info: dict[str, object]) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        done = float(info.get("bytes", 0) or 0)  # type: ignore[arg-type]
        parts = [f"{info.get('files', 0)} files", f"{human_bytes(done)}", f"{done / elapsed / 1e6:.0f} MB/s"]
        if "stored" in info:
            parts.append(f"{human_bytes(float(info['stored']))} stored")  # type: ignore[arg-type]
        path = str(info.get("path", ""))
        width = 100
        line = " | ".join(parts)
        if path:
            room = max(width - len(line) - 3, 10)
            line += " | " + (path if len(path) <= room else "..." + path[-room + 3 :])
        sys.stderr.write("\r\x1b[2K" + line)
        sys.stderr.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
