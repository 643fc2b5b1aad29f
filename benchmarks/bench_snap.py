"""snap's core store on its own: take, re-take, take after a day of change, restore, sizes, RSS.

Run from the repository root with the venv active::

    python benchmarks/bench_snap.py                      # 1 GB data set, 3 repeats
    python benchmarks/bench_snap.py --size 100M --repeats 1
    python benchmarks/bench_snap.py --data /path/to/workspace --json

Rows: first take (MB/s, repository bytes against logical bytes), unchanged re-take, take after
one simulated day (``snapfixtures.sampledata.simulate_day``; seconds and repository growth), full
restore (MB/s, checked identical: file list, sizes and a BLAKE3 of every file), single-file
restore of agents/Z/SOUL.md, and the unchanged re-take of a tree of 10,000 small files
(``--small-files``). Each repeat uses a fresh repository; seconds are the median with the range
of the repeats. Peak RSS is the snap process's (see benchmarks/common.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import (
    MB,
    Dataset,
    check_local_disk,
    children_peak_rss,
    dataset,
    human_bytes,
    print_table,
    remove,
    rss_method,
)
from compare import ROWS, Bench, Cell, SnapPeer

MAIN_ROWS = ["first-take", "retake-unchanged", "take-after-day", "restore-full", "restore-file"]
SMALL_ROWS = ["first-take", "retake-unchanged"]
SMALL_DATA_BYTES = 5_000_000  # the small-file tree: a minimal workspace plus the small files


def describe(cells: dict[str, Cell], rows: list[str], ds: Dataset, prefix: str = "") -> list[list[str]]:
    out = []
    for row in rows:
        cell = cells.get(row)
        if cell is None:
            continue
        title = prefix + ROWS[row]
        if cell.status and not cell.seconds:
            short = "n/a" if cell.status.startswith("n/a") else cell.status.split(":")[0]
            out.append([title, short, "", "", "", "", cell.status[:160]])
            continue
        repo = ratio = ""
        if cell.growth:
            repo = f"+{human_bytes(cell.growth.median)} -> {human_bytes(cell.repo_bytes.median)}"
        elif cell.repo_bytes:
            repo = human_bytes(cell.repo_bytes.median)
        if cell.repo_bytes:
            ratio = f"{cell.repo_bytes.median / ds.bytes:.3f}"
        mbps = cell.mbps.fmt(0) if cell.mbps else ""
        rss = human_bytes(cell.rss.median) if cell.rss else ""
        notes = "; ".join(([cell.status] if cell.status else []) + cell.notes)
        out.append([title, cell.seconds.fmt(2), mbps, repo, ratio, rss, notes])
    return out


def main(argv: list[str] | None = None) -> int:
    from snapfixtures.sampledata import parse_size

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1G", help="data set size (default 1G)")
    parser.add_argument("--data", type=Path, help="use this existing sample workspace instead of generating one")
    parser.add_argument("--small-files", type=int, default=10_000, help="files in the small-file tree (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="repeats (default 3)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapbench"), help="local-disk scratch dir")
    parser.add_argument("--snap-bin", help="the snap executable (default: next to this Python, then PATH)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    warning = check_local_disk(workdir)
    if warning:
        print(warning, file=sys.stderr)
    snap = SnapPeer(args.snap_bin)
    if snap.missing():
        print(f"{snap.missing()}: {snap.install_hint}", file=sys.stderr)
        return 1

    repeats = max(1, args.repeats)
    ds = dataset(workdir, parse_size(args.size), 0, args.seed, args.data)
    main_bench = Bench([snap], MAIN_ROWS, ds, workdir / "main", seed=args.seed, verbose=not args.quiet)
    main_cells = {row: cell for (row, _), cell in main_bench.run_all(repeats).cells.items()}
    remove(workdir / "main")

    small_cells: dict[str, Cell] = {}
    small_ds = None
    if args.small_files > 0:
        small_ds = dataset(workdir, SMALL_DATA_BYTES, args.small_files, args.seed)
        small_bench = Bench([snap], SMALL_ROWS, small_ds, workdir / "small", seed=args.seed, verbose=not args.quiet)
        small_cells = {row: cell for (row, _), cell in small_bench.run_all(repeats).cells.items()}
        remove(workdir / "small")

    if args.json:
        out = {
            "meta": {
                "dataset": {"root": str(ds.root), "files": ds.files, "bytes": ds.bytes},
                "small_dataset": small_ds and {"files": small_ds.files, "bytes": small_ds.bytes},
                "repeats": repeats,
                "version": snap.version(),
                "children_peak_rss": children_peak_rss(),
                "rss_method": rss_method(),
            },
            "results": {row: cell.to_json() for row, cell in main_cells.items()},
            "small_files": {row: cell.to_json() for row, cell in small_cells.items()},
        }
        print(json.dumps(out, indent=2))
        return 0

    print(
        f"\n{snap.version()}; data set {ds.files} files, {human_bytes(ds.bytes)} "
        f"({ds.bytes / MB:.0f} MB logical); {repeats} repeat(s)\n"
    )
    headers = ["workload", "seconds med (min-max)", "MB/s", "repository", "repo/logical", "peak RSS", "notes"]
    rows = describe(main_cells, MAIN_ROWS, ds)
    if small_ds is not None:
        prefix = f"{small_ds.files} small files: "
        rows += describe(small_cells, SMALL_ROWS, small_ds, prefix)
    print_table(headers, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
