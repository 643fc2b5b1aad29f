"""Beyond one machine, simulated: index sync against a repository of many packs on S3, and gc
planning over an index of millions of chunks.

Part 1 (S3): starts SeaweedFS on 127.0.0.1 (free ports, telemetry off: ``bench_s3.start_server``),
builds an encrypted repository of ``--packs`` small packs by script, through snapstore's own
writers (``encode_blob`` and :class:`~snapstore.repo.packsink.PackSink`: every pack is a valid,
checked pack; one snapshot record per ``--packs-per-snapshot`` packs, committed by
``Repository.commit_snapshot``), with a throwaway password in ``SNAP_PASSWORD`` and the small
Argon2id parameters of ``SNAP_KDF_PROFILE=test``. Then it measures, each host a process of its
own with an empty or a kept cache (``XDG_CACHE_HOME``):

    first sync     a fresh host (empty cache): wall time, S3 requests by kind, bytes fetched
                   against the repository's bytes
    up to date     the same host again, nothing changed (median of --repeat)
    lacks N        a writer adds --lacking packs (one snapshot); the host syncs

Requests are counted twice: by the metered backend (``MeteredBackend``, one per operation) and
per HTTP call by operation name (ListObjectsV2 pages, GetObject, HeadObject, PutObject...), by
counting botocore's API calls in the measured process.

Part 2 (index): builds an LMDB index of ``--chunks`` chunk entries in packs of
``--chunks-per-pack`` directly through :class:`snapstore.repo.index.Index` (the one module that
touches LMDB), forgets ``--dead-fraction`` of the packs' blobs (dead marks, refcount 0) and
``--partial-fraction`` of the blobs of other packs, then times ``plan_gc`` in a process of its
own and reports its peak RSS. The pack tables that planning reads are generated from the same
seed as the index (no pack file exists): what is measured is planning's own work.

    python benchmarks/bench_scale.py                            # 50,000 packs, 10,000,000 chunks
    python benchmarks/bench_scale.py --packs 2000 --chunks 200000   # a quick run
    python benchmarks/bench_scale.py --skip-s3 / --skip-gc / --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_s3 import ACCESS_KEY, BUCKET, SECRET_KEY, bucket_bytes, start_server  # noqa: E402
from benchmarks.common import human_bytes, print_table  # noqa: E402

PASSWORD = "scale-bench-throwaway"


# -- helpers ------------------------------------------------------------------------------
def peak_rss() -> int:
    """This process's peak RSS in bytes."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def count_http_calls() -> Counter[str]:
    """Count every S3 API call this process makes, by operation name (one per HTTP request,
    a listing page included): the benchmark's view, below snapstore's own counters."""
    import botocore.client

    calls: Counter[str] = Counter()
    original = botocore.client.BaseClient._make_api_call

    def counted(self: Any, operation_name: str, api_params: Any) -> Any:
        calls[operation_name] += 1
        return original(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]
    return calls


