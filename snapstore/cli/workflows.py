"""Workflow commands: ``due``, ``schedule``, ``watch``, ``history``, ``export``, ``import``.
Parsing and rendering only: the logic is in ``snapstore.agent.tiers`` (taking a tier),
``snapstore.agent.schedule``, ``snapstore.agent.watch``, ``snapstore.agent.history`` and
``snapstore.agent.tarball``."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from snapstore import clock
from snapstore.cli.context import AppContext, HostOpt
from snapstore.cli.output import echo, emit_json, human_bytes, warn
from snapstore.errors import ExitCode, Interrupted, SnapError, UsageError

if TYPE_CHECKING:
    from snapstore.agent.config import Config

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _config(app: AppContext, what: str) -> Config:
    from snapstore.agent.tiers import config_with_tiers

    return config_with_tiers(app.config(), what)


# -- due ------------------------------------------------------------------------------------


def cmd_due(
    ctx: typer.Context,
    all_tiers: Annotated[bool, typer.Option("--all", help="Show every tier, due or not.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List the tiers whose schedule is due: no snapshot since their last scheduled time."""
    app: AppContext = ctx.obj
    from snapstore.agent.tiers import tier_statuses

    cfg = _config(app, "snap due")
    now = clock.now()
    with app.open("read") as repo:
        statuses = tier_statuses(cfg, repo.snapshots(), now)
    shown = statuses if all_tiers else [s for s in statuses if s.due]
    if json_out:
        emit_json([s.to_json() for s in shown])
        return
    for s in shown:
        echo(f"{s.tier:<12} {'due' if s.due else 'not due':<8} {s.reason}")
    if not any(s.due for s in statuses):
        upcoming = sorted((s.next_slot, s.tier) for s in statuses if s.next_slot is not None)
        echo("nothing due" + (f"; next: {upcoming[0][1]} at {clock.format_time(upcoming[0][0])}" if upcoming else ""))


# -- schedule -------------------------------------------------------------------------------


def snap_executable() -> list[str]:
    """The absolute command that runs this snap: the console script, else ``python -m snapstore``."""
    argv0 = sys.argv[0]
    if os.path.basename(argv0).startswith("snap") and not argv0.endswith(".py") and os.path.isfile(argv0):
        return [os.path.abspath(argv0)]
    beside = os.path.join(os.path.dirname(sys.executable), "snap")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return [beside]
    return [sys.executable, "-m", "snapstore"]


