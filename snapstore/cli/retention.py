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
    from snapstore.agent.cleanup import GcSettings, forget_named, gc_settings

    app: AppContext = ctx.obj
    settings = gc_settings(app.config()) if prune else GcSettings()  # only gc reads the config
    with app.open("exclusive" if prune else "write") as repo:
        run = forget_named(repo, snapshots, prune=prune, settings=settings)
    chosen, result = run.forgotten, run.gc
    # the audit trail: which snapshots, why, and what it freed
    app.record(forgotten=[{"id": s.id, "tier": s.tier, "time": f"{s.time:%Y-%m-%dT%H:%M:%SZ}",
                           "reasons": ["named on the command line"]} for s in chosen],
               bytes_freed=result.reclaimed if result else 0, pruned=prune)
    if json_out:
        emit_json(run.to_json())
        return
    for snap in chosen:
        echo(f"forgot {snap.short_id} ({snap.tier}, {snap.time:%Y-%m-%d %H:%M:%S})")
    if result:
        echo(f"reclaimed {human_bytes(result.reclaimed)}")
    else:
        echo("run 'snap gc' to free the space they alone used")


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
    from snapstore.agent.cleanup import gc_settings, retention_policy, run_gc

    app: AppContext = ctx.obj
    overrides = _parse_keep(keep or [])
    cfg = app.config()
    policy = retention_policy(cfg, overrides)
    settings = gc_settings(cfg)
    # a dry run changes nothing: a shared lock is enough, so it runs beside a mount or a take
    with app.open("read" if dry_run else "exclusive") as repo:
        run = run_gc(repo, policy, settings, dry_run=dry_run)
    result, remaining = run.result, run.remaining
    app.record(dry_run=dry_run,
               forgotten=[{"id": item["id"], "tier": item["tier"], "time": item["time"], "reasons": item["reasons"]}
                          for item in result.forgotten],
               **({"would_free": result.reclaimed, "bytes_freed": 0} if dry_run else {"bytes_freed": result.reclaimed}),
               packs_deleted=result.packs_deleted, packs_rewritten=result.packs_rewritten, remaining=remaining)
    if json_out:
        emit_json(run.to_json())
        return
    verb = "would forget" if dry_run else "forgot"
    for item in result.forgotten:
        echo(f"{verb} {item['short_id']}  {item['tier']:<10} {item['time']}  ({'; '.join(item['reasons'])})")  # type: ignore[arg-type]
    if policy is None:
        echo("no retention policy (no config file and no --keep): every snapshot is kept")
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


