"""Benchmark of ``snap diff`` on two snapshots of 200,000 small files that differ in 10.

It builds the data with the core API (no CLI): writes N small files (100 to a directory, two
levels of directories), takes snapshot A with :func:`snapstore.ops.backup.take_snapshot`, changes
10 files (4 edited, 2 added, 2 removed, 2 chmod'ed, in different directories), takes snapshot
B. Then it times, as child processes (median of ``--repeat`` runs, wall clock):

- ``python -c pass``: the interpreter's start-up;
- ``snap --help``: start-up plus importing the CLI (the floor of any ``snap`` command);
- ``snap diff A B``, ``snap diff A B --json`` and ``snap diff A B --content``;

and, in this process, the tree diff alone (:func:`snapstore.view.diff.diff_trees` over a fresh
repository handle, with the number of trees it read) against a full walk of both snapshots
(what a diff that does not skip equal subtrees would have to read). "beyond start-up" is the
command's time minus ``python -c pass``; "beyond CLI" minus ``snap --help``.

Run: ``python benchmarks/bench_diff.py [--files 200000] [--repeat 5] [--workdir DIR] [--json]``.
The work directory (a temporary one by default) is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
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

from snapstore.ops.backup import source_for, take_snapshot  # noqa: E402
from snapstore.repo.repository import Repository  # noqa: E402
from snapstore.view.diff import ReadCounter, diff_trees  # noqa: E402
from snapstore.view.vfs import SnapshotView  # noqa: E402

PER_DIR = 100
PER_TOP = 50  # second-level directories per top-level one


def file_path(ws: Path, i: int) -> Path:
    d = i // PER_DIR
    return ws / f"top{d // PER_TOP:03d}" / f"dir{d % PER_TOP:02d}" / f"f{i:06d}.txt"


def write_tree(ws: Path, count: int) -> float:
    """Write ``count`` files of 60-400 bytes; returns seconds."""
    started = time.perf_counter()
    line = b"agent Z ranked task T-%06d with score 0.%04d; memory note %d\n"
    made: set[Path] = set()
    for i in range(count):
        path = file_path(ws, i)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        with open(path, "wb") as handle:
            handle.write(line % (i, i % 10000, i) * (1 + i % 6))
    return time.perf_counter() - started


def change_tree(ws: Path, count: int) -> list[str]:
    """Ten changes in ten different directories; returns what was done."""
    step = count // 10
    picks = [file_path(ws, k * step + 7) for k in range(10)]
    done: list[str] = []
    for path in picks[:4]:
        path.write_bytes(path.read_bytes() + b"edited\n")
        done.append(f"edited {path.relative_to(ws)}")
    for path in picks[4:6]:
        new = path.with_name("new-" + path.name)
        new.write_bytes(b"a new file\n")
        done.append(f"added {new.relative_to(ws)}")
    for path in picks[6:8]:
        path.unlink()
        done.append(f"removed {path.relative_to(ws)}")
    for path in picks[8:]:
        os.chmod(path, 0o600)
        done.append(f"chmod {path.relative_to(ws)}")
    return done


def timed(cmd: list[str], repeat: int, env: dict[str, str]) -> tuple[float, str]:
    """Median wall seconds of ``repeat`` runs (after one warm-up run) and the last stdout."""
    out = ""
    times: list[float] = []
    for i in range(repeat + 1):
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        out = proc.stdout
        if i:
            times.append(elapsed)
    return statistics.median(times), out


def in_process(repo_path: Path, a: str, b: str, repeat: int) -> dict[str, Any]:
    """Tree diff alone vs a full walk of both snapshots, each on a fresh handle (cold tree cache)."""
    diff_times, walk_times = [], []
    reads = changes = walked = 0
    for _ in range(repeat):
        with Repository.open(str(repo_path)) as repo:
            snap_a, snap_b = repo.resolve(a), repo.resolve(b)
            counter = ReadCounter(repo.read_tree)
            started = time.perf_counter()
            changes = sum(1 for _ in diff_trees(counter, bytes.fromhex(snap_a.root), bytes.fromhex(snap_b.root)))
            diff_times.append(time.perf_counter() - started)
            reads = counter.calls
        with Repository.open(str(repo_path)) as repo:
            view = SnapshotView(repo)
            started = time.perf_counter()
            walked = sum(1 for s in (repo.resolve(a), repo.resolve(b)) for _ in view.walk(view.root(s)))
            walk_times.append(time.perf_counter() - started)
    return {
        "diff_s": statistics.median(diff_times),
        "trees_read": reads,
        "changes": changes,
        "walk_s": statistics.median(walk_times),
        "entries_walked": walked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="Keep the work directory.")
    parser.add_argument("--json", action="store_true", help="Print the results as JSON.")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-diff-"))
    work.mkdir(parents=True, exist_ok=True)
    ws, repo_path = work / "ws", work / "repo"
    try:
        results = run(ws, repo_path, args.files, args.repeat)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)


def run(ws: Path, repo_path: Path, count: int, repeat: int) -> dict[str, Any]:
    if repo_path.exists() or ws.exists():
        raise SystemExit(f"{ws} or {repo_path} already exists; give an empty --workdir")
    log = sys.stderr
    log.write(f"writing {count} files under {ws} ...\n")
    write_s = write_tree(ws, count)
    Repository.init(str(repo_path))
    with Repository.open(str(repo_path), mode="write") as repo:
        started = time.perf_counter()
        snap_a = take_snapshot(
            repo, [source_for(".", str(ws))], tier="daily", verify="none", when=datetime(2025, 3, 1, 6, tzinfo=UTC)
        ).snapshot
        take_a = time.perf_counter() - started
        log.write(f"snapshot A {snap_a.short_id}: {snap_a.stats.files} files in {take_a:.1f} s\n")
        changes = change_tree(ws, count)
        started = time.perf_counter()
        snap_b = take_snapshot(
            repo, [source_for(".", str(ws))], tier="daily", verify="none", when=datetime(2025, 3, 2, 6, tzinfo=UTC)
        ).snapshot
        take_b = time.perf_counter() - started
        log.write(f"snapshot B {snap_b.short_id}: {snap_b.stats.files} files in {take_b:.1f} s\n")

    env = {k: v for k, v in os.environ.items() if k not in ("SNAP_REPO", "SNAP_CONFIG")}
    snap = [sys.executable, "-m", "snapstore", "--repo", str(repo_path)]
    rows: list[dict[str, Any]] = []
    baseline, _ = timed([sys.executable, "-c", "pass"], repeat, env)
    cli, _ = timed([*snap, "--help"], repeat, env)
    rows.append({"what": "python -c pass", "wall_s": baseline})
    rows.append({"what": "snap --help", "wall_s": cli})
    outputs: dict[str, str] = {}
    for label, extra in (
        ("snap diff A B", []),
        ("snap diff A B --json", ["--json"]),
        ("snap diff A B --content", ["--content"]),
    ):
        wall, out = timed([*snap, "diff", snap_a.id, snap_b.id, *extra], repeat, env)
        rows.append({"what": label, "wall_s": wall})
        outputs[label] = out
    listed = json.loads(outputs["snap diff A B --json"])["summary"]["total"]
    if listed != 10:
        raise SystemExit(f"expected 10 changes, snap diff reported {listed}:\n{outputs['snap diff A B']}")
    inner = in_process(repo_path, snap_a.id, snap_b.id, repeat)
    return {
        "files": count,
        "write_s": write_s,
        "take_a_s": take_a,
        "take_b_s": take_b,
        "changes_made": changes,
        "changes_listed": listed,
        "python_startup_s": baseline,
        "cli_startup_s": cli,
        "commands": [
            {**r, "beyond_startup_s": r["wall_s"] - baseline, "beyond_cli_s": r["wall_s"] - cli} for r in rows
        ],
        "in_process": inner,
        "diff_output": outputs["snap diff A B"],
    }


def print_table(results: dict[str, Any]) -> None:
    print(
        f"snap diff: two snapshots of {results['files']:,} files differing in {results['changes_listed']} "
        f"(setup: write {results['write_s']:.1f} s, take A {results['take_a_s']:.1f} s, "
        f"take B {results['take_b_s']:.1f} s)"
    )
    print()
    header = ("command", "wall (median)", "beyond start-up", "beyond CLI import")
    rows = [header]
    for r in results["commands"]:
        rows.append(
            (
                r["what"],
                f"{r['wall_s'] * 1000:.0f} ms",
                f"{r['beyond_startup_s'] * 1000:.0f} ms",
                f"{r['beyond_cli_s'] * 1000:.0f} ms",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    inner = results["in_process"]
    print()
    print(
        f"in process: tree diff {inner['diff_s'] * 1000:.1f} ms reading {inner['trees_read']} trees; "
        f"a full walk of both snapshots {inner['walk_s'] * 1000:.0f} ms over {inner['entries_walked']:,} entries"
    )
    print()
    print(results["diff_output"].rstrip())


if __name__ == "__main__":
    main()
