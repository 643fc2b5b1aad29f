"""FUSE commands: ``mount`` (in the background, or ``--foreground``) and ``umount``.

Parsing and messages only: the checks, the server and the unmounting live in
:mod:`snapstore.fuse.runner`, imported when a command runs so that pyfuse3 is never loaded
by other commands.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from snapstore.cli.context import AppContext
from snapstore.cli.output import echo, emit_json, warn

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _log_to_stderr(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s snap mount[%(process)d] %(levelname)s %(message)s"))
    for name in ("snapstore.mount", "pyfuse3"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING if quiet else logging.INFO)
        logger.propagate = False


def cmd_mount(
    ctx: typer.Context,
    mountpoint: Annotated[str, typer.Argument(help="An existing, empty directory.")],
    foreground: Annotated[bool, typer.Option("--foreground", "-f", help="Serve in this process until "
                                             "Ctrl-C, SIGTERM or snap umount.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Mount every snapshot as a read-only tree: snapshots/, tiers/, tags/, latest."""
    from snapstore.fuse import runner

    app: AppContext = ctx.obj
    repo_path = app.repo_location()
    runner.require_fuse()
    mp = runner.check_mountpoint(mountpoint)
    if foreground:
        _log_to_stderr(app.quiet)

        def ready(where: str) -> None:
            if not app.quiet and not json_out and sys.stderr.isatty():  # a log gets the log line
                warn(f"snap: mounted {repo_path} at {where}; Ctrl-C or 'snap umount {where}' to unmount")

        runner.serve(repo_path, mp, wait=app.wait, endpoint=app.s3_endpoint, on_ready=ready)
        return
    with app.open("read") as early:  # fail early, with the right exit code
        early.require_full_key("mount it")
    argv = [sys.executable, "-m", "snapstore", "--repo", repo_path, "--wait", str(app.wait),
            *(["--s3-endpoint", app.s3_endpoint] if app.s3_endpoint else []), "mount", "--foreground", mp]
    pid, logfile = runner.start_background(argv, mp)
    if json_out:
        emit_json({"mountpoint": mp, "repository": repo_path, "pid": pid, "log": logfile})
    elif not app.quiet:
        echo(f"mounted {repo_path} at {mp} (pid {pid}, log {logfile}); unmount with: snap umount {mp}")


def cmd_umount(
    ctx: typer.Context,
    mountpoint: Annotated[str, typer.Argument(help="Where a repository is mounted.")],
    json_out: JsonOpt = False,
) -> None:
    """Unmount a mounted repository (also cleans up a stale mount whose process died)."""
    from snapstore.fuse import runner

    app: AppContext = ctx.obj
    mp = runner.canonical(mountpoint)
    done = runner.unmount(mp)
    if json_out:
        emit_json({"mountpoint": mp, "result": done})
    elif not app.quiet:
        echo(f"{done}: {mp}")


def register(app: typer.Typer) -> None:
    app.command("mount")(cmd_mount)
    app.command("umount")(cmd_umount)
