"""The history log (``system-history.jsonl``) and failure alerts (``on_failure``).

This module owns the event format, where the log lives by default, how a line is appended so
that concurrent writers and readers never see half a line, reading and filtering the log, and
running the ``on_failure`` command.

One event is one JSON object on one line. Fields (absent when they do not apply):

``time`` (ISO 8601 UTC, honours ``SNAP_NOW``), ``command`` (take, gc, verify, restore, forget,
import, watch), ``tier``, ``snapshot`` (full id), ``files``, ``bytes``, ``new_bytes``,
``duration_s``, ``result`` (``ok``, ``partial`` or ``error``), ``error`` (one line),
``exit_code``, ``host``, ``repository``, and a few command-specific extras (``archive``,
``path``, ``skipped``).

Location: ``history_file`` from the config file, else ``system-history.jsonl`` in the directory
that holds the repository (``/backups/snapstore`` logs to ``/backups/system-history.jsonl``).

Appending: the file is opened with ``O_APPEND``, an exclusive ``flock`` is held, and the whole
line including its newline goes out in one ``write``; lines are kept under ``MAX_LINE`` bytes
(long error lists are cut), so a reader sees whole lines only, whatever else is appending.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from snapstore import clock
from snapstore.host import host_name

HISTORY_NAME = "system-history.jsonl"
MAX_LINE = 4000  # below PIPE_BUF (4096), so even a pipe or FIFO gets whole lines
ALERT_TIMEOUT_S = 60.0
_ORDER = ("time", "command", "tier", "result", "snapshot", "files", "bytes", "new_bytes", "duration_s",
          "exit_code", "error", "host", "repository")


def default_history_path(repo_path: str | os.PathLike[str]) -> Path:
    """``system-history.jsonl`` beside the repository (in the directory that contains it)."""
    return Path(os.path.dirname(os.path.abspath(os.fspath(repo_path)))) / HISTORY_NAME


def result_for(exit_code: int) -> str:
    """``ok`` for 0, ``partial`` for 3 (finished, some files unreadable), else ``error``."""
    from snapstore.errors import ExitCode

    if exit_code == ExitCode.OK:
        return "ok"
    return "partial" if exit_code == ExitCode.PARTIAL else "error"


def complete_event(event: dict[str, Any], *, command: str, exit_code: int, error: str = "",
                   duration_s: float | None = None, repository: str = "") -> dict[str, Any]:
    """``event`` with the common fields filled in where the command did not set them, in a
    stable key order. An event that already has a ``result`` keeps it (and its error)."""
    out = dict(event)
    out.setdefault("time", clock.format_time(clock.now_for_log()))
    out.setdefault("command", command)
    if "result" not in out:
        out["result"] = result_for(exit_code)
        out.setdefault("exit_code", exit_code)
        if error or exit_code:
            out.setdefault("error", error or f"exit code {exit_code}")
    out.setdefault("exit_code", exit_code if out["result"] != "ok" else 0)
    if duration_s is not None:
        out.setdefault("duration_s", round(duration_s, 3))
    out.setdefault("host", host_name())
    if repository:
        out.setdefault("repository", repository)
    ordered = {key: out[key] for key in _ORDER if key in out and out[key] is not None}
    ordered.update({k: v for k, v in out.items() if k not in ordered and v is not None})
    return ordered


def encode_event(event: dict[str, Any]) -> bytes:
    """One line (with its newline) under ``MAX_LINE`` bytes: long strings and lists are cut."""
    line = json.dumps(event, separators=(",", ":"), default=str)
    if len(line.encode()) < MAX_LINE:
        return line.encode() + b"\n"
    trimmed = dict(event)
    for key, value in event.items():
        if isinstance(value, list):
            trimmed[key] = value[:3] + ([f"... {len(value) - 3} more"] if len(value) > 3 else [])
        elif isinstance(value, str) and len(value) > 300:
            trimmed[key] = value[:297] + "..."
    line = json.dumps(trimmed, separators=(",", ":"), default=str)
    if len(line.encode()) >= MAX_LINE:  # pathological: keep the fields that matter
        line = json.dumps({k: trimmed[k] for k in _ORDER if k in trimmed and k != "error"}
                          | {"error": str(trimmed.get("error", ""))[:200], "truncated": True},
                          separators=(",", ":"), default=str)
    return line.encode() + b"\n"


def append_event(path: str | os.PathLike[str], event: dict[str, Any]) -> None:
    """Append one event as one line, atomically with respect to other appenders and readers."""
    data = encode_event(event)
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(parent, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            written = os.write(fd, data)
            while written < len(data):  # not expected for a regular file; finish the line anyway
                written += os.write(fd, data[written:])
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class HistoryRead:
    events: list[dict[str, Any]]
    bad_lines: int  # lines that are not a JSON object (a torn last line of a crashed writer)


def read_events(path: str | os.PathLike[str]) -> HistoryRead:
    """Every event in the log, oldest first. A missing file is an empty log."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return HistoryRead([], 0)
    events: list[dict[str, Any]] = []
    bad = 0
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # an unfinished last line: a writer is in the middle of it
    for line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(value, dict):
            events.append(value)
        else:
            bad += 1
    return HistoryRead(events, bad)


