"""``snap archive``: old files into a pinned snapshot, then (``--remove``) off the live disk.

The use case and its guarantee are :mod:`snapstore.ops.archive`; this module parses, renders
and fills the history event.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from snapstore.cli.context import AppContext
from snapstore.cli.output import Progress, echo, emit_json, human_bytes, warn
from snapstore.errors import ExitCode, SnapError, UsageError


def cmd_archive(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="Files and directories to archive old files from.")],
    older_than: Annotated[str, typer.Option("--older-than", metavar="AGE", help="Only files last modified "
                                            "longer ago than AGE (30d, 12h, 2w, 1y6m).")],
    tier: Annotated[str, typer.Option("--tier", "-t", help="Tier to file the archive snapshot under (it is "
                                      "pinned: retention never drops it).")],
    keep_newest: Annotated[int, typer.Option("--keep-newest", metavar="N", min=0, help="Of the files under "
                                             "each PATH, the N newest stay (whatever their age).")] = 0,
    remove: Annotated[bool, typer.Option("--remove", help="Take the files into a snapshot, read every one "
                                         "back from the repository, and delete those that match from the live "
                                         "disk. Without it: a dry run (nothing written or deleted).")] = False,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag besides 'archive' (repeatable).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> int:
    """Move files older than AGE into a pinned snapshot; with --remove, free them from the disk
    after their bytes were read back from the repository."""
    from snapstore import clock
    from snapstore.agent.config import parse_duration
    from snapstore.agent.tiers import check_tag
    from snapstore.ops.archive import ArchiveRun, repository_places, run_archive, select_old_files

    app: AppContext = ctx.obj
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    tags = tuple(check_tag(t) for t in tag or ())
    base = os.getcwd()
    event = app.record(tier=tier, paths=list(paths), older_than=older_than, dry_run=not remove)
    progress = Progress(not app.quiet and not json_out)
    try:
        with app.open("write" if remove else "read") as repo:
            selection = select_old_files(paths, base=base, now=clock.now(), older_than=age,
                                         keep_newest=keep_newest, skip=repository_places(repo))
            event.update(selected=len(selection.files), selected_bytes=selection.bytes, files=len(selection.files),
                         bytes=selection.bytes)
            if not remove or not selection.files:
                run = ArchiveRun(selection)
            else:
                run = run_archive(repo, selection, base=base, tier=tier, tags=tags, progress=progress)
        progress.done()
    except SnapError as exc:
        progress.done()
        if remove and "nothing was removed" not in exc.message:
            # removal is the last step and never raises: whatever failed, the live files are all there
            exc.message += "; nothing was removed from the live disk"
        event.update(result="error", error=exc.message, exit_code=exc.exit_code, removed=0 if remove else None)
        raise
    kept = run.kept
    if run.snapshot is not None:
        assert run.read_back is not None and run.removal is not None
        event.update(snapshot=run.snapshot.id, pinned=True, read_back=len(run.read_back.matched),
                     removed=len(run.removal.removed), bytes_freed=run.removal.bytes_freed,
                     kept=[f"{k.given}: {k.why}" for k in kept][:50])
    if json_out:
        emit_json(run.to_json())
    else:
        _render(app, run)
    for item in kept:
        warn(f"snap: kept {item.given}: {item.why}")
    # a file changed meanwhile is kept by design (exit 0); one that could not be read or deleted is not
    return ExitCode.PARTIAL if any(k.problem for k in kept) else ExitCode.OK


def _render(app: AppContext, run: object) -> None:
    from snapstore.ops.archive import ArchiveRun

    assert isinstance(run, ArchiveRun)
    sel = run.selection
    when = f"{sel.cutoff:%Y-%m-%d %H:%M:%S} UTC"
    passed = f" ({sel.newer} newer"
    passed += f", {sel.kept_newest} kept as the newest)" if sel.kept_newest else ")"
    if not sel.files:
        echo(f"no file last modified before {when}{passed}; nothing to archive")
        return
    if run.snapshot is None:
        if not app.quiet:
            for f in sel.files:
                echo(f"would archive {f.given} ({human_bytes(f.size)})")
        echo(f"would archive and remove {len(sel.files)} file(s) last modified before {when}{passed}, "
             f"{human_bytes(sel.bytes)}; nothing was written or deleted (add --remove)")
        return
    assert run.read_back is not None and run.removal is not None
    snap = run.snapshot
    echo(f"archived {len(sel.files)} file(s), {human_bytes(sel.bytes)}, into snapshot {snap.short_id} "
         f"({snap.tier}, pinned, tagged {','.join(snap.tags)})")
    echo(f"read back {human_bytes(run.read_back.bytes_read)} from the repository: {len(run.read_back.matched)} "
         "file(s) match the live disk byte for byte")
    echo(f"removed {len(run.removal.removed)} file(s) from the live disk, freed {human_bytes(run.removal.bytes_freed)}"
         + (f"; kept {len(run.kept)} (below)" if run.kept else ""))


def register(app: typer.Typer) -> None:
    app.command("archive")(cmd_archive)
