"""Rendering for the CLI: human text or ``--json``, progress on a terminal, one-line errors.

Progress goes to stderr and only when stderr is a terminal, so piped or scripted use stays
quiet; ``--json`` output is one JSON document on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


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
