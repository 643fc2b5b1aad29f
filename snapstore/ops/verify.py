"""Integrity checks: returns problems, never prints.

What :func:`verify_repository` checks, cheapest first:

1. every pack file the index names exists, its table parses, and every indexed blob lies in
   its pack exactly where the index says (one ranged read per pack);
2. every pack on disk is known to the index (an unknown one is a warning: a take in progress
   or an interrupted one; gc removes it);
3. the snapshot records in ``snapshots/`` and the index agree: each record file reads back
   (decrypts and authenticates when encrypted) and equals the index's copy;
4. every snapshot's trees are readable and every blob they reference is indexed;
5. stored refcounts equal a fresh count;
6. with ``read_data`` (a share ``subset`` of packs, or all) every blob is read, decompressed
   and checked against its id.

Each problem names the pack and blob, and, for damaged or missing blobs, every snapshot and
path that uses them.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from snapstore.errors import ChunkUnreadable, FormatError
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import DIR, Entry
from snapstore.ops.refcheck import refcount_mismatches
from snapstore.repo.repository import Repository, pack_name


@dataclass
class Problem:
    kind: str
    message: str
    severity: str = "error"  # "error" (damage) or "warning"
    pack: str = ""
    blob: str = ""
    affected: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    packs: int = 0
    blobs: int = 0
    snapshots: int = 0
    trees: int = 0
    blobs_read: int = 0
    bytes_read: int = 0
    duration_s: float = 0.0

    @property
    def damaged(self) -> bool:
        return any(p.severity == "error" for p in self.problems)

    def to_json(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k != "problems"}
        out["damaged"] = self.damaged
        out["problems"] = [p.to_json() for p in self.problems]
        return out


Affected = dict[bytes, list[dict[str, object]]]


def _affected_paths(repo: Repository, snapshots: list[Snapshot], bad: set[bytes]) -> Affected:
    """For each bad blob id: the snapshots and paths that use it (trees memoised by id)."""
    memo: dict[bytes, list[tuple[bytes, bytes]]] = {}  # tree id -> [(path below it, bad id)]

    def scan(tree_id: bytes) -> list[tuple[bytes, bytes]]:
        if tree_id in memo:
            return memo[tree_id]
        found: list[tuple[bytes, bytes]] = []
        if tree_id in bad:
            found.append((b"", tree_id))
        else:
            try:
                entries = repo.read_tree(tree_id)
            except (ChunkUnreadable, FormatError):
                entries = []
            for entry in entries:
                if entry.kind == DIR:
                    for sub, blob in scan(entry.subtree):
                        found.append((entry.name + (b"/" + sub if sub else b""), blob))
                elif entry.chunks:
                    for blob in set(entry.chunk_ids()) & bad:
                        found.append((entry.name, blob))
        memo[tree_id] = found
        return found

    out: dict[bytes, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for snap in snapshots:
        for path, blob in scan(bytes.fromhex(snap.root)):
            out[blob][snap.id].append(path.decode("utf-8", "surrogateescape") or "/")
    return {blob: [{"snapshot": sid, "paths": sorted(paths)} for sid, paths in per.items()]
            for blob, per in out.items()}


def verify_repository(repo: Repository, *, read_data: bool = False, subset: float = 1.0,
                      progress: Callable[[dict[str, object]], None] | None = None,
                      seed: int | None = None) -> VerifyReport:
    repo.require_full_key("verify what it holds")
    started = time.monotonic()
    report = VerifyReport()
    problems = report.problems
    index = repo.index
    by_pack: dict[bytes, dict[bytes, tuple[int, int]]] = defaultdict(dict)
    with index.read() as txn:
        for blob_id, loc in index.iter_chunks(txn):
            by_pack[loc.pack][blob_id] = (loc.offset, loc.stored_len)
        known_packs = {p: size for p, size, _c in index.iter_packs(txn)}
        pending = set(index.iter_pending(txn))
    report.blobs = sum(len(v) for v in by_pack.values())
    report.packs = len(known_packs)
    missing_blobs: set[bytes] = set()

    # 1. packs named by the index
    readable_packs: list[bytes] = []
    for pack in sorted(set(by_pack) | set(known_packs)):
        name = pack_name(pack)
        blobs = by_pack.get(pack, {})
        size = repo.backend.size(name)
        if size is None:
            problems.append(Problem("pack_missing", f"pack {pack.hex()} is missing ({len(blobs)} blobs lost)",
                                    pack=pack.hex()))
            missing_blobs.update(blobs)
            continue
        try:
            table = {e.id: e for e in repo.read_pack_table(pack)}
        except (FormatError, OSError) as exc:
            lost = {b for b, (off, length) in blobs.items() if off + length > size}
            problems.append(Problem(
                "pack_damaged", f"pack {pack.hex()} is damaged ({exc}); {len(lost)} of its {len(blobs)} "
                f"blobs lie beyond its end", pack=pack.hex()))
            missing_blobs.update(lost)
            readable_packs.append(pack)
            continue
        readable_packs.append(pack)
        if pack in known_packs and size != known_packs[pack]:
            problems.append(Problem("pack_size", f"pack {pack.hex()} is {size} bytes, the index says "
                                    f"{known_packs[pack]}", pack=pack.hex()))
        for blob_id, (offset, length) in blobs.items():
            entry = table.get(blob_id)
            if entry is None or entry.offset != offset or entry.stored_len != length:
                problems.append(Problem("blob_misplaced", f"blob {blob_id.hex()[:16]} is not where the index "
                                        f"says in pack {pack.hex()}", pack=pack.hex(), blob=blob_id.hex()))
                missing_blobs.add(blob_id)

    # 2. packs on disk the index does not know
    for name, _size in repo.backend.list("packs"):
        stem = name.rsplit("/", 1)[-1]
        if not stem.endswith(".pack"):
            continue
        try:
            pack = bytes.fromhex(stem[:-5])
        except ValueError:
            pack = b""
        if pack not in known_packs and pack not in pending:
            problems.append(Problem("pack_unknown", f"pack {stem[:-5]} is not in the index (left by an interrupted "
                                    "take or gc, or the index is old: 'snap gc' removes it, 'snap repair index' "
                                    "indexes it)", severity="warning", pack=stem[:-5]))

    # 3. records vs index
    records = repo.record_ids()
    snapshots = repo.snapshots()
    if records - {s.id for s in snapshots}:
        # a take elsewhere stored its record after this command's sync and commits next (or
        # was killed there): a sync now rolls such records in, and only what it cannot index
        # is a problem (the robustness soak met this race with three clients)
        repo.sync(command="verify", full=True)
        records = repo.record_ids()
        snapshots = repo.snapshots()
    report.snapshots = len(snapshots)
    indexed_ids = {s.id for s in snapshots}
    for snap_id in sorted(records - indexed_ids):
        problems.append(Problem("snapshot_unindexed", f"snapshot {snap_id[:8]} has a record but is not in the "
                                "index: run 'snap repair index'"))
    by_id = {s.id: s for s in snapshots}
    for snap_id in sorted(records & indexed_ids):  # each record file reads back, authenticates, matches
        try:
            on_disk = repo.load_record(snap_id)
        except FileNotFoundError:
            continue
        except (FormatError, OSError) as exc:
            problems.append(Problem("snapshot_record_damaged", f"snapshot record {snap_id[:8]} is damaged ({exc}); "
                                    "the index keeps a copy: 'snap repair index' writes it back"))
            continue
        if on_disk.to_bytes() != by_id[snap_id].to_bytes():
            problems.append(Problem("snapshot_record_differs", f"snapshot record {snap_id[:8]} differs from the "
                                    "index's copy: 'snap repair index' indexes the record as it is"))
    if repo.backend.size("pins.json") is not None and repo.read_pins() is None:
        problems.append(Problem("pins_damaged", "pins.json is damaged (it does not parse or authenticate); "
                                "'snap pin' of any snapshot rewrites it from the index"))
    if repo.crypto is not None:
        from snapstore.repo.keystore import list_keys

        for key in list_keys(repo.backend, repo.config.id):
            for name in key.damaged:
                problems.append(Problem("key_damaged", f"key file {name} is damaged"
                                        + (" (its other copy is intact)" if key.file is not None else
                                           " and so is its other copy: 'snap key import' an export"),
                                        severity="warning" if key.file is not None else "error"))
    for snap_id in sorted(indexed_ids - records):
        problems.append(Problem("snapshot_record_missing", f"snapshot {snap_id[:8]} is in the index but its "
                                "record file is missing (the next take or gc writes it back)", severity="warning"))

    # 4. trees complete
    seen_trees: set[bytes] = set()
    unreadable_trees: set[bytes] = set()
    stack = [bytes.fromhex(s.root) for s in snapshots]
    while stack:
        tree_id = stack.pop()
        if tree_id in seen_trees:
            continue
        seen_trees.add(tree_id)
        try:
            entries: list[Entry] = repo.read_tree(tree_id)
        except (ChunkUnreadable, FormatError):
            unreadable_trees.add(tree_id)
            continue
        for item in entries:
            if item.subtree:
                stack.append(item.subtree)
            elif item.chunks:
                for blob_id in item.chunk_ids():
                    if index.get_chunk(blob_id) is None:
                        missing_blobs.add(blob_id)
    report.trees = len(seen_trees)

    # 6. read data
    corrupt: dict[bytes, str] = {}
    if read_data:
        packs = sorted(readable_packs)
        if subset < 1.0:
            rng = random.Random(seed)
            packs = rng.sample(packs, max(1, round(len(packs) * subset))) if packs else []
        for n, pack in enumerate(packs):
            for blob_id in sorted(by_pack.get(pack, {}), key=lambda b: by_pack[pack][b][0]):
                if blob_id in missing_blobs:
                    continue
                try:
                    data = repo.read_blob(blob_id)
                    report.bytes_read += len(data)
                except ChunkUnreadable as exc:
                    corrupt[blob_id] = exc.message
                report.blobs_read += 1
            if progress:
                progress({"files": n + 1, "bytes": report.bytes_read, "path": f"pack {pack.hex()[:12]}"})

    bad = missing_blobs | unreadable_trees | set(corrupt)
    affected = _affected_paths(repo, snapshots, bad) if bad else {}
    for blob_id in sorted(missing_blobs - unreadable_trees):
        users = affected.get(blob_id, [])
        if users:  # a lost blob that no snapshot uses is no damage (its pack is reported above)
            problems.append(Problem("blob_missing", f"blob {blob_id.hex()[:16]} is missing; used by "
                                    f"{_describe(users)}", blob=blob_id.hex(), affected=users))
    for tree_id in sorted(unreadable_trees):
        users = affected.get(tree_id, [])
        problems.append(Problem("tree_unreadable", f"tree {tree_id.hex()[:16]} cannot be read; everything under "
                                f"{_describe(users)} is lost", blob=tree_id.hex(), affected=users))
    for blob_id, message in sorted(corrupt.items()):
        users = affected.get(blob_id, [])
        where = index.get_chunk(blob_id)
        problems.append(Problem("blob_corrupt", f"{message}; used by {_describe(users)}",
                                pack=where.pack.hex() if where else "", blob=blob_id.hex(), affected=users))

    # 5. refcounts (only meaningful when every tree could be read)
    flag = index.recount_flag()
    if flag is not None:
        problems.append(Problem("recount_pending", f"the index's reference counts wait for a recount ({flag.reason}): "
                                "the next take or gc recounts, 'snap repair index' too", severity="warning"))
    elif not unreadable_trees:
        mismatches = refcount_mismatches(repo)
        for blob_id, stored, fresh in mismatches[:20]:
            problems.append(Problem("refcount", f"blob {blob_id.hex()[:16]}: stored refcount {stored}, fresh count "
                                    f"{fresh} ('snap repair index' recounts)", blob=blob_id.hex()))
        if len(mismatches) > 20:
            problems.append(Problem("refcount", f"... and {len(mismatches) - 20} more refcount mismatches"))
    report.duration_s = time.monotonic() - started
    return report


def _describe(users: list[dict[str, object]]) -> str:
    if not users:
        return "no snapshot"
    parts = []
    for user in users[:5]:
        paths = user["paths"]
        assert isinstance(paths, list)
        shown = ", ".join(paths[:3]) + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")
        parts.append(f"snapshot {str(user['snapshot'])[:8]}: {shown}")
    if len(users) > 5:
        parts.append(f"{len(users) - 5} more snapshots")
    return "; ".join(parts)
