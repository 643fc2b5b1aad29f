"""Bringing the LMDB index in line with the repository files: one set of steps for three jobs.

- ``sync_index`` (every repository, at every open): the repository's files hold the truth and
  other processes, users and hosts change them, so this host's index (a cache) follows them:

  1. snapshot records that vanished (forgotten by another host) leave the index, releasing
     their references (trees that can no longer be read are skipped: their counts stay high,
     which only keeps data longer);
  2. packs that vanished (deleted by another host's gc, or announced in a live gc lease's
     ``deleting`` list) leave the index; their blobs are remembered with their refcounts;
  3. packs the index does not know are indexed from their tables (one ranged GET of each
     pack's tail, several at once); a remembered blob found there keeps its refcount;
  4. remembered blobs that are still referenced and were not found (a gc elsewhere moved them
     into a pack this index already knew) are looked for in the other packs, newest first;
  5. records the index does not know are added with their references (rolled forward);
  6. pins follow ``pins.json``; new blobs nothing references are marked dead for gc;
  7. when the index is flagged (:meth:`~snapstore.repo.index.Index.flag_recount`: referenced
     blobs were lost in step 2, a tree could not be read in step 1, a lost tree was stored
     again), every reference is recounted from the snapshots kept, which clears the flag.

  Blobs lost in step 2 (and packs cut short: the blobs past their end) leave the index, so a
  take stores them again rather than deduplicating against them; their references are kept
  in the ``lost`` table, so a blob stored again starts with its count, never at 0.

  Step 5 also rolls forward a take killed between writing its record and committing its index
  transaction, and an empty index (missing, or set aside as damaged) is built by steps 3, 5
  and 6.

- ``snapstore.ops.repair.repair_index``: steps 3, 5 and 6 into an empty index.

Every step is idempotent and commits in LMDB transactions of its own, so a sync killed half way
is finished by the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

from snapstore.errors import ChunkUnreadable, FormatError
from snapstore.format.layout import pack_id_of, pack_name, snapshot_name
from snapstore.format.packfile import BlobEntry
from snapstore.format.snapshot import Snapshot
from snapstore.host import host_name
from snapstore.repo.index import ChunkLocation, Index, Txn, TxnCounts
from snapstore.repo.refcount import add_reference, drop_reference
from snapstore.storage.backend import Backend

TABLE_READERS = 8


class Repository(Protocol):
    """What these steps need of a repository (the facade in :mod:`snapstore.repo.repository`
    is one; it imports this module, never the other way round)."""

    backend: Backend
    index: Index

    def tree_children(self, tree_id: bytes) -> list[bytes]: ...

    def read_pack_table(self, pack: bytes, size: int | None = None) -> list[BlobEntry]: ...

    def record_ids(self) -> set[str]: ...

    @property
    def can_read(self) -> bool: ...

    def load_record(self, snap_id: str) -> Snapshot: ...

    def read_pins(self) -> set[str] | None: ...

    def forget_intents(self) -> dict[str, set[str]]: ...


@dataclass
class SyncReport:
    """What a sync, reconcile or rebuild changed (for reports and tests)."""

    packs_added: int = 0
    packs_dropped: int = 0
    blobs_added: int = 0
    duplicate_blobs: int = 0
    blobs_relocated: int = 0
    blobs_lost: int = 0
    snapshots_added: list[str] = field(default_factory=list)
    snapshots_dropped: list[str] = field(default_factory=list)
    records_rewritten: list[str] = field(default_factory=list)
    skipped_records: list[str] = field(default_factory=list)
    incomplete_snapshots: list[str] = field(default_factory=list)
    bad_packs: list[tuple[str, int]] = field(default_factory=list)  # (name, size) whose table is unreadable
    bad_records: list[str] = field(default_factory=list)  # record files that do not parse or match their name
    notes: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)  # notes on this host's takes rolled forward
    truncated: list[str] = field(default_factory=list)  # notes on packs found cut short
    recounted: str = ""  # why this sync recounted every reference ("" when it did not)
    skipped: bool = False  # nothing listed: the remote repository's marker said nothing changed
    announcements: int = 0  # nothing listed: these announcements said what changed

    @property
    def unindexed(self) -> list[str]:
        """Ids of the records this sync saw but could not index: unreadable, or whose root
        tree is in no readable pack (from its own listing: a record another host stored
        after it is not one of them)."""
        bad = {name.rsplit("/", 1)[-1].removesuffix(".json") for name in self.bad_records}
        return sorted(bad | set(self.skipped_records))

    @property
    def changed(self) -> bool:
        return bool(self.packs_added or self.packs_dropped or self.snapshots_added or self.snapshots_dropped
                    or self.records_rewritten)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


class TolerantCounts(TxnCounts):
    """Counts that also cover blobs in no pack: their references are counted in the index's
    ``lost`` table (and the ids remembered in ``missing``). A lost blob cannot be walked."""

    def __init__(self, index: Index, txn: Txn) -> None:
        super().__init__(index, txn)
        self.missing: set[bytes] = set()

    def count(self, blob_id: bytes) -> int:
        if blob_id not in self.missing:
            try:
                return super().count(blob_id)
            except KeyError:
                self.missing.add(blob_id)
        return self.index.get_lost(self.txn, blob_id) or 0

    def set_count(self, blob_id: bytes, value: int) -> None:
        if blob_id in self.missing:
            self.index.set_lost(self.txn, blob_id, value)
        else:
            super().set_count(blob_id, value)

    def is_tree(self, blob_id: bytes) -> bool:
        return blob_id not in self.missing and super().is_tree(blob_id)


def tolerant_children(repo: Repository, unreadable: list[bytes] | None = None) -> Callable[[bytes], list[bytes]]:
    """A tree's children, none for a tree that cannot be read (noted in ``unreadable``)."""

    def children(tree_id: bytes) -> list[bytes]:
        try:
            return repo.tree_children(tree_id)
        except (ChunkUnreadable, FormatError, FileNotFoundError):
            if unreadable is not None:
                unreadable.append(tree_id)
            return []

    return children


