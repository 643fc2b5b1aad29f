"""``snap stats``: storage figures (:mod:`snapstore.ops.stats`) and the in-memory dedup trial of
``--what-if`` (:mod:`snapstore.ops.whatif`). Parsing and rendering only; docs/cli.md defines the
figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from snapstore.cli.context import AppContext
from snapstore.cli.output import echo, emit_json, human_bytes
from snapstore.errors import UsageError

if TYPE_CHECKING:
    from snapstore.ops.stats import StatsReport, Usage
    from snapstore.ops.whatif import TrialRow

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
BY = ("tier", "path", "snapshot")
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
          "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}


def parse_size_list(text: str, option: str) -> list[int]:
    """``256K,1M,2M`` -> bytes; a bare number is bytes."""
    out: list[int] = []
    for part in text.split(","):
        item = part.strip().upper()
        digits = item.rstrip("KMGIB")
        unit = item[len(digits):]
        try:
            value = int(float(digits) * _UNITS[unit])
        except (ValueError, KeyError):
            raise UsageError(f"{option}: {part.strip()!r} is not a size (e.g. 256K, 1M, 4M)") from None
        if not 256 <= value <= 4 * 1024 * 1024:
            raise UsageError(f"{option}: {part.strip()} is out of range (256 B to 4 MiB, for a maximum of 16 MiB)")
        out.append(value)
    return out


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(p) for p in text.split(",")]
    except ValueError:
        raise UsageError(f"--compression: {text!r} is not a list of zstd levels (e.g. 1,3,9)") from None
    if any(not 0 <= level <= 22 for level in levels):
        raise UsageError("--compression: zstd levels go from 0 (none) to 22")
    return levels


def _factor(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _size(value: int | float | None) -> str:
    return "-" if value is None else human_bytes(value)


def _table(rows: Sequence[tuple[str, ...]], right_from: int) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        echo("  ".join(c.rjust(w) if i >= right_from else c.ljust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())


def _usage_line(usage: Usage) -> str:
    return (f"logical {human_bytes(usage.logical_bytes)} in {usage.files} file(s); "
            f"{usage.chunks} distinct chunk(s), {human_bytes(usage.raw_bytes)} raw; "
            f"stored {human_bytes(usage.stored_bytes)} (trees {human_bytes(usage.tree_bytes)})")


def _render(report: StatsReport, by: str | None, location: str) -> None:
    t = report.totals
    chosen = len(report.chosen)
    which = "all" if chosen == report.all_snapshots else f"{chosen} of"
    echo(f"repository {location}: {which} {report.all_snapshots} snapshot(s), packs {human_bytes(report.pack_bytes)}")
    echo(f"  {_usage_line(t)}")
    echo(f"  dedup {_factor(t.dedup)}, compression {_factor(t.compression)}, total {_factor(t.total)}; "
         f"forgetting {'them' if chosen != 1 else 'it'} would free {human_bytes(report.frees)}")
    if t.missing:
        echo(f"  {t.missing} referenced blob(s) are not in the index (run 'snap verify')")
    if report.tiers:
        echo()
        rows: list[tuple[str, ...]] = [("TIER", "SNAPS", "LOGICAL", "STORED", "DEDUP", "COMPR", "FREES",
                                        "ADDED/DAY", "LOGICAL/DAY")]
        for tier in report.tiers:
            u = tier.usage
            rows.append((tier.tier, str(u.snapshots), human_bytes(u.logical_bytes), human_bytes(u.stored_bytes),
                         _factor(u.dedup), _factor(u.compression), human_bytes(tier.frees),
                         _size(tier.added_per_day), _size(tier.logical_per_day)))
        _table(rows, 1)
    if by == "snapshot":
        echo()
        snap_rows: list[tuple[str, ...]] = [("ID", "TIME (UTC)", "TIER", "FILES", "LOGICAL", "ADDED", "FREES")]
        for s in report.snapshots:
            snap_rows.append((s.snapshot.short_id + ("*" if s.pinned else ""), f"{s.snapshot.time:%Y-%m-%d %H:%M:%S}",
                         s.snapshot.tier, str(s.files), human_bytes(s.logical_bytes), human_bytes(s.added_stored),
                         _size(s.frees)))
        _table(snap_rows, 3)
    if by == "path":
        echo()
        path_rows: list[tuple[str, ...]] = [("PATH", "SNAPS", "FILES", "LOGICAL", "RAW", "STORED", "DEDUP", "COMPR")]
        for p in report.paths:
            u = p.usage
            name = p.path.decode("utf-8", "surrogateescape") + ("/" if p.kind == "d" else "")
            path_rows.append((name, str(u.snapshots), str(u.files), human_bytes(u.logical_bytes),
                              human_bytes(u.raw_bytes), human_bytes(u.stored_bytes), _factor(u.dedup),
                              _factor(u.compression)))
        _table(path_rows, 1)


def _render_trial(rows: list[TrialRow], root: str) -> None:
    first = rows[0]
    echo(f"what-if {root}: {first.files} file(s), {human_bytes(first.logical_bytes)}"
         + (f", {first.unreadable} unreadable" if first.unreadable else ""))
    names = list(first.new_stored_bytes or {})
    table: list[tuple[str, ...]] = [("CHUNK AVG", "LEVEL", "CHUNKS", "DISTINCT", "DEDUP", "STORED", "COMPR", "TOTAL",
                                     "CHUNK MB/S", "ZSTD MB/S", *[f"NEW VS {n.upper()}" for n in names])]
    for r in rows:
        table.append((human_bytes(r.chunker.avg_size), str(r.level), str(r.chunks), str(r.distinct_chunks),
                      _factor(r.dedup), human_bytes(r.stored_bytes), _factor(r.compression), _factor(r.total),
                      "-" if r.chunk_mb_s is None else f"{r.chunk_mb_s:.0f}",
                      "-" if r.compress_mb_s is None else f"{r.compress_mb_s:.0f}",
                      *[human_bytes((r.new_stored_bytes or {})[n]) for n in names]))
    _table(table, 1)


def cmd_stats(
    ctx: typer.Context,
    snapshots: Annotated[list[str] | None, typer.Argument(help="Snapshots to count (id prefix, 'latest', "
                                                          "'latest:TIER'; default: all).", show_default=False)] = None,
    by: Annotated[str | None, typer.Option("--by", help="Breakdown: tier (the default), snapshot or path.",
                                           show_default=False)] = None,
    depth: Annotated[int, typer.Option("--depth", help="With --by path: how many levels below --path.",
                                       min=1)] = 1,
    path: Annotated[str, typer.Option("--path", "-p", help="With --by path: the directory to break down.")] = "",
    what_if: Annotated[str | None, typer.Option("--what-if", metavar="DIR", help="Chunk and compress DIR in "
                                                "memory (no repository needed) and compare settings.",
                                                show_default=False)] = None,
    chunk_avg: Annotated[str | None, typer.Option("--chunk-avg", help="With --what-if: average chunk sizes to "
                                                  "try (e.g. 256K,1M,2M,4M; default 1M).",
                                                  show_default=False)] = None,
    compression: Annotated[str | None, typer.Option("--compression", help="With --what-if: zstd levels to try "
                                                    "(e.g. 1,3,9; default 3).", show_default=False)] = None,
    against: Annotated[str | None, typer.Option("--against", metavar="SNAPSHOT", help="With --what-if: also "
                                                "show what a take of DIR would add to SNAPSHOT and to the "
                                                "repository (uses the repository's chunker).",
                                                show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Storage figures: logical and stored bytes, dedup and compression, what forgetting would free."""
    app: AppContext = ctx.obj
    if what_if is not None:
        if snapshots or by or path or depth != 1:
            raise UsageError("--what-if takes a directory: give no SNAPSHOT, --by, --path or --depth")
        _what_if(app, what_if, chunk_avg, compression, against, json_out)
        return
    if chunk_avg or compression or against:
        raise UsageError("--chunk-avg, --compression and --against go with --what-if DIR")
    if by is not None and by not in BY:
        raise UsageError(f"--by must be one of {', '.join(BY)}")
    if (path or depth != 1) and by != "path":
        raise UsageError("--path and --depth go with --by path")
    from snapstore.ops.stats import repository_stats
    from snapstore.view.selectors import resolve_snapshot
    from snapstore.view.vfs import as_bytes_path

    with app.open("read") as repo:
        chosen = [resolve_snapshot(repo, spec) for spec in snapshots] if snapshots else None
        report = repository_stats(repo, chosen, by=by, depth=depth, prefix=as_bytes_path(path))
    if json_out:
        emit_json({"repository": app.repo_location(), **report.to_json(by)})
        return
    _render(report, by, app.repo_location())


