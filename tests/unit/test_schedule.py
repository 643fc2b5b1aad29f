"""Unit tests for snapstore.agent.schedule: slots, due tiers, catch-up, time zones, cron/systemd text."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from snapstore.agent.schedule import (
    MISSED_CAP,
    count_slots,
    cron_entry,
    due_tiers,
    last_slot,
    local_zone,
    next_slot,
    systemd_units,
    tier_status,
)

SEEDS = {"daily": "0 7 * * *", "weekly": "0 23 * * 0", "monthly": "0 1 1 * *", "on-change": None}


@dataclass(frozen=True)
class Snap:
    tier: str
    time: datetime
    id: str = "0" * 64


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def due_names(snaps: list[Snap], now: str, schedules: dict[str, str | None] = SEEDS) -> list[str]:
    return [s.tier for s in due_tiers(schedules, snaps, at(now))]


def test_last_slot_is_at_or_before_now() -> None:
    assert last_slot("0 7 * * *", at("2026-11-22 07:00:00")) == at("2026-11-22 07:00")
    assert last_slot("0 7 * * *", at("2026-11-22 07:00:59")) == at("2026-11-22 07:00")
    assert last_slot("0 7 * * *", at("2026-11-22 06:59:59")) == at("2026-11-21 07:00")
    assert next_slot("0 7 * * *", at("2026-11-22 07:00")) == at("2026-11-23 07:00")


def test_never_taken_tiers_are_due_and_unscheduled_ones_never() -> None:
    statuses = {s.tier: s for s in tier_status(SEEDS, [], at("2026-11-22 12:00"))}
    assert statuses["daily"].due and "never taken" in statuses["daily"].reason
    assert statuses["weekly"].due and statuses["monthly"].due
    assert not statuses["on-change"].due and statuses["on-change"].slot is None


def test_one_take_per_slot() -> None:
    snaps = [Snap("daily", at("2026-11-22 07:00:30"))]
    assert "daily" not in due_names(snaps, "2026-11-22 07:05")
    assert "daily" not in due_names(snaps, "2026-11-23 06:59:59")
    assert "daily" in due_names(snaps, "2026-11-23 07:00")


def test_around_midnight() -> None:
    schedules = {"nightly": "0 0 * * *"}
    snaps = [Snap("nightly", at("2026-11-21 00:01"))]
    assert due_names(snaps, "2026-11-21 23:59:59", schedules) == []
    assert due_names(snaps, "2026-11-22 00:00", schedules) == ["nightly"]
    snaps.append(Snap("nightly", at("2026-11-22 00:00:10")))
    assert due_names(snaps, "2026-11-22 00:05", schedules) == []


def test_sunday_23_00() -> None:
    # 2026-11-22 is a Sunday.
    snaps = [Snap("weekly", at("2026-11-15 23:00"))]
    assert "weekly" not in due_names(snaps, "2026-11-22 22:59")
    assert "weekly" in due_names(snaps, "2026-11-22 23:00")
    assert "weekly" in due_names(snaps, "2026-11-24 10:00")  # Tuesday: still the missed Sunday slot
    snaps.append(Snap("weekly", at("2026-11-24 10:00")))
    assert "weekly" not in due_names(snaps, "2026-11-29 22:59")


def test_month_ends() -> None:
    snaps = [Snap("monthly", at("2026-11-01 01:00"))]
    assert "monthly" not in due_names(snaps, "2026-11-30 23:59")
    assert "monthly" not in due_names(snaps, "2026-12-01 00:59")
    assert "monthly" in due_names(snaps, "2026-12-01 01:00")
    # February to March, and a "last day of the month" schedule
    end = {"month-end": "30 23 28-31 * *"}
    assert last_slot(end["month-end"], at("2027-03-01 12:00")) == at("2027-02-28 23:30")
    snaps = [Snap("month-end", at("2027-02-28 23:31"))]
    assert due_names(snaps, "2027-03-01 12:00", end) == []
    assert due_names(snaps, "2027-03-28 23:30", end) == ["month-end"]


def test_missed_slots_make_one_catch_up() -> None:
    snaps = [Snap("daily", at("2026-11-20 07:00"))]
    status = due_tiers(SEEDS, snaps, at("2026-11-22 09:00"))[0]
    assert status.tier == "daily" and status.missed == 2
    assert "2 slots missed" in status.reason and "one catch-up" in status.reason
    snaps.append(Snap("daily", at("2026-11-22 09:00")))  # the catch-up
    assert "daily" not in due_names(snaps, "2026-11-22 09:05")


def test_missed_count_is_capped() -> None:
    assert count_slots("* * * * *", at("2020-01-01 00:00"), at("2026-01-01 00:00")) == MISSED_CAP


def test_newest_snapshot_of_the_tier_counts() -> None:
    snaps = [Snap("daily", at("2026-11-22 07:01")), Snap("daily", at("2026-11-10 07:00")),
             Snap("weekly", at("2026-11-22 23:00"))]
    assert "daily" not in due_names(snaps, "2026-11-22 08:00")
    other = [Snap("weekly", at("2026-11-22 08:00"))]  # another tier's snapshot does not count
    assert "daily" in due_names(other, "2026-11-22 08:00")


def test_local_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 07:00 in Berlin is 06:00 UTC in winter
    assert last_slot("0 7 * * *", at("2026-11-22 06:30"), berlin) == at("2026-11-22 06:00")
    assert last_slot("0 7 * * *", at("2026-07-22 05:30"), berlin) == at("2026-07-22 05:00")  # summer: UTC+2


def test_local_zone_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    assert local_zone() is UTC
    monkeypatch.setenv("TZ", "America/New_York")
    assert str(local_zone()) == "America/New_York"


def test_cron_and_systemd_text() -> None:
    argv = ["/opt/snap env/bin/snap", "--config", "/etc/snap/backup_schedule.json", "take", "--due"]
    line = cron_entry(argv, 5)
    assert line == "*/5 * * * * '/opt/snap env/bin/snap' --config /etc/snap/backup_schedule.json take --due"
    units = systemd_units(argv, 10, "snap-take")
    assert set(units) == {"snap-take.service", "snap-take.timer"}
    assert "Type=oneshot" in units["snap-take.service"]
    assert "ExecStart='/opt/snap env/bin/snap' --config" in units["snap-take.service"]
    assert "OnCalendar=*:0/10" in units["snap-take.timer"] and "Persistent=true" in units["snap-take.timer"]
    with pytest.raises(ValueError):
        cron_entry(argv, 0)


# -- maintenance entries: gc after the takes, the monthly verification ------------------------


def test_systemd_calendar_forms_that_systemd_itself_accepts() -> None:
    import subprocess

    from snapstore.agent.schedule import systemd_calendar

    cases = {"30 4 * * *": "*-*-* 04:30:00", "0 5 1 * *": "*-*-01 05:00:00", "0 23 * * 0": "Sun *-*-* 23:00:00",
             "*/15 * * * 1-5": "Mon..Fri *-*-* *:00/15:00", "@monthly": "*-*-01 00:00:00",
             "0 7 1,15 * *": "*-*-01,15 07:00:00", "0 0 1 1-6 *": "*-01..06-01 00:00:00"}
    for cron, calendar in cases.items():
        assert systemd_calendar(cron) == calendar
        checked = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True)
        assert checked.returncode == 0 and "Next elapse" in checked.stdout, (calendar, checked.stderr)


def test_systemd_calendar_refuses_what_it_cannot_express() -> None:
    from snapstore.agent.schedule import systemd_calendar
    from snapstore.errors import ConfigError

    for cron in ("0 5 1 * 1", "0 5 * * MON", "0 5 L * *"):
        with pytest.raises(ConfigError):
            systemd_calendar(cron)


def test_job_units_order_gc_after_the_takes() -> None:
    from snapstore.agent.schedule import cron_line, systemd_job_units

    argv = ["/usr/bin/snap", "--config", "/etc/snap/backup schedule.json", "gc"]
    assert cron_line("30 4 * * *", argv) == "30 4 * * * /usr/bin/snap --config '/etc/snap/backup schedule.json' gc"
    units = systemd_job_units(argv, "30 4 * * *", "snap-gc", "gc", after="snap-take.service")
    assert "After=local-fs.target snap-take.service" in units["snap-gc.service"]
    assert "OnCalendar=*-*-* 04:30:00" in units["snap-gc.timer"] and "Unit=snap-gc.service" in units["snap-gc.timer"]