# -- packs --------------------------------------------------------------------------------
def read_tables(repo: Repository, packs: list[tuple[bytes, int]]
                ) -> Iterator[tuple[bytes, int, list[BlobEntry] | None]]:
    """``(pack, size, table)`` for each pack, tables read several at once (None: unreadable)."""

    def one(item: tuple[bytes, int]) -> tuple[bytes, int, list[BlobEntry] | None]:
        pack, size = item
        try:
            return pack, size, repo.read_pack_table(pack, size=size)
        except (FormatError, FileNotFoundError, OSError):
            return pack, size, None

    if len(packs) <= 1 or not repo.backend.remote:
        yield from map(one, packs)
        return
    with ThreadPoolExecutor(TABLE_READERS, thread_name_prefix="snap-table") as pool:
        yield from pool.map(one, packs)


def add_pack_tables(index: Index, tables: Iterable[tuple[bytes, int, list[BlobEntry]]], report: SyncReport,
                    *, remembered: dict[bytes, ChunkLocation] | None = None) -> set[bytes]:
    """Index each pack's blobs (refcount 0, or the remembered count of a relocated blob).
    Returns the ids that were added."""
    remembered = remembered if remembered is not None else {}
    added: set[bytes] = set()
    for batch in _batches(tables):
        # one transaction for a batch of packs: a commit is an fsync, which cost a fresh host
        # ~7 ms a pack (50,000 packs: 6 minutes); a batch is still whole or absent, and an
        # interrupted sync's next run adds what is missing
        with index.write() as txn:
            for pack, size, entries in batch:
                if index.has_pack(txn, pack):
                    continue
                index.put_pack(txn, pack, size, len(entries))
                for e in entries:
                    if index.get_chunk(e.id, txn) is not None:
                        report.duplicate_blobs += 1
                        continue
                    old = remembered.pop(e.id, None)
                    count = old.refcount if old is not None else 0
                    loc = ChunkLocation(pack, e.offset, e.stored_len, e.raw_len, e.type, e.compression, count)
                    if old is not None:
                        index.put_chunk(txn, e.id, loc)
                    else:
                        index.index_blob(txn, e.id, loc)  # a blob counted as lost keeps its count
                    if old is not None:
                        report.blobs_relocated += 1
                    else:
                        report.blobs_added += 1
                    added.add(e.id)
                report.packs_added += 1
    return added


