"""``snap ui``: start the local web dashboard, read-only unless ``--allow-restore``.

The CLI and the web front end are independent (neither imports the other, .importlinter checks
it): this command resolves the repository, history log and schedules like every command, then
calls the server through the ``snapstore.frontends`` entry point ``ui`` (pyproject.toml) with
plain values."""

from __future__ import annotations

from typing import Annotated

import typer

from snapstore.cli.context import AppContext
from snapstore.errors import SnapError


def cmd_ui(
    ctx: typer.Context,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to serve on (loopback by default; port 0 "
                                        "picks a free one).")] = "127.0.0.1:8377",
    allow_restore: Annotated[bool, typer.Option("--allow-restore", help="Offer restores to a directory on this "
                                                "machine (else the dashboard only reads).")] = False,
) -> None:
    """Serve a web dashboard of the repository; prints the URL with its access token."""
    from importlib.metadata import entry_points

    found = entry_points(group="snapstore.frontends", name="ui")
    if not found:
        raise SnapError("snap ui: the web front end is not installed (pip install 'snapstore[web]')")
    try:
        serve = next(iter(found)).load()
    except ModuleNotFoundError as exc:
        raise SnapError(f"snap ui needs the web extra ({exc.name} is missing): pip install 'snapstore[web]'") \
            from None
    app: AppContext = ctx.obj
    cfg = app.config()
    schedules = {name: tier.schedule for name, tier in cfg.tiers.items()} if cfg is not None else {}
    app.open("read").close()  # a missing or damaged repository fails now, with its exit code
    try:
        serve(repository=app.repo_path(), history=str(app.history_path()), schedules=schedules,
              endpoint=app.s3_endpoint, allow_restore=allow_restore, listen=listen)
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command("ui")(cmd_ui)
