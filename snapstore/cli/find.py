"""``snap find PATTERN``: which snapshots hold matching paths (the search is :mod:`snapstore.ops.find`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from snapstore.cli.context import AppContext, HostOpt
from snapstore.cli.output import echo, emit_json, human_bytes


def cmd_find(
    ctx: typer.Context,
    pattern: Annotated[str, typer.Argument(help="A glob on names or paths in the snapshot ('*.json', "
                                           "'agents/*/priority_weights.json').")],
    tier: Annotated[str | None, typer.Option("--tier", "-t", help="Only this tier's snapshots.",
                                             show_default=False)] = None,
    host: HostOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the paths matching PATTERN in every snapshot, with sizes and times (oldest first)."""
    from snapstore.errors import NotFound
    from snapstore.ops.find import Finder
    from snapstore.view.vfs import SnapshotView

    app: AppContext = ctx.obj
    with app.open("read") as repo:
        snaps = [s for s in repo.snapshots()
                 if (tier is None or s.tier == tier) and (host is None or s.hostname == host)]
        found = list(Finder(SnapshotView(repo), pattern).find(snaps))
    if json_out:
        emit_json([f.to_json() for f in found])
        return
    if not found:
        where = (f" of tier {tier!r}" if tier else "") + (f" from host {host!r}" if host else "")
        raise NotFound(f"no path matching {pattern!r} in {len(snaps)} snapshot(s){where}")
    rows = [("SNAPSHOT", "TIME (UTC)", "TIER", "HOST", "SIZE", "MTIME (UTC)", "PATH")]
    for f in found:
        mtime = datetime.fromtimestamp(f.entry.mtime_ns / 1e9, UTC)
        path = f.to_json()["path"]
        rows.append((f.snapshot.short_id, f"{f.snapshot.time:%Y-%m-%d %H:%M:%S}", f.snapshot.tier, f.snapshot.hostname,
                     human_bytes(f.entry.size), f"{mtime:%Y-%m-%d %H:%M:%S}", f"{path}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        echo("  ".join(c.rjust(w) if i == 4 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             .rstrip())
    holding = len({f.snapshot.id for f in found})
    echo(f"{len(found)} match(es) in {holding} of {len(snaps)} snapshot(s)")


def register(app: typer.Typer) -> None:
    app.command("find")(cmd_find)
