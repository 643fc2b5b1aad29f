"""The ``snap`` Typer application: global options, command registration, error mapping.

This is the one place where errors become exit codes: a :class:`SnapError` prints one line
on stderr (a JSON object with ``--json``) and exits with its code; nothing prints a traceback.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from snapstore.cli.context import AppContext
from snapstore.cli.output import Output
from snapstore.errors import ExitCode, SnapError, UsageError

app = typer.Typer(
    name="snap",
    help="Content-addressed snapshots of AI-agent state: dedup, compression, FUSE browsing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_info() -> dict[str, object]:
    """The package version and the on-disk format versions this build reads and writes."""
    from importlib.metadata import PackageNotFoundError, version

    from snapstore.format.snapshot import RECORD_VERSION
    from snapstore.repo.repository import FORMAT_VERSION

    try:
        package = version("snapstore")
    except PackageNotFoundError:  # running from a source tree that was never installed
        package = "unknown"
    return {"snapstore": package, "repository_format": FORMAT_VERSION, "snapshot_record": RECORD_VERSION}


def version_text() -> str:
    info = version_info()
    return (f"snapstore {info['snapstore']} (repository format {info['repository_format']}, "
            f"snapshot record {info['snapshot_record']})")


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(version_text() + "\n")
        raise typer.Exit(ExitCode.OK)


@app.command("version")
def cmd_version(json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Print the package version and the repository format version (also: snap --version)."""
    if json_out:
        sys.stdout.write(json.dumps(version_info(), indent=2) + "\n")
    else:
        sys.stdout.write(version_text() + "\n")


@app.callback()
def main_options(
    ctx: typer.Context,
    repo: Annotated[str | None, typer.Option("--repo", "-r", help="Repository path or s3://BUCKET/PREFIX (else "
                                             "$SNAP_REPO, config, ~/.local/share/snapstore).",
                                             show_default=False)] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="Config file (else $SNAP_CONFIG, "
                                               "./backup_schedule.json).", show_default=False)] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for a locked repository.")] = 0.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, fewer words.")] = False,
    s3_endpoint: Annotated[str | None, typer.Option("--s3-endpoint", help="S3 endpoint URL for s3:// repositories "
                                                    "(else $SNAP_S3_ENDPOINT, else AWS).",
                                                    show_default=False)] = None,
    password_file: Annotated[str | None, typer.Option("--password-file", help="Encrypted repositories: read the "
                                                      "password from this file (else $SNAP_PASSWORD...).",
                                                      show_default=False)] = None,
    password_command: Annotated[str | None, typer.Option("--password-command", help="Encrypted repositories: "
                                                         "run this command (no shell) for the password.",
                                                         show_default=False)] = None,
    _version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                           callback=_print_version)] = False,
) -> None:
    obj = ctx.obj if isinstance(ctx.obj, AppContext) else AppContext()  # main() passes one in
    obj.repo_arg, obj.config_arg, obj.wait, obj.quiet = repo, config, wait, quiet
    obj.output = Output.of(json_out=False, quiet=quiet)
    obj.subcommand = ctx.invoked_subcommand or ""
    if password_file or password_command:
        # through the environment, like the endpoint: every open (and a background mount's child)
        # finds it there, and the option wins over any other source
        for name in ("SNAP_PASSWORD", "SNAP_PASSWORD_FILE", "SNAP_PASSWORD_COMMAND"):
            os.environ.pop(name, None)
        if password_file:
            os.environ["SNAP_PASSWORD_FILE"] = os.path.abspath(password_file)
        else:
            os.environ["SNAP_PASSWORD_COMMAND"] = password_command or ""
    # resolved once here and passed down to every open (and to a background mount's child)
    obj.s3_endpoint = s3_endpoint or os.environ.get("SNAP_S3_ENDPOINT") or None
    ctx.obj = obj


