"""What changed: ``snap diff`` (two snapshots) and ``snap versions`` (one path over time).

Thin layer: resolves snapshots and paths, calls :mod:`snapstore.view.diff`, :mod:`snapstore.view.jsondiff`
and :mod:`snapstore.view.versions`, and renders the result (human text, or one JSON document with
``--json``). docs/diff.md documents both commands and their output.
"""

from __future__ import annotations

import stat as statmod
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from snapstore.cli.context import AppContext, HostOpt
from snapstore.cli.output import echo, emit_json, human_bytes
from snapstore.errors import PathNotFound, SnapshotNotFound, UsageError

if TYPE_CHECKING:
    from snapstore.format.snapshot import Snapshot
    from snapstore.format.tree import Entry
    from snapstore.view.diff import Change, ContentDiff, DiffSummary
    from snapstore.view.vfs import SnapshotView

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
SNAP_HELP = "Id prefix, latest, latest:TIER[,TIER...], each with optional @PATH (the newest holding PATH)."
INDENT = "    "


# -- rendering helpers --------------------------------------------------------------------
def _signed(n: int) -> str:
    return ("+" if n >= 0 else "-") + human_bytes(abs(n))


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {9: "\\t", 10: "\\n", 13: "\\r"}


def _human(raw: bytes) -> str:
    """A path or link target for one output line: control characters escaped (``\\n``)."""
    from snapstore.view.vfs import show_path

    return show_path(raw).translate(_CONTROL)


def _snap_json(snap: Snapshot) -> dict[str, Any]:
    from snapstore.clock import format_time

    return {"id": snap.id, "short_id": snap.short_id, "time": format_time(snap.time), "tier": snap.tier,
            **({"approved_by": snap.approved_by} if snap.approved_by else {}),
            **({"unapproved": True} if snap.unapproved else {})}


def _snap_line(snap: Snapshot) -> str:
    approval = f"  approved by {snap.approved_by}" if snap.approved_by else ("  UNAPPROVED" if snap.unapproved else "")
    return f"{snap.short_id}  {snap.time:%Y-%m-%d %H:%M:%S} UTC  {snap.tier}{approval}"


def _entry_json(entry: Entry) -> dict[str, Any]:
    from snapstore.format.tree import FILE, KIND_NAMES
    from snapstore.view.vfs import show_path

    out: dict[str, Any] = {
        "type": KIND_NAMES[entry.kind], "size": entry.size if entry.kind == FILE else 0,
        "mode": oct(statmod.S_IMODE(entry.mode)), "mtime_ns": entry.mtime_ns, "uid": entry.uid,
        "gid": entry.gid, "user": entry.user, "group": entry.group,
    }
    if entry.target:
        out["target"] = show_path(entry.target)
    return out


def _owner(entry: Entry) -> str:
    return f"{entry.user or entry.uid}:{entry.group or entry.gid}"


def _field_detail(name: str, old: Entry, new: Entry) -> str:

    if name == "mode":
        return f"mode {statmod.S_IMODE(old.mode):04o} -> {statmod.S_IMODE(new.mode):04o}"
    if name == "mtime":
        return f"mtime {_when(old.mtime_ns)} -> {_when(new.mtime_ns)}"
    if name == "owner":
        return f"owner {_owner(old)} -> {_owner(new)}"
    if name == "target":
        return f"target {_human(old.target)} -> {_human(new.target)}"
    return name


