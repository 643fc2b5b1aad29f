"""The current time, overridable with ``SNAP_NOW`` for tests and backfill.

``SNAP_NOW`` (ISO 8601; a naive value is read as UTC) is the time a take records and the "now"
of every time-based decision (retention, schedules). All times in snapstore are aware UTC.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from snapstore.errors import UsageError


def parse_time(text: str) -> datetime:
    """Parse ISO 8601 (``2026-11-22T07:00:00Z``, ``2026-11-22 07:00``, ``2026-11-22``) as aware UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"not an ISO 8601 time: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def now() -> datetime:
    """The current UTC time, or ``SNAP_NOW`` when it is set (a bad value: :class:`UsageError`)."""
    override = os.environ.get("SNAP_NOW")
    if override:
        try:
            return parse_time(override)
        except UsageError as exc:
            raise UsageError(f"SNAP_NOW: {exc.message}") from None
    return datetime.now(UTC)


def now_for_log() -> datetime:
    """:func:`now`, or the real time when ``SNAP_NOW`` does not parse: the history must still
    record the command that failed because of it, not fail a second time."""
    try:
        return now()
    except UsageError:
        return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` suffix and second precision, as stored in snapshot records."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_path_time(moment: datetime) -> str:
    """A sortable UTC time without colons, for names in the mount (``2026-11-22T070000Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H%M%SZ")
