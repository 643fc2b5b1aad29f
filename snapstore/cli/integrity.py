"""Integrity commands: ``verify``, ``repair index`` and ``repair snapshots``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from snapstore.cli.context import AppContext
from snapstore.cli.output import Progress, echo, emit_json, human_bytes, warn
from snapstore.errors import ExitCode, UsageError

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def cmd_verify(
    ctx: typer.Context,
    read_data: Annotated[bool, typer.Option("--read-data", help="Read, decompress and hash-check every blob.")] = False,
    subset: Annotated[float | None, typer.Option("--read-data-subset", help="Read-check a random PCT percent "
                                                 "of the packs (a daily job covers all in a month).",
                                                 show_default=False)] = None,
    json_out: JsonOpt = False,
) -> int:
    """Check the repository: packs, index, trees, refcounts; with --read-data every blob."""
    from snapstore.ops.verify import verify_repository

    app: AppContext = ctx.obj
    if subset is not None and not 0 < subset <= 100:
        raise UsageError("--read-data-subset wants a percentage in (0, 100]")
    progress = Progress(not app.quiet and not json_out)
    cfg = app.config()
    required: dict[str, Sequence[str]] = {name: list(t.required) for name, t in cfg.tiers.items()
                                          if t.required} if cfg is not None else {}
    with app.open("read", check_index=False) as repo:
        report = verify_repository(repo, read_data=read_data or subset is not None,
                                   subset=(subset or 100.0) / 100.0, progress=progress)
        lacking = []
        if required and repo.can_read:  # the tiers' required artifacts, in each tier's newest snapshot
            from snapstore.agent.artifacts import check_newest
            from snapstore.view.vfs import SnapshotView

            lacking = check_newest(SnapshotView(repo), repo.snapshots(), required)
    progress.done()
    event = app.record(packs=report.packs, blobs=report.blobs, snapshots=report.snapshots)
    damage = [p for p in report.problems if p.severity == "error"]
    if damage:  # the alert says what is damaged, not only "exit code 4"
        event.update(error=f"{len(damage)} problem(s); first: {damage[0].message}",
                     problems=[p.to_json() for p in damage[:20]])
    elif lacking:
        event.update(error=lacking[0].message, problems=[p.to_json() for p in lacking])
    if lacking:
        event["required_missing"] = [{"snapshot": p.snapshot.id, "missing": list(p.missing)} for p in lacking]
    if json_out:
        emit_json({**report.to_json(), "required_missing": [p.to_json() for p in lacking]})
    else:
        for problem in report.problems:
            (warn if problem.severity == "error" else echo)(f"{problem.severity}: {problem.message}")
        for missing in lacking:
            warn(f"error: {missing.message}")
        read = f", read {report.blobs_read} blobs ({human_bytes(report.bytes_read)})" if report.blobs_read else ""
        verdict = "DAMAGED" if report.damaged else (
            "REQUIRED ARTIFACTS MISSING" if lacking else "no damage found")
        checked = f", required artifacts of {len(required)} tier(s)" if required else ""
        echo(f"checked {report.packs} packs, {report.blobs} blobs, {report.snapshots} snapshots, "
             f"{report.trees} trees{read}{checked} in {report.duration_s:.2f} s: {verdict}")
    if report.damaged:
        return ExitCode.DAMAGED
    return ExitCode.PARTIAL if lacking else ExitCode.OK


repair_app = typer.Typer(help="Repair the repository.", no_args_is_help=True)


@repair_app.command("index")
def cmd_repair_index(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Rebuild the index from the pack files and snapshot records (moves aside, never deletes)."""
    from snapstore.ops.repair import repair_index

    app: AppContext = ctx.obj
    with app.open("exclusive", check_index=False) as repo:
        report = repair_index(repo)
    if json_out:
        emit_json(report.to_json())
        return
    for note in report.notes:
        echo(f"note: {note}")
    for moved in report.moved_aside:
        echo(f"moved aside: {moved}")
    echo(f"rebuilt the index: {report.packs} packs, {report.blobs} blobs, {report.snapshots} snapshots "
         f"({len(report.incomplete_snapshots)} incomplete) in {report.duration_s:.2f} s")


@repair_app.command("snapshots")
def cmd_repair_snapshots(
    ctx: typer.Context,
    snapshots: Annotated[list[str] | None, typer.Argument(help="Snapshots to repair (default: every one).")] = None,
    forget: Annotated[bool, typer.Option("--forget", help="Forget each damaged snapshot once its repaired "
                                                          "copy is committed.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be left out; write nothing.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Rewrite snapshots whose data is partly lost into ones without the lost files (tagged
    'repaired'); the damaged ones are kept unless --forget."""
    from snapstore.ops.repairsnap import repair_snapshots
    from snapstore.view.selectors import resolve_snapshot

    app: AppContext = ctx.obj
    with app.open("write") as repo:
        chosen = [resolve_snapshot(repo, spec) for spec in snapshots] if snapshots else repo.snapshots()
        chosen = list({s.id: s for s in chosen}.values())
        results = repair_snapshots(repo, chosen, forget=forget, dry_run=dry_run)
    changed = [r for r in results if r.removed or r.emptied]
    for r in changed:
        if not dry_run and r.new is not None:
            app.record(snapshot=r.new.id, replaced=r.old.id, removed=len(r.removed), forgotten=r.forgotten)
    if not changed or dry_run:
        app.record_nothing()
    if json_out:
        emit_json([r.to_json() for r in results])
        return
    for r in changed:
        lost = ", ".join([*r.removed[:10], *(f"{d}/ (emptied)" for d in r.emptied[:5])])
        more = len(r.removed) + len(r.emptied) - min(len(r.removed), 10) - min(len(r.emptied), 5)
        lost += f" (+{more} more)" if more > 0 else ""
        if dry_run:
            echo(f"snapshot {r.old.short_id}: would leave out {lost}")
        elif r.new is not None:
            kept = "forgotten" if r.forgotten else "kept (use --forget to drop it)"
            echo(f"snapshot {r.old.short_id} -> {r.new.short_id} (tag repaired), left out {lost}; "
                 f"the damaged one is {kept}")
    echo(f"{len(changed)} of {len(results)} snapshot(s) had lost data" + (" (dry run)" if dry_run else ""))


def register(app: typer.Typer) -> None:
    app.command("verify")(cmd_verify)
    app.add_typer(repair_app, name="repair")