def _describe(change: Change) -> str:
    """One line: kind, path (``/`` after directories) and the sizes or fields that changed."""
    from snapstore.format.tree import DIR, FILE, KIND_NAMES, SYMLINK
    from snapstore.view.diff import ADDED, MODIFIED, REMOVED

    entry = change.entry
    path = _human(change.path) + ("/" if entry.kind == DIR else "")
    if change.kind in (ADDED, REMOVED):
        if entry.kind == FILE:
            detail = f"{human_bytes(entry.size)} ({_signed(change.size_delta)})"
        elif entry.kind == SYMLINK:
            detail = f"-> {_human(entry.target)}"
        else:
            detail = KIND_NAMES[entry.kind]
    else:
        assert change.old is not None and change.new is not None
        parts = []
        if change.kind == MODIFIED and entry.kind == FILE:
            parts.append(f"{human_bytes(change.old_size)} -> {human_bytes(change.new_size)} "
                         f"({_signed(change.size_delta)})")
        elif change.kind == MODIFIED:
            parts.append("device number")
        hidden = {"content", "mtime"} if change.kind == MODIFIED else {"content"}
        parts.extend(_field_detail(f, change.old, change.new) for f in change.fields if f not in hidden)
        detail = "; ".join(parts)
    return f"{change.kind:<9} {path}  {detail}".rstrip()


def _summary_line(summary: DiffSummary) -> str:
    """``1 added (+34 B), 2 modified (+120 B), 1 metadata only; net +154 B`` (zero counts left out)."""
    if not summary.total:
        return "no differences"
    parts = []
    if summary.added:
        parts.append(f"{summary.added} added ({_signed(summary.added_bytes)})")
    if summary.removed:
        parts.append(f"{summary.removed} removed (-{human_bytes(summary.removed_bytes)})")
    if summary.modified:
        parts.append(f"{summary.modified} modified ({_signed(summary.modified_delta)})")
    if summary.metadata:
        parts.append(f"{summary.metadata} metadata only")
    return ", ".join(parts) + f"; net {_signed(summary.net_delta)}"


# -- diff ---------------------------------------------------------------------------------
def _lookup(view: SnapshotView, snap: Snapshot, path: bytes) -> Entry | None:
    from snapstore.view.compare import lookup_or_none

    return lookup_or_none(view, snap, path)


def _content_lines(result: ContentDiff) -> list[str]:
    from snapstore.view.diff import JSON, TEXT

    out = [f"note: {result.note}"] if result.note else []
    if result.kind == TEXT:
        out.extend(result.lines)
    elif result.kind == JSON:
        out.extend(c.describe() for c in result.json_changes)
    return [INDENT + line for line in out]


