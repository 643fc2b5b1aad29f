"""Page loads of ``snap ui`` on the 1 GB set: overview, snapshot list and details, and the listing
of a directory of 10,000 files.

It builds (core API, no CLI) a repository holding three snapshots of the 1 GB sample workspace
(``benchmarks.common.dataset``) plus a directory ``flat/`` of 10,000 small files, taken a day
apart (``SNAP_NOW``; the second and third are unchanged re-takes). Then it starts ``snap ui
--listen 127.0.0.1:0`` as a child process and times each page over HTTP (wall clock of request
and full response, median of ``--repeat`` loads after the first; the first, "cold", load is
shown apart: the overview's first load walks every snapshot for the growth plot, later ones
reuse it while the snapshots stay the same). The server starts that walk as it starts; a
first load at once waits for it, a first load ``--settle`` seconds later (a person opening the
printed URL) finds it done.

Run: ``python benchmarks/bench_ui.py [--size 1G] [--files 10000] [--repeat 7] [--workdir DIR] [--json]``.
Target: every page under 300 ms on the 1 GB set.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(1, str(REPO_ROOT))

from benchmarks.common import dataset, print_table  # noqa: E402
from snapfixtures.sampledata import parse_size  # noqa: E402
from snapstore.ops.backup import source_for, take_snapshot  # noqa: E402
from snapstore.repo.repository import Repository  # noqa: E402

TARGET_MS = 300


def build(workdir: Path, size: int, files: int) -> tuple[Path, str]:
    """The repository (made once per work directory) and the id of its newest snapshot."""
    data = dataset(workdir, size)
    flat = workdir / f"flat-{files}"
    if not flat.is_dir():
        flat.mkdir(parents=True)
        for i in range(files):
            (flat / f"note-{i:05d}.md").write_bytes(b"agent Z memory note %d\n" % i * (1 + i % 5))
    repo_path = workdir / f"ui-repo-{size}-{files}"
    if not (repo_path / "config.json").exists():
        shutil.rmtree(repo_path, ignore_errors=True)
        Repository.init(str(repo_path))
        for day in (1, 2, 3):
            os.environ["SNAP_NOW"] = f"2026-11-{day:02d}T07:00:00Z"
            with Repository.open(str(repo_path), mode="write") as repo:
                started = time.perf_counter()
                # both relative to the work directory: data-.../ and flat-N/ side by side in the snapshot
                take_snapshot(repo, [source_for(data.root.name, str(workdir)), source_for(flat.name, str(workdir))],
                              tier="daily")
                print(f"  take {day}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
        os.environ.pop("SNAP_NOW", None)
    with Repository.open(str(repo_path)) as repo:
        return repo_path, repo.snapshots()[-1].id


def get(port: int, path: str, token: str) -> tuple[float, int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise SystemExit(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
    return elapsed, len(body), response.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1G")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "snapbench")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds between the server's start and the first load (default 0: at once)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    repo_path, newest = build(args.workdir, parse_size(args.size), args.files)
    proc = subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(repo_path), "ui", "--listen",
                             "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=args.workdir)
    rows: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if "?token=" not in line:
            raise SystemExit(f"snap ui did not start: {line!r}")
        base, _, token = line.split()[-1].partition("/?token=")
        port = int(base.rsplit(":", 1)[1])
        if args.settle:
            time.sleep(args.settle)  # a user opens the URL a moment after it is printed
        pages = [("overview", "/"), ("snapshot list", "/snapshots"), ("snapshot details", f"/snapshots/{newest}"),
                 (f"browse {args.files:,} files", f"/browse/{newest}?path=flat-{args.files}"), ("metrics", "/metrics")]
        for name, path in pages:
            cold, size, _ = get(port, path, token)
            times = [get(port, path, token)[0] for _ in range(args.repeat)]
            median = statistics.median(times)
            rows.append({"page": name, "path": path.split("?")[0][:40], "cold_ms": round(cold * 1000, 1),
                         "median_ms": round(median * 1000, 1), "bytes": size,
                         "target": "ok" if median * 1000 < TARGET_MS else "MISSED"})
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    machine = f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if args.json:
        print(json.dumps({"machine": machine, "date": when, "size": args.size, "files": args.files,
                          "settle_s": args.settle, "pages": rows},
                         indent=2))
    else:
        print(f"snap ui page loads, {args.size} set + {args.files:,} files, 3 snapshots, first load "
              f"{args.settle:g} s after start; {machine}; {when}")
        print_table(["page", "cold ms", f"median of {args.repeat} ms", "response", "< 300 ms"],
                    [[r["page"], r["cold_ms"], r["median_ms"], r["bytes"], r["target"]] for r in rows])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