def _batches(tables: Iterable[tuple[bytes, int, list[BlobEntry]]], *, blobs: int = 50_000, packs: int = 1000
             ) -> Iterator[list[tuple[bytes, int, list[BlobEntry]]]]:
    """Tables in batches of at most ``packs`` packs or about ``blobs`` blobs (a bounded
    transaction: its dirty pages are held in memory until the commit)."""
    batch: list[tuple[bytes, int, list[BlobEntry]]] = []
    held = 0
    for item in tables:
        batch.append(item)
        held += len(item[2])
        if len(batch) >= packs or held >= blobs:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def drop_packs(index: Index, packs: set[bytes], truncated: dict[bytes, int] | None = None
               ) -> dict[bytes, ChunkLocation]:
    """Remove packs and the blobs located in them, and the blobs that lie beyond the end of
    ``truncated`` packs (pack -> its size now; the pack stays indexed at that size, for a
    repair to salvage what it still holds); returns the removed blobs (with refcounts)."""
    truncated = truncated or {}
    if not packs and not truncated:
        return {}
    lost: dict[bytes, ChunkLocation] = {}
    with index.write() as txn:
        for blob_id, loc in list(index.iter_chunks(txn)):
            cut = loc.pack in truncated and loc.offset + loc.stored_len > truncated[loc.pack]
            if loc.pack in packs or cut:
                lost[blob_id] = loc
        for blob_id in lost:
            index.delete_chunk(txn, blob_id)
        for pack in packs:
            index.delete_pack(txn, pack)
        for pack, size in truncated.items():
            count = sum(1 for loc in lost.values() if loc.pack == pack)
            index.put_pack(txn, pack, size, max(0, _count_of(index, txn, pack) - count))
    return lost


def _count_of(index: Index, txn: Txn, pack: bytes) -> int:
    for known, _size, count in index.iter_packs(txn):
        if known == pack:
            return count
    return 0


def mark_dead(index: Index, ids: Iterable[bytes]) -> None:
    """Mark the given blobs dead where nothing references them (so gc finds them)."""
    with index.write() as txn:
        for blob_id in ids:
            loc = index.get_chunk(blob_id, txn)
            if loc is not None and loc.refcount == 0:
                index.set_dead(txn, blob_id, True)


# -- snapshots ----------------------------------------------------------------------------
def add_records(repo: Repository, index: Index, records: Iterable[Snapshot], report: SyncReport, *,
                require_root: bool = True) -> None:
    """Add snapshot records the index lacks, counting their references. With ``require_root``
    a record whose root tree is not indexed is skipped (only a repair can help it)."""
    unreadable: list[bytes] = []
    children = tolerant_children(repo, unreadable)
    for snap in records:
        root = bytes.fromhex(snap.root)
        with index.write() as txn:
            if index.has_snapshot(txn, snap.id):
                continue
            if require_root and index.get_chunk(root, txn) is None:
                report.skipped_records.append(snap.id)
                continue
            counts = TolerantCounts(index, txn)
            unreadable.clear()
            add_reference(counts, root, children)
            index.put_snapshot(txn, snap.id, snap.to_bytes())
            if unreadable:
                # the children of a tree that could not be read were not counted: counts too
                # low, which a gc would take for garbage; a writer recounts before any gc
                index.flag_recount(txn, f"a tree of snapshot {snap.short_id} could not be read when it was "
                                        "counted")
        report.snapshots_added.append(snap.id)
        if counts.missing:
            report.incomplete_snapshots.append(snap.id)
            report.notes.append(f"snapshot {snap.short_id} lacks {len(counts.missing)} blob(s): "
                                "'snap verify' lists the paths")