def _register() -> None:
    from snapstore.cli import store

    store.register(app)
    for name in ("retention", "integrity", "mount", "workflows", "changes", "remote", "keys", "stats", "ui", "recover",
                 "du", "archive", "find", "tag"):
        try:
            module = __import__(f"snapstore.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"snapstore.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def _with_output(callback: Callable[..., Any]) -> Callable[..., Any]:
    """``callback`` run with the output mode of its parsed options (``json_out``) set first."""

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx")
        obj = ctx.obj if ctx is not None else None
        if isinstance(obj, AppContext):
            obj.output = Output.of(json_out=bool(kwargs.get("json_out")), quiet=obj.quiet)
            obj.running = True
        return callback(*args, **kwargs)

    return run


def _wrap_commands(group: typer.Typer) -> None:
    for info in group.registered_commands:
        if info.callback is not None:
            info.callback = _with_output(info.callback)
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _wrap_commands(sub.typer_instance)


_wrap_commands(app)


def _output_of_words(obj: AppContext, args: list[str]) -> Output:
    """The output mode of a run whose command line did not parse (no command ran, so no
    option was read): JSON when ``--json`` is among the words given."""
    if obj.running:
        return obj.output
    words = args[: args.index("--")] if "--" in args else args
    return Output.of(json_out="--json" in words, quiet=obj.quiet)


#: Global options that take a value, and those accepted after the command name too.
_VALUE_OPTIONS = ("--repo", "-r", "--config", "-c", "--wait", "--s3-endpoint", "--password-file", "--password-command")


def _hoist_global_flags(args: list[str]) -> list[str]:
    """Global options work before or after the command: ``snap gc --wait 2`` is ``snap --wait 2 gc``
    (so are ``-q``, ``--repo``, ``--config``, ``--s3-endpoint`` and the password sources), and
    ``--json``, a per-command option, is moved after the command (``snap --json restore ...``)."""
    end = args.index("--") if "--" in args else len(args)
    hoisted: list[str] = []
    rest: list[str] = []
    json_before = False
    seen_command = False
    i = 0
    while i < end:
        arg = args[i]
        if arg in ("-q", "--quiet"):
            hoisted.append("--quiet")
        elif arg in _VALUE_OPTIONS and i + 1 < end:
            hoisted += [arg, args[i + 1]]
            i += 1
        elif arg.startswith(tuple(f"{o}=" for o in _VALUE_OPTIONS if o.startswith("--"))):
            hoisted.append(arg)
        elif arg == "--json" and not seen_command:
            json_before = True
        else:
            if not arg.startswith("-"):
                seen_command = True
            rest.append(arg)
        i += 1
    if json_before:
        rest.append("--json")
    return hoisted + rest + args[end:]


#: Commands whose every run goes to the history log; on_failure runs when the alerted ones fail.
HISTORY_COMMANDS = {"take", "gc", "verify", "restore", "forget", "import", "recover", "archive", "tag"}
ALERT_COMMANDS = {"take", "gc", "verify", "import", "restore", "recover", "archive"}


def _record(obj: AppContext, code: int, error: str) -> None:
    """The history hook: log the outcome of a recorded command (and alert on its failure)."""
    if obj.subcommand not in HISTORY_COMMANDS:
        return
    events = obj.events
    if events is None:
        if code == ExitCode.OK and {"--help", "-h"} & set(sys.argv[1:]):
            return  # 'snap take --help' ran nothing
        events = [{}]
    elif not events and code != ExitCode.OK:
        events = [{}]
    obj.write_history(events, exit_code=code, error=error, alert=obj.subcommand in ALERT_COMMANDS)


def _command_word(args: list[str]) -> str | None:
    """The command a hoisted command line names: its first word after the global options."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return None
        if arg in _VALUE_OPTIONS:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg
    return None


def _app_for(name: str | None) -> typer.Typer:
    """``app`` with only the command ``name`` registered, when one has that name. Typer reads
    the signature and type hints of every registered command before it runs any: with 40
    commands that cost more than the rest of a short command's start-up (``snap list``,
    ``snap cat``). ``snap --help`` and unknown words get the whole application."""
    if name is None:
        return app
    from typer.main import get_command_name

    commands = [c for c in app.registered_commands
                if (c.name or get_command_name(getattr(c.callback, "__name__", ""))) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return app
    lean = copy.copy(app)
    lean.registered_commands = commands
    lean.registered_groups = groups
    return lean


def main() -> None:
    """Console-script entry point."""
    import importlib
    import signal

    try:  # typer >= 0.20 vendors click as typer._click
        click_exc = importlib.import_module("typer._click.exceptions")
    except ImportError:
        click_exc = importlib.import_module("click.exceptions")

    def _terminate(_signum: int, _frame: object) -> None:
        # SIGTERM (systemd, kill) ends a command the way Ctrl-C does: cleanly, exit 130, logged.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    code = ExitCode.OK
    error = ""
    obj = AppContext()
    args = _hoist_global_flags(sys.argv[1:])

    def _report(exc: SnapError) -> None:
        _output_of_words(obj, args).error(exc)

    try:
        result = _app_for(_command_word(args))(args=args, prog_name="snap", standalone_mode=False, obj=obj)
        code = result if isinstance(result, int) else ExitCode.OK
    except SnapError as exc:
        _report(exc)
        code, error = exc.exit_code, exc.message
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        sys.stderr.write("snap: interrupted\n")
        code = ExitCode.INTERRUPTED
    except click_exc.ClickException as exc:
        # one line, like every other error, with where to look for the right usage
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = " ".join(exc.format_message().split())
        code = exc.exit_code if exc.exit_code else ExitCode.USAGE
        code = ExitCode.USAGE if code == 1 else code
        _report(UsageError(f"{message}{where}"))
        error = message
    except KeyboardInterrupt:
        sys.stderr.write("snap: interrupted\n")
        code, error = ExitCode.INTERRUPTED, "interrupted"
    except BrokenPipeError:
        # The reader went away (snap cat | head): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = ExitCode.OK
    except OSError as exc:
        # A last net: an OS error no layer mapped still gets one line and a code, not a traceback.
        from snapstore.storage.backend import raise_os_error

        mapped = raise_os_error(exc, exc.filename or "snap")
        _report(mapped)
        code, error = mapped.exit_code, mapped.message
    _record(obj, code, error)
    sys.exit(code)


if __name__ == "__main__":
    main()
