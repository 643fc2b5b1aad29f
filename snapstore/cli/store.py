"""Core store commands: ``init``, ``take``, ``list``, ``restore``, ``ls``, ``cat``."""

from __future__ import annotations

import os
import stat
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from snapstore.cli.context import AppContext, HostOpt
from snapstore.cli.output import Progress, echo, emit_json, human_bytes, warn
from snapstore.errors import ExitCode, HookFailed, Interrupted, SnapError, UsageError

if TYPE_CHECKING:
    from snapstore.agent.schedule import TierStatus
    from snapstore.agent.tiers import TakeOptions, TierTake

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def cmd_init(
    ctx: typer.Context,
    location: Annotated[str | None, typer.Argument(help="Where: a directory or s3://BUCKET/PREFIX (default: "
                                                   "--repo, $SNAP_REPO, the config).", show_default=False)] = None,
    compression: Annotated[int, typer.Option("--compression", help="zstd level (0 = none).", min=0, max=22)] = 3,
    chunk_min: Annotated[int, typer.Option(help="FastCDC minimum chunk size (KiB).")] = 256,
    chunk_avg: Annotated[int, typer.Option(help="FastCDC average chunk size (KiB).")] = 1024,
    chunk_max: Annotated[int, typer.Option(help="FastCDC maximum chunk size (KiB).")] = 4096,
    encryption: Annotated[str, typer.Option("--encryption", help="repokey: encrypted, keys in the repository "
                                            "behind a password (default); none: plaintext.")] = "repokey",
    kdf: Annotated[str | None, typer.Option("--kdf-profile", help="Argon2id parameters of the first key: default, "
                                            "or test (test suites only). Else $SNAP_KDF_PROFILE.",
                                            show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a new, empty repository (encrypted unless --encryption none)."""
    from snapstore.format.chunker import ChunkerParams
    from snapstore.repo.repository import ENCRYPTION_SCHEME, Repository

    app: AppContext = ctx.obj
    if not (64 <= chunk_min * 1024 <= chunk_avg * 1024 <= chunk_max * 1024 <= 16 * 1024 * 1024):
        raise UsageError("chunk sizes must satisfy 1 <= min <= avg <= max <= 16384 KiB")
    if location:
        app.repo_arg = location
    path = app.repo_location()  # an absolute path, or the s3:// URL
    if encryption not in ("repokey", "none"):
        raise UsageError(f"unknown --encryption {encryption!r} (repokey or none)")
    password = None
    profile = "default"
    if encryption == "repokey":
        from snapstore.cli.keys import kdf_profile_choice
        from snapstore.repo.passwords import PasswordOptions

        profile = kdf_profile_choice(kdf)
        password = PasswordOptions().new(f"password for the new repository {path}: ", fall_back_to_current=True)
    config = Repository.init(
        path, chunker=ChunkerParams(chunk_min * 1024, chunk_avg * 1024, chunk_max * 1024),
        compression_level=compression, endpoint=app.s3_endpoint,
        encryption=ENCRYPTION_SCHEME if encryption == "repokey" else "none", password=password, kdf_profile=profile,
    )
    if config.encrypted:
        from snapstore.cli.keys import warn_kdf_profile

        warn_kdf_profile(profile)
    if json_out:
        emit_json({"repository": path, "id": config.id, "compression_level": compression,
                   "encryption": "repokey" if config.encrypted else "none"})
    else:
        what = "encrypted repository" if config.encrypted else "repository (not encrypted)"
        echo(f"created {what} {config.id[:8]} at {path}")


def render_take(app: AppContext, take: TierTake, *, json_out: bool) -> None:
    """The human report of one take (nothing with ``--json``), and its warnings."""
    snap = take.snapshot
    if snap is None:  # --if-changed and nothing changed
        since = take.unchanged_since
        if not json_out and since is not None:
            echo(f"unchanged since {since.short_id} ({take.tier}, {since.time:%Y-%m-%d %H:%M:%S} UTC); nothing taken")
        return
    st = snap.stats
    if not json_out and not app.quiet:
        rate = st.read_bytes / st.duration_s / 1e6 if st.duration_s > 0 else 0.0
        ratio = st.bytes / st.new_bytes if st.new_bytes else float("inf")
        if take.if_changed:
            echo(f"changed: {take.change}")
        echo(f"snapshot {snap.short_id} saved ({snap.tier}, {snap.time:%Y-%m-%d %H:%M:%S} UTC)")
        echo(f"  files {st.files}, dirs {st.dirs}, logical {human_bytes(st.bytes)}, "
             f"read {human_bytes(st.read_bytes)} at {rate:.0f} MB/s")
        echo(f"  new data stored {human_bytes(st.new_bytes)} (dedup+compression {ratio:.1f}x), "
             f"{st.duration_s:.2f} s")
        echo(f"  verified: {st.verified}")
        for place in take.taken.excluded if take.taken is not None else ():
            echo(f"  excluded: {place}")
    for message in st.warnings:
        warn(f"snap: warning: {message}")
    if st.changed:
        warn(f"snap: {st.changed} file(s) changed while they were read; stored as last read (exit {ExitCode.PARTIAL})")
    if snap.unapproved:
        warn(f"snap: warning: tier {snap.tier} requires approval: snapshot {snap.short_id} taken without "
             "--approved-by, marked unapproved")
    for missing in take.missing_optional:
        warn(f"snap: warning: optional source missing: {missing}")
    for problem in take.hook_warnings:
        warn(f"snap: warning: {problem}")
    if st.unreadable:
        for err in st.errors:
            warn(f"snap: warning: unreadable: {err}")
        warn(f"snap: {st.unreadable} file(s) could not be read; the snapshot lacks them (exit {ExitCode.PARTIAL})")


def record_take(app: AppContext, event: dict[str, Any], take: TierTake) -> None:
    """Fill the history event of one take (a take that took nothing leaves no event)."""
    snap = take.snapshot
    if snap is None:
        assert app.events is not None
        app.events[:] = [e for e in app.events if e is not event]
        return
    st = snap.stats
    event.update(take.history_fields(), result="partial" if take.exit_code else "ok", exit_code=take.exit_code)
    if st.unreadable:
        event["error"] = f"{st.unreadable} file(s) could not be read: {'; '.join(st.errors[:3])}"
    elif snap.unapproved:  # taken, but a person must hear of it (the alert) and see it (list, history)
        event.update(result="unapproved", error=f"tier {snap.tier} requires approval: taken without --approved-by")
    elif st.changed:
        event["error"] = f"{st.changed} file(s) changed while they were read: {'; '.join(st.warnings[:3])}"


def _take_due(app: AppContext, options: TakeOptions, *, json_out: bool) -> int:
    """``snap take --due``: render :func:`snapstore.agent.tiers.take_due` as it goes. The first
    error is raised at the end (its exit code is the command's), the others are printed as
    they happen."""
    from snapstore import clock
    from snapstore.agent import tiers

    cfg = tiers.config_with_tiers(app.config(), "snap take --due")
    current: dict[str, Any] = {}
    failures = 0

    def start(status: TierStatus) -> Progress:
        if not json_out and not app.quiet:
            echo(f"{status.tier}: due: {status.reason}")
        current["event"] = app.record(tier=status.tier)
        current["progress"] = progress = Progress(not app.quiet and not json_out)
        return progress

    def done(result: tiers.DueTake) -> None:
        nonlocal failures
        current["progress"].done()
        event = current.pop("event")
        if result.take is not None:  # committed, even when incomplete (then with the error below)
            record_take(app, event, result.take)
            render_take(app, result.take, json_out=json_out)
        if result.error is not None:
            exc = result.error
            event.update(result="error", error=exc.message, exit_code=exc.exit_code)
            if isinstance(exc, HookFailed) and exc.output:
                event["hook_output"] = exc.output
            if failures:  # the first one is raised at the end
                warn(f"snap: error: {result.status.tier}: {exc.message}")
            failures += 1

    with app.open("write") as repo:
        try:
            run = tiers.take_due(repo, cfg, now=clock.now(), options=options, on_start=start, on_done=done)
            if run.due:
                repo.compact_index()
        except Interrupted as exc:
            if "event" in current:
                current.pop("event").update(result="error", error=exc.message, exit_code=exc.exit_code)
            raise
    if not run.due:
        app.record_nothing()
    if json_out:
        emit_json(run.to_json())
    elif not run.due and not app.quiet:
        upcoming = run.next_slot()
        nxt = f"; next: {upcoming[1]} at {clock.format_time(upcoming[0])}" if upcoming else ""
        echo(f"nothing due{nxt}")
    if run.first_error is not None:
        raise run.first_error
    return run.exit_code


def cmd_take(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(help="Files and directories (default: the tier's sources).",
                                                      show_default=False)] = None,
    tier: Annotated[str, typer.Option("--tier", "-t", help="Tier to file the snapshot under.")] = "manual",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable; no spaces or commas).")] = None,
    approved_by: Annotated[str, typer.Option("--approved-by", metavar="NAME", help="Who approved this take "
                                             "(recorded in the snapshot and the history; tiers with "
                                             "require_approval alert without it).")] = "",
    reason: Annotated[str, typer.Option("--reason", metavar="TEXT", help="Why (with --approved-by).")] = "",
    ad_hoc: Annotated[bool, typer.Option("--ad-hoc", help="Take PATH... under a --tier the config does not "
                                         "define (it has no retention rule). PATH... with a tier the config "
                                         "defines is refused: that tier takes its configured sources.")] = False,
    compression: Annotated[int | None, typer.Option("--compression", help="zstd level for this take.",
                                                    min=0, max=22)] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", "-e", help="Glob on names or paths "
                                                      "(repeatable).")] = None,
    exclude_file: Annotated[list[str] | None, typer.Option("--exclude-file", metavar="FILE", help="Read "
                                                           "--exclude globs from FILE, one a line (# comments)."
                                                           )] = None,
    one_file_system: Annotated[bool, typer.Option("--one-file-system", "-x", help="Do not descend into "
                                                  "other file systems (mount points are stored empty).")] = False,
    exclude_caches: Annotated[bool, typer.Option("--exclude-caches", help="Leave out the contents of "
                                                 "directories tagged with a CACHEDIR.TAG (the tag stays).")] = False,
    stdin: Annotated[bool, typer.Option("--stdin", help="Take standard input (a database dump piped in) as "
                                        "one file, --stdin-name (streamed: memory stays small).")] = False,
    stdin_name: Annotated[str, typer.Option("--stdin-name", metavar="NAME", help="With --stdin: the file's "
                                            "path in the snapshot.")] = "stdin",
    verify: Annotated[str, typer.Option("--verify", help="After-take check: quick (re-read new packs), full "
                                        "(also decompress and hash every new chunk) or none.")] = "quick",
    due: Annotated[bool, typer.Option("--due", help="Take every config tier whose schedule is due "
                                      "(see 'snap due'); run it from cron every few minutes.")] = False,
    if_changed: Annotated[bool, typer.Option("--if-changed", help="Take only if the sources differ from the "
                                             "tier's last snapshot (else print 'unchanged since ID').")] = False,
    json_out: JsonOpt = False,
) -> int:
    """Take a snapshot of PATH... (or of the tier's sources in the config file)."""
    from snapstore.agent.tiers import (
        TakeOptions,
        check_tier_choice,
        plan_tier,
        read_exclude_file,
        take_stdin,
        take_tier,
    )

    app: AppContext = ctx.obj
    excludes = tuple(exclude or ()) + tuple(p for f in exclude_file or () for p in read_exclude_file(f))
    options = TakeOptions(tags=tuple(tag or ()), compression=compression, verify=verify,
                          excludes=excludes, if_changed=if_changed, approved_by=approved_by,
                          reason=reason, one_file_system=one_file_system, exclude_caches=exclude_caches)
    if due:
        if paths or tier != "manual":
            raise UsageError("--due takes the config's due tiers: give no PATH and no --tier")
        return _take_due(app, options, json_out=json_out)
    if stdin and (paths or excludes or one_file_system or exclude_caches or if_changed):
        raise UsageError("--stdin takes standard input only: no PATH, --exclude, --one-file-system, "
                         "--exclude-caches or --if-changed")
    check_tier_choice(tier, app.config(), paths or ([stdin_name] if stdin else []), ad_hoc=ad_hoc)
    event = app.record(tier=tier)
    try:
        progress = Progress(not app.quiet and not json_out)
        if stdin:
            with app.open("write") as repo:
                take = take_stdin(repo, tier, stdin_name, sys.stdin.buffer, options=options, progress=progress)
        else:
            plan = plan_tier(tier, config=None if paths else app.config(), paths=paths or [], options=options)
            with app.open("write") as repo:
                take = take_tier(repo, plan, progress=progress)
                repo.compact_index()
        progress.done()
    except SnapError as exc:
        event.update(result="error", error=exc.message, exit_code=exc.exit_code)
        if isinstance(exc, HookFailed) and exc.output:  # a failed before hook: its last lines, for the alert
            event["hook_output"] = exc.output
        raise
    record_take(app, event, take)
    render_take(app, take, json_out=json_out)
    if json_out:
        emit_json(take.to_json())
    problem = take.incomplete_error()
    if problem is not None:  # the rest is committed; the take still fails (and alerts)
        event.update(result="incomplete", error=problem.message, exit_code=problem.exit_code)
        raise problem
    return take.exit_code


def cmd_list(
    ctx: typer.Context,
    tier: Annotated[str | None, typer.Option("--tier", "-t", help="Only this tier.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only snapshots with this tag.")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Only snapshots from this host.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List snapshots, oldest first."""
    app: AppContext = ctx.obj
    with app.open("read") as repo:
        snaps = repo.snapshots()
        pinned = repo.index.pinned()
    snaps = [s for s in snaps if (tier is None or s.tier == tier) and (tag is None or tag in s.tags)
             and (host is None or s.hostname == host)]
    if json_out:
        emit_json([{**s.summary(), "pinned": s.id in pinned} for s in snaps])
        return
    if not snaps:
        echo("no snapshots")
        return
    rows = [("ID", "TIME (UTC)", "TIER", "TAGS", "HOST", "FILES", "SIZE")]
    for s in snaps:
        mark = ("*" if s.id in pinned else "") + ("!" if s.incomplete else "") + ("?" if s.unapproved else "")
        rows.append((s.short_id + mark, f"{s.time:%Y-%m-%d %H:%M:%S}", s.tier,
                     ",".join(s.tags), s.hostname, str(s.stats.files), human_bytes(s.stats.bytes)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        echo("  ".join(c.ljust(w) if i < 5 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    legend = ("; * = pinned" if pinned & {s.id for s in snaps} else "") + (
        "; ! = incomplete (a required source was missing)" if any(s.incomplete for s in snaps) else "") + (
        "; ? = unapproved" if any(s.unapproved for s in snaps) else "")
    echo(f"{len(snaps)} snapshot(s)" + legend)


def cmd_restore(
    ctx: typer.Context,
    snapshot: Annotated[str | None, typer.Argument(help="Id prefix, latest, latest:TIER[,TIER], @PATH (none with "
                                                   "--latest-good).", show_default=False)] = None,
    paths: Annotated[list[str] | None, typer.Argument(help="Paths inside the snapshot (default: all).",
                                                      show_default=False)] = None,
    target: Annotated[str, typer.Option("--target", "-t", help="Directory to restore into.")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Restore into a non-empty target, "
                                            "replacing files.")] = False,
    mirror: Annotated[bool, typer.Option("--mirror", help="Roll back: the restored paths end equal to the "
                                         "snapshot; what it lacks is moved to TARGET/.snap-aside/, not deleted "
                                         "(paths its tier does not cover are left alone).")] = False,
    partial: Annotated[bool, typer.Option("--partial", help="Write what can be read of damaged files; "
                                          "fill holes with zeros and list them.")] = False,
    latest_good: Annotated[str | None, typer.Option("--latest-good", metavar="PATH", help="Restore the newest "
                                                    "copy of the file PATH that passes the checks to "
                                                    "TARGET/PATH, keeping the live file as "
                                                    "PATH.corrupt-<time>. An absolute PATH goes back to its "
                                                    "live path with --target /.", show_default=False)] = None,
    check: Annotated[list[str] | None, typer.Option("--check", help="With --latest-good: 'json' (the copy "
                                                    "must parse as JSON).", show_default=False)] = None,
    check_cmd: Annotated[str | None, typer.Option("--check-cmd", help="With --latest-good: shell command run "
                                                  "on a temp copy ({} or appended), exit 0 passes.",
                                                  show_default=False)] = None,
    tier: Annotated[str | None, typer.Option("--tier", help="With --latest-good: only this tier's snapshots.",
                                             show_default=False)] = None,
    host: HostOpt = None,
    json_out: JsonOpt = False,
) -> int:
    """Restore a snapshot, or some of its files, into a directory."""
    from snapstore.ops.restore import restore_snapshot
    from snapstore.view.vfs import SnapshotView

    app: AppContext = ctx.obj
    if not target:
        raise UsageError("--target DIR is required")
    if latest_good is not None:
        if snapshot is not None or paths:
            raise UsageError("--latest-good searches every snapshot for one file: give no SNAPSHOT or PATH")
        if os.path.isabs(latest_good) and os.path.abspath(target) != "/":
            # the snapshot holds an absolute source under its path without the leading slash:
            # only --target / puts it back at the live path (the damaged one moved aside)
            warn(f"snap: warning: {latest_good} is absolute: the good copy goes under {target}, not to the live "
                 "file; use --target / to restore it in place")
        return _restore_latest_good(app, latest_good, target, check or [], check_cmd, tier, overwrite, json_out,
                                    host)
    if check or check_cmd or tier:
        raise UsageError("--check, --check-cmd and --tier go with --latest-good")
    if mirror and partial:
        raise UsageError("--mirror restores exactly: it does not go with --partial")
    if snapshot is None:
        raise UsageError("missing argument SNAPSHOT (an id prefix, 'latest' or 'latest:TIER[,TIER]', '@PATH')")
    progress = Progress(not app.quiet and not json_out)
    with app.open("read") as repo:
        from snapstore.view.selectors import resolve_snapshot
        snap = resolve_snapshot(repo, snapshot, host=host)
        moved = None
        if mirror:
            from snapstore.ops.mirror import mirror_restore

            mirrored = mirror_restore(SnapshotView(repo), snap, paths or [], target, progress=progress)
            stats, moved = mirrored.stats, mirrored.plan
        else:
            stats = restore_snapshot(SnapshotView(repo), snap, paths or [], target, overwrite=overwrite,
                                     partial=partial, progress=progress)
        fetched = repo.fetched_bytes()  # remote: what the restore (and the index sync) downloaded
    progress.done()
    app.record(snapshot=snap.id, tier=snap.tier, files=stats.files, bytes=stats.bytes,
               duration_s=round(stats.duration_s, 3), target=os.path.abspath(target),
               paths=list(paths) if paths else ["(all)"], mode="mirror" if mirror else "restore",
               moved_aside=len(moved.moves) if moved else None, aside=moved.aside if moved and moved.moves else None)
    if json_out:
        emit_json({"snapshot": snap.id, "target": os.path.abspath(target), **stats.to_json(),
                   **(moved.to_json() if moved else {}),
                   **({"fetched_bytes": fetched} if fetched is not None else {})})
    else:
        rate = stats.bytes / stats.duration_s / 1e6 if stats.duration_s > 0 else 0.0
        if moved and moved.moves and not app.quiet:
            echo(f"moved aside {len(moved.moves)} entr{'y' if len(moved.moves) == 1 else 'ies'} not in snapshot "
                 f"{snap.short_id} to {moved.aside}")
        if not app.quiet:
            echo(f"restored {stats.files} files, {stats.dirs} dirs, {human_bytes(stats.bytes)} from snapshot "
                 f"{snap.short_id} into {os.path.abspath(target)} ({stats.duration_s:.2f} s, {rate:.0f} MB/s)")
        for hole in stats.holes:
            warn(f"snap: zero-filled: {hole}")
        for skipped in stats.skipped:
            warn(f"snap: skipped: {skipped}")
        if stats.leftovers_removed:
            warn(f"snap: removed {stats.leftovers_removed} temporary file(s) left by an interrupted restore")
    for err in stats.errors:
        warn(f"snap: error: {err}")
    if stats.errors:
        warn(f"snap: {len(stats.errors)} item(s) could not be restored")
        return ExitCode.PARTIAL
    return ExitCode.PARTIAL if stats.holes else ExitCode.OK


def _restore_latest_good(app: AppContext, path: str, target: str, checks: list[str], check_cmd: str | None,
                         tier: str | None, overwrite: bool, json_out: bool, host: str | None = None) -> int:
    from snapstore.agent.latestgood import NOT_IN_SNAPSHOT, Check, check_command, check_json, restore_latest_good
    from snapstore.errors import NotFound
    from snapstore.view.vfs import SnapshotView

    funcs: list[Check] = []
    for name in checks:
        if name != "json":
            raise UsageError(f"--check {name!r}: the known check is 'json' (use --check-cmd for others)")
        funcs.append(check_json)
    if check_cmd:
        funcs.append(check_command(check_cmd))
    if not funcs:
        raise UsageError("--latest-good needs --check json and/or --check-cmd CMD")
    event = app.record(path=path, tier=tier)
    with app.open("read") as repo:
        snaps = [s for s in repo.snapshots()
                 if (tier is None or s.tier == tier) and (host is None or s.hostname == host)]
        result = restore_latest_good(SnapshotView(repo), snaps, path, target, funcs, overwrite=overwrite)
    if result.used is not None:
        event.update(snapshot=result.used.id, tier=result.used.tier, files=1, skipped=len(result.skipped),
                     paths=[result.path], target=os.path.abspath(target), mode="latest-good")
    if json_out:
        emit_json(result.to_json())
    else:
        absent = [snap for snap, why in result.skipped if why == NOT_IN_SNAPSHOT]
        for snap, why in result.skipped:
            if why != NOT_IN_SNAPSHOT:
                echo(f"skipped {snap.short_id} ({snap.tier}, {snap.time:%Y-%m-%d %H:%M:%S}): {why}")
        if absent:
            echo(f"skipped {len(absent)} snapshot(s) without {result.path}")
        if result.live_ok and result.used is None:
            echo(f"the live file {result.destination} passes the checks; nothing restored "
                 "(--overwrite replaces it anyway)")
        if result.used is not None:
            if result.kept_aside:
                echo(f"kept the live file ({result.live_problem}) as {result.kept_aside}")
            echo(f"restored {result.path} from snapshot {result.used.short_id} ({result.used.tier}, "
                 f"{result.used.time:%Y-%m-%d %H:%M:%S} UTC) to {result.destination}")
    if result.used is None and not result.live_ok:
        tried = f"{len(snaps)} snapshot(s)" + (f" of tier {tier!r}" if tier else "")
        raise NotFound(f"no copy of {result.path} in {tried} passes the checks; nothing was changed")
    if result.used is None:
        app.events = []  # the live file passes: nothing was done
    return ExitCode.OK


def _mode_string(mode: int) -> str:
    return stat.filemode(mode)


def cmd_ls(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Id prefix, latest, latest:TIER[,TIER], with @PATH: holding PATH.")],
    path: Annotated[str, typer.Argument(help="Path inside the snapshot.")] = "",
    recursive: Annotated[bool, typer.Option("--recursive", "-R", help="List everything below PATH.")] = False,
    long: Annotated[bool, typer.Option("--long", "-l", help="Mode, owner, size and time.")] = False,
    host: HostOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the entries of a directory in a snapshot."""
    from snapstore.format.tree import DIR, KIND_NAMES
    from snapstore.view.vfs import SnapshotView, as_bytes_path, show_path

    app: AppContext = ctx.obj
    with app.open("read") as repo:
        from snapstore.view.selectors import resolve_snapshot
        snap = resolve_snapshot(repo, snapshot, host=host)
        view = SnapshotView(repo)
        base = as_bytes_path(path)
        entry = view.lookup(snap, base)
        if recursive:
            items = [(p, e) for p, e in view.walk(entry, base) if p != base or entry.kind != DIR]
        elif entry.kind == DIR:
            items = [((base + b"/" + e.name) if base else e.name, e) for e in view.listdir(entry)]
        else:
            items = [(base, entry)]
        rows = []
        for rel, e in items:
            rows.append({
                "path": show_path(rel), "name": show_path(e.name), "type": KIND_NAMES[e.kind],
                "mode": oct(stat.S_IMODE(e.mode)), "uid": e.uid, "gid": e.gid, "user": e.user, "group": e.group,
                "size": e.size, "mtime_ns": e.mtime_ns,
                **({"target": show_path(e.target)} if e.target else {}),
            })
    if json_out:
        emit_json(rows)
        return
    from datetime import UTC, datetime

    for row, (_rel, e) in zip(rows, items, strict=True):
        name = str(row["path"]) + ("/" if e.kind == DIR else "") + (f" -> {row['target']}" if e.target else "")
        if long:
            when = datetime.fromtimestamp(e.mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
            owner = f"{e.user or e.uid}/{e.group or e.gid}"
            echo(f"{_mode_string(e.mode)} {owner:>14} {e.size:>12} {when} {name}")
        else:
            echo(name)


def cmd_cat(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Id prefix, latest, latest:TIER[,TIER], with @PATH: holding PATH.")],
    path: Annotated[str, typer.Argument(help="File inside the snapshot.")],
    host: HostOpt = None,
) -> None:
    """Write one file of a snapshot to stdout."""
    from snapstore.errors import PathNotFound
    from snapstore.format.tree import FILE
    from snapstore.view.vfs import SnapshotView, show_path

    app: AppContext = ctx.obj
    with app.open("read") as repo:
        from snapstore.view.selectors import resolve_snapshot
        snap = resolve_snapshot(repo, snapshot, host=host)
        view = SnapshotView(repo)
        entry = view.lookup(snap, path)
        if entry.kind != FILE:
            raise PathNotFound(f"not a regular file in snapshot {snap.short_id}: {show_path(entry.name) or '/'}")
        out = sys.stdout.buffer
        for data in view.iter_file(entry):
            out.write(data)
        out.flush()


def register(app: typer.Typer) -> None:
    app.command("init")(cmd_init)
    app.command("take")(cmd_take)
    app.command("list")(cmd_list)
    app.command("restore")(cmd_restore)
    app.command("ls")(cmd_ls)
    app.command("cat")(cmd_cat)