def drop_records(repo: Repository, index: Index, snap_ids: Iterable[str], report: SyncReport) -> bool:
    """Remove snapshots from the index, releasing their references. Returns whether some tree
    could not be read (its children were not released: counts stay too high until a
    :func:`recount`)."""
    unreadable: list[bytes] = []
    children = tolerant_children(repo, unreadable)

    for snap_id in snap_ids:
        with index.write() as txn:
            raw = index.get_snapshot(txn, snap_id)
            if raw is None:
                continue
            snap = Snapshot.from_bytes(raw)
            if repo.can_read:  # a write-only host keeps no reference counts (it never runs gc)
                drop_reference(TolerantCounts(index, txn), bytes.fromhex(snap.root), children)
            index.delete_snapshot(txn, snap_id)
            if unreadable:
                index.flag_recount(txn, f"a tree of forgotten snapshot {snap_id[:8]} could not be read")
        report.snapshots_dropped.append(snap_id)
    return bool(unreadable)


def recount(repo: Repository, index: Index, lost: dict[bytes, ChunkLocation] | None = None) -> list[bytes]:
    """Set every refcount to what the snapshots in the index reference (walking their trees
    once each): the blobs in the index, the ``lost`` table (referenced blobs in no pack) and
    the in-memory ``lost`` blobs of a sync. Clears the recount flag, unless a tree the index
    holds could not be read (then its children's counts are unknown: the flag stays, and gc
    waits for ``snap repair index``). Returns the ids of those unreadable trees."""
    from snapstore.format.packfile import TYPE_TREE

    lost = lost if lost is not None else {}
    values: dict[bytes, int] = {}
    unreadable: list[bytes] = []
    with index.read() as txn:
        types = {blob_id: loc.type for blob_id, loc in index.iter_chunks(txn)}
        records = index.snapshot_records(txn)
    children = tolerant_children(repo, unreadable)

    class Counts:
        def count(self, blob_id: bytes) -> int:
            return values.get(blob_id, 0)

        def set_count(self, blob_id: bytes, value: int) -> None:
            values[blob_id] = value

        def is_tree(self, blob_id: bytes) -> bool:
            return types.get(blob_id) == TYPE_TREE  # a lost tree cannot be walked

    store = Counts()
    for raw in records:
        add_reference(store, bytes.fromhex(Snapshot.from_bytes(raw).root), children)
    with index.write() as txn:
        for blob_id, loc in list(index.iter_chunks(txn)):
            value = values.pop(blob_id, 0)
            if value != loc.refcount:
                index.put_chunk(txn, blob_id, replace(loc, refcount=value))
                if value == 0:
                    index.set_dead(txn, blob_id, True)
                elif loc.refcount == 0:
                    index.set_dead(txn, blob_id, False)
        for blob_id, loc in list(lost.items()):
            lost[blob_id] = replace(loc, refcount=values.get(blob_id, 0))
        index.replace_lost(txn, {b: v for b, v in values.items() if b not in lost})  # referenced, in no pack
        index.clear_recount(txn)
        if unreadable:
            index.flag_recount(txn, f"tree {unreadable[0].hex()[:16]} could not be read while counting")
    return unreadable


