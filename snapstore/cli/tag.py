"""``snap tag SNAPSHOT... --add T --remove T --set T``: change tags (:mod:`snapstore.ops.tags`)."""

from __future__ import annotations

from typing import Annotated

import typer

from snapstore.cli.context import AppContext, HostOpt
from snapstore.cli.output import echo, emit_json
from snapstore.errors import UsageError


def cmd_tag(
    ctx: typer.Context,
    snapshots: Annotated[list[str], typer.Argument(help="Snapshots (id prefix, latest, latest:TIER, @PATH).")],
    add: Annotated[list[str] | None, typer.Option("--add", metavar="TAG", help="Add this tag (repeatable).")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", metavar="TAG", help="Remove this tag "
                                                     "(repeatable).")] = None,
    set_to: Annotated[list[str] | None, typer.Option("--set", metavar="TAG", help="Replace all tags with these "
                                                     "(repeatable; --set '' clears them).")] = None,
    host: HostOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Change the tags of snapshots. Tags are part of a record, so each changed snapshot gets a
    new id (the old id is gone; 'original' in its record names the first one)."""
    from snapstore.agent.tiers import check_tag
    from snapstore.ops.tags import new_tags, retag
    from snapstore.view.selectors import resolve_snapshot

    app: AppContext = ctx.obj
    if not add and not remove and set_to is None:
        raise UsageError("give --add TAG, --remove TAG or --set TAG")
    wanted_set = [t for t in set_to if t] if set_to is not None else None
    for tag in [*(add or ()), *(remove or ()), *(wanted_set or ())]:
        check_tag(tag)
    done = []
    with app.open("write") as repo:
        chosen = {s.id: s for s in (resolve_snapshot(repo, spec, host=host) for spec in snapshots)}
        for snap in chosen.values():
            tags = new_tags(snap.tags, add=add or (), remove=remove or (), set_to=wanted_set)
            result = retag(repo, snap, tags)
            done.append(result)
            if result.changed:
                app.record(snapshot=result.new.id, tier=snap.tier, replaced=snap.id, tags=list(result.new.tags))
    if not any(r.changed for r in done):
        app.record_nothing()
    if json_out:
        emit_json([{"old": r.old.id, "new": r.new.id, "changed": r.changed, "tags": list(r.new.tags),
                    "pinned": r.pinned} for r in done])
        return
    for r in done:
        shown = ",".join(r.new.tags) or "(none)"
        if r.changed:
            echo(f"snapshot {r.old.short_id} is now {r.new.short_id} (tags: {shown}); the old id is gone")
        else:
            echo(f"snapshot {r.old.short_id}: tags unchanged ({shown})")


def register(app: typer.Typer) -> None:
    app.command("tag")(cmd_tag)
