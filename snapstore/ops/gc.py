"""Garbage collection: plan, then execute (so a dry run is free and honest).

Algorithm (hierarchical refcounts, see snapstore.repo.refcount):

1. Forgetting a snapshot drops one reference to its root tree; a tree whose count reaches zero
   drops its children, and so on. Every blob that reaches zero is marked in the index's
   ``dead`` table, so gc never scans the whole index: its work is what was forgotten.
2. Candidates are the ``dead`` marks plus the unreferenced blobs of ``pending`` packs (written
   by takes that never committed; gc holds the exclusive lock, so no take is running).
3. Each pack holding candidates is classified from its own table: wholly dead -> delete;
   dead share >= ``repack_threshold`` -> rewrite its live blobs into new packs; else keep
   (its dead blobs stay marked for a later gc). Pack files that the index does not know
   (left by a killed take or gc) are orphans and are deleted. Planning holds pack ids, not
   blob ids, and the table entries only of the packs it will delete or rewrite, up to
   :data:`PLAN_ENTRY_BUDGET` (the rest waits for the next gc): its memory is bounded, whatever
   the size of the index or of the forget.
4. Execute, in two steps. First the wholly dead packs: one LMDB transaction drops them, then
   their files and the orphans are deleted. That needs no new byte on disk, so it comes first:
   gc frees space on a full disk. Then the rewrites: the live blobs are copied into new packs by
   the one pack sink (:mod:`snapstore.repo.packsink`: written in tmp/, fsynced, re-read and
   checked, put), one LMDB transaction moves the live blobs and drops the dead ones, and only
   then are the old pack files deleted. A rewrite that fails (disk full, a remote error, a new
   pack that reads back wrong) removes its new packs and keeps the old ones and the index as
   they were. A gc killed at any point leaves every live blob reachable; the next gc deletes the
   leftovers as orphans. LMDB failures (a full disk) are the one-line NoSpace error.

gc runs only on exact counts: on an index flagged for a recount (after damage) it recounts
first, and refuses (exit 4) when that cannot finish; ``snap repair index`` recounts.

Safety window: a pack younger than ``safety_window_s`` is neither deleted nor rewritten (the
default is the backend's: 0 on a local disk, where the exclusive lock keeps takes out; one
hour on a remote repository, where takes of other hosts run while gc does). On a remote
repository the deletions also wait for the repository's leases
(:meth:`Repository.hold_deletions`): while another host takes or reads, they are deferred to
the next gc (the index already forgot those packs, so they are deleted then as orphans).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from snapstore import faults
from snapstore.errors import ChunkUnreadable, FormatError, RepositoryDamaged, SnapError
from snapstore.format.packfile import BLOB_HEADER, BlobEntry, remove_unfinished
from snapstore.format.snapshot import Snapshot
from snapstore.repo.index import ChunkLocation, Index, Txn, TxnCounts, index_errors
from snapstore.repo.indexsync import recount
from snapstore.repo.packsink import EncodedBlob, PackSink
from snapstore.repo.refcount import drop_reference
from snapstore.repo.repository import Repository, pack_name


@dataclass(frozen=True)
class PackPlan:
    pack: bytes
    size: int
    live: tuple[BlobEntry, ...]
    dead: tuple[BlobEntry, ...]
    dead_bytes: int
    action: str  # "delete", "rewrite" or "keep"
    dead_count: int = -1  # dead blobs in the pack (a kept pack's entries are not held); -1: len(dead)

    def __post_init__(self) -> None:
        if self.dead_count < 0:
            object.__setattr__(self, "dead_count", len(self.dead))


@dataclass(frozen=True)
class GcPlan:
    packs: tuple[PackPlan, ...]
    orphans: tuple[tuple[str, int], ...]  # (backend name, size) of unindexed pack files
    dead_blobs: int
    dead_bytes: int
    postponed: int = 0  # candidate packs left for the next gc (past the plan's entry budget)

    @property
    def to_delete(self) -> list[PackPlan]:
        return [p for p in self.packs if p.action == "delete"]

    @property
    def to_rewrite(self) -> list[PackPlan]:
        return [p for p in self.packs if p.action == "rewrite"]

    @property
    def reclaim_estimate(self) -> int:
        freed = sum(p.size for p in self.to_delete) + sum(size for _n, size in self.orphans)
        freed += sum(p.dead_bytes for p in self.to_rewrite)
        return freed


@dataclass
class GcResult:
    forgotten: list[dict[str, object]] = field(default_factory=list)
    packs_deleted: int = 0
    packs_rewritten: int = 0
    packs_written: int = 0
    orphans_deleted: int = 0
    blobs_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    duration_s: float = 0.0
    dry_run: bool = False
    problems: list[str] = field(default_factory=list)
    deferred: int = 0  # pack files whose deletion waits for the next gc (remote: others at work)
    files_cache_pruned: int = 0  # files-cache entries dropped because their chunks are gone
    postponed: int = 0  # candidate packs the plan left for the next gc (its entry budget)

    @property
    def reclaimed(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_json(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out["reclaimed_bytes"] = self.reclaimed
        return out


class OverlayCounts:
    """Refcounts read from the index with changes kept in memory: a forget that commits
    nothing, for ``--dry-run``."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.changed: dict[bytes, int] = {}
        self._types: dict[bytes, int] = {}

    def _loc(self, blob_id: bytes) -> ChunkLocation:
        loc = self.repo.index.get_chunk(blob_id)
        if loc is None:
            raise KeyError(blob_id)
        self._types[blob_id] = loc.type
        return loc

    def count(self, blob_id: bytes) -> int:
        if blob_id in self.changed:
            return self.changed[blob_id]
        return self._loc(blob_id).refcount

    def set_count(self, blob_id: bytes, value: int) -> None:
        self.changed[blob_id] = value

    def is_tree(self, blob_id: bytes) -> bool:
        from snapstore.format.packfile import TYPE_TREE

        kind = self._types.get(blob_id)
        return (self._loc(blob_id).type if kind is None else kind) == TYPE_TREE


