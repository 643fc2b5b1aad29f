"""Retention: which snapshots to keep and which to forget, as a pure function.

This module owns the retention *decision* and nothing else: no I/O, no repository, no clock.
``apply_policy(snapshots, policy, now, pinned)`` returns one :class:`Decision` per input
snapshot, with short human reasons; ``snap gc`` / ``snap forget`` execute it, ``--dry-run``
prints it (see :func:`plan_summary`). The config file is turned into a :class:`RetentionPolicy`
by ``snapstore.agent.config``.

The rules (a snapshot is kept if *any* rule keeps it):

* **pinned**: ids in ``pinned`` are always kept (reason ``"pinned"``). Pins do not change how
  the other rules count: a pinned snapshot still takes its place among "the newest N".
* **tier rules** (``policy.tiers[tier]``): ``keep=N`` keeps the newest N snapshots of that
  tier; ``keep_within=D`` keeps the snapshots of that tier taken after ``now - D``. A tier
  with no rule (absent from ``policy.tiers``, or a rule with neither field set, e.g. a
  ``manual`` tier) keeps *all* its snapshots: forgetting needs an explicit rule.
* **keep_within** (policy level): every snapshot, whatever its tier, taken after ``now - D``.
  Note: restic measures ``--keep-within`` from the newest snapshot; snapstore measures it
  from ``now`` (which callers take from ``snapstore.clock.now()``, so ``SNAP_NOW`` applies).
* **calendar rules** across all tiers, with restic's ``ApplyPolicy`` semantics:
  ``keep_last=N`` keeps the newest N snapshots; ``keep_hourly/daily/weekly/monthly/yearly=N``
  keep the newest snapshot of each of the newest N hours/days/ISO weeks/months/years that
  have a snapshot. Periods are computed in UTC. Unlike restic >= 0.16, the oldest snapshot is
  *not* additionally kept while a calendar count is left unused.
* ``group_by_host=True`` applies tier and calendar rules separately to each hostname.
* **per-host policies** (``policy.hosts[host]``, a whole :class:`RetentionPolicy`): the
  snapshots of that host are decided by its own policy alone, counted among that host's
  snapshots only (``keep 30`` for the database host, ``keep 7`` for a laptop sharing the
  repository); every other host's snapshots by the rest of the policy, counted among
  themselves. Reasons name the host (``tier daily on db1: #2 of newest 30``).

"Newest" is by time, ties broken by id (ascending), so the result never depends on the order
of the input. Decisions are returned in that order: newest first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

FORGET_REASON = "not kept by any rule"
PINNED_REASON = "pinned"


class SnapshotLike(Protocol):
    """What retention needs from a snapshot (``snapstore.format.snapshot.Snapshot`` fits)."""

    @property
    def id(self) -> str: ...

    @property
    def time(self) -> datetime: ...

    @property
    def tier(self) -> str: ...

    @property
    def hostname(self) -> str: ...


@dataclass(frozen=True)
class TierRule:
    """Retention of one tier: the newest ``keep`` and/or those within ``keep_within`` of now."""

    keep: int | None = None
    keep_within: timedelta | None = None

    def __post_init__(self) -> None:
        if self.keep is not None and self.keep < 0:
            raise ValueError(f"keep must be >= 0 (got {self.keep})")
        if self.keep_within is not None and self.keep_within < timedelta(0):
            raise ValueError(f"keep_within must not be negative (got {self.keep_within})")

    @property
    def is_empty(self) -> bool:
        """A rule that sets nothing: its tier keeps every snapshot."""
        return self.keep is None and self.keep_within is None


@dataclass(frozen=True)
class RetentionPolicy:
    """Per-tier rules plus calendar rules over all snapshots (see the module docstring)."""

    tiers: Mapping[str, TierRule] = field(default_factory=dict)
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: timedelta | None = None
    group_by_host: bool = False
    #: hostname -> the policy of that host's snapshots (see the module docstring)
    hosts: Mapping[str, RetentionPolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for host, sub in self.hosts.items():
            if sub.hosts:
                raise ValueError(f"the policy of host {host!r} cannot have per-host policies of its own")
        for name in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"{name} must be >= 0 (got {value})")
        if self.keep_within is not None and self.keep_within < timedelta(0):
            raise ValueError(f"keep_within must not be negative (got {self.keep_within})")


@dataclass(frozen=True)
class Decision:
    """The verdict on one snapshot: keep or forget, and why."""

    snapshot: SnapshotLike
    keep: bool
    reasons: tuple[str, ...]

    @property
    def forget(self) -> bool:
        return not self.keep


def format_duration(value: timedelta) -> str:
    """A compact form of a duration for reasons: ``400d``, ``1d12h``, ``90s``, ``0s``."""
    total = int(value.total_seconds())
    if total == 0:
        return "0s"
    sign = "-" if total < 0 else ""
    total = abs(total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        amount, total = divmod(total, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return sign + "".join(parts)


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive time is read as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _newest_first(snapshots: Iterable[SnapshotLike]) -> list[SnapshotLike]:
    """Newest first, ties by id ascending (two stable sorts: by id, then by time descending)."""
    by_id = sorted(snapshots, key=lambda s: s.id)
    return sorted(by_id, key=lambda s: _utc(s.time), reverse=True)


def _hour(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H")


def _day(t: datetime) -> str:
    return t.strftime("%Y-%m-%d")


def _week(t: datetime) -> str:
    year, week, _ = t.isocalendar()
    return f"{year:04d}-W{week:02d}"


def _month(t: datetime) -> str:
    return t.strftime("%Y-%m")


def _year(t: datetime) -> str:
    return f"{t.year:04d}"


# (policy attribute, reason label, period of a UTC time); keep_last is handled separately.
_CALENDAR: tuple[tuple[str, str, Callable[[datetime], str]], ...] = (
    ("keep_hourly", "hourly", _hour),
    ("keep_daily", "daily", _day),
    ("keep_weekly", "weekly", _week),
    ("keep_monthly", "monthly", _month),
    ("keep_yearly", "yearly", _year),
)


def _groups(ordered: Sequence[SnapshotLike], by_host: bool) -> list[tuple[str, list[int]]]:
    """(label suffix, indices) of each group the rules apply to separately: per host, or all."""
    if not by_host:
        return [("", list(range(len(ordered))))]
    by: dict[str, list[int]] = {}
    for i, snapshot in enumerate(ordered):
        by.setdefault(snapshot.hostname, []).append(i)
    return [(f" on {host or '(no host)'}", by[host]) for host in sorted(by)]


def apply_policy(
    snapshots: Iterable[SnapshotLike],
    policy: RetentionPolicy,
    now: datetime,
    pinned: Collection[str] = (),
) -> list[Decision]:
    """Decide keep/forget for every snapshot; newest first (ties by id). Pure: no I/O, no clock."""
    if policy.hosts:
        return _apply_per_host(list(snapshots), policy, now, pinned)
    ordered = _newest_first(snapshots)
    times = [_utc(s.time) for s in ordered]
    now = _utc(now)
    pins = set(pinned)
    reasons: list[list[str]] = [[] for _ in ordered]
    everything = range(len(ordered))

    for i in everything:
        if ordered[i].id in pins:
            reasons[i].append(PINNED_REASON)

    groups = _groups(ordered, policy.group_by_host)
    for host, group in groups:
        _apply_tier_rules(group, ordered, times, policy, now, reasons, host)

    if policy.keep_within is not None:
        cutoff = _cutoff(now, policy.keep_within)
        label = f"within {format_duration(policy.keep_within)}"
        for i in everything:
            if times[i] > cutoff:
                reasons[i].append(label)

    for host, group in groups:
        _apply_calendar_rules(group, times, policy, reasons, host)

    return [
        Decision(snapshot=s, keep=bool(why), reasons=tuple(why) if why else (FORGET_REASON,))
        for s, why in zip(ordered, reasons, strict=True)
    ]


def _apply_per_host(snapshots: list[SnapshotLike], policy: RetentionPolicy, now: datetime,
                    pinned: Collection[str]) -> list[Decision]:
    """Each host with a policy of its own decided alone (its labels name it); the others by the rest."""
    from dataclasses import replace

    decisions: list[Decision] = []
    rest = [s for s in snapshots if s.hostname not in policy.hosts]
    for host in sorted(policy.hosts):
        mine = [s for s in snapshots if s.hostname == host]
        # group_by_host on one host's snapshots: the same counts, with the host in every label
        decisions += apply_policy(mine, replace(policy.hosts[host], group_by_host=True), now, pinned)
    decisions += apply_policy(rest, replace(policy, hosts={}), now, pinned)
    order = {id(s): n for n, s in enumerate(_newest_first(snapshots))}
    return sorted(decisions, key=lambda d: order[id(d.snapshot)])


def _cutoff(now: datetime, within: timedelta) -> datetime:
    """``now - within``, or the earliest representable time when that is before year 1 (a
    simulated "now" near the start of the calendar): everything is within."""
    try:
        return now - within
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)


def _apply_tier_rules(
    group: Sequence[int],
    ordered: Sequence[SnapshotLike],
    times: Sequence[datetime],
    policy: RetentionPolicy,
    now: datetime,
    reasons: list[list[str]],
    host: str,
) -> None:
    by_tier: dict[str, list[int]] = {}
    for i in group:
        by_tier.setdefault(ordered[i].tier, []).append(i)
    for tier in sorted(by_tier):
        members = by_tier[tier]
        rule = policy.tiers.get(tier)
        if rule is None or rule.is_empty:
            for i in members:
                reasons[i].append(f"tier {tier}{host} has no retention rule")
            continue
        if rule.keep:
            # an incomplete snapshot (a required source was missing) does not count toward
            # keep-N: it is kept while newer than the N-th complete one, and pushes none out
            complete = [i for i in members if not getattr(ordered[i], "incomplete", False)]
            for rank, i in enumerate(complete[: rule.keep], start=1):
                reasons[i].append(f"tier {tier}{host}: #{rank} of newest {rule.keep}")
            last = complete[rule.keep - 1] if len(complete) >= rule.keep else None
            for i in members:
                if getattr(ordered[i], "incomplete", False) and (last is None or i < last):
                    reasons[i].append(f"tier {tier}{host}: incomplete, newer than #{rule.keep}")
        if rule.keep_within is not None:
            cutoff = _cutoff(now, rule.keep_within)
            label = f"tier {tier}{host}: within {format_duration(rule.keep_within)}"
            for i in members:
                if times[i] > cutoff:
                    reasons[i].append(label)


def _apply_calendar_rules(
    group: Sequence[int],
    times: Sequence[datetime],
    policy: RetentionPolicy,
    reasons: list[list[str]],
    host: str,
) -> None:
    if policy.keep_last:
        for rank, i in enumerate(group[: policy.keep_last], start=1):
            reasons[i].append(f"last{host} ({rank} of {policy.keep_last})")
    for attribute, label, period_of in _CALENDAR:
        count: int = getattr(policy, attribute)
        if not count:
            continue
        used = 0
        previous: str | None = None
        for i in group:  # newest first, so the first of each period is its newest
            if used == count:
                break
            period = period_of(times[i])
            if period != previous:
                used += 1
                previous = period
                reasons[i].append(f"{label} {period}{host} ({used} of {count})")


def plan_summary(decisions: Iterable[Decision]) -> dict[str, Any]:
    """Counts for ``--dry-run``: ``{"keep": n, "forget": n, "tiers": {tier: {"keep", "forget"}}}``."""
    keep: Counter[str] = Counter()
    forget: Counter[str] = Counter()
    for decision in decisions:
        (keep if decision.keep else forget)[decision.snapshot.tier] += 1
    tiers = sorted(set(keep) | set(forget))
    return {
        "keep": sum(keep.values()),
        "forget": sum(forget.values()),
        "tiers": {tier: {"keep": keep[tier], "forget": forget[tier]} for tier in tiers},
    }
