"""The ``snap`` Typer application: global options, command registration, error mapping.

This is the one place where errors become exit codes: a :class:`SnapError` prints one line
on stderr (a JSON object with ``--json``) and exits with its code; nothing prints a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from snapstore.cli.context import AppContext
from snapstore.errors import ExitCode, SnapError

app = typer.Typer(
    name="snap",
    help="Content-addressed snapshots of AI-agent state: dedup, compression, FUSE browsing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    ctx: typer.Context,
    repo: Annotated[str | None, typer.Option("--repo", "-r", help="Repository path (else $SNAP_REPO, config, "
                                             "~/.local/share/snapstore).", show_default=False)] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Config file (else $SNAP_CONFIG, "
                                               "./backup_schedule.json).", show_default=False)] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for a locked repository.")] = 0.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, fewer words.")] = False,
) -> None:
    ctx.obj = AppContext(repo_arg=repo, config_arg=config, wait=wait, quiet=quiet,
                         subcommand=ctx.invoked_subcommand or "")


def _register() -> None:
    from snapstore.cli import store

    store.register(app)
    for name in ("retention", "integrity", "mount", "workflows", "changes", "remote"):
        try:
            module = __import__(f"snapstore.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"snapstore.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def _report(exc: SnapError) -> None:
    if "--json" in sys.argv:
        sys.stderr.write(json.dumps({"error": exc.kind, "message": exc.message, "exit_code": exc.exit_code}) + "\n")
    else:
        sys.stderr.write(f"snap: error: {exc.message}\n")


def _hoist_global_flags(args: list[str]) -> list[str]:
    """Accept ``-q``/``--quiet`` after the command name too (``snap take . -q``)."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in ("-q", "--quiet")]
    if not flags:
        return args
    return ["--quiet"] + [a for a in args[:end] if a not in ("-q", "--quiet")] + args[end:]


def main() -> None:
    """Console-script entry point."""
    try:  # typer >= 0.20 vendors click as typer._click
        from typer._click import exceptions as click_exc  # type: ignore[import-not-found]
    except ImportError:
        from click import exceptions as click_exc

    code = ExitCode.OK
    try:
        result = app(args=_hoist_global_flags(sys.argv[1:]), standalone_mode=False)
        code = result if isinstance(result, int) else ExitCode.OK
    except SnapError as exc:
        _report(exc)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        sys.stderr.write("snap: interrupted\n")
        code = ExitCode.INTERRUPTED
    except click_exc.ClickException as exc:
        exc.show()
        code = ExitCode.USAGE
    except KeyboardInterrupt:
        sys.stderr.write("snap: interrupted\n")
        code = ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (snap cat | head): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = ExitCode.OK
    except OSError as exc:
        # A last net: an OS error no layer mapped still gets one line and a code, not a traceback.
        from snapstore.backends import raise_os_error

        mapped = raise_os_error(exc, exc.filename or "snap")
        _report(mapped)
        code = mapped.exit_code
    sys.exit(code)


if __name__ == "__main__":
    main()