def mentions_agent(event: dict[str, Any], agent: str) -> bool:
    """Whether an event concerns the agent ``agent``: its ``agent`` field, a path it names (``path``, ``target``,
    ``archive``) has ``agents/<agent>`` in it, or a tag or the host is that name."""
    if event.get("agent") == agent:  # snap recover's steps name their agent
        return True
    needle = f"agents/{agent}"
    for key in ("path", "target", "archive"):
        value = str(event.get(key) or "")
        at = value.find(needle)
        if at >= 0 and value[at + len(needle):at + len(needle) + 1] in ("", "/"):
            return True
    tags = event.get("tags")
    return event.get("host") == agent or (isinstance(tags, list) and agent in tags)


def filter_events(events: Iterable[dict[str, Any]], *, since: datetime | None = None, tier: str | None = None,
                  command: str | None = None, agent: str | None = None,
                  failures: bool = False) -> list[dict[str, Any]]:
    """Events at or after ``since``, of ``tier``, of ``command``, concerning ``agent``
    (:func:`mentions_agent`), and with ``failures`` only those whose result is not ``ok``
    (each filter optional)."""
    out = []
    for event in events:
        if tier is not None and event.get("tier") != tier:
            continue
        if command is not None and event.get("command") != command:
            continue
        if failures and event.get("result", "ok") == "ok":
            continue
        if agent is not None and not mentions_agent(event, agent):
            continue
        if since is not None:
            try:
                moment = clock.parse_time(str(event.get("time", "")))
            except Exception:
                continue
            if moment < since:
                continue
        out.append(event)
    return out


def run_alert(command: str, event: dict[str, Any], *, cwd: str | os.PathLike[str] | None = None,
              timeout: float = ALERT_TIMEOUT_S) -> str | None:
    """Run ``command`` with ``sh -c``, the event as JSON on stdin (and in ``$SNAP_EVENT``).

    Its output goes to stderr. Returns None when it exited 0, else a one-line warning; it never
    raises, so a broken alert cannot hide the failure it was meant to report."""
    payload = json.dumps(event, default=str)
    env = dict(os.environ, SNAP_EVENT=payload)
    try:
        proc = subprocess.run(["/bin/sh", "-c", command], input=payload.encode() + b"\n", cwd=cwd, env=env,
                              stdout=2, stderr=2, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"on_failure command timed out after {timeout:.0f} s: {command}"
    except OSError as exc:
        return f"on_failure command could not run ({exc.strerror or exc}): {command}"
    if proc.returncode != 0:
        return f"on_failure command exited {proc.returncode}: {command}"
    return None
