"""gc cost: forget half of N daily snapshots of the log data set, then time ``snap gc``.

For each data-set size (default 200M and 1G) the script generates a workspace, takes N
snapshots (default 100), one per simulated day (appended and rotated logs, changed memory and
weights), forgets every other snapshot and runs ``snap gc`` as a separate process. It prints gc
time, bytes reclaimed, packs deleted/rewritten and the repository size before and after, so
that one can see whether gc time follows what is forgotten or what is stored.

    python benchmarks/bench_gc.py [--sizes 200M,1G] [--snapshots 100] [--workdir /tmp/snapbench-gc] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import human_bytes, print_table  # noqa: E402
from snapfixtures.sampledata import generate_workspace, parse_size, simulate_day  # noqa: E402
from snapstore.ops.backup import source_for, take_snapshot  # noqa: E402
from snapstore.repo.repository import Repository  # noqa: E402


def measure(size: int, snapshots: int, workdir: Path) -> dict[str, object]:
    base = workdir / f"gc-{size}"
    if base.exists():
        shutil.rmtree(base)
    ws, repo = base / "ws", base / "repo"
    generate_workspace(ws, size, seed=3)
    Repository.init(str(repo))
    start = datetime(2026, 1, 1, 7, tzinfo=UTC)
    take_seconds = 0.0
    with Repository.open(str(repo), mode="write") as opened:
        for day in range(snapshots):
            if day:
                simulate_day(ws, day, seed=3)
            t0 = time.perf_counter()
            take_snapshot(opened, [source_for(".", str(ws))], tier="daily", when=start + timedelta(days=day))
            take_seconds += time.perf_counter() - t0
        ids = [s.id for s in opened.snapshots()]
        before = opened.pack_bytes()
    forget = ids[::2]
    env = dict(os.environ, SNAP_REPO=str(repo))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snapstore", "forget", *forget], env=env, check=True, capture_output=True)
    forget_s = time.perf_counter() - t0
    subprocess.run(["sync"], check=False)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snapstore", "gc", "--json"], env=env, check=True, capture_output=True, text=True
    )
    gc_s = time.perf_counter() - t0
    result = json.loads(proc.stdout)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snapstore", "gc", "--json"], env=env, check=True, capture_output=True)
    noop_s = time.perf_counter() - t0
    return {
        "data_bytes": size,
        "snapshots": snapshots,
        "takes_s": round(take_seconds, 2),
        "repo_before": before,
        "repo_after": before - int(result["reclaimed_bytes"]),
        "forget_s": round(forget_s, 3),
        "gc_s": round(gc_s, 3),
        "gc_noop_s": round(noop_s, 3),
        "reclaimed": result["reclaimed_bytes"],
        "packs_deleted": result["packs_deleted"],
        "packs_rewritten": result["packs_rewritten"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200M,1G")
    parser.add_argument("--snapshots", type=int, default=100)
    parser.add_argument("--workdir", default="/tmp/snapbench-gc")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = [measure(parse_size(s), args.snapshots, workdir) for s in args.sizes.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print_table(
        [
            "data set",
            "snapshots",
            "repo before",
            "forget half",
            "gc",
            "reclaimed",
            "repo after",
            "packs deleted/rewritten",
            "gc again (no-op)",
        ],
        [
            [
                human_bytes(r["data_bytes"]),
                r["snapshots"],
                human_bytes(r["repo_before"]),
                f"{r['forget_s']:.2f} s",
                f"{r['gc_s']:.2f} s",
                human_bytes(r["reclaimed"]),
                human_bytes(r["repo_after"]),
                f"{r['packs_deleted']}/{r['packs_rewritten']}",
                f"{r['gc_noop_s']:.2f} s",
            ]
            for r in rows
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
