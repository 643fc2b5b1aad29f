"""Core store commands: ``init``, ``take``, ``list``, ``restore``, ``ls``, ``cat``."""

from __future__ import annotations

import os
import stat
import sys
from typing import Annotated

import typer

from snapstore.cli.context import AppContext
from snapstore.cli.output import Progress, echo, emit_json, human_bytes, warn
from snapstore.errors import ExitCode, UsageError

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def cmd_init(
    ctx: typer.Context,
    compression: Annotated[int, typer.Option("--compression", help="zstd level (0 = none).", min=0, max=22)] = 3,
    chunk_min: Annotated[int, typer.Option(help="FastCDC minimum chunk size (KiB).")] = 256,
    chunk_avg: Annotated[int, typer.Option(help="FastCDC average chunk size (KiB).")] = 1024,
    chunk_max: Annotated[int, typer.Option(help="FastCDC maximum chunk size (KiB).")] = 4096,
    json_out: JsonOpt = False,
) -> None:
    """Create a new, empty repository."""
    from snapstore.chunker import ChunkerParams
    from snapstore.repository import Repository

    app: AppContext = ctx.obj
    if not (64 <= chunk_min * 1024 <= chunk_avg * 1024 <= chunk_max * 1024 <= 16 * 1024 * 1024):
        raise UsageError("chunk sizes must satisfy 1 <= min <= avg <= max <= 16384 KiB")
    path = os.path.abspath(app.repo_path())
    config = Repository.init(
        path, chunker=ChunkerParams(chunk_min * 1024, chunk_avg * 1024, chunk_max * 1024),
        compression_level=compression,
    )
    if json_out:
        emit_json({"repository": path, "id": config.id, "compression_level": compression})
    else:
        echo(f"created repository {config.id[:8]} at {path}")


def _sources_for(app: AppContext, paths: list[str], tier: str) -> tuple[list, bool]:
    """Sources as ``Source`` objects: the given paths, else the tier's sources from the config."""
    from snapstore.backup import source_for

    if paths:
        return [source_for(p, os.getcwd()) for p in paths], False
    cfg = app.config()
    if cfg is None:
        raise UsageError("no paths given and no config file with tiers (give PATH... or --config)")
    base = str(cfg.base_dir)
    cfg.tier(tier)  # unknown tier: ConfigError naming the known ones
    # config sources resolve to absolute paths; inside the config's directory they keep their
    # relative form in the snapshot (agents/Z/...), like paths given on the command line.
    return [source_for(os.path.relpath(p, base), base) for p in cfg.resolve_sources(tier)], True


