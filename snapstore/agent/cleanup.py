"""Cleaning up: what ``snap gc`` and ``snap forget`` do, for every front end.

This module owns how the config and the caller's overrides become one retention policy (the
config's tiers and calendar rules, with ``keep`` overrides per tier), the gc settings taken
from the config (repack threshold, safety window), and the two use cases: :func:`run_gc`
(apply retention, forget what it says, free unreferenced data) and :func:`forget_named`
(drop named snapshots, optionally freeing their data at once). The policy itself is pure
(:mod:`snapstore.ops.retention`), the collection is :mod:`snapstore.ops.gc`; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, cast

from snapstore import clock
from snapstore.errors import SnapshotNotFound, UsageError
from snapstore.ops.gc import GcResult, collect_garbage
from snapstore.ops.retention import Decision, RetentionPolicy, TierRule, apply_policy

if TYPE_CHECKING:
    from snapstore.agent.config import Config
    from snapstore.format.snapshot import Snapshot
    from snapstore.repo.repository import Repository

DEFAULT_REPACK_THRESHOLD = 0.1


@dataclass(frozen=True)
class GcSettings:
    """How gc repacks and what it spares: ``safety_window_s`` None is the repository's
    default (0 on a local disk, an hour on object storage)."""

    threshold: float = DEFAULT_REPACK_THRESHOLD
    safety_window_s: float | None = None


def gc_settings(config: Config | None) -> GcSettings:
    """The gc settings of ``config`` (the defaults without one)."""
    if config is None:
        return GcSettings()
    window = config.gc.safety_window
    return GcSettings(config.gc.repack_threshold, None if window is None else window.total_seconds())


def retention_policy(config: Config | None, keep: Mapping[str, int] | None = None) -> RetentionPolicy | None:
    """The config's retention policy with ``keep`` (tier -> newest N to keep) overriding its
    tiers' counts; None when there is neither a config nor an override (nothing is forgotten).
    An override naming a tier the config lacks is a ``ConfigError`` naming the known ones."""
    policy = config.retention_policy() if config is not None else None
    if not keep:
        return policy
    for tier, count in keep.items():
        if count < 0:
            raise UsageError(f"--keep {tier}: N must be >= 0 (got {count})")
        if config is not None and tier not in config.tiers:
            config.tier(tier)  # ConfigError naming the known tiers
    def overridden(base: RetentionPolicy) -> RetentionPolicy:
        tiers = dict(base.tiers)
        for tier, count in keep.items():
            tiers[tier] = replace(tiers.get(tier, TierRule()), keep=count)
        return replace(base, tiers=tiers)

    base = policy or RetentionPolicy()
    # --keep overrides every host's count of the tier, those with counts of their own too
    return replace(overridden(base), hosts={h: overridden(p) for h, p in base.hosts.items()})


@dataclass(frozen=True)
class GcRun:
    """What ``snap gc`` did (or, dry, would do)."""

    result: GcResult
    policy: RetentionPolicy | None
    decisions: tuple[Decision, ...]
    remaining: int  # snapshots left afterwards

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    def to_json(self) -> dict[str, object]:
        return {**self.result.to_json(),
                "kept": [{"id": d.snapshot.id, "tier": d.snapshot.tier, "reasons": list(d.reasons)} for d in self.kept],
                "remaining_snapshots": self.remaining}


def run_gc(repo: Repository, policy: RetentionPolicy | None, settings: GcSettings = GcSettings(), *,
           dry_run: bool = False, now: datetime | None = None) -> GcRun:
    """Apply ``policy`` (from :func:`retention_policy`; None forgets nothing) at ``now``, forget
    what it says and free what no remaining snapshot needs. ``repo`` must be open ``exclusive``."""
    decisions: list[Decision] = []
    forget: list[tuple[Snapshot, tuple[str, ...]]] = []
    if policy is not None:
        decisions = apply_policy(repo.snapshots(), policy, clock.now() if now is None else now,
                                 pinned=repo.index.pinned())
        # apply_policy hands back the snapshots it was given: records of this repository
        forget = [(cast("Snapshot", d.snapshot), d.reasons) for d in decisions if not d.keep]
    result, _plan = collect_garbage(repo, forget, dry_run=dry_run, threshold=settings.threshold,
                                    safety_window_s=settings.safety_window_s)
    # a dry run forgets nothing; without a policy there are no decisions, and every snapshot stays
    remaining = len(repo.snapshots()) - (len(forget) if dry_run else 0)
    return GcRun(result, policy, tuple(decisions), remaining)


@dataclass(frozen=True)
class ForgetRun:
    """What ``snap forget`` did: the snapshots dropped and, with ``prune``, the gc that followed."""

    forgotten: tuple[Snapshot, ...]
    gc: GcResult | None

    def to_json(self) -> dict[str, object]:
        return {"forgotten": [s.summary() for s in self.forgotten], **({"gc": self.gc.to_json()} if self.gc else {})}


def forget_named(repo: Repository, specs: Iterable[str], *, prune: bool = False,
                 settings: GcSettings = GcSettings()) -> ForgetRun:
    """Drop the snapshots named by ``specs`` (id prefixes, selectors); pinned ones refuse.
    ``repo`` must be open ``write`` (``exclusive`` with ``prune``, which runs gc at once)."""
    from snapstore.view.selectors import resolve_snapshot

    # first: a write-only host's index holds only its own snapshots, so a name it cannot
    # resolve would otherwise be reported as "no snapshot" instead of the key's limit
    repo.require_full_key("forget snapshots")
    chosen = {}
    for spec in specs:
        try:
            snap = resolve_snapshot(repo, spec)
        except SnapshotNotFound:
            if any(done.startswith(spec) for done in repo.finished_forgets):
                continue  # a killed forget of it was just finished by this open: running it again works
            raise
        chosen[snap.id] = snap
    pinned = repo.index.pinned()
    held = [s.short_id for s in chosen.values() if s.id in pinned]
    if held:
        raise UsageError(f"snapshot(s) {', '.join(held)} are pinned; 'snap unpin' them first")
    if not prune:
        repo.forget(chosen.values())
        return ForgetRun(tuple(chosen.values()), None)
    result, _plan = collect_garbage(repo, [(s, ("named on the command line",)) for s in chosen.values()],
                                    threshold=settings.threshold, safety_window_s=settings.safety_window_s)
    return ForgetRun(tuple(chosen.values()), result)
