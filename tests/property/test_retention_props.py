"""Property tests for snapstore.ops.retention.apply_policy over random timelines and policies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from snapstore.ops.retention import RetentionPolicy, TierRule, apply_policy

TIERS = ("daily", "weekly", "monthly", "on-change", "manual")
HOSTS = ("alpha", "beta", "")
START = datetime(2023, 12, 25, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Snap:
    id: str
    time: datetime
    tier: str
    hostname: str


@st.composite
def snapshot_lists(draw: st.DrawFn) -> list[Snap]:
    count = draw(st.integers(min_value=0, max_value=60))
    ids = draw(
        st.lists(
            st.text("0123456789abcdef", min_size=6, max_size=6), min_size=count, max_size=count, unique=True
        )
    )
    # Coarse offsets make equal times (ties) and same-hour/day/week snapshots common.
    coarse = st.integers(min_value=0, max_value=(NOW - START) // timedelta(hours=1) + 48)
    out = []
    for ident in ids:
        when = START + timedelta(hours=draw(coarse), minutes=draw(st.sampled_from([0, 0, 30, 59])))
        out.append(Snap(ident, when, draw(st.sampled_from(TIERS)), draw(st.sampled_from(HOSTS))))
    return out


small = st.integers(min_value=0, max_value=6)
durations = st.none() | st.integers(min_value=1, max_value=800).map(lambda d: timedelta(days=d))
tier_rules = st.builds(TierRule, keep=st.none() | small, keep_within=durations)
policies = st.builds(
    RetentionPolicy,
    tiers=st.dictionaries(st.sampled_from(TIERS[:-1]), tier_rules),
    keep_last=small,
    keep_hourly=small,
    keep_daily=small,
    keep_weekly=small,
    keep_monthly=small,
    keep_yearly=small,
    keep_within=durations,
    group_by_host=st.booleans(),
)


def pins_for(items: list[Snap]) -> st.SearchStrategy[frozenset[str]]:
    choices = [s.id for s in items] + ["not-a-snapshot"]
    return st.frozensets(st.sampled_from(choices))


@settings(max_examples=300)
@given(data=st.data(), items=snapshot_lists(), policy=policies)
def test_every_input_gets_exactly_one_decision(
    data: st.DataObject, items: list[Snap], policy: RetentionPolicy
) -> None:
    decisions = apply_policy(items, policy, NOW, pinned=data.draw(pins_for(items)))
    assert sorted(d.snapshot.id for d in decisions) == sorted(s.id for s in items)
    assert all(d.reasons for d in decisions)


@settings(max_examples=300)
@given(data=st.data(), items=snapshot_lists(), policy=policies)
def test_independent_of_input_order(data: st.DataObject, items: list[Snap], policy: RetentionPolicy) -> None:
    pins = data.draw(pins_for(items))
    shuffled = data.draw(st.permutations(items))
    assert apply_policy(shuffled, policy, NOW, pins) == apply_policy(items, policy, NOW, pins)


@settings(max_examples=300)
@given(data=st.data(), items=snapshot_lists(), policy=policies)
def test_pinned_are_always_kept(data: st.DataObject, items: list[Snap], policy: RetentionPolicy) -> None:
    pins = data.draw(pins_for(items))
    for decision in apply_policy(items, policy, NOW, pins):
        if decision.snapshot.id in pins:
            assert decision.keep and "pinned" in decision.reasons


@settings(max_examples=300)
@given(items=snapshot_lists(), policy=policies)
def test_newest_of_each_tier_is_kept_when_keep_is_positive(
    items: list[Snap], policy: RetentionPolicy
) -> None:
    decisions = apply_policy(items, policy, NOW)
    for tier in TIERS:
        rule = policy.tiers.get(tier)
        of_tier = [d for d in decisions if d.snapshot.tier == tier]
        if of_tier and rule is not None and rule.keep is not None and rule.keep >= 1:
            assert of_tier[0].keep  # decisions are newest first


@settings(max_examples=300)
@given(items=snapshot_lists(), policy=policies)
def test_tiers_without_rule_keep_everything(items: list[Snap], policy: RetentionPolicy) -> None:
    for decision in apply_policy(items, policy, NOW):
        rule = policy.tiers.get(decision.snapshot.tier)
        if rule is None or rule.is_empty:
            assert decision.keep


@settings(max_examples=300)
@given(data=st.data(), items=snapshot_lists(), policy=policies)
def test_idempotent(data: st.DataObject, items: list[Snap], policy: RetentionPolicy) -> None:
    pins = data.draw(pins_for(items))
    kept = [d.snapshot for d in apply_policy(items, policy, NOW, pins) if d.keep]
    again = apply_policy(kept, policy, NOW, pins)
    assert all(d.keep for d in again)


@settings(max_examples=200)
@given(items=snapshot_lists(), policy=policies)
def test_newest_first(items: list[Snap], policy: RetentionPolicy) -> None:
    decisions = apply_policy(items, policy, NOW)
    keys = [(d.snapshot.time, d.snapshot.id) for d in decisions]
    for (t1, id1), (t2, id2) in zip(keys, keys[1:], strict=False):
        assert t1 > t2 or (t1 == t2 and id1 < id2)


@settings(max_examples=100)
@given(data=st.data(), items=snapshot_lists(), policy=policies, host_policy=policies)
def test_a_host_with_its_own_policy_is_decided_alone(
    data: st.DataObject, items: list[Snap], policy: RetentionPolicy, host_policy: RetentionPolicy
) -> None:
    """Per-host counts: alpha's snapshots get exactly the verdicts alpha's policy gives them
    when they are the only snapshots; the others, those of the rest of the policy alone; every
    input still gets one decision, newest first."""
    from dataclasses import replace

    pins = data.draw(pins_for(items))
    combined = apply_policy(items, replace(policy, hosts={"alpha": host_policy}), NOW, pinned=pins)
    assert sorted(d.snapshot.id for d in combined) == sorted(s.id for s in items)
    times = [d.snapshot.time for d in combined]
    assert times == sorted(times, reverse=True)
    alone = apply_policy([s for s in items if s.hostname == "alpha"], replace(host_policy, group_by_host=True), NOW,
                         pinned=pins)
    rest = apply_policy([s for s in items if s.hostname != "alpha"], policy, NOW, pinned=pins)
    expected = {d.snapshot.id: (d.keep, d.reasons) for d in [*alone, *rest]}
    assert {d.snapshot.id: (d.keep, d.reasons) for d in combined} == expected
