"""Retention commands: ``forget``, ``gc``, ``pin``, ``unpin``."""

from __future__ import annotations

from typing import Annotated

import typer

from snapstore.cli.context import AppContext
from snapstore.cli.output import echo, emit_json, human_bytes, warn
from snapstore.errors import UsageError

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def cmd_forget(
    ctx: typer.Context,
    snapshots: Annotated[list[str], typer.Argument(help="Snapshots to drop (id prefix, latest, latest:TIER).")],
    prune: Annotated[bool, typer.Option("--prune", help="Run gc afterwards to free the space.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Drop named snapshots (their data is freed by the next gc, or now with --prune)."""
    from snapstore.ops.gc import collect_garbage

    app: AppContext = ctx.obj
    with app.open("exclusive" if prune else "write") as repo:
        from snapstore.view.selectors import resolve_snapshot
        chosen = {s.id: s for s in (resolve_snapshot(repo, spec) for spec in snapshots)}
        pinned = repo.index.pinned()
        held = [s.short_id for s in chosen.values() if s.id in pinned]
        if held:
            raise UsageError(f"snapshot(s) {', '.join(held)} are pinned; 'snap unpin' them first")
        if prune:
            threshold, window = _gc_settings(app)
            result, _plan = collect_garbage(repo, [(s, ("named on the command line",)) for s in chosen.values()],
                                            threshold=threshold, safety_window_s=window)
        else:
            repo.forget(chosen.values())
            result = None
    if json_out:
        emit_json({"forgotten": [s.summary() for s in chosen.values()],
                   **({"gc": result.to_json()} if result else {})})
        return
    for snap in chosen.values():
        echo(f"forgot {snap.short_id} ({snap.tier}, {snap.time:%Y-%m-%d %H:%M:%S})")
    if result:
        echo(f"reclaimed {human_bytes(result.reclaimed)}")
    else:
        echo("run 'snap gc' to free the space they alone used")


def _gc_settings(app: AppContext) -> tuple[float, float | None]:
    """(repack threshold, safety window in seconds) from the config; a window left unset
    (None) is the repository's default (0 on a local disk, an hour on object storage)."""
    cfg = app.config()
    if cfg is None:
        return 0.1, None
    window = cfg.gc.safety_window
    return cfg.gc.repack_threshold, None if window is None else window.total_seconds()


def _parse_keep(values: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        tier, sep, count = value.partition("=")
        if not sep or not tier or not count.strip().lstrip("-").isdigit():
            raise UsageError(f"--keep wants TIER=N (got {value!r})")
        if int(count) < 0:
            raise UsageError(f"--keep {tier}: N must be >= 0 (got {count})")
        out[tier] = int(count)
    return out


def cmd_gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Report what would happen; change nothing.")] = False,
    keep: Annotated[list[str] | None, typer.Option("--keep", help="TIER=N: keep the newest N of TIER "
                                                   "(repeatable; overrides the config).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Apply retention (config tiers or --keep), forget what it says, free unreferenced data."""
    from dataclasses import replace

    from snapstore import clock
    from snapstore.ops.gc import collect_garbage
    from snapstore.ops.retention import RetentionPolicy, TierRule, apply_policy

    app: AppContext = ctx.obj
    overrides = _parse_keep(keep or [])
    cfg = app.config()
    policy = cfg.retention_policy() if cfg is not None else None
    if overrides:
        if cfg is not None:
            for tier in overrides:
                if tier not in cfg.tiers:
                    cfg.tier(tier)  # ConfigError naming the known tiers
        base = policy or RetentionPolicy()
        tiers = dict(base.tiers)
        for tier, count in overrides.items():
            tiers[tier] = replace(tiers.get(tier, TierRule()), keep=count)
        policy = replace(base, tiers=tiers)
    with app.open("exclusive") as repo:
        forget = []
        decisions = []
        if policy is not None:
            decisions = apply_policy(repo.snapshots(), policy, clock.now(), pinned=repo.index.pinned())
            forget = [(d.snapshot, d.reasons) for d in decisions if not d.keep]
        threshold, window = _gc_settings(app)
        result, _plan = collect_garbage(repo, forget, dry_run=dry_run, threshold=threshold,  # type: ignore[arg-type]
                                        safety_window_s=window)
        remaining = len(repo.snapshots()) if not dry_run else len(decisions) - len(forget)
    if json_out:
        emit_json({**result.to_json(), "kept": [{"id": d.snapshot.id, "tier": d.snapshot.tier,
                                                 "reasons": list(d.reasons)} for d in decisions if d.keep],
                   "remaining_snapshots": remaining})
        return
    verb = "would forget" if dry_run else "forgot"
    for item in result.forgotten:
        echo(f"{verb} {item['short_id']}  {item['tier']:<10} {item['time']}  ({'; '.join(item['reasons'])})")  # type: ignore[arg-type]
    if policy is None:
        echo("no retention policy (no config file and no --keep): no snapshot forgotten")
    what = "would reclaim" if dry_run else "reclaimed"
    echo(f"{verb} {len(result.forgotten)} snapshot(s), {remaining} remain; {what} "
         f"{human_bytes(result.reclaimed)} ({result.packs_deleted} packs deleted, {result.packs_rewritten} "
         f"rewritten, {result.orphans_deleted} orphans) in {result.duration_s:.2f} s")
    for problem in result.problems:
        warn(f"snap: warning: {problem}")


def _set_pin(ctx: typer.Context, snapshots: list[str], pinned: bool, json_out: bool) -> None:
    app: AppContext = ctx.obj
    with app.open("write") as repo:
        from snapstore.view.selectors import resolve_snapshot
        chosen = [resolve_snapshot(repo, spec) for spec in snapshots]
        for snap in chosen:
            repo.set_pin(snap, pinned)
    if json_out:
        emit_json([{"id": s.id, "pinned": pinned} for s in chosen])
    else:
        for snap in chosen:
            echo(f"{'pinned' if pinned else 'unpinned'} {snap.short_id}")


def cmd_pin(
    ctx: typer.Context,
    snapshots: Annotated[list[str], typer.Argument(help="Snapshots never to forget.")],
    json_out: JsonOpt = False,
) -> None:
    """Pin snapshots: retention and forget never drop them."""
    _set_pin(ctx, snapshots, True, json_out)


def cmd_unpin(
    ctx: typer.Context,
    snapshots: Annotated[list[str], typer.Argument(help="Snapshots to unpin.")],
    json_out: JsonOpt = False,
) -> None:
    """Undo 'snap pin'."""
    _set_pin(ctx, snapshots, False, json_out)


def register(app: typer.Typer) -> None:
    app.command("forget")(cmd_forget)
    app.command("gc")(cmd_gc)
    app.command("pin")(cmd_pin)
    app.command("unpin")(cmd_unpin)


