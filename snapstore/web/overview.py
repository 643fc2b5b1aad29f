"""What the overview page and ``/metrics`` show, gathered from the core: snapshots per tier,
schedules (:func:`snapstore.agent.schedule.tier_status`), the history log
(:mod:`snapstore.agent.history`) and the growth of the repository
(:func:`snapstore.ops.stats.snapshot_growth`).

The growth walk reads every distinct tree once; its result depends only on which snapshots
exist, so it is kept for the set of snapshot ids it was computed for (on this instance) and
computed again when a snapshot is taken or forgotten.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from snapstore import clock
from snapstore.format.snapshot import Snapshot
from snapstore.web.access import RepoAccess

ALERTS_SHOWN = 10


@dataclass(frozen=True)
class TierLine:
    tier: str
    count: int
    last: Snapshot
    next_due: datetime | None = None
    due: bool = False
    reason: str = ""


@dataclass(frozen=True)
class GrowthPoint:
    """After each snapshot, oldest first: the figures of it and every older snapshot."""

    snapshot: Snapshot
    logical_bytes: int
    stored_bytes: int

    @property
    def dedup(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 0.0


@dataclass(frozen=True)
class OverviewState:
    snapshots: int
    pinned: int
    tiers: list[TierLine]
    pack_bytes: int
    last_verify: dict[str, Any] | None
    last_verify_time: float | None
    alerts: list[dict[str, Any]]
    failures: dict[str, int]
    growth: list[GrowthPoint] = field(default_factory=list)


class Overview:
    def __init__(self, access: RepoAccess) -> None:
        self.access = access
        self._lock = threading.Lock()
        self._growth_key: tuple[str, ...] = ()
        self._growth: list[GrowthPoint] = []
        self._walking = threading.Lock()  # one growth walk at a time: a second caller waits for it

    def growth(self, repo: Any, snaps: list[Snapshot]) -> list[GrowthPoint]:
        from snapstore.ops.stats import snapshot_growth

        key = tuple(s.id for s in snaps)
        with self._walking:
            with self._lock:
                if key == self._growth_key and self._growth:
                    return self._growth
            points: list[GrowthPoint] = []
            logical = stored = 0
            for snap, usage in snapshot_growth(repo, snaps):
                logical += usage.logical_bytes
                stored += usage.stored_bytes
                points.append(GrowthPoint(snap, logical, stored))
            with self._lock:
                self._growth_key, self._growth = key, points
            return points

    def state(self, *, with_growth: bool = True) -> OverviewState:
        from snapstore.agent.history import filter_events, read_events
        from snapstore.agent.schedule import local_zone, tier_status

        with self.access.open() as repo:
            snaps = repo.snapshots()
            pinned = repo.index.pinned()
            pack_bytes = repo.pack_bytes()
            growth = self.growth(repo, snaps) if with_growth else []
        schedules = self.access.settings.schedules
        status = {s.tier: s for s in tier_status(schedules, snaps, clock.now(), local_zone())}
        newest: dict[str, Snapshot] = {}
        counts: dict[str, int] = {}
        for snap in snaps:
            newest[snap.tier] = snap
            counts[snap.tier] = counts.get(snap.tier, 0) + 1
        tiers = []
        for name in sorted(newest):
            st = status.get(name)
            tiers.append(TierLine(name, counts[name], newest[name], st.next_slot if st else None,
                                  bool(st and st.due), st.reason if st else "no schedule in the config"))
        events = read_events(self.access.settings.history).events
        verifies = filter_events(events, command="verify")
        last_verify = verifies[-1] if verifies else None
        verify_time = None
        if last_verify is not None:
            try:
                verify_time = clock.parse_time(str(last_verify.get("time", ""))).timestamp()
            except Exception:
                verify_time = None
        failed = filter_events(events, failures=True)
        failures: dict[str, int] = {}
        for event in failed:
            failures[str(event.get("command", ""))] = failures.get(str(event.get("command", "")), 0) + 1
        return OverviewState(len(snaps), len(pinned & {s.id for s in snaps}), tiers, pack_bytes, last_verify,
                             verify_time, failed[-ALERTS_SHOWN:][::-1], failures, growth)