def simulate_forget(repo: Repository, snapshots: Iterable[Snapshot]) -> set[bytes]:
    """Blob ids that forgetting ``snapshots`` would leave unreferenced (changes nothing)."""
    overlay = OverlayCounts(repo)
    freed: set[bytes] = set()
    for snap in snapshots:
        freed.update(drop_reference(overlay, bytes.fromhex(snap.root), repo.tree_children))
    return freed


def _candidate_packs(repo: Repository, extra_dead: set[bytes]) -> tuple[set[bytes], set[bytes]]:
    """The packs that hold dead-marked blobs (or ``extra_dead`` ones), and the pending packs
    (their unreferenced blobs are candidates too). Only pack ids are kept: the dead table is
    read once, in key order, and planning's memory follows the packs to look at, not the blobs."""
    index = repo.index
    packs: set[bytes] = set()
    with index.read() as txn:
        for blob_id in index.iter_dead(txn):
            loc = index.get_chunk(blob_id, txn)
            if loc is not None and loc.refcount == 0:
                packs.add(loc.pack)
        for blob_id in extra_dead:
            loc = index.get_chunk(blob_id, txn)
            if loc is not None:
                packs.add(loc.pack)
        pending = set(index.iter_pending(txn))
    return packs, pending


def default_safety_window(repo: Repository) -> float:
    return repo.backend.default_safety_window_s


#: planning keeps the table entries of the packs it will delete or rewrite; past this many it
#: stops choosing more (their dead marks stay: the next gc takes them), so that a gc after a
#: huge forget holds a bounded plan in memory (a few hundred MB), not one entry per dead blob
PLAN_ENTRY_BUDGET = 2_000_000