def read_records(repo: Repository, ids: Iterable[str], report: SyncReport) -> list[Snapshot]:
    """The records with these ids from the repository (unreadable ones noted and left out)."""
    out: list[Snapshot] = []
    if not repo.can_read:
        return out  # a write-only key cannot read records; its host keeps only its own (take --due)
    for snap_id in sorted(ids):
        try:
            snap = repo.load_record(snap_id)
        except FileNotFoundError:
            continue  # forgotten while we listed
        except (FormatError, OSError) as exc:
            report.notes.append(f"{snapshot_name(snap_id)}: {exc}")
            report.bad_records.append(snapshot_name(snap_id))
            continue
        out.append(snap)
    return out


def sync_pins(repo: Repository, index: Index) -> None:
    """Make the index's pins those of ``pins.json`` (when the file exists)."""
    pins = repo.read_pins()
    if pins is None:
        return
    with index.write() as txn:
        for pin in index.pinned(txn) - pins:
            index.set_pin(txn, pin, False)
        for pin in pins:
            if index.has_snapshot(txn, pin):
                index.set_pin(txn, pin, True)


def indexed_snapshot_ids(index: Index) -> set[str]:
    return index.snapshot_ids()


# -- the sync ----------------------------------------------------------------------
def sync_index(repo: Repository, *, gone: set[bytes] | None = None, recount_flagged: bool = True,
               announced: tuple[set[str], dict[bytes, tuple[int, float]]] | None = None) -> SyncReport:
    """Bring this host's index of a repository up to date (see the module docstring).
    ``gone``: packs to treat as deleted although they are still listed (a live gc's list).
    ``recount_flagged``: recount when the index is flagged (writers; a reader leaves it).
    ``announced``: the records and packs (pack -> size, mtime) as the announcements since this
    index's last sync make them (snapstore.repo.generation), used instead of the listings."""
    report = SyncReport()
    index = repo.index
    gone = gone or set()
    # records first: a take uploads its packs before its record, so every record listed here
    # finds its packs in the listing that follows; records a forget has declared it drops
    # count as gone (the forgetting host, or the next writer, deletes them)
    records = set(announced[0]) if announced is not None else repo.record_ids()
    records -= set().union(*repo.forget_intents().values())
    listed: dict[bytes, tuple[int, float]] = {}
    if announced is not None:
        listed = {pack: where for pack, where in announced[1].items() if pack not in gone}
    else:
        for name, size, mtime in repo.backend.list_stat("packs"):
            pack = pack_id_of(name)
            if pack is not None and pack not in gone:
                listed[pack] = (size, mtime)
    with index.read() as txn:
        known = {pack: size for pack, size, _count in index.iter_packs(txn)}
    indexed = indexed_snapshot_ids(index)

    # 1. snapshots forgotten elsewhere (a tree a gc elsewhere already deleted could not be
    # released: the index is flagged for a recount)
    unreleased = drop_records(repo, index, sorted(indexed - records), report)
    # 2. packs deleted elsewhere, and packs cut short (a disk fault): their blobs leave the
    # index, so that no take deduplicates against them
    vanished = {p for p in known if p not in listed}
    truncated = {p: listed[p][0] for p in known if p in listed and listed[p][0] < known[p]}
    lost = drop_packs(index, vanished, truncated)
    report.packs_dropped = len(vanished)
    for pack, size in sorted(truncated.items()):
        report.truncated.append(f"{pack_name(pack)} is truncated ({size} of {known[pack]} bytes): the blobs past "
                            "its end leave the index ('snap repair index' salvages what it holds)")
    # 3. packs this index has not seen
    new = sorted((p, listed[p][0]) for p in listed if p not in known)
    added = add_pack_tables(index, _readable(read_tables(repo, new), report), report, remembered=lost)
    exact = False
    flag = index.recount_flag()
    if flag is not None and (unreleased or recount_flagged) and repo.can_read:
        # before step 4: what a forgotten snapshot held and was never released (its trees were
        # deleted by a gc elsewhere) is not looked for, nor counted as lost
        exact = not _recount(repo, index, lost, flag.reason, report)
    # 4. referenced blobs whose pack vanished and that no new pack holds
    live_lost = {b: loc for b, loc in lost.items() if loc.refcount > 0}
    if live_lost:
        newest_first = sorted((p for p in listed if p in known and p not in truncated), key=lambda p: -listed[p][1])
        _relocate(repo, index, live_lost, [(p, listed[p][0]) for p in newest_first], report)
        if live_lost:
            # counted in the lost table (a take that stores them again finds their counts
            # there), and recounted below from every snapshot kept
            with index.write() as txn:
                for blob_id, loc in live_lost.items():
                    index.set_lost(txn, blob_id, (index.get_lost(txn, blob_id) or 0) + loc.refcount)
                if not exact:
                    index.flag_recount(txn, f"{len(live_lost)} referenced blob(s) were lost with their packs")
            report.blobs_lost += len(live_lost)
            report.notes.append(f"{len(live_lost)} referenced blob(s) are in no pack: 'snap verify' names them")
    if lost:
        index.prune_files_cache()  # entries naming lost blobs could only ever miss
    # 5. snapshots taken elsewhere, or here by a take killed between its record and its commit
    fresh = read_records(repo, records - indexed, report)
    add_records(repo, index, fresh, report)
    # a forget that began after the listing may have dropped a record just added: out again
    dropped = [sid for sid in report.snapshots_added if repo.backend.size(snapshot_name(sid)) is None]
    if dropped:
        drop_records(repo, index, dropped, SyncReport())
        report.snapshots_added = [sid for sid in report.snapshots_added if sid not in dropped]
    here = host_name()
    report.interrupted = [f"added snapshot {snap.short_id} whose commit was interrupted" for snap in fresh
                          if snap.id in report.snapshots_added and snap.hostname == here]
    # 6. pins, and dead marks for what nothing references
    sync_pins(repo, index)
    mark_dead(index, added)
    # 7. a recount, when something above (or an earlier, interrupted sync) flagged the counts
    flag = index.recount_flag()
    if flag is not None and recount_flagged and repo.can_read and not report.recounted:
        _recount(repo, index, None, flag.reason, report)
    for name, _size in report.bad_packs:
        report.notes.append(f"{name}: pack table unreadable ('snap verify' reports it)")
    return report