def cmd_schedule(
    ctx: typer.Context,
    cron: Annotated[bool, typer.Option("--cron", help="Print a crontab line.")] = False,
    systemd: Annotated[bool, typer.Option("--systemd", help="Print a .service and .timer unit pair.")] = False,
    every: Annotated[int, typer.Option("--every", help="Minutes between checks for due tiers.", min=1,
                                       max=59)] = 5,
    name: Annotated[str, typer.Option("--name", help="systemd unit name.")] = "snap-take",
    write_dir: Annotated[str | None, typer.Option("--write-dir", help="With --systemd: write the unit files "
                                                  "into DIR (e.g. /etc/systemd/system).",
                                                  show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print ready-to-install entries: 'snap take --due' every few minutes, gc after the takes
    (gc.schedule) and the periodic 'snap verify --read-data-subset' (verify.schedule)."""
    from snapstore.agent.schedule import cron_entry, cron_line, systemd_job_units, systemd_units

    app: AppContext = ctx.obj
    if cron == systemd:
        raise UsageError("give one of --cron or --systemd")
    cfg = _config(app, "snap schedule")
    base = [*snap_executable(), "--config", str(cfg.path.absolute())]
    if app.repo_arg or os.environ.get("SNAP_REPO"):
        base += ["--repo", app.repo_location()]
    argv = [*base, "--wait", "300", "--quiet", "take", "--due"]
    # gc and verify wait up to an hour for a take holding the lock: they run after it, never beside
    jobs: list[tuple[str, str, list[str], str]] = []  # (job, cron schedule, argv, what)
    if cfg.gc.schedule:
        jobs.append(("gc", cfg.gc.schedule, [*base, "--wait", "3600", "--quiet", "gc"],
                     "apply retention and free unused data (after the takes)"))
    if cfg.verify.schedule:
        subset = f"{cfg.verify.read_data_subset:g}"
        jobs.append(("verify", cfg.verify.schedule,
                     [*base, "--wait", "3600", "--quiet", "verify", "--read-data-subset", subset],
                     f"verify the repository, reading {subset}% of the data back"))
    if cron:
        line = cron_entry(argv, every)
        extra = {job: cron_line(when, job_argv) for job, when, job_argv, _what in jobs}
        if json_out:
            emit_json({"cron": line, "entries": {"take": line, **extra}})
        else:
            echo(f"# snap: take the due tiers of {cfg.path.absolute()}"
                 + (", then " + " and ".join(extra) if extra else "") + " (install with 'crontab -e')")
            echo(line)
            for text in extra.values():
                echo(text)
        return
    prefix = name[: -len("-take")] if name.endswith("-take") else name
    units = systemd_units(argv, every, name)
    for job, when, job_argv, what in jobs:
        units.update(systemd_job_units(job_argv, when, f"{prefix}-{job}", what,
                                       after=f"{name}.service" if job == "gc" else None))
    if write_dir:
        os.makedirs(write_dir, exist_ok=True)
        for unit, text in units.items():
            Path(write_dir, unit).write_text(text)
    if json_out:
        emit_json({"units": units, "written_to": os.path.abspath(write_dir) if write_dir else None})
        return
    for unit, text in units.items():
        echo(f"# {os.path.join(write_dir or '/etc/systemd/system', unit)}")
        echo(text)
    timers = " ".join(u for u in units if u.endswith(".timer"))
    echo(f"# then: systemctl daemon-reload && systemctl enable --now {timers}")


# -- watch ----------------------------------------------------------------------------------


def cmd_watch(
    ctx: typer.Context,
    tier: Annotated[str, typer.Option("--tier", "-t", help="The tier whose sources to watch.")] = "on-change",
    debounce: Annotated[float, typer.Option("--debounce", help="Seconds without a change before the snapshot "
                                            "(a burst of changes makes one snapshot).", min=0.0)] = 2.0,
    max_delay: Annotated[float | None, typer.Option("--max-delay", help="Snapshot at the latest this many "
                                                    "seconds after the first change of a burst (default: "
                                                    "10 x debounce, at least 60).", min=0.0,
                                                    show_default=False)] = None,
) -> int:
    """Watch a tier's sources (inotify) and take a snapshot after each burst of changes.

    At start it takes one if the sources changed since the tier's last snapshot. SIGTERM or
    Ctrl-C stops it after the take in progress has committed; a second one aborts that take
    (nothing is committed)."""
    from snapstore.agent.tiers import TakeOptions, plan_tier, take_tier
    from snapstore.agent.watch import Watcher, watch_sources

    app: AppContext = ctx.obj
    cfg = _config(app, "snap watch")
    plan = plan_tier(tier, config=cfg, options=TakeOptions(if_changed=True))
    sources = plan.sources
    patterns = cfg.watch_patterns(tier)  # where new sources may appear (globs, paths not there yet)
    repo_path = app.repo_location()
    app.open("read").close()  # fail early, with the right exit code
    app.wait = max(app.wait, 60.0)  # a take must not fail because a scheduled take holds the lock
    try:
        ignore = {os.fsencode(os.path.abspath(app.history_path()))}
    except SnapError:
        ignore = set()

    def action(events: int) -> None:
        event: dict[str, Any] = {"command": "take", "tier": tier, "trigger": f"watch: {events} change event(s)"}
        started = time.monotonic()
        if events and not app.quiet:
            echo(f"{events} change event(s) settled; checking tier {tier}")
            sys.stdout.flush()
        try:
            # the sources again: a glob may match more (a new agent), a missing source may exist now
            current = plan_tier(tier, config=cfg, options=TakeOptions(if_changed=True))
            with app.open("write") as repo:
                outcome = take_tier(repo, current)
        except Interrupted as exc:  # a second signal during the take: nothing was committed
            event["duration_s"] = round(time.monotonic() - started, 3)
            app.write_history([event], exit_code=exc.exit_code, error=exc.message)
            raise
        except SnapError as exc:
            warn(f"snap: error: {exc.message}")
            event["duration_s"] = round(time.monotonic() - started, 3)
            app.write_history([event], exit_code=exc.exit_code, error=exc.message, alert=True)
            return
        snap = outcome.snapshot
        if snap is None:
            if events and not app.quiet:
                since = outcome.unchanged_since
                echo(f"unchanged since {since.short_id if since else '?'}")
            return
        st = snap.stats
        event.update(outcome.history_fields())
        echo(f"snapshot {snap.short_id} saved ({tier}, {snap.time:%Y-%m-%d %H:%M:%S} UTC): {outcome.change}")
        sys.stdout.flush()
        error = f"{st.unreadable} file(s) could not be read" if st.unreadable else ""
        code = outcome.exit_code
        problem = outcome.incomplete_error()  # committed, but a required source or artifact is missing
        if problem is not None:
            warn(f"snap: error: {problem.message}")
            error, code = problem.message, problem.exit_code
        app.write_history([event], exit_code=code, error=error, alert=bool(code))

    def ready(watcher: Watcher) -> None:
        action(0)  # catch up with changes made while nobody watched
        echo(f"watching {len(sources)} source(s) of tier {tier} in {watcher.watch_count} director"
             f"{'y' if watcher.watch_count == 1 else 'ies'} (debounce {debounce:g} s); SIGTERM or Ctrl-C stops")
        sys.stdout.flush()

    app.record_nothing()  # each take is logged as it happens
    stopped = watch_sources(sources, excludes=plan.excludes, debounce=debounce, action=action, on_ready=ready,
                            repo_dir=repo_path, ignore=ignore, max_delay=max_delay, patterns=patterns)
    if not app.quiet:
        echo(f"stopped ({stopped})")
    return ExitCode.OK


# -- history --------------------------------------------------------------------------------


def _parse_since(text: str) -> datetime:
    from snapstore.agent.config import DurationTooLong, parse_duration

    try:
        return clock.now() - parse_duration(text)
    except DurationTooLong as exc:
        raise UsageError(f"--since: {exc}") from None
    except ValueError:
        return clock.parse_time(text)


def cmd_history(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since", help="Only events at or after TIME (ISO 8601) or "
                                              "within a duration (7d, 12h).", show_default=False)] = None,
    tier: Annotated[str | None, typer.Option("--tier", "-t", help="Only this tier.", show_default=False)] = None,
    command: Annotated[str | None, typer.Option("--command", help="Only this command (take, gc, verify, "
                                                "restore, forget, import).", show_default=False)] = None,
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Only the newest N.", min=1,
                                              show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the history log: one event per take, gc, verify, restore, import and failure."""
    from snapstore.agent.history import filter_events, read_events

    app: AppContext = ctx.obj
    path = app.history_path()
    read = read_events(path)
    events = filter_events(read.events, since=_parse_since(since) if since else None, tier=tier, command=command)
    if limit:
        events = events[-limit:]
    if read.bad_lines:
        warn(f"snap: warning: {read.bad_lines} line(s) of {path} are not JSON events")
    if json_out:
        emit_json(events)
        return
    if not events:
        echo(f"no events in {path}")
        return
    rows = [("TIME (UTC)", "COMMAND", "TIER/AGENT", "RESULT", "SNAPSHOT", "FILES", "SIZE", "NEW", "SECONDS")]
    for e in events:
        command = str(e.get("command", "")) + (f" {e['step']}" if e.get("step") else "")  # recover's steps
        command += " (dry run)" if e.get("dry_run") else ""
        rows.append((str(e.get("time", "")), command, str(e.get("tier", "") or e.get("agent", "") or ""),
                     str(e.get("result", "")), str(e.get("snapshot", "") or "")[:8],
                     str(e.get("files", "")), human_bytes(e["bytes"]) if "bytes" in e else "",
                     human_bytes(e["new_bytes"]) if "new_bytes" in e else "",
                     f"{e['duration_s']:.1f}" if isinstance(e.get("duration_s"), int | float) else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        line = "  ".join(c.ljust(w) if j < 5 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True)))
        note = (events[i - 1].get("error") or _audit_note(events[i - 1])) if i else None
        echo(line.rstrip() + (f"  {note}" if note else ""))


def _audit_note(event: dict[str, Any]) -> str:
    """What a gc, forget or restore event says it did, in a few words for the history table."""
    if "forgotten" in event:
        ids = ", ".join(str(f.get("id", ""))[:8] for f in event["forgotten"][:5])
        more = "..." if len(event["forgotten"]) > 5 else ""
        dry = "dry" if event.get("dry_run") else ""
        freed = event.get("would_free" if dry else "bytes_freed", 0) or 0
        return (f"{'would forget' if dry else 'forgot'} {len(event['forgotten'])}{': ' + ids + more if ids else ''}; "
                f"{'would free' if dry else 'freed'} {human_bytes(freed)}")
    if event.get("command") == "archive" and "removed" in event:
        kept = f", kept {len(event['kept'])}" if event.get("kept") else ""
        return f"removed {event['removed']}{kept}; freed {human_bytes(event.get('bytes_freed', 0) or 0)}"
    if event.get("command") == "archive" and event.get("dry_run"):
        return f"would archive and remove {event.get('selected', 0)}"
    if event.get("command") in ("restore", "recover") and event.get("target"):
        return f"{', '.join(map(str, event.get('paths', [])))} -> {event['target']}"
    return ""


# -- export / import ------------------------------------------------------------------------


def cmd_export(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Id prefix, latest, latest:TIER[,TIER], with @PATH: holding PATH.")],
    paths: Annotated[list[str] | None, typer.Argument(help="Paths inside the snapshot (default: all).",
                                                      show_default=False)] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Archive to write ('-' = stdout).")] = "",
    fmt: Annotated[str, typer.Option("--format", help="auto (from the name; stdout: gz), gz, zst or tar.")] = "auto",
    prefix: Annotated[str, typer.Option("--prefix", help="Put every member under this top directory "
                                        "(like the old STAMP/ archives).")] = "",
    host: HostOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a snapshot, or part of it, as a tar archive (streamed; memory stays small)."""
    from snapstore.agent.tarball import compression_for, export_tar
    from snapstore.view.vfs import SnapshotView

    app: AppContext = ctx.obj
    if not output:
        raise UsageError("-o FILE.tar.gz (or -o - for stdout) is required")
    if fmt not in ("auto", "gz", "zst", "tar"):
        raise UsageError("--format must be auto, gz, zst or tar")
    if json_out and output == "-":
        raise UsageError("--json cannot go with -o - (the archive is on stdout)")
    compression = compression_for(output, "none" if fmt == "tar" else fmt)
    with app.open("read") as repo:
        from snapstore.view.selectors import resolve_snapshot
        snap = resolve_snapshot(repo, snapshot, host=host)
        view = SnapshotView(repo)
        if output == "-":
            stats = export_tar(view, snap, paths or [], sys.stdout.buffer, compression=compression, prefix=prefix)
            sys.stdout.buffer.flush()
        else:
            target = os.path.abspath(output)
            tmp = f"{target}.snap-tmp-{os.getpid()}"
            try:
                with open(tmp, "wb") as handle:
                    stats = export_tar(view, snap, paths or [], handle, compression=compression, prefix=prefix)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
    for skipped in stats.skipped:
        warn(f"snap: warning: left out {skipped}")
    size = os.path.getsize(output) if output != "-" else None
    if json_out:
        emit_json({"snapshot": snap.id, "output": os.path.abspath(output), "compression": compression,
                   "archive_bytes": size, **stats.to_json()})
    elif output != "-":
        echo(f"exported {stats.members} members ({stats.files} files, {human_bytes(stats.bytes)}) of snapshot "
             f"{snap.short_id} to {output} ({human_bytes(size or 0)}, {compression})")
    elif not app.quiet:
        warn(f"exported {stats.members} members ({stats.files} files, {human_bytes(stats.bytes)}) of snapshot "
             f"{snap.short_id}")


def cmd_import(
    ctx: typer.Context,
    archives: Annotated[list[str], typer.Argument(help="tar archives (.tar.gz, .tgz, .tar.bz2, .tar.xz, .tar).")],
    tier: Annotated[str, typer.Option("--tier", "-t", help="Tier to file the snapshots under.")] = "imported",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Extra tag (repeatable).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Import existing tar backups as snapshots, oldest first, with the time from their names."""
    from snapstore.agent.tarball import archive_order, import_archive

    app: AppContext = ctx.obj
    imported: list[dict[str, Any]] = []
    already: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    first_error: SnapError | None = None
    archive_bytes = stored = 0
    with app.open("write") as repo:
        for archive in archive_order(archives):
            event = app.record(tier=tier, archive=os.path.abspath(archive))
            try:
                result = import_archive(repo, archive, tier=tier, tags=tuple(tag or ()))
            except Interrupted:
                raise
            except SnapError as exc:
                event.update(result="error", error=exc.message, exit_code=exc.exit_code)
                errors.append({"archive": archive, "error": exc.kind, "message": exc.message,
                               "exit_code": exc.exit_code})
                if first_error is None:
                    first_error = exc
                else:
                    warn(f"snap: error: {exc.message}")
                continue
            if result.already is not None:
                assert app.events is not None
                app.events[:] = [e for e in app.events if e is not event]
                already.append({"archive": archive, "snapshot": result.already.id})
                if not json_out and not app.quiet:
                    echo(f"{archive}: already imported as {result.already.short_id} ({tier})")
                continue
            assert result.taken is not None
            snap = result.taken.snapshot
            st = snap.stats
            size = os.path.getsize(archive)
            archive_bytes += size
            stored += st.new_bytes
            event.update(snapshot=snap.id, files=st.files, bytes=st.bytes, new_bytes=st.new_bytes,
                         duration_s=round(st.duration_s, 3), result="ok", exit_code=0)
            imported.append({**snap.summary(), "archive": archive, "archive_bytes": size,
                             "time_from": result.time_from, "stripped": result.stripped or None,
                             "skipped_members": result.skipped_members})
            for skipped in result.skipped_members:
                warn(f"snap: warning: {archive}: skipped {skipped}")
            if not json_out:
                strip = f", top directory {result.stripped}/ stripped" if result.stripped else ""
                echo(f"{archive}: snapshot {snap.short_id} ({tier}, {snap.time:%Y-%m-%d %H:%M:%S} UTC from the "
                     f"{result.time_from}{strip}): {st.files} files, {human_bytes(st.bytes)}, "
                     f"new {human_bytes(st.new_bytes)}")
    if json_out:
        emit_json({"imported": imported, "already_imported": already, "errors": errors,
                   "archive_bytes": archive_bytes, "stored_bytes": stored})
    elif imported:
        ratio = f" ({stored / archive_bytes:.1%} of the archives)" if archive_bytes else ""
        echo(f"imported {len(imported)} archive(s), {human_bytes(archive_bytes)}; new data stored "
             f"{human_bytes(stored)}{ratio}")
    if first_error is not None:
        raise first_error


def register(app: typer.Typer) -> None:
    app.command("due")(cmd_due)
    app.command("schedule")(cmd_schedule)
    app.command("watch")(cmd_watch)
    app.command("history")(cmd_history)
    app.command("export")(cmd_export)
    app.command("import")(cmd_import)