class AnonSampler:
    """The peak of this process's anonymous memory (RssAnon: heap, not the mapped LMDB file,
    whose pages the kernel drops at will), sampled every 20 ms on a thread."""

    def __init__(self) -> None:
        import threading

        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def host_env(work: Path, endpoint: str, host: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SNAP_REPO", "SNAP_CONFIG", "PYTHONDONTWRITEBYTECODE")}
    env.update({
        "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "SNAP_S3_ENDPOINT": endpoint,
        "SNAP_PASSWORD": PASSWORD, "SNAP_KDF_PROFILE": "test", "SNAP_HOSTNAME": host,
        "XDG_CACHE_HOME": str(work / f"cache-{host}"), "XDG_STATE_HOME": str(work / "state"),
    })
    return env


def child(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run this script's hidden sub-command in a process of its own; its JSON answer."""
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- part 1: building the repository ------------------------------------------------------
def build(url: str, packs: int, blobs_per_pack: int, blob_size: int, per_snapshot: int, seed: int,
          *, init: bool, parallel: int) -> dict[str, Any]:
    """Add ``packs`` packs (``blobs_per_pack`` random blobs each) and one snapshot record per
    ``per_snapshot`` packs, as a take would store them (in-process)."""
    from datetime import UTC, datetime

    from snapstore.format.packfile import TYPE_DATA, TYPE_TREE
    from snapstore.format.snapshot import Snapshot
    from snapstore.format.tree import CHUNK_REF, FILE, Entry, encode_tree
    from snapstore.host import host_name
    from snapstore.repo.index import ChunkLocation
    from snapstore.repo.packsink import PackSink, StoredPack, encode_blob
    from snapstore.repo.repository import ENCRYPTION_SCHEME, Repository

    if init:
        Repository.init(url, encryption=ENCRYPTION_SCHEME, password=PASSWORD.encode(), kdf_profile="test",
                        pack_size=blobs_per_pack * (blob_size + 48))
    started = time.perf_counter()
    repo = Repository.open(url, mode="write", command="bench_scale build")
    try:
        crypto = repo.crypto

        made = 0
        snapshots = 0
        while made < packs:  # (nothing at all with --init and 0 packs: the repository is created)
            count = min(per_snapshot, packs - made)
            sink = PackSink(repo.backend, pack_size=blobs_per_pack * (blob_size + 48) - blob_size // 2,
                            parallel=parallel, crypto=crypto, what="bench pack")
            entries = []
            stored: list[StoredPack] = []
            for n in range(count):
                refs = b""
                for _ in range(blobs_per_pack):
                    data = os.urandom(blob_size)
                    blob_id = repo.blob_id(data)
                    sink.add(blob_id, TYPE_DATA, encode_blob(blob_id, data, 1, crypto=crypto))
                    refs += CHUNK_REF.pack(blob_id, blob_size)
                entries.append(Entry(name=f"f{seed}-{made + n:07d}".encode(), kind=FILE, mode=0o644,
                                     size=blob_size * blobs_per_pack, chunks=refs))
            tree = encode_tree(entries)
            root = repo.blob_id(tree)
            sink.add(root, TYPE_TREE, encode_blob(root, tree, 3, blob_type=TYPE_TREE, crypto=crypto))
            stored = sink.flush()
            with repo.index.write() as txn:  # one transaction for the batch (a take: one per pack)
                for pack in stored:
                    repo.index.put_pack(txn, pack.id, pack.size, len(pack.entries))
                    for e in pack.entries:
                        repo.index.index_blob(txn, e.id, ChunkLocation(pack.id, e.offset, e.stored_len, e.raw_len,
                                                                       e.type, e.compression, 0))
            snap = repo.snapshot_with_id(Snapshot(
                time=datetime.now(UTC), tier="bench", root=root.hex(), paths=(f"/bench/{seed}/{snapshots}",),
                hostname=host_name(), username="bench"))
            repo.commit_snapshot(snap, packs=[p.id for p in stored], new_trees={
                root: b"".join(bytes(e.chunks[i : i + 32]) for e in entries
                               for i in range(0, len(e.chunks), CHUNK_REF.size))}, files={})
            sink.mark_committed()
            sink.close()
            made += count
            snapshots += 1
            print(f"  built {made}/{packs} packs", file=sys.stderr, flush=True)
    finally:
        repo.close()
    return {"seconds": time.perf_counter() - started, "snapshots": snapshots}


def measure_sync(url: str) -> dict[str, Any]:
    """Open the repository as ``snap list`` does (the sync is the open), in this process."""
    calls = count_http_calls()
    from snapstore.repo.repository import Repository

    started = time.perf_counter()
    repo = Repository.open(url, mode="read", command="bench_scale sync")
    try:
        seconds = time.perf_counter() - started
        report = repo.sync_report
        stats = repo.backend.stats()
        snapshots = len(repo.index.snapshot_ids())
    finally:
        repo.close()
    return {"seconds": seconds, "requests": stats.requests, "fetched": stats.fetched_bytes, "http": dict(calls),
            "packs_added": report.packs_added if report else 0, "snapshots": snapshots,
            "listed": not (report and (report.skipped or report.announcements)),
            "announcements": report.announcements if report else 0,
            "peak_rss": peak_rss()}


# -- part 2: gc planning over a synthetic index -------------------------------------------
def synthetic_id(pid: bytes, slot: int) -> bytes:
    """A blob id of the synthetic index: as random as its pack's id, cheap to make again."""
    return pid + slot.to_bytes(4, "little") + pid[4:16]


def pack_id(seed: int, pack: int) -> bytes:
    return hashlib.blake2b(f"pack:{seed}:{pack}".encode(), digest_size=16).digest()


class SyntheticTables:
    """The pack tables of the synthetic index (what planning would read from each pack's end)."""

    def __init__(self, seed: int, packs: int, per_pack: int, blob_size: int) -> None:
        self.seed, self.packs, self.per_pack, self.blob_size = seed, packs, per_pack, blob_size
        self.ids = [pack_id(seed, p) for p in range(packs)]

    def table(self, pack: bytes) -> list[Any]:
        from snapstore.format.packfile import BLOB_HEADER, TYPE_DATA, BlobEntry

        step = self.blob_size + BLOB_HEADER.size
        return [BlobEntry(synthetic_id(pack, j), TYPE_DATA, 0, 16 + BLOB_HEADER.size + j * step,
                          self.blob_size, self.blob_size) for j in range(self.per_pack)]

    def size(self) -> int:
        from snapstore.format.packfile import BLOB_HEADER

        return 16 + self.per_pack * (self.blob_size + BLOB_HEADER.size + 50) + 48


def gc_fate(seed: int, pack: int, dead_fraction: float, partial_fraction: float) -> str:
    """'dead' (every blob forgotten), 'partial' (a quarter forgotten) or 'live', by pack."""
    h = int.from_bytes(hashlib.blake2b(f"fate:{seed}:{pack}".encode(), digest_size=8).digest(), "little") / 2**64
    if h < dead_fraction:
        return "dead"
    if h < dead_fraction + partial_fraction:
        return "partial"
    return "live"


def build_index(path: Path, chunks: int, per_pack: int, dead_fraction: float, partial_fraction: float,
                seed: int) -> dict[str, Any]:
    from snapstore.repo.index import ChunkLocation, Index

    tables = SyntheticTables(seed, max(1, chunks // per_pack), per_pack, 4096)
    started = time.perf_counter()
    index = Index(str(path))
    dead = 0
    try:
        batch = max(1, 200_000 // per_pack)
        size = tables.size()
        for first in range(0, tables.packs, batch):
            with index.write() as txn:
                for p in range(first, min(first + batch, tables.packs)):
                    pid = pack_id(seed, p)
                    index.put_pack(txn, pid, size, per_pack)
                    fate = gc_fate(seed, p, dead_fraction, partial_fraction)
                    for e in tables.table(pid):
                        forgotten = fate == "dead" or (fate == "partial" and e.id[16] % 4 == 0)
                        index.put_chunk(txn, e.id, ChunkLocation(pid, e.offset, e.stored_len, e.raw_len, e.type,
                                                                 e.compression, 0 if forgotten else 1))
                        if forgotten:
                            index.set_dead(txn, e.id, True)
                            dead += 1
    finally:
        index.close()
    data = path / "data.mdb"
    return {"seconds": time.perf_counter() - started, "dead": dead, "packs": tables.packs,
            "index_bytes": data.stat().st_size}


def measure_plan(path: Path, chunks: int, per_pack: int, seed: int) -> dict[str, Any]:
    """``plan_gc`` over the synthetic index, in this process: time and peak RSS."""
    from snapstore.format.layout import pack_name
    from snapstore.ops.gc import plan_gc
    from snapstore.repo.index import Index

    tables = SyntheticTables(seed, max(1, chunks // per_pack), per_pack, 4096)
    size = tables.size()

    class Listing:
        """The backend as planning sees it: a listing of packs/ (every pack old enough)."""

        remote = True
        default_safety_window_s = 3600.0

        def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
            for pid in sorted(tables.ids):
                yield pack_name(pid), size, 0.0

    class Repo:
        backend = Listing()
        index = Index(str(path), readonly=True)

        @staticmethod
        def read_pack_table(pack: bytes, size: int | None = None) -> list[Any]:
            return tables.table(pack)

    before = peak_rss()
    sampler = AnonSampler()
    started = time.perf_counter()
    plan = plan_gc(Repo(), safety_window_s=3600.0)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    sampler.stop()
    Repo.index.close()
    return {"seconds": seconds, "peak_rss": peak_rss(), "rss_before": before, "peak_anon": sampler.peak,
            "postponed": getattr(plan, "postponed", 0),
            "delete": len(plan.to_delete), "rewrite": len(plan.to_rewrite), "dead_blobs": plan.dead_blobs}


# -- the driver -----------------------------------------------------------------------------
def run_s3(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    proc, endpoint = start_server(work / "seaweedfs")
    try:
        url = f"s3://{BUCKET}/scale"
        writer = host_env(work, endpoint, "writer")
        common = ["--blobs-per-pack", str(args.blobs_per_pack), "--blob-size", str(args.blob_size),
                  "--packs-per-snapshot", str(args.packs_per_snapshot), "--parallel", str(args.parallel)]
        child(["_build", url, "0", "--init", *common], writer)
        built = build_parallel(work, endpoint, url, args.packs, args.builders, common)
        repo_bytes = bucket_bytes(endpoint, "scale/")
        pack_bytes = bucket_bytes(endpoint, "scale/packs/")
        host = host_env(work, endpoint, "fresh")
        first = child(["_sync", url], host)
        again = [child(["_sync", url], host) for _ in range(args.repeat)]
        lacking = child(["_build", url, str(args.lacking), "--seed", "1", *common], writer)
        behind = child(["_sync", url], host)
        return {"built": built, "repo_bytes": repo_bytes, "pack_bytes": pack_bytes, "first": first,
                "again": again, "lacking_build": lacking, "behind": behind, "packs": args.packs,
                "lacking": args.lacking}
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def build_parallel(work: Path, endpoint: str, url: str, packs: int, builders: int, common: list[str]
                   ) -> dict[str, Any]:
    """``packs`` packs from ``builders`` writer processes at once (hosts of their own: a
    repository takes writers side by side), so that the server, not one Python process, sets
    the pace."""
    started = time.perf_counter()
    procs = []
    for k in range(builders):
        share = packs // builders + (1 if k < packs % builders else 0)
        env = host_env(work, endpoint, f"builder{k}")
        procs.append(subprocess.Popen([sys.executable, __file__, "_build", url, str(share), "--seed", str(10 + k),
                                       *common], env=env, stdout=subprocess.PIPE, text=True))
    snapshots = 0
    for proc in procs:
        out, _err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a builder failed ({proc.returncode})")
        snapshots += json.loads(out.strip().splitlines()[-1])["snapshots"]
    return {"seconds": time.perf_counter() - started, "snapshots": snapshots}


def run_gc(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    path = work / "synthetic-index"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    common = [str(path), str(args.chunks), "--chunks-per-pack", str(args.chunks_per_pack)]
    built = child(["_index", *common, "--dead-fraction", str(args.dead_fraction),
                   "--partial-fraction", str(args.partial_fraction)], env)
    plans = [child(["_plan", *common], env) for _ in range(args.repeat)]
    shutil.rmtree(path, ignore_errors=True)
    return {"built": built, "plans": plans, "chunks": args.chunks}


def http_summary(http: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(http.items()))


def report(s3: dict[str, Any] | None, gc: dict[str, Any] | None) -> None:
    if s3 is not None:
        print(f"\nrepository: {s3['packs']} packs, {s3['built']['snapshots']} snapshots, "
              f"{human_bytes(s3['repo_bytes'])} ({human_bytes(s3['pack_bytes'])} in packs); "
              f"built in {s3['built']['seconds']:.0f} s")
        rows = []

        def row(name: str, r: dict[str, Any], seconds: str | None = None) -> list[Any]:
            ratio = 100.0 * r["fetched"] / s3["repo_bytes"]
            read = f"no ({r['announcements']} announcement(s) read)" if r.get("announcements") else "no"
            return [name, "yes" if r["listed"] else read, seconds or f"{r['seconds']:.2f}", r["requests"],
                    http_summary(r["http"]),
                    human_bytes(r["fetched"]), f"{ratio:.2f}%", r["packs_added"], human_bytes(r["peak_rss"])]

        rows.append(row("first sync (empty cache)", s3["first"]))
        again = s3["again"]
        times = sorted(r["seconds"] for r in again)
        spread = f"{statistics.median(times):.2f} ({times[0]:.2f}-{times[-1]:.2f})"
        rows.append(row(f"up to date (median of {len(again)})", again[len(again) // 2], spread))
        rows.append(row(f"lacks the last {s3['lacking']} packs", s3["behind"]))
        print_table(["sync", "listed", "seconds", "requests", "HTTP calls", "fetched", "of repo", "packs added",
                     "peak RSS"], rows)
    if gc is not None:
        b = gc["built"]
        print(f"\nsynthetic index: {gc['chunks']:,} chunks in {b['packs']:,} packs, {b['dead']:,} dead; "
              f"LMDB {human_bytes(b['index_bytes'])}, built in {b['seconds']:.0f} s")
        times = sorted(p["seconds"] for p in gc["plans"])
        rss = sorted(p["peak_rss"] for p in gc["plans"])
        anon = sorted(p["peak_anon"] for p in gc["plans"])
        p = gc["plans"][0]
        # RSS counts the LMDB file's pages mapped in (the kernel's to drop); anonymous memory
        # (RssAnon: heap) is what planning holds itself
        print_table(["gc planning", "seconds (median, min-max)", "peak RSS", "peak anonymous", "delete", "rewrite",
                     "dead blobs"],
                    [["plan_gc", f"{statistics.median(times):.1f} ({times[0]:.1f}-{times[-1]:.1f})",
                      human_bytes(statistics.median(rss)), human_bytes(statistics.median(anon)), p["delete"],
                      p["rewrite"], p["dead_blobs"]]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = sys.argv[1] if len(sys.argv) > 1 else ""
    if sub == "_build":
        parser.add_argument("cmd")
        parser.add_argument("url")
        parser.add_argument("packs", type=int)
        parser.add_argument("--init", action="store_true")
        parser.add_argument("--seed", type=int, default=0)
    elif sub == "_sync":
        parser.add_argument("cmd")
        parser.add_argument("url")
        print(json.dumps(measure_sync(parser.parse_args().url)))
        return 0
    elif sub in ("_index", "_plan"):
        parser.add_argument("cmd")
        parser.add_argument("path", type=Path)
        parser.add_argument("chunks", type=int)
        parser.add_argument("--dead-fraction", type=float, default=0.1)
        parser.add_argument("--partial-fraction", type=float, default=0.1)
    else:
        parser.add_argument("--packs", type=int, default=50_000, help="packs in the S3 repository (50,000)")
        parser.add_argument("--lacking", type=int, default=500, help="packs the behind host lacks (500)")
        parser.add_argument("--repeat", type=int, default=3, help="runs of the up-to-date sync and of gc planning")
        parser.add_argument("--chunks", type=int, default=10_000_000, help="chunk entries in the synthetic index")
        parser.add_argument("--dead-fraction", type=float, default=0.1, help="packs wholly forgotten (0.1)")
        parser.add_argument("--partial-fraction", type=float, default=0.1,
                            help="packs a quarter forgotten (0.1)")
        parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapbench-scale"))
        parser.add_argument("--skip-s3", action="store_true")
        parser.add_argument("--skip-gc", action="store_true")
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--builders", type=int, default=3, help="writer processes building the repository (3)")
    parser.add_argument("--blobs-per-pack", type=int, default=8)
    parser.add_argument("--blob-size", type=int, default=4096)
    parser.add_argument("--packs-per-snapshot", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=16, help="pack uploads at once while building (16)")
    parser.add_argument("--chunks-per-pack", type=int, default=32, help="synthetic index: chunks per pack (32)")
    args = parser.parse_args()
    if sub == "_build":
        print(json.dumps(build(args.url, args.packs, args.blobs_per_pack, args.blob_size, args.packs_per_snapshot,
                               args.seed, init=args.init, parallel=args.parallel)))
        return 0
    if sub == "_index":
        print(json.dumps(build_index(args.path, args.chunks, args.chunks_per_pack, args.dead_fraction,
                                     args.partial_fraction, 7)))
        return 0
    if sub == "_plan":
        print(json.dumps(measure_plan(args.path, args.chunks, args.chunks_per_pack, 7)))
        return 0
    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    s3 = None if args.skip_s3 else run_s3(args, work)
    gc = None if args.skip_gc else run_gc(args, work)
    if args.json:
        print(json.dumps({"s3": s3, "gc": gc}, indent=2))
    else:
        report(s3, gc)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