def _recount(repo: Repository, index: Index, lost: dict[bytes, ChunkLocation] | None, reason: str,
             report: SyncReport) -> bool:
    """Step 7 (or the early one): recount, say why; True when some tree could not be read."""
    unreadable = recount(repo, index, lost)
    report.recounted = reason
    if unreadable:
        report.notes.append(f"{len(unreadable)} tree(s) could not be read while counting references "
                            f"(e.g. {unreadable[0].hex()[:16]}): gc waits for 'snap repair index'")
    return bool(unreadable)


def _readable(tables: Iterable[tuple[bytes, int, list[BlobEntry] | None]], report: SyncReport
              ) -> Iterator[tuple[bytes, int, list[BlobEntry]]]:
    for pack, size, entries in tables:
        if entries is None:
            report.bad_packs.append((pack_name(pack), size))
            continue
        yield pack, size, entries


def _relocate(repo: Repository, index: Index, lost: dict[bytes, ChunkLocation], packs: list[tuple[bytes, int]],
              report: SyncReport) -> None:
    """Find the blobs of ``lost`` in ``packs`` (read in batches, stopping when all are found)."""
    batch = TABLE_READERS * 2
    for start in range(0, len(packs), batch):
        if not lost:
            return
        for pack, _size, entries in read_tables(repo, packs[start : start + batch]):
            if not entries:
                continue
            with index.write() as txn:
                for e in entries:
                    old = lost.get(e.id)
                    if old is None or index.get_chunk(e.id, txn) is not None:
                        continue
                    loc = ChunkLocation(pack, e.offset, e.stored_len, e.raw_len, e.type, e.compression,
                                        old.refcount)
                    index.put_chunk(txn, e.id, loc)
                    del lost[e.id]
                    report.blobs_relocated += 1