def plan_gc(repo: Repository, *, threshold: float = 0.1, safety_window_s: float | None = None,
            extra_dead: set[bytes] | None = None, entry_budget: int = PLAN_ENTRY_BUDGET) -> GcPlan:
    """Decide what to delete and rewrite. ``extra_dead``: blobs a pending forget would free.
    ``safety_window_s`` None: the backend's default. ``entry_budget``: see
    :data:`PLAN_ENTRY_BUDGET` (packs past it are counted in ``GcPlan.postponed``)."""
    if safety_window_s is None:
        safety_window_s = default_safety_window(repo)
    extra = extra_dead or set()
    candidates, pending = _candidate_packs(repo, extra)
    wanted = candidates | pending
    index = repo.index
    now = time.time()
    # one pass over the listing, nothing of it kept but the candidates' times and the orphans
    # (pack files the index does not know): a listing held whole grows with the repository
    mtimes: dict[bytes, float] = {}
    orphans: list[tuple[str, int]] = []
    with index.read() as txn:
        for name, size, mtime in repo.backend.list_stat("packs"):
            stem = os.path.basename(name)
            if not stem.endswith(".pack"):
                continue
            try:
                pack = bytes.fromhex(stem[: -len(".pack")])
            except ValueError:
                continue
            if pack in wanted:
                mtimes[pack] = mtime
            if not index.has_pack(txn, pack):
                if safety_window_s > 0 and now - mtime < safety_window_s:
                    continue
                orphans.append((name, size))
    plans: list[PackPlan] = []
    held = 0
    postponed = 0
    for pack in sorted(wanted):
        with index.read() as txn:
            indexed_size = index.pack_size(txn, pack)
        if indexed_size is None:
            continue
        size = indexed_size
        if held >= entry_budget:
            postponed += 1
            continue
        if safety_window_s > 0:
            stored_at = mtimes.get(pack)
            if stored_at is not None and now - stored_at < safety_window_s:
                continue
        try:
            table = repo.read_pack_table(pack, size=size)  # packs never change: no stat needed
        except (FormatError, OSError):
            continue  # a damaged pack is verify's business; gc leaves it alone
        live: list[BlobEntry] = []
        dead: list[BlobEntry] = []
        with index.read() as txn:
            for entry in table:
                where = index.get_chunk(entry.id, txn)
                is_here = where is not None and where.pack == pack and where.offset == entry.offset
                if is_here and where is not None and where.refcount > 0 and entry.id not in extra:
                    live.append(entry)
                else:
                    dead.append(entry)
        dead_bytes = sum(e.stored_len + BLOB_HEADER.size for e in dead)
        if not dead:
            action = "keep"
        elif not live:
            action = "delete"
        elif dead_bytes >= threshold * size:
            action = "rewrite"
        else:
            action = "keep"
        dead_count = len(dead)
        if action == "keep" and pack not in pending:
            # nothing to carry out: its dead blobs stay marked for a later gc (only an unmarked
            # one, which execution marks, is kept)
            with index.read() as txn:
                dead = [e for e in dead if _unmarked_here(index, txn, pack, e)]
            live = []
        held += len(live) + len(dead)
        plans.append(PackPlan(pack, size, tuple(live), tuple(dead), dead_bytes, action, dead_count))
    return GcPlan(
        packs=tuple(plans), orphans=tuple(orphans),
        dead_blobs=sum(p.dead_count for p in plans), dead_bytes=sum(p.dead_bytes for p in plans),
        postponed=postponed,
    )


def _unmarked_here(index: Index, txn: Txn, pack: bytes, entry: BlobEntry) -> bool:
    loc = index.get_chunk(entry.id, txn)
    return (loc is not None and loc.pack == pack and loc.offset == entry.offset and loc.refcount == 0
            and not index.is_dead(txn, entry.id))


