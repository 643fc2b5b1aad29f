"""Unit tests for snapstore.ops.retention: reference cases, calendar rules, keep_within, pins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from snapstore.format.snapshot import Snapshot
from snapstore.ops.retention import (
    FORGET_REASON,
    Decision,
    RetentionPolicy,
    TierRule,
    apply_policy,
    format_duration,
    plan_summary,
)


@dataclass(frozen=True)
class Snap:
    id: str
    time: datetime
    tier: str = "daily"
    hostname: str = "host"
    incomplete: bool = False


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def snaps(*times: str, tier: str = "daily", prefix: str = "") -> list[Snap]:
    return [Snap(id=f"{prefix}{i:03d}", time=at(t), tier=tier) for i, t in enumerate(times)]


def kept_ids(decisions: list[Decision]) -> list[str]:
    return [d.snapshot.id for d in decisions if d.keep]


def reasons_of(decisions: list[Decision], ident: str) -> tuple[str, ...]:
    return next(d.reasons for d in decisions if d.snapshot.id == ident)


NOW = at("2026-11-22T12:00:00")

# The policy of the example config (docs/config.md) and the seed's backup skill.
EXAMPLE_POLICY = RetentionPolicy(
    tiers={
        "daily": TierRule(keep=30),
        "weekly": TierRule(keep=12),
        "monthly": TierRule(keep=12, keep_within=timedelta(days=400)),
        "on-change": TierRule(keep=10),
    }
)

# Reference cases as data: (tier, how many, newest time, spacing) -> how many are kept.
REFERENCE_TIERS = [
    # tier,       count, newest,                spacing,             kept
    ("daily", 40, "2026-11-22T07:00:00", timedelta(days=1), 30),
    ("weekly", 15, "2026-11-15T23:00:00", timedelta(weeks=1), 12),
    ("monthly", 3, "2026-11-01T01:00:00", timedelta(days=31), 3),
    ("on-change", 12, "2026-11-21T16:42:10", timedelta(hours=37, minutes=11), 10),
]


def reference_snapshots() -> list[Snap]:
    out = []
    for tier, count, newest, spacing, _ in REFERENCE_TIERS:
        for n in range(count):
            out.append(Snap(id=f"{tier}-{n:02d}", time=at(newest) - n * spacing, tier=tier))
    return out


def test_reference_case_keeps_newest_of_each_tier() -> None:
    decisions = apply_policy(reference_snapshots(), EXAMPLE_POLICY, NOW)
    assert len(decisions) == 40 + 15 + 3 + 12
    for tier, count, _, _, kept in REFERENCE_TIERS:
        expected = [f"{tier}-{n:02d}" for n in range(kept)]
        assert [d.snapshot.id for d in decisions if d.keep and d.snapshot.tier == tier] == expected
        forgotten = [d for d in decisions if d.forget and d.snapshot.tier == tier]
        assert len(forgotten) == count - kept
        assert all(d.reasons == (FORGET_REASON,) for d in forgotten)
    assert plan_summary(decisions) == {
        "keep": 55,
        "forget": 15,
        "tiers": {
            "daily": {"keep": 30, "forget": 10},
            "monthly": {"keep": 3, "forget": 0},
            "on-change": {"keep": 10, "forget": 2},
            "weekly": {"keep": 12, "forget": 3},
        },
    }


def test_reference_case_reasons() -> None:
    decisions = apply_policy(reference_snapshots(), EXAMPLE_POLICY, NOW)
    assert reasons_of(decisions, "daily-00") == ("tier daily: #1 of newest 30",)
    assert reasons_of(decisions, "daily-29") == ("tier daily: #30 of newest 30",)
    assert reasons_of(decisions, "monthly-02") == (
        "tier monthly: #3 of newest 12",
        "tier monthly: within 400d",
    )


def test_result_is_newest_first_and_covers_every_input() -> None:
    items = reference_snapshots()
    decisions = apply_policy(reversed(items), EXAMPLE_POLICY, NOW)
    times = [d.snapshot.time for d in decisions]
    assert times == sorted(times, reverse=True)
    assert sorted(d.snapshot.id for d in decisions) == sorted(s.id for s in items)


def test_ties_are_broken_by_id() -> None:
    same = at("2026-11-22T07:00:00")
    items = [Snap("c", same), Snap("a", same), Snap("b", same)]
    policy = RetentionPolicy(tiers={"daily": TierRule(keep=1)})
    decisions = apply_policy(items, policy, NOW)
    assert [d.snapshot.id for d in decisions] == ["a", "b", "c"]
    assert kept_ids(decisions) == ["a"]


def test_empty_input() -> None:
    assert apply_policy([], EXAMPLE_POLICY, NOW) == []
    assert plan_summary([]) == {"keep": 0, "forget": 0, "tiers": {}}


# --- tier rules ------------------------------------------------------------------------------


def test_tier_without_rule_keeps_everything() -> None:
    items = snaps("2020-01-01T00:00:00", "2021-01-01T00:00:00", tier="manual")
    decisions = apply_policy(items, EXAMPLE_POLICY, NOW)
    assert all(d.keep for d in decisions)
    assert all(d.reasons == ("tier manual has no retention rule",) for d in decisions)


def test_empty_tier_rule_is_no_rule() -> None:
    items = snaps("2020-01-01T00:00:00")
    decisions = apply_policy(items, RetentionPolicy(tiers={"daily": TierRule()}), NOW)
    assert decisions[0].keep


def test_keep_zero_forgets_the_whole_tier() -> None:
    items = snaps("2026-11-20T00:00:00", "2026-11-21T00:00:00")
    decisions = apply_policy(items, RetentionPolicy(tiers={"daily": TierRule(keep=0)}), NOW)
    assert kept_ids(decisions) == []


def test_tier_keep_within() -> None:
    items = snaps("2026-11-22T11:00:00", "2026-11-21T12:00:01", "2026-11-21T12:00:00", "2026-11-01T00:00:00")
    policy = RetentionPolicy(tiers={"daily": TierRule(keep_within=timedelta(days=1))})
    decisions = apply_policy(items, policy, NOW)
    assert kept_ids(decisions) == ["000", "001"]  # strictly newer than now - 1d
    assert reasons_of(decisions, "000") == ("tier daily: within 1d",)


def test_tier_keep_and_keep_within_combine() -> None:
    items = snaps(*(f"2026-11-{day:02d}T07:00:00" for day in range(22, 0, -1)))
    policy = RetentionPolicy(tiers={"daily": TierRule(keep=3, keep_within=timedelta(days=7))})
    assert len(kept_ids(apply_policy(items, policy, NOW))) == 7


def test_tier_rules_do_not_touch_other_tiers() -> None:
    items = snaps("2026-11-22T07:00:00", "2026-11-21T07:00:00") + snaps(
        "2026-11-22T08:00:00", tier="weekly", prefix="w"
    )
    policy = RetentionPolicy(tiers={"daily": TierRule(keep=1), "weekly": TierRule(keep=1)})
    assert kept_ids(apply_policy(items, policy, NOW)) == ["w000", "000"]


# --- calendar rules ----------------------------------------------------------------------------


def calendar(items: list[Snap], **rules: int) -> list[str]:
    policy = RetentionPolicy(tiers={"daily": TierRule(keep=0)}, **rules)
    return kept_ids(apply_policy(items, policy, NOW))


def test_keep_daily_picks_newest_of_each_day() -> None:
    items = snaps(
        "2026-11-22T07:00:00",
        "2026-11-22T19:00:00",  # newest of the 22nd
        "2026-11-21T07:00:00",
        "2026-11-20T23:59:59",
        "2026-11-20T00:00:00",
        "2026-11-19T12:00:00",
    )
    assert calendar(items, keep_daily=3) == ["001", "002", "003"]


def test_keep_daily_counts_days_that_have_a_snapshot() -> None:
    items = snaps("2026-11-22T07:00:00", "2026-11-15T07:00:00", "2026-11-01T07:00:00", "2026-10-01T07:00:00")
    assert calendar(items, keep_daily=3) == ["000", "001", "002"]


def test_keep_daily_reasons() -> None:
    items = snaps("2026-11-22T07:00:00", "2026-11-21T07:00:00")
    decisions = apply_policy(items, RetentionPolicy(keep_daily=5), NOW)
    assert reasons_of(decisions, "000") == ("tier daily has no retention rule", "daily 2026-11-22 (1 of 5)")
    decisions = apply_policy(items, RetentionPolicy(tiers={"daily": TierRule(keep=0)}, keep_daily=5), NOW)
    assert reasons_of(decisions, "001") == ("daily 2026-11-21 (2 of 5)",)


def test_days_are_utc() -> None:
    eastern = timezone(timedelta(hours=-5))
    items = [
        Snap("late", datetime(2026, 11, 21, 22, 0, tzinfo=eastern)),  # 2026-11-22T03:00Z
        Snap("early", at("2026-11-22T01:00:00")),
        Snap("prev", at("2026-11-21T20:00:00")),
    ]
    assert calendar(items, keep_daily=2) == ["late", "prev"]


def test_keep_last() -> None:
    items = snaps("2026-11-22T07:00:00", "2026-11-22T06:00:00", "2026-11-22T05:00:00")
    assert calendar(items, keep_last=2) == ["000", "001"]


def test_keep_hourly() -> None:
    items = snaps("2026-11-22T07:50:00", "2026-11-22T07:10:00", "2026-11-22T06:59:00", "2026-11-22T05:00:00")
    assert calendar(items, keep_hourly=2) == ["000", "002"]


def test_keep_weekly_uses_iso_weeks() -> None:
    items = snaps(
        "2024-12-30T10:00:00",  # Monday: ISO week 2025-W01
        "2024-12-29T23:00:00",  # Sunday: ISO week 2024-W52
        "2024-12-23T09:00:00",  # Monday of 2024-W52
        "2024-12-22T09:00:00",  # Sunday: 2024-W51
    )
    assert calendar(items, keep_weekly=3) == ["000", "001", "003"]
    decisions = apply_policy(items, RetentionPolicy(keep_weekly=1), NOW)
    assert "weekly 2025-W01 (1 of 1)" in reasons_of(decisions, "000")


def test_keep_monthly_and_yearly() -> None:
    items = snaps(
        "2026-11-01T01:00:00",
        "2026-10-31T01:00:00",
        "2026-10-01T01:00:00",
        "2025-12-31T23:00:00",
        "2025-01-01T00:00:00",
        "2024-06-01T00:00:00",
    )
    assert calendar(items, keep_monthly=3) == ["000", "001", "003"]
    assert calendar(items, keep_yearly=2) == ["000", "003"]
    assert calendar(items, keep_monthly=1, keep_yearly=3) == ["000", "003", "005"]


def test_calendar_rules_span_tiers() -> None:
    items = snaps("2026-11-22T07:00:00") + snaps("2026-11-22T23:00:00", tier="weekly", prefix="w")
    policy = RetentionPolicy(tiers={"daily": TierRule(keep=0), "weekly": TierRule(keep=0)}, keep_daily=1)
    assert kept_ids(apply_policy(items, policy, NOW)) == ["w000"]


# --- keep_within, pins, hosts ------------------------------------------------------------------


def test_global_keep_within() -> None:
    items = snaps("2026-11-22T07:00:00", "2026-11-10T07:00:00") + snaps(
        "2026-11-20T07:00:00", tier="weekly", prefix="w"
    )
    policy = RetentionPolicy(
        tiers={"daily": TierRule(keep=0), "weekly": TierRule(keep=0)}, keep_within=timedelta(weeks=1)
    )
    decisions = apply_policy(items, policy, NOW)
    assert kept_ids(decisions) == ["000", "w000"]
    assert reasons_of(decisions, "w000") == ("within 7d",)


def test_pinned_are_kept_and_unknown_pins_ignored() -> None:
    items = snaps("2026-11-22T07:00:00", "2020-01-01T00:00:00")
    policy = RetentionPolicy(tiers={"daily": TierRule(keep=1)})
    decisions = apply_policy(items, policy, NOW, pinned={"001", "no-such-id"})
    assert kept_ids(decisions) == ["000", "001"]
    assert reasons_of(decisions, "001") == ("pinned",)


def test_pins_still_count_among_the_newest() -> None:
    items = snaps("2026-11-22T07:00:00", "2026-11-21T07:00:00")
    policy = RetentionPolicy(tiers={"daily": TierRule(keep=1)})
    decisions = apply_policy(items, policy, NOW, pinned=["000"])
    assert kept_ids(decisions) == ["000"]
    assert reasons_of(decisions, "000") == ("pinned", "tier daily: #1 of newest 1")


def test_group_by_host() -> None:
    items = [
        Snap("a1", at("2026-11-22T07:00:00"), hostname="alpha"),
        Snap("a2", at("2026-11-21T07:00:00"), hostname="alpha"),
        Snap("b1", at("2026-11-20T07:00:00"), hostname="beta"),
        Snap("b2", at("2026-11-19T07:00:00"), hostname="beta"),
    ]
    flat = RetentionPolicy(tiers={"daily": TierRule(keep=1)}, keep_daily=1)
    assert kept_ids(apply_policy(items, flat, NOW)) == ["a1"]
    grouped = RetentionPolicy(tiers={"daily": TierRule(keep=1)}, keep_daily=1, group_by_host=True)
    decisions = apply_policy(items, grouped, NOW)
    assert kept_ids(decisions) == ["a1", "b1"]
    assert reasons_of(decisions, "b1") == (
        "tier daily on beta: #1 of newest 1",
        "daily 2026-11-20 on beta (1 of 1)",
    )


# --- inputs and helpers ------------------------------------------------------------------------


def test_accepts_snapshot_records() -> None:
    record = Snapshot(time=at("2026-11-22T07:00:00"), tier="daily", root="00" * 32, paths=("/a",)).with_id()
    old = Snapshot(time=at("2026-11-01T07:00:00"), tier="daily", root="00" * 32, paths=("/a",)).with_id()
    decisions = apply_policy([old, record], RetentionPolicy(tiers={"daily": TierRule(keep=1)}), NOW)
    assert [(d.snapshot.id, d.keep) for d in decisions] == [(record.id, True), (old.id, False)]


def test_naive_now_is_utc() -> None:
    items = snaps("2026-11-22T07:00:00", "2026-11-20T07:00:00")
    policy = RetentionPolicy(tiers={"daily": TierRule(keep_within=timedelta(days=1))})
    assert kept_ids(apply_policy(items, policy, NOW.replace(tzinfo=None))) == ["000"]


@pytest.mark.parametrize(
    "kwargs", [{"keep_last": -1}, {"keep_daily": -2}, {"keep_within": timedelta(seconds=-1)}]
)
def test_policy_rejects_negative_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetentionPolicy(**kwargs)  # type: ignore[arg-type]


def test_tier_rule_rejects_negative_keep() -> None:
    with pytest.raises(ValueError):
        TierRule(keep=-1)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=400), "400d"),
        (timedelta(days=1, hours=12), "1d12h"),
        (timedelta(minutes=90), "1h30min"),
        (timedelta(0), "0s"),
        (timedelta(seconds=5), "5s"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


def test_an_incomplete_snapshot_does_not_count_toward_keep_n() -> None:
    complete = snaps("2026-11-01T01:00:00", "2026-10-01T01:00:00", tier="monthly")
    newer = Snap(id="inc", time=datetime(2026, 12, 1, 1, tzinfo=UTC), tier="monthly", incomplete=True)
    older = Snap(id="old-inc", time=datetime(2026, 9, 1, 1, tzinfo=UTC), tier="monthly", incomplete=True)
    policy = RetentionPolicy(tiers={"monthly": TierRule(keep=1)})
    decisions = {d.snapshot.id: d for d in apply_policy([*complete, newer, older], policy,
                                                        datetime(2026, 12, 2, tzinfo=UTC))}
    assert decisions[complete[0].id].keep  # the newest complete one is still #1
    assert decisions["inc"].keep and "incomplete" in decisions["inc"].reasons[0]
    assert not decisions[complete[1].id].keep and not decisions["old-inc"].keep


# -- per-host policies: each host's counts among its own snapshots ---------------------------


def _shared(days: int, hosts: tuple[str, ...]) -> list[Snap]:
    """One daily snapshot per host per day, the newest on 2026-11-22 07:00."""
    return [Snap(id=f"{host}-{day:02d}", time=at("2026-11-22T07:00:00") - timedelta(days=day), hostname=host)
            for host in hosts for day in range(days)]


def test_per_host_keep_counts_among_that_hosts_snapshots() -> None:
    policy = RetentionPolicy(tiers={"daily": TierRule(keep=5)},
                             hosts={"laptop": RetentionPolicy(tiers={"daily": TierRule(keep=2)})})
    decisions = apply_policy(_shared(10, ("db1", "db2", "laptop")), policy, NOW)
    kept = kept_ids(decisions)
    # db1 and db2 keep their 5 newest together (no group_by_host: counted among the rest), the laptop its own 2
    assert sorted(k for k in kept if k.startswith("laptop")) == ["laptop-00", "laptop-01"]
    assert len([k for k in kept if not k.startswith("laptop")]) == 5
    assert reasons_of(decisions, "laptop-01") == ("tier daily on laptop: #2 of newest 2",)
    assert reasons_of(decisions, "laptop-02") == (FORGET_REASON,)
    # newest first, ties by id, as without hosts
    order = [d.snapshot.id for d in decisions]
    assert order[:3] == ["db1-00", "db2-00", "laptop-00"]


def test_per_host_policies_with_group_by_host_for_the_rest() -> None:
    policy = RetentionPolicy(tiers={"daily": TierRule(keep=3)}, group_by_host=True, keep_weekly=1,
                             hosts={"ci": RetentionPolicy(tiers={"daily": TierRule(keep=0)}, keep_last=1)})
    decisions = apply_policy(_shared(10, ("db1", "db2", "ci")), policy, NOW)
    kept = set(kept_ids(decisions))
    assert {"db1-00", "db1-01", "db1-02", "db2-00", "db2-01", "db2-02"} <= kept
    assert {k for k in kept if k.startswith("ci")} == {"ci-00"}
    assert reasons_of(decisions, "ci-00") == ("last on ci (1 of 1)",)
    # keep 0 for the ci host's daily tier: only its last one stays
    assert all(not d.keep for d in decisions if d.snapshot.hostname == "ci" and d.snapshot.id != "ci-00")


def test_per_host_pins_and_unlisted_hosts() -> None:
    policy = RetentionPolicy(tiers={"daily": TierRule(keep=1)},
                             hosts={"laptop": RetentionPolicy(tiers={"daily": TierRule(keep=1)})})
    decisions = apply_policy(_shared(3, ("laptop", "other")), policy, NOW, pinned={"laptop-02"})
    assert set(kept_ids(decisions)) == {"laptop-00", "laptop-02", "other-00"}
    assert reasons_of(decisions, "laptop-02") == ("pinned",)
    assert len(decisions) == 6


def test_a_host_policy_cannot_nest_hosts() -> None:
    with pytest.raises(ValueError, match="per-host policies of its own"):
        RetentionPolicy(hosts={"a": RetentionPolicy(hosts={"b": RetentionPolicy()})})
