"""``snap du``: sizes by directory of one snapshot, like ``du``, for disk-pressure decisions.

The per-path figures are :func:`snapstore.ops.stats.path_usage_of` (the computation behind
``snap stats --by path``: one implementation); what forgetting the snapshot would free is
:func:`snapstore.ops.stats.frees_of`. This module only parses and renders.
"""

from __future__ import annotations

from typing import Annotated

import typer

from snapstore.cli.context import AppContext, HostOpt
from snapstore.cli.output import echo, emit_json, human_bytes


def cmd_du(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="The snapshot (id prefix, latest, latest:TIER, @PATH).")] = "latest",
    path: Annotated[str, typer.Argument(help="A directory inside the snapshot (default: its root).")] = "",
    depth: Annotated[int, typer.Option("--depth", "-d", help="Directory levels below PATH.", min=1)] = 1,
    host: HostOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Logical, stored and unique size of each directory of a snapshot (unique: stored bytes no
    other snapshot holds, what forgetting it would free there)."""
    from snapstore.ops.stats import frees_of, path_usage_of
    from snapstore.view.selectors import resolve_snapshot
    from snapstore.view.vfs import as_bytes_path

    app: AppContext = ctx.obj
    with app.open("read") as repo:
        snap = resolve_snapshot(repo, snapshot, host=host)
        rows = path_usage_of(repo, [snap], depth=depth, prefix=as_bytes_path(path), unique=True)
        unique = frees_of(repo, [snap])
    if json_out:
        emit_json({"snapshot": snap.id, "path": path, "unique_bytes": unique,
                   "paths": [r.to_json() for r in rows]})
        return
    echo(f"{'LOGICAL':>10}  {'STORED':>10}  {'UNIQUE':>10}  PATH")
    for row in sorted(rows, key=lambda r: r.path):
        name = row.path.decode("utf-8", "replace") + ("/" if row.to_json()["type"] == "dir" else "")
        echo(f"{human_bytes(row.usage.logical_bytes):>10}  {human_bytes(row.usage.stored_bytes):>10}  "
             f"{human_bytes(row.unique_bytes or 0):>10}  {name}")
    logical = sum(r.usage.logical_bytes for r in rows)
    echo(f"snapshot {snap.short_id} ({snap.tier}): {human_bytes(logical)} logical under "
         f"{path or '/'}; forgetting it would free {human_bytes(unique)} (data no other snapshot holds)")


def register(app: typer.Typer) -> None:
    app.command("du")(cmd_du)
