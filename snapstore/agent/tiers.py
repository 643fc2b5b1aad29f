"""Taking a tier: the one use case behind ``snap take``, ``snap take --due`` and ``snap watch``.

This module owns what "take tier T" means, for every front end (the CLI, the watcher, a web
UI): which sources (the paths given, else the tier's sources in the config), which tags and
compression level (the tier's, merged with what the caller asked for), ``--if-changed``
(take only when the sources differ from the tier's newest snapshot), and ``--due`` (every
tier whose schedule is due, under one lock, one failing tier not stopping the others).

It is planned first, then executed: :func:`plan_tier` resolves sources and settings without
touching the repository (so a bad config fails before a lock is taken), :func:`take_tier`
runs a plan against an open repository and returns a frozen :class:`TierTake`. Nothing here
prints: front ends render the results (``to_json`` gives the ``--json`` object).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from snapstore import clock
from snapstore.errors import ConfigError, ExitCode, Interrupted, SnapError, UsageError
from snapstore.ops.backup import Source, StdinSource, TakeResult, check_stdin_name, source_for, take_snapshot
from snapstore.ops.excludes import WalkRules

if TYPE_CHECKING:
    from snapstore.agent.config import Config
    from snapstore.agent.hooks import HookRun
    from snapstore.agent.schedule import TierStatus
    from snapstore.format.snapshot import Snapshot
    from snapstore.repo.repository import Repository

ProgressFn = Callable[[dict[str, object]], None]
VERIFY_MODES = ("quick", "full", "none")


@dataclass(frozen=True)
class TakeOptions:
    """What the caller asks for on top of the tier's own settings."""

    tags: tuple[str, ...] = ()
    compression: int | None = None  # zstd level; None: the tier's, else the repository's
    verify: str = "quick"  # after-take check: quick, full or none
    excludes: tuple[str, ...] = ()
    if_changed: bool = False
    approved_by: str = ""  # who approved this take (recorded in the snapshot and its history event)
    reason: str = ""
    one_file_system: bool = False
    exclude_caches: bool = False

    def __post_init__(self) -> None:
        if self.verify not in VERIFY_MODES:
            raise UsageError("--verify must be quick, full or none")
        for tag in self.tags:
            check_tag(tag)