def _delete_files(repo: Repository, names: list[str], result: GcResult, announced: list[str]) -> bool:
    """Delete pack files the index no longer refers to (after its commit); False when the
    deletions must wait for the next gc (remote: another process uses the repository).
    ``announced``: every name this gc has announced so far; the lease keeps listing them all,
    so that other hosts go on treating deferred packs as gone."""
    if not names:
        return True
    announced.extend(names)
    blocker = repo.hold_deletions(list(announced))
    if blocker:
        result.deferred += len(names)
        result.problems.append(f"{len(names)} pack file(s) left for the next gc: {blocker}")
        return False
    for i, name in enumerate(names):
        repo.backend.delete(name)
        if i == 0:
            faults.crash_point("gc-mid-delete")
    return True


def _drop_pack(index: Index, txn: Txn, pplan: PackPlan) -> int:
    """Remove a pack being deleted from the index, with its dead blobs (only where the index
    still locates them in this pack); returns how many blobs went."""
    removed = 0
    for entry in pplan.dead:
        loc = index.get_chunk(entry.id, txn)
        if loc is not None and loc.pack == pplan.pack and loc.offset == entry.offset:
            index.delete_chunk(txn, entry.id)
            removed += 1
    index.delete_pack(txn, pplan.pack)
    return removed


def _free_dead_packs(repo: Repository, plan: GcPlan, result: GcResult, announced: list[str]) -> None:
    """Step one: forget and delete the wholly dead packs and the orphans. It needs no new byte
    on disk (only an index commit), so it runs before any rewrite: on a full disk gc still frees
    what it can, and a rewrite that then fails for lack of room loses nothing of it."""
    index = repo.index
    with index_errors("dropping dead packs from the index", index), index.write() as txn:
        for pplan in plan.to_delete:
            result.blobs_removed += _drop_pack(index, txn, pplan)
        # pending packs that are kept whole are no longer "pending": their take is over
        for pplan in plan.packs:
            if pplan.action == "keep":
                index.clear_pending(txn, pplan.pack)
                for entry in pplan.dead:  # stay marked so that a later gc finds them
                    loc = index.get_chunk(entry.id, txn)
                    if loc is not None and loc.pack == pplan.pack and loc.refcount == 0:
                        index.set_dead(txn, entry.id, True)
    faults.crash_point("gc-after-free")
    doomed = [pack_name(p.pack) for p in plan.to_delete] + [name for name, _size in plan.orphans]
    if _delete_files(repo, doomed, result, announced):
        result.orphans_deleted = len(plan.orphans)
    result.packs_deleted = len(plan.to_delete)


def _rewrite(repo: Repository, plan: GcPlan, result: GcResult, announced: list[str]) -> None:
    """Step two: copy the live blobs of mostly dead packs into new packs (the one pack sink:
    each new pack is checked before the index refers to it), commit the move, then delete the
    old packs. Any failure removes the new packs and keeps the old ones and the index as they were."""
    sink = PackSink(repo.backend, pack_size=repo.config.pack_size, parallel=repo.backend.parallel_puts,
                    what="rewriting pack", crypto=repo.crypto)
    skip: set[bytes] = set()
    try:
        for pplan in plan.to_rewrite:
            payloads = []
            for entry in pplan.live:
                payload = repo.backend.get_range(pack_name(pplan.pack), entry.offset, entry.stored_len)
                try:
                    repo.decode_payload(entry.id, entry.type, entry.compression, payload, entry.raw_len)
                except ChunkUnreadable as exc:
                    result.problems.append(f"pack {pplan.pack.hex()}: blob {entry.id.hex()[:16]} is damaged "
                                           f"({exc}); pack kept, run 'snap verify'")
                    skip.add(pplan.pack)
                    break
                payloads.append((entry, payload))
            if pplan.pack in skip:
                continue
            for entry, payload in payloads:  # moved as they are: already encoded
                sink.add(entry.id, entry.type, EncodedBlob(entry.compression, payload, entry.raw_len))
        written = sink.flush()
        faults.crash_point("gc-after-rewrite")
        rewritten = [p for p in plan.to_rewrite if p.pack not in skip]
        index = repo.index
        with index_errors("moving rewritten blobs in the index", index), index.write() as txn:
            counts = TxnCounts(index, txn)
            for pack in written:
                index.put_pack(txn, pack.id, pack.size, len(pack.entries))
                for entry in pack.entries:
                    old = counts.location(entry.id)
                    new = ChunkLocation(pack.id, entry.offset, entry.stored_len, entry.raw_len, entry.type,
                                        entry.compression, old.refcount)
                    index.put_chunk(txn, entry.id, new)
            for pplan in rewritten:
                result.blobs_removed += _drop_pack(index, txn, pplan)
        sink.mark_committed()
    except BaseException:
        sink.abort()
        raise
    sink.close()
    faults.crash_point("gc-after-commit")
    _delete_files(repo, [pack_name(p.pack) for p in rewritten], result, announced)
    result.packs_rewritten = len(rewritten)
    result.packs_written = len(written)