def cmd_diff(
    ctx: typer.Context,
    snap_a: Annotated[str, typer.Argument(help=f"The old snapshot. {SNAP_HELP}")],
    snap_b: Annotated[str | None, typer.Argument(
        help="The new snapshot (default: the newest of SNAP_A's tier; when SNAP_A is "
        "the newest, the one before it is compared with SNAP_A).", show_default=False)] = None,
    path: Annotated[list[str] | None, typer.Option(
        "--path", "-p", help="Only this path inside the snapshots (repeatable).", show_default=False)] = None,
    content: Annotated[bool, typer.Option("--content", help="Show how modified files differ: unified diff "
                                          "for text, key-level diff for JSON.")] = False,
    stat: Annotated[bool, typer.Option("--stat", help="Only the summary: counts and byte totals.")] = False,
    max_size: Annotated[int, typer.Option("--max-size", help="Largest file (bytes per side) --content "
                                          "compares.", min=0)] = 1024 * 1024,
    host: HostOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show what changed from SNAP_A to SNAP_B: added, removed, modified and metadata-only entries."""
    from snapstore.view.compare import iter_changes, pick_pair
    from snapstore.view.diff import Tally, prune_nested
    from snapstore.view.vfs import SnapshotView, as_bytes_path, show_path

    app: AppContext = ctx.obj
    if stat and content:
        raise UsageError("--stat and --content cannot be combined")
    tally = Tally()
    with app.open("read") as repo:
        old, new = pick_pair(repo, snap_a, snap_b, host=host)
        view = SnapshotView(repo)
        paths = prune_nested(as_bytes_path(p) for p in (path or [])) or [b""]
        changes = iter_changes(view, old, new, paths)
        if json_out:
            rows: list[dict[str, Any]] = []
            for change in changes:
                tally.add(change)
                if not stat:
                    rows.append(_change_json(view, change, content, max_size))
            out: dict[str, Any] = {"from": _snap_json(old), "to": _snap_json(new),
                                   "paths": [show_path(p) for p in paths if p],
                                   "summary": tally.summary().to_json()}
            if not stat:
                out["changes"] = rows
            emit_json(out)
            return
        echo(f"--- {_snap_line(old)}")
        echo(f"+++ {_snap_line(new)}")
        for change in changes:
            tally.add(change)
            if stat:
                continue
            echo(_describe(change))
            if content:
                from snapstore.view.compare import content_of

                result = content_of(view, change, max_size)
                if result is not None:
                    for line in _content_lines(result):
                        echo(line)
    echo(_summary_line(tally.summary()))


def _change_json(view: SnapshotView, change: Change, content: bool, max_size: int) -> dict[str, Any]:
    from snapstore.view.compare import content_of
    from snapstore.view.vfs import show_path

    row: dict[str, Any] = {"change": change.kind, "path": show_path(change.path),
                           "type": _entry_json(change.entry)["type"], "fields": list(change.fields),
                           "size_delta": change.size_delta}
    if change.old is not None:
        row["old"] = _entry_json(change.old)
    if change.new is not None:
        row["new"] = _entry_json(change.new)
    if content:
        result = content_of(view, change, max_size)
        if result is not None:
            row["content"] = result.to_json()
    return row


# -- versions -----------------------------------------------------------------------------
def cmd_versions(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Path inside the snapshots (file, directory or symlink).")],
    tier: Annotated[str | None, typer.Option("--tier", "-t", help="Only snapshots of this tier.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the distinct versions of PATH across snapshots, oldest first."""
    from snapstore.format.tree import KIND_NAMES
    from snapstore.view.versions import collect_versions
    from snapstore.view.vfs import SnapshotView, as_bytes_path, show_path

    app: AppContext = ctx.obj
    rel = as_bytes_path(path)
    with app.open("read") as repo:
        snaps = [s for s in repo.snapshots() if tier is None or s.tier == tier]
        if not snaps:
            where = f" in tier {tier!r}" if tier is not None else ""
            raise SnapshotNotFound(f"no snapshot{where} in this repository")
        view = SnapshotView(repo)
        history = collect_versions((s, _lookup(view, s, rel)) for s in snaps)
    shown = show_path(rel) or "/"
    if not history.present:
        raise PathNotFound(f"path not in any of {history.searched} snapshot(s): {shown}")
    if json_out:
        emit_json({
            "path": shown, "tier": tier, "snapshots_searched": history.searched,
            "snapshots_present": history.present, "distinct_contents": history.distinct,
            "versions": [{
                "version": v.number, "content_id": v.content_id, "type": KIND_NAMES[v.kind], "size": v.size,
                "mtime_ns": v.mtime_ns, "first": _snap_json(v.first), "last": _snap_json(v.last),
                "snapshots": v.snapshots, "same_as": v.same_as,
            } for v in history.versions],
        })
        return
    absent = f", absent from {history.absent}" if history.absent else ""
    echo(f"{_human(rel) or '/'}: {len(history.versions)} version(s) in {history.searched} snapshot(s){absent}")
    rows = [("#", "FIRST", "LAST", "SNAPS", "SIZE", "MTIME (UTC)", "CONTENT")]
    for v in history.versions:
        rows.append((
            str(v.number), f"{v.first.short_id} {v.first.time:%Y-%m-%d %H:%M}",
            f"{v.last.short_id} {v.last.time:%Y-%m-%d %H:%M}", str(v.snapshots),
            human_bytes(v.size) if v.kind != "d" else "dir", _when(v.mtime_ns),
            v.content_id[:12] + (f" (same as #{v.same_as})" if v.same_as else ""),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {0, 3, 4}
    for r in rows:
        echo("  ".join(c.rjust(w) if i in right else c.ljust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())


def register(app: typer.Typer) -> None:
    app.command("diff")(cmd_diff)
    app.command("versions")(cmd_versions)