def read_exclude_file(path: str) -> tuple[str, ...]:
    """The patterns of an exclude file (``--exclude-file``, as restic's): one glob a line, blank
    lines and ``#`` comments skipped. An unreadable file is a ``UsageError`` naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--exclude-file {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def check_tag(tag: str) -> str:
    """A tag as config.md defines it: not empty, no whitespace, no comma (``UsageError`` else)."""
    if not tag or any(c.isspace() or c == "," for c in tag):
        raise UsageError(f"invalid tag {tag!r}: a tag is not empty and has no spaces or commas")
    return tag


@dataclass(frozen=True)
class TierPlan:
    """One take, resolved: what to read and how to file it."""

    tier: str
    sources: tuple[Source, ...]
    from_config: bool  # the tier's sources from the config (else paths given by the caller)
    tags: tuple[str, ...]
    level: int | None
    verify: str
    excludes: tuple[str, ...]
    if_changed: bool
    missing_optional: tuple[str, ...] = ()  # what the config lists that is not there: warnings
    missing_required: tuple[str, ...] = ()  # ... and what makes the snapshot incomplete
    approved_by: str = ""
    reason: str = ""
    unapproved: bool = False  # the tier requires approval and none was given
    rules: WalkRules = WalkRules()
    required: tuple[str, ...] = ()  # paths the snapshot must hold (agent.artifacts)
    before: str | None = None  # hooks (agent.hooks), run in ``hook_cwd``
    after: str | None = None
    hook_timeout: float = 60.0
    hook_cwd: str = ""


def config_with_tiers(config: Config | None, what: str) -> Config:
    """``config`` when it defines tiers, else the ``ConfigError`` saying ``what`` needs one."""
    if config is None or not config.tiers:
        raise ConfigError(f"{what} needs a config file with tiers (--config, $SNAP_CONFIG or ./backup_schedule.json)")
    return config


def tier_sources(config: Config, tier: str) -> list[Source]:
    """The sources of ``tier`` in ``config`` (``ConfigError`` for an unknown tier or a bad source)."""
    base = str(config.base_dir)
    config.tier(tier)  # unknown tier: ConfigError naming the known ones
    # config sources resolve to absolute paths; inside the config's directory they keep their
    # relative form in the snapshot (agents/Z/...), like paths given on the command line.
    return [source_for(os.path.relpath(p, base), base) for p in config.resolve_sources(tier)]


def check_tier_choice(tier: str, config: Config | None, paths: Sequence[str], *, ad_hoc: bool) -> None:
    """Paths given with a tier: refused for a config tier (its sources are the config's), and
    for a tier the config does not define unless ``ad_hoc`` (no retention rule would apply).
    ``manual``, the default, is always ad hoc."""
    if not paths or config is None or tier == "manual":
        return
    if tier in config.tiers:
        raise UsageError(f"tier {tier!r} takes the sources in {config.path}: give no PATH, "
                         "or take the paths under another tier with --ad-hoc")
    if not ad_hoc and config.tiers:
        known = ", ".join(config.tiers)
        raise UsageError(f"unknown tier {tier!r} (config tiers: {known}); add --ad-hoc to take these paths "
                         "under a tier without retention rules")


def plan_tier(tier: str, *, config: Config | None, paths: Sequence[str] = (), cwd: str | None = None,
              options: TakeOptions = TakeOptions()) -> TierPlan:
    """Resolve a take of ``paths`` (relative to ``cwd``) or, with none, of the tier's sources.

    For a config tier, its ``tags`` are added after the caller's and its ``compression_level``
    applies unless the caller gave one."""
    tags = list(options.tags)
    level = options.compression
    missing_optional: tuple[str, ...] = ()
    missing_required: tuple[str, ...] = ()
    unapproved = False
    one_fs, caches = options.one_file_system, options.exclude_caches
    hooks: dict[str, Any] = {}
    if paths:
        base = cwd or os.getcwd()
        sources = [source_for(p, base) for p in paths]
        from_config = False
    else:
        if config is None:
            raise UsageError("no paths given and no config file with tiers (give PATH... or --config)")
        config.tier(tier)  # unknown tier: ConfigError naming the known ones
        scan = config.scan_sources(tier)
        missing_optional, missing_required = scan.missing_optional, scan.missing_required
        base = str(config.base_dir)
        # config sources resolve to absolute paths; inside the config's directory they keep their
        # relative form in the snapshot (agents/Z/...), like paths given on the command line.
        sources = [source_for(os.path.relpath(p, base), base) for p in scan.found]
        if not sources:
            raise ConfigError(f"tier {tier!r}: none of its sources exist: "
                              + "; ".join(missing_required + missing_optional))
        from_config = True
        settings = config.tier(tier)
        level = settings.compression_level if level is None else level
        unapproved = settings.require_approval and not options.approved_by
        tags += [t for t in settings.tags if t not in tags]
        one_fs, caches = one_fs or settings.one_file_system, caches or settings.exclude_caches
        hooks = {"required": tuple(settings.required), "before": settings.before, "after": settings.after,
                 "hook_timeout": settings.hook_timeout.total_seconds() if settings.hook_timeout else 60.0,
                 "hook_cwd": base}
    return TierPlan(tier=tier, sources=tuple(sources), from_config=from_config, tags=tuple(tags), level=level,
                    verify=options.verify, excludes=tuple(options.excludes), if_changed=options.if_changed,
                    missing_optional=missing_optional, missing_required=missing_required,
                    approved_by=options.approved_by, reason=options.reason, unapproved=unapproved,
                    rules=WalkRules(one_file_system=one_fs, exclude_caches=caches), **hooks)


@dataclass(frozen=True)
class TierTake:
    """What one take of a tier did: a new snapshot, or (``if_changed``) the one nothing changed since."""

    tier: str
    taken: TakeResult | None
    unchanged_since: Snapshot | None = None
    change: str = ""  # with if_changed: the first difference found
    if_changed: bool = False
    missing_optional: tuple[str, ...] = ()
    missing_required: tuple[str, ...] = ()
    missing_artifacts: tuple[str, ...] = ()  # the tier's ``required`` paths the new snapshot lacks
    hooks: tuple[HookRun, ...] = ()

    def incomplete_error(self) -> SnapError | None:
        """The error to end a take with when required sources were missing, or the snapshot
        lacks a required artifact (after the commit: the rest is kept)."""
        from snapstore.errors import IncompleteTake

        snap = self.snapshot
        if self.missing_required:
            kept = f"snapshot {snap.short_id} has the rest, marked incomplete" if snap else "nothing taken"
            return IncompleteTake(f"tier {self.tier}: required source missing: {'; '.join(self.missing_required)} "
                                  f"({kept})")
        if self.missing_artifacts and snap is not None:
            return IncompleteTake(f"tier {self.tier}: snapshot {snap.short_id} lacks required artifact(s): "
                                  f"{', '.join(self.missing_artifacts)} (the rest is committed)")
        return None

    @property
    def hook_warnings(self) -> list[str]:
        return [f"{run.describe()}" for run in self.hooks if not run.ok]

    @property
    def snapshot(self) -> Snapshot | None:
        return self.taken.snapshot if self.taken is not None else None

    @property
    def exit_code(self) -> int:
        """PARTIAL when some files could not be read (the snapshot lacks them) or were still
        changing when read again (stored as last read), else OK."""
        snap = self.snapshot
        partial = snap is not None and (snap.stats.unreadable or snap.stats.changed)
        return ExitCode.PARTIAL if partial else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        snap = self.snapshot
        if snap is None:
            since = self.unchanged_since
            return {"taken": False, "tier": self.tier, "unchanged_since": since.id if since else None}
        st = snap.stats
        out = snap.summary()
        out.update({"dirs": st.dirs, "read_bytes": st.read_bytes, "new_chunks": st.new_chunks,
                    "verified": st.verified, "errors": list(st.errors), "warnings": list(st.warnings),
                    "changed": st.changed, "excluded": list(self.taken.excluded if self.taken else ())})
        if self.if_changed:
            out.update({"taken": True, "change": self.change})
        return out

    def history_fields(self) -> dict[str, Any]:
        """The snapshot's part of a history event (empty when nothing was taken)."""
        snap = self.snapshot
        if snap is None:
            return {}
        st = snap.stats
        out: dict[str, Any] = {"snapshot": snap.id, "files": st.files, "bytes": st.bytes,
                               "new_bytes": st.new_bytes, "duration_s": round(st.duration_s, 3)}
        out.update({k: v for k, v in (("approved_by", snap.approved_by), ("reason", snap.reason)) if v})
        if snap.unapproved:
            out["unapproved"] = True
        warnings = [f"optional source missing: {m}" for m in self.missing_optional] + list(st.warnings)
        if warnings:
            out["warnings"] = warnings
        if self.taken is not None and self.taken.excluded:
            out["excluded"] = list(self.taken.excluded)
        if self.missing_required:
            out["incomplete"] = True
            out["missing"] = list(self.missing_required)
        if self.missing_artifacts:
            out["required_missing"] = list(self.missing_artifacts)
        if self.hooks:
            out["hooks"] = [run.to_json() for run in self.hooks]
            if self.hook_warnings:
                out["warnings"] = out.get("warnings", []) + self.hook_warnings
                out["hook_output"] = "\n".join(run.output for run in self.hooks if not run.ok)
        out.update({k: v for k, v in (("approved_by", snap.approved_by), ("reason", snap.reason)) if v})
        if snap.unapproved:
            out["unapproved"] = True
        return out


def last_of_tier(repo: Repository, tier: str) -> Snapshot | None:
    snaps = [s for s in repo.snapshots() if s.tier == tier]
    return snaps[-1] if snaps else None


def take_tier(repo: Repository, plan: TierPlan, *, progress: ProgressFn | None = None,
              when: datetime | None = None) -> TierTake:
    """Run ``plan`` against ``repo`` (open for writing), between the tier's ``before`` and
    ``after`` commands (agent.hooks), then check its required artifacts (agent.artifacts).
    A failing ``before`` raises :class:`HookFailed` (nothing taken; ``after`` still ran)."""
    from dataclasses import replace

    from snapstore.agent.hooks import run_hook
    from snapstore.errors import HookFailed

    env = {"SNAP_TIER": plan.tier}
    runs: list[HookRun] = []
    if plan.if_changed and (plan.before or plan.after):
        unchanged = _unchanged(repo, plan)  # nothing to take: no reason to pause an agent
        if unchanged is not None:
            return unchanged
    if plan.before:
        runs.append(run_hook("before", plan.before, cwd=plan.hook_cwd or ".", timeout=plan.hook_timeout, env=env))
        if not runs[-1].ok:
            if plan.after:
                runs.append(run_hook("after", plan.after, cwd=plan.hook_cwd or ".", timeout=plan.hook_timeout,
                                     env={**env, "SNAP_RESULT": "error"}))
            raise HookFailed(f"tier {plan.tier}: {runs[0].describe()}; nothing was taken",
                             output="\n".join(run.output for run in runs if not run.ok))
    taken: TierTake | None = None
    try:
        taken = _take_tier(repo, plan, progress=progress, when=when)
    except SnapError as exc:
        if plan.after:
            after = run_hook("after", plan.after, cwd=plan.hook_cwd or ".", timeout=plan.hook_timeout,
                             env={**env, "SNAP_RESULT": "error"})
            if not after.ok:
                exc.message += f"; and the {after.describe()}"
        raise
    finally:
        if taken is not None and plan.after:
            snap_id = taken.snapshot.id if taken.snapshot is not None else ""
            runs.append(run_hook("after", plan.after, cwd=plan.hook_cwd or ".", timeout=plan.hook_timeout,
                                 env={**env, "SNAP_RESULT": "ok", "SNAP_SNAPSHOT": snap_id}))
    missing: tuple[str, ...] = ()
    if plan.required and taken.snapshot is not None and repo.can_read:
        from snapstore.agent.artifacts import missing_artifacts
        from snapstore.view.vfs import SnapshotView

        missing = tuple(missing_artifacts(SnapshotView(repo), taken.snapshot, plan.required))
    return replace(taken, missing_artifacts=missing, hooks=tuple(runs))


def _unchanged(repo: Repository, plan: TierPlan) -> TierTake | None:
    """The "nothing changed" outcome of an ``if_changed`` plan, or None when there is a change."""
    from snapstore.agent.watch import find_change

    last = last_of_tier(repo, plan.tier)
    if plan.missing_required or find_change(repo, last, list(plan.sources), list(plan.excludes), plan.rules):
        return None
    return TierTake(plan.tier, None, unchanged_since=last, if_changed=True, missing_optional=plan.missing_optional)


def _take_tier(repo: Repository, plan: TierPlan, *, progress: ProgressFn | None = None,
               when: datetime | None = None) -> TierTake:
    from snapstore.agent.watch import find_change

    sources = list(plan.sources)
    excludes = list(plan.excludes)
    options: dict[str, Any] = {"tier": plan.tier, "tags": plan.tags, "level": plan.level, "verify": plan.verify,
                               "excludes": excludes, "progress": progress, "when": when,
                               "missing": plan.missing_required, "approved_by": plan.approved_by,
                               "reason": plan.reason, "unapproved": plan.unapproved, "rules": plan.rules}
    opt, req = plan.missing_optional, plan.missing_required
    if not plan.if_changed:
        return TierTake(plan.tier, take_snapshot(repo, sources, **options), missing_optional=opt, missing_required=req)
    last = last_of_tier(repo, plan.tier)
    change = find_change(repo, last, sources, excludes, plan.rules)
    if change is None and not req:
        return TierTake(plan.tier, None, unchanged_since=last, if_changed=True, missing_optional=opt)
    return TierTake(plan.tier, take_snapshot(repo, sources, **options), change=change or "required source missing",
                    if_changed=True, missing_optional=opt, missing_required=req)


def take_stdin(repo: Repository, tier: str, name: str, handle: BinaryIO, *, options: TakeOptions = TakeOptions(),
               progress: ProgressFn | None = None) -> TierTake:
    """``snap take --stdin --stdin-name NAME``: one snapshot holding the stream as the file NAME
    (its time is now; the stream is chunked as it arrives, so memory stays bounded)."""
    check_stdin_name(name)
    moment = clock.now()
    stream = StdinSource(handle, name, int(moment.timestamp() * 1_000_000) * 1000)
    taken = take_snapshot(repo, [], tier=tier, tags=options.tags, level=options.compression, verify=options.verify,
                          progress=progress, approved_by=options.approved_by, reason=options.reason, stdin=stream)
    return TierTake(tier, taken)


# -- every due tier -------------------------------------------------------------------------


@dataclass(frozen=True)
class DueTake:
    """The outcome of one due tier: its take, or the error that stopped it."""

    status: TierStatus
    take: TierTake | None = None
    error: SnapError | None = None

    def error_json(self) -> dict[str, Any]:
        assert self.error is not None
        return {"tier": self.status.tier, "error": self.error.kind, "message": self.error.message,
                "exit_code": self.error.exit_code}


@dataclass(frozen=True)
class DueRun:
    """What ``take --due`` did: the status of every tier at ``now`` and one outcome per due tier."""

    now: datetime
    statuses: tuple[TierStatus, ...]
    results: tuple[DueTake, ...] = field(default=())

    @property
    def due(self) -> list[TierStatus]:
        return [s for s in self.statuses if s.due]

    @property
    def first_error(self) -> SnapError | None:
        return next((r.error for r in self.results if r.error is not None), None)

    @property
    def exit_code(self) -> int:
        """The worst exit code of the takes that succeeded (errors are raised by the caller)."""
        return max((r.take.exit_code for r in self.results if r.take is not None), default=ExitCode.OK)

    def next_slot(self) -> tuple[datetime, str] | None:
        """The earliest upcoming scheduled slot and its tier."""
        upcoming = sorted((s.next_slot, s.tier) for s in self.statuses if s.next_slot is not None)
        return upcoming[0] if upcoming else None

    def to_json(self) -> dict[str, Any]:
        return {"time": clock.format_time(self.now), "due": [s.to_json() for s in self.due],
                "taken": [r.take.to_json() for r in self.results if r.take is not None],
                "errors": [r.error_json() for r in self.results if r.error is not None]}


def tier_statuses(config: Config, snapshots: list[Snapshot], now: datetime) -> list[TierStatus]:
    """Whether each config tier is due at ``now``."""
    from snapstore.agent.schedule import local_zone, tier_status

    return tier_status({name: tier.schedule for name, tier in config.tiers.items()}, snapshots, now, local_zone())


def take_due(repo: Repository, config: Config, *, now: datetime | None = None, options: TakeOptions = TakeOptions(),
             on_start: Callable[[TierStatus], ProgressFn | None] | None = None,
             on_done: Callable[[DueTake], None] | None = None) -> DueRun:
    """Take every tier of ``config`` that is due at ``now``, in ``repo`` (open for writing: one
    lock for all, so two overlapping runs cannot both take a slot).

    A failing tier does not stop the others: its error is in its :class:`DueTake` (the caller
    decides what to raise). An interruption stops the run at once. ``on_start(status)`` is
    called before each take and may return a progress callback; ``on_done(result)`` after it."""
    moment = clock.now() if now is None else now
    statuses = tier_statuses(config, repo.snapshots(), moment)
    results: list[DueTake] = []
    for status in statuses:
        if not status.due:
            continue
        progress = on_start(status) if on_start is not None else None
        try:
            plan = plan_tier(status.tier, config=config, options=options)
            taken = take_tier(repo, plan, progress=progress)
            problem = taken.incomplete_error()
            result = DueTake(status, take=taken, error=problem)
        except Interrupted:
            raise
        except SnapError as exc:
            result = DueTake(status, error=exc)
        results.append(result)
        if on_done is not None:
            on_done(result)
    return DueRun(moment, tuple(statuses), tuple(results))