def execute_gc(repo: Repository, plan: GcPlan, result: GcResult) -> None:
    """Carry out ``plan`` in the crash-safe order described in the module docstring."""
    remove_unfinished(repo.backend.local_tmp_dir())
    announced: list[str] = []
    _free_dead_packs(repo, plan, result, announced)
    try:
        _rewrite(repo, plan, result, announced)
    except SnapError as exc:
        if result.packs_deleted or result.orphans_deleted:
            exc.message = (f"{exc.message} (gc had freed {result.packs_deleted + result.orphans_deleted} "
                           "unused pack(s) before that; the packs it was rewriting are kept)")
            exc.args = (exc.message,)
        raise
    if result.blobs_removed:
        with index_errors("pruning the files cache", repo.index):
            result.files_cache_pruned = repo.index.prune_files_cache()


def _require_exact_counts(repo: Repository) -> None:
    """gc frees what counts as unreferenced, so it runs only on exact counts: a flagged index
    (damage left them unsure) is recounted first, and when that cannot finish (a tree the
    index holds cannot be read) gc refuses, in one line, until a repair."""
    flag = repo.index.recount_flag()
    if flag is None:
        return
    with index_errors("recounting references", repo.index):
        unreadable = recount(repo, repo.index)
    if unreadable:
        raise RepositoryDamaged(
            f"gc refused: the index's reference counts are not exact ({flag.reason}; tree "
            f"{unreadable[0].hex()[:16]} cannot be read), so gc could take live data for garbage; "
            "run 'snap repair index' (it recounts every reference), then gc again")


def collect_garbage(repo: Repository, forget: list[tuple[Snapshot, tuple[str, ...]]], *, dry_run: bool = False,
                    threshold: float = 0.1, safety_window_s: float | None = None) -> tuple[GcResult, GcPlan]:
    """Forget ``forget`` (snapshot, reasons), then free what no remaining snapshot needs.
    The repository must be open in ``exclusive`` mode. ``safety_window_s`` None: the
    backend's default (0 local, an hour remote)."""
    repo.require_full_key("forget or gc")
    _require_exact_counts(repo)
    started = time.monotonic()
    result = GcResult(dry_run=dry_run)
    result.forgotten = [{**snap.summary(), "reasons": list(reasons)} for snap, reasons in forget]
    result.bytes_before = repo.pack_bytes()
    if dry_run:
        freed = simulate_forget(repo, [s for s, _r in forget])
        plan = plan_gc(repo, threshold=threshold, safety_window_s=safety_window_s, extra_dead=freed)
        result.bytes_after = result.bytes_before - plan.reclaim_estimate
        result.packs_deleted = len(plan.to_delete)
        result.packs_rewritten = len(plan.to_rewrite)
        result.orphans_deleted = len(plan.orphans)
        result.blobs_removed = plan.dead_blobs
        result.postponed = plan.postponed
    else:
        if forget:
            with index_errors("forgetting snapshots", repo.index):
                repo.forget([s for s, _r in forget])
        plan = plan_gc(repo, threshold=threshold, safety_window_s=safety_window_s)
        execute_gc(repo, plan, result)
        result.postponed = plan.postponed
        result.bytes_after = repo.pack_bytes()
    result.duration_s = time.monotonic() - started
    return result, plan