def cmd_take(
    ctx: typer.Context,
    paths: Annotated[list[str] | None, typer.Argument(help="Files and directories (default: the tier's sources).",
                                                      show_default=False)] = None,
    tier: Annotated[str, typer.Option("--tier", "-t", help="Tier to file the snapshot under.")] = "manual",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    compression: Annotated[int | None, typer.Option("--compression", help="zstd level for this take.",
                                                    min=0, max=22)] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", "-e", help="Glob on names or paths "
                                                      "(repeatable).")] = None,
    verify: Annotated[str, typer.Option("--verify", help="After-take check: quick (re-read new packs), full "
                                        "(also decompress and hash every new chunk) or none.")] = "quick",
    json_out: JsonOpt = False,
) -> int:
    """Take a snapshot of PATH... (or of the tier's sources in the config file)."""
    from snapstore.backup import take_snapshot

    app: AppContext = ctx.obj
    if verify not in ("quick", "full", "none"):
        raise UsageError("--verify must be quick, full or none")
    sources, _from_config = _sources_for(app, paths or [], tier)
    level = compression
    tags = list(tag or ())
    if _from_config:
        tier_config = app.config().tier(tier)
        level = tier_config.compression_level if level is None else level
        tags += [t for t in tier_config.tags if t not in tags]
    progress = Progress(not app.quiet and not json_out)
    with app.open("write") as repo:
        result = take_snapshot(repo, sources, tier=tier, tags=tuple(tags), level=level, verify=verify,
                               excludes=exclude or [], progress=progress)
    progress.done()
    snap = result.snapshot
    st = snap.stats
    if json_out:
        out = snap.summary()
        out.update({"dirs": st.dirs, "read_bytes": st.read_bytes, "new_chunks": st.new_chunks,
                    "verified": st.verified, "errors": list(st.errors)})
        emit_json(out)
    else:
        rate = st.read_bytes / st.duration_s / 1e6 if st.duration_s > 0 else 0.0
        ratio = st.bytes / st.new_bytes if st.new_bytes else float("inf")
        echo(f"snapshot {snap.short_id} saved ({snap.tier}, {snap.time:%Y-%m-%d %H:%M:%S} UTC)")
        echo(f"  files {st.files}, dirs {st.dirs}, logical {human_bytes(st.bytes)}, "
             f"read {human_bytes(st.read_bytes)} at {rate:.0f} MB/s")
        echo(f"  new data stored {human_bytes(st.new_bytes)} (dedup+compression {ratio:.1f}x), "
             f"{st.duration_s:.2f} s")
        echo(f"  verified: {st.verified}")
    if st.unreadable:
        for err in st.errors:
            warn(f"snap: warning: unreadable: {err}")
        warn(f"snap: {st.unreadable} file(s) could not be read; the snapshot lacks them (exit {ExitCode.PARTIAL})")
        return ExitCode.PARTIAL
    return ExitCode.OK


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
        rows.append((s.short_id + ("*" if s.id in pinned else ""), f"{s.time:%Y-%m-%d %H:%M:%S}", s.tier,
                     ",".join(s.tags), s.hostname, str(s.stats.files), human_bytes(s.stats.bytes)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        echo("  ".join(c.ljust(w) if i < 5 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    echo(f"{len(snaps)} snapshot(s)" + ("; * = pinned" if pinned & {s.id for s in snaps} else ""))


def cmd_restore(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Id prefix, 'latest' or 'latest:TIER'.")],
    paths: Annotated[list[str] | None, typer.Argument(help="Paths inside the snapshot (default: all).",
                                                      show_default=False)] = None,
    target: Annotated[str, typer.Option("--target", "-t", help="Directory to restore into.")] = "",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Restore into a non-empty target, "
                                            "replacing files.")] = False,
    partial: Annotated[bool, typer.Option("--partial", help="Write what can be read of damaged files; "
                                          "fill holes with zeros and list them.")] = False,
    json_out: JsonOpt = False,
) -> int:
    """Restore a snapshot, or some of its files, into a directory."""
    from snapstore.restore import restore_snapshot
    from snapstore.vfs import SnapshotView

    app: AppContext = ctx.obj
    if not target:
        raise UsageError("--target DIR is required")
    progress = Progress(not app.quiet and not json_out)
    with app.open("read") as repo:
        snap = repo.resolve(snapshot)
        stats = restore_snapshot(SnapshotView(repo), snap, paths or [], target, overwrite=overwrite,
                                 partial=partial, progress=progress)
    progress.done()
    if json_out:
        emit_json({"snapshot": snap.id, "target": os.path.abspath(target), **stats.to_json()})
    else:
        rate = stats.bytes / stats.duration_s / 1e6 if stats.duration_s > 0 else 0.0
        echo(f"restored {stats.files} files, {stats.dirs} dirs, {human_bytes(stats.bytes)} from snapshot "
             f"{snap.short_id} into {os.path.abspath(target)} ({stats.duration_s:.2f} s, {rate:.0f} MB/s)")
        for hole in stats.holes:
            warn(f"snap: zero-filled: {hole}")
    for err in stats.errors:
        warn(f"snap: error: {err}")
    if stats.errors:
        warn(f"snap: {len(stats.errors)} item(s) could not be restored")
        return ExitCode.PARTIAL
    return ExitCode.PARTIAL if stats.holes else ExitCode.OK


def _mode_string(mode: int) -> str:
    return stat.filemode(mode)


def cmd_ls(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Id prefix, 'latest' or 'latest:TIER'.")],
    path: Annotated[str, typer.Argument(help="Path inside the snapshot.")] = "",
    recursive: Annotated[bool, typer.Option("--recursive", "-R", help="List everything below PATH.")] = False,
    long: Annotated[bool, typer.Option("--long", "-l", help="Mode, owner, size and time.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """List the entries of a directory in a snapshot."""
    from snapstore.tree import DIR, KIND_NAMES
    from snapstore.vfs import SnapshotView, as_bytes_path, show_path

    app: AppContext = ctx.obj
    with app.open("read") as repo:
        snap = repo.resolve(snapshot)
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
        name = row["path"] + ("/" if e.kind == DIR else "") + (f" -> {row['target']}" if e.target else "")
        if long:
            when = datetime.fromtimestamp(e.mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
            owner = f"{e.user or e.uid}/{e.group or e.gid}"
            echo(f"{_mode_string(e.mode)} {owner:>14} {e.size:>12} {when} {name}")
        else:
            echo(name)


def cmd_cat(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Id prefix, 'latest' or 'latest:TIER'.")],
    path: Annotated[str, typer.Argument(help="File inside the snapshot.")],
) -> None:
    """Write one file of a snapshot to stdout."""
    from snapstore.errors import PathNotFound
    from snapstore.tree import FILE
    from snapstore.vfs import SnapshotView, show_path

    app: AppContext = ctx.obj
    with app.open("read") as repo:
        snap = repo.resolve(snapshot)
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
