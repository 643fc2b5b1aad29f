"""Schedules: which tiers are due at a given moment, and the entries that make cron or systemd ask.

This module owns what a tier's ``schedule`` (a 5-field cron expression or a macro such as
``@daily``) means for ``snap due`` and ``snap take --due``:

- The *slot* of a tier at time ``now`` is its last scheduled time at or before ``now``.
- A tier is *due* when it has no snapshot taken at or after its slot. So ``snap take --due``
  run every few minutes takes each tier once per slot (a second run in the same slot finds a
  snapshot and takes nothing), and a machine that was off for two days takes ONE catch-up
  snapshot per tier, not one per missed slot: the catch-up is newer than the latest slot.
- A tier without a schedule (on-change, manual) is never due.
- A tier that has never been taken is due at once.

Cron expressions are evaluated in the local time zone, as cron and systemd do (``TZ`` when it is
set, else ``/etc/localtime``); every time that goes in or out is aware UTC.

:func:`tier_status` is pure: ``(schedules, snapshots, now, tz) -> statuses with reasons``.
:func:`cron_entry` and :func:`systemd_units` render ready-to-install text for a given command.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from snapstore.clock import format_time
from snapstore.errors import ConfigError

#: ``missed`` is counted up to this many slots (a tier scheduled every minute and a machine off
#: for a year must not make ``snap due`` iterate half a million times).
MISSED_CAP = 1000


class SnapshotLike(Protocol):
    """What scheduling needs from a snapshot record (:class:`snapstore.format.snapshot.Snapshot`)."""

    @property
    def tier(self) -> str: ...

    @property
    def time(self) -> datetime: ...

    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class TierStatus:
    """Whether one tier is due at ``now``, and why."""

    tier: str
    schedule: str | None
    due: bool
    reason: str
    slot: datetime | None = None  # last scheduled time at or before now
    next_slot: datetime | None = None  # first scheduled time after now
    last: datetime | None = None  # time of the newest snapshot of the tier
    last_id: str = ""
    missed: int = 0  # slots that passed without a snapshot (the catch-up covers them all)

    def to_json(self) -> dict[str, Any]:
        def show(moment: datetime | None) -> str | None:
            return None if moment is None else format_time(moment)

        return {
            "tier": self.tier, "schedule": self.schedule, "due": self.due, "reason": self.reason,
            "slot": show(self.slot), "next_slot": show(self.next_slot), "last_snapshot": show(self.last),
            "last_snapshot_id": self.last_id or None, "missed_slots": self.missed,
        }


def local_zone() -> tzinfo:
    """The zone cron would use: ``$TZ`` (a zone name), else ``/etc/localtime``, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name in ("UTC", "UTC0", "GMT", "Etc/UTC"):
        return UTC
    if name:
        try:
            if os.path.isabs(name):
                with open(name, "rb") as handle:
                    return ZoneInfo.from_file(handle, key=name)
            return ZoneInfo(name)
        except (OSError, ValueError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in target:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        pass
    offset = -(time.altzone if time.localtime().tm_isdst > 0 else time.timezone)
    return timezone(timedelta(seconds=offset)) if offset else UTC


def _start(moment: datetime, tz: tzinfo) -> datetime:
    return moment.astimezone(tz)


def fires_ever(schedule: str) -> bool:
    """Whether a (syntactically valid) expression names a time that exists: ``0 0 31 2 *``
    passes cron's syntax check but has no date, and croniter gives up searching for one."""
    try:
        croniter(schedule, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterError:
        return False
    return True


def _never(schedule: str) -> ConfigError:
    return ConfigError(f"schedule {schedule!r} never fires (no such date, e.g. 31 February)")


def last_slot(schedule: str, now: datetime, tz: tzinfo = UTC) -> datetime:
    """The last time ``schedule`` fires at or before ``now`` (cron has minute resolution)."""
    floor = _start(now, tz).replace(second=0, microsecond=0) + timedelta(minutes=1)
    try:
        found: datetime = croniter(schedule, floor).get_prev(datetime)  # strictly before floor
    except CroniterError:
        raise _never(schedule) from None
    return found.astimezone(UTC)


def next_slot(schedule: str, now: datetime, tz: tzinfo = UTC) -> datetime:
    """The first time ``schedule`` fires strictly after ``now``."""
    try:
        found: datetime = croniter(schedule, _start(now, tz)).get_next(datetime)
    except CroniterError:
        raise _never(schedule) from None
    return found.astimezone(UTC)


def count_slots(schedule: str, after: datetime, until: datetime, tz: tzinfo = UTC, cap: int = MISSED_CAP) -> int:
    """How many times ``schedule`` fires in ``(after, until]``, counting at most ``cap``."""
    it = croniter(schedule, _start(after, tz))
    count = 0
    while count < cap:
        try:
            moment: datetime = it.get_next(datetime)
        except CroniterError:
            raise _never(schedule) from None
        if moment > until:
            break
        count += 1
    return count


def tier_status(schedules: Mapping[str, str | None], snapshots: Iterable[SnapshotLike], now: datetime,
                tz: tzinfo = UTC) -> list[TierStatus]:
    """The status of every tier in ``schedules`` (tier -> cron expression or None), in order."""
    newest: dict[str, SnapshotLike] = {}
    for snap in snapshots:
        if snap.tier in schedules:
            seen = newest.get(snap.tier)
            if seen is None or snap.time > seen.time:
                newest[snap.tier] = snap
    return [_status(tier, schedule, newest.get(tier), now, tz) for tier, schedule in schedules.items()]


def due_tiers(schedules: Mapping[str, str | None], snapshots: Iterable[SnapshotLike], now: datetime,
              tz: tzinfo = UTC) -> list[TierStatus]:
    """Only the due tiers of :func:`tier_status`, in the order of ``schedules``."""
    return [s for s in tier_status(schedules, snapshots, now, tz) if s.due]


def _status(tier: str, schedule: str | None, last: SnapshotLike | None, now: datetime, tz: tzinfo) -> TierStatus:
    last_time = last.time if last is not None else None
    last_id = last.id if last is not None else ""
    if schedule is None:
        return TierStatus(tier, None, False, "no schedule (taken on demand)", last=last_time, last_id=last_id)
    slot = last_slot(schedule, now, tz)
    upcoming = next_slot(schedule, now, tz)
    base = TierStatus(tier, schedule, False, "", slot=slot, next_slot=upcoming, last=last_time, last_id=last_id)
    if last_time is None:
        return replace(base, due=True, reason=f"never taken; slot {format_time(slot)} has passed")
    if last_time >= slot:
        return replace(base, reason=f"taken at {format_time(last_time)} for the slot {format_time(slot)}; "
                                    f"next slot {format_time(upcoming)}")
    missed = count_slots(schedule, last_time, now, tz)
    plural = "s" if missed != 1 else ""
    more = "+" if missed >= MISSED_CAP else ""
    catch_up = "; one catch-up snapshot covers them" if missed > 1 else ""
    return replace(base, due=True, missed=missed,
                   reason=f"last snapshot {format_time(last_time)} is before the slot {format_time(slot)} "
                          f"({missed}{more} slot{plural} missed{catch_up})")


# ---------------------------------------------------------------------------------------------
# Entries for cron and systemd
# ---------------------------------------------------------------------------------------------


def _command_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in argv)


def cron_entry(argv: list[str], every_minutes: int = 5) -> str:
    """A crontab line running ``argv`` (``snap ... take --due``) every ``every_minutes`` minutes."""
    if not 1 <= every_minutes <= 59:
        raise ValueError("every_minutes must be in 1..59")
    minute = "*" if every_minutes == 1 else f"*/{every_minutes}"
    return f"{minute} * * * * {_command_line(argv)}"


def systemd_units(argv: list[str], every_minutes: int = 5, name: str = "snap-take") -> dict[str, str]:
    """``{"NAME.service": ..., "NAME.timer": ...}``: a oneshot service running ``argv`` and a
    persistent timer firing every ``every_minutes`` minutes."""
    if not 1 <= every_minutes <= 59:
        raise ValueError("every_minutes must be in 1..59")
    return _oneshot_units(argv, name, "take the snapshots whose schedule is due", f"*:0/{every_minutes}",
                          f"look for due snapshots every {every_minutes} minutes")


def _oneshot_units(argv: list[str], name: str, what: str, on_calendar: str, when: str,
                   after: str | None = None) -> dict[str, str]:
    """A oneshot ``NAME.service`` running ``argv`` (at low CPU and I/O priority) and a persistent
    ``NAME.timer`` firing on ``on_calendar``; ``after``: a unit it is ordered after."""
    service = (
        "[Unit]\n"
        f"Description=snap: {what}\n"
        "After=local-fs.target" + (f" {after}" if after else "") + "\n"
        "\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={_command_line(argv)}\n"
        "Nice=10\n"
        "IOSchedulingClass=idle\n"
    )
    timer = (
        "[Unit]\n"
        f"Description=snap: {when}\n"
        "\n"
        "[Timer]\n"
        f"OnCalendar={on_calendar}\n"
        "Persistent=true\n"
        f"Unit={name}.service\n"
        "\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {f"{name}.service": service, f"{name}.timer": timer}


# -- maintenance: gc after the takes, the periodic verification --------------------------------

_DOW = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MACRO_CRON = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
               "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def _calendar_field(field: str, width: int) -> str:
    """One cron field as systemd calendar syntax: ``*``, lists, ``a-b`` ranges and ``/`` steps."""
    if field == "*":
        return "*"
    out = []
    for part in field.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            base = "0"
        lo, _, hi = base.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (step and not step.isdigit()):
            raise ConfigError(f"cron field {field!r} has no systemd calendar form; use --cron")
        text = lo.zfill(width) + (f"..{hi.zfill(width)}" if hi else "") + (f"/{step}" if step else "")
        out.append(text)
    return ",".join(out)


def systemd_calendar(schedule: str) -> str:
    """The ``OnCalendar=`` form of a 5-field cron expression or macro (``30 4 * * *`` ->
    ``*-*-* 04:30:00``); a field it cannot express is a ``ConfigError``."""
    text = _MACRO_CRON.get(schedule, schedule)
    minute, hour, dom, month, dow = text.split()
    if dom != "*" and dow != "*":  # cron fires on either, systemd only on both
        raise ConfigError(f"cron expression {schedule!r} restricts both day of month and day of week, which "
                          "systemd cannot express; use --cron")
    days = ""
    if dow != "*":
        names = []
        for part in dow.split(","):
            lo, _, hi = part.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()) or int(lo) > 7 or (hi and int(hi) > 7):
                raise ConfigError(f"cron day-of-week {dow!r} has no systemd calendar form; use --cron")
            names.append(_DOW[int(lo)] + (f"..{_DOW[int(hi)]}" if hi else ""))
        days = ",".join(names) + " "
    return (f"{days}*-{_calendar_field(month, 2)}-{_calendar_field(dom, 2)} "
            f"{_calendar_field(hour, 2)}:{_calendar_field(minute, 2)}:00")


def cron_line(schedule: str, argv: list[str]) -> str:
    """A crontab line running ``argv`` on ``schedule`` (a cron expression or macro)."""
    return f"{schedule} {_command_line(argv)}"


def systemd_job_units(argv: list[str], schedule: str, name: str, what: str, after: str | None = None
                      ) -> dict[str, str]:
    """A oneshot ``NAME.service`` running ``argv`` and a persistent ``NAME.timer`` on ``schedule``;
    ``after``: a unit it is ordered after when both start at once (gc after the takes)."""
    return _oneshot_units(argv, name, what, systemd_calendar(schedule), f"{what} ({schedule})", after)