def _what_if(app: AppContext, root: str, chunk_avg: str | None, compression: str | None, against: str | None,
             json_out: bool) -> None:
    import os

    from snapstore.ops.whatif import params_for, trial

    levels = parse_levels(compression) if compression else None
    if against is None:
        chunkers = [params_for(avg) for avg in parse_size_list(chunk_avg or "1M", "--chunk-avg")]
        rows = trial(root, chunkers, levels or [3])
    else:
        if chunk_avg:
            raise UsageError("--against uses the repository's chunker: give no --chunk-avg")
        from snapstore.ops.stats import BlobWalker, RepoSizes
        from snapstore.view.selectors import resolve_snapshot

        with app.open("read") as repo:
            snap = resolve_snapshot(repo, against)
            walker = BlobWalker(repo.read_tree, RepoSizes(repo))
            walker.add_root(bytes.fromhex(snap.root))
            known = walker.seen
            tests = {"snapshot": known.__contains__, "repository": repo.index.has_chunk}
            rows = trial(root, [repo.config.chunker], levels or [repo.config.compression_level], against=tests)
    if json_out:
        out: dict[str, Any] = {"path": os.path.abspath(root), "rows": [r.to_json() for r in rows]}
        if against is not None:
            out["against"] = {"snapshot": snap.id}
        emit_json(out)
        return
    _render_trial(rows, os.path.abspath(root))
    if against is not None:
        echo(f"new vs snapshot: beyond the chunks of {snap.short_id}; new vs repository: what a take would store")


def register(app: typer.Typer) -> None:
    app.command("stats")(cmd_stats)
