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
  6. pins follow ``pins.json``; new blobs nothing references are marked dead for gc.

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
    """Counts that skip blobs the index does not have (and remember them)."""

    def __init__(self, index: Index, txn: Txn) -> None:
        super().__init__(index, txn)
        self.missing: set[bytes] = set()

    def count(self, blob_id: bytes) -> int:
        try:
            return super().count(blob_id)
        except KeyError:
            self.missing.add(blob_id)
            return 1  # not 0: a missing tree has no children to walk

    def set_count(self, blob_id: bytes, value: int) -> None:
        if blob_id not in self.missing:
            super().set_count(blob_id, value)

    def is_tree(self, blob_id: bytes) -> bool:
        return blob_id not in self.missing and super().is_tree(blob_id)


def tolerant_children(repo: Repository) -> Callable[[bytes], list[bytes]]:
    def children(tree_id: bytes) -> list[bytes]:
        try:
            return repo.tree_children(tree_id)
        except (ChunkUnreadable, FormatError, FileNotFoundError):
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
    for pack, size, entries in tables:
        with index.write() as txn:
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
                index.put_chunk(txn, e.id, loc)
                if old is not None:
                    report.blobs_relocated += 1
                else:
                    report.blobs_added += 1
                added.add(e.id)
        report.packs_added += 1
    return added


def drop_packs(index: Index, packs: set[bytes]) -> dict[bytes, ChunkLocation]:
    """Remove packs and the blobs located in them; returns those blobs (with refcounts)."""
    if not packs:
        return {}
    lost: dict[bytes, ChunkLocation] = {}
    with index.write() as txn:
        for blob_id, loc in list(index.iter_chunks(txn)):
            if loc.pack in packs:
                lost[blob_id] = loc
        for blob_id in lost:
            index.delete_chunk(txn, blob_id)
        for pack in packs:
            index.delete_pack(txn, pack)
    return lost


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
    children = tolerant_children(repo)
    for snap in records:
        root = bytes.fromhex(snap.root)
        with index.write() as txn:
            if index.has_snapshot(txn, snap.id):
                continue
            if require_root and index.get_chunk(root, txn) is None:
                report.skipped_records.append(snap.id)
                continue
            counts = TolerantCounts(index, txn)
            add_reference(counts, root, children)
            index.put_snapshot(txn, snap.id, snap.to_bytes())
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

    def children(tree_id: bytes) -> list[bytes]:
        try:
            return repo.tree_children(tree_id)
        except (ChunkUnreadable, FormatError, FileNotFoundError):
            unreadable.append(tree_id)
            return []

    for snap_id in snap_ids:
        with index.write() as txn:
            raw = index.get_snapshot(txn, snap_id)
            if raw is None:
                continue
            snap = Snapshot.from_bytes(raw)
            if repo.can_read:  # a write-only host keeps no reference counts (it never runs gc)
                drop_reference(TolerantCounts(index, txn), bytes.fromhex(snap.root), children)
            index.delete_snapshot(txn, snap_id)
        report.snapshots_dropped.append(snap_id)
    return bool(unreadable)


def recount(repo: Repository, index: Index, lost: dict[bytes, ChunkLocation]) -> None:
    """Set every refcount to what the snapshots in the index reference (walking their trees
    once each), for blobs in the index and for the ``lost`` ones (whose pack vanished)."""
    from snapstore.format.packfile import TYPE_TREE

    values: dict[bytes, int] = {}
    children = tolerant_children(repo)

    class Counts:
        def count(self, blob_id: bytes) -> int:
            return values.get(blob_id, 0)

        def set_count(self, blob_id: bytes, value: int) -> None:
            values[blob_id] = value

        def is_tree(self, blob_id: bytes) -> bool:
            loc = index.get_chunk(blob_id) or lost.get(blob_id)
            return loc is not None and loc.type == TYPE_TREE

    store = Counts()
    for raw in index.snapshot_records():
        add_reference(store, bytes.fromhex(Snapshot.from_bytes(raw).root), children)
    with index.write() as txn:
        for blob_id, loc in list(index.iter_chunks(txn)):
            value = values.get(blob_id, 0)
            if value != loc.refcount:
                index.put_chunk(txn, blob_id, replace(loc, refcount=value))
                if value == 0:
                    index.set_dead(txn, blob_id, True)
                elif loc.refcount == 0:
                    index.set_dead(txn, blob_id, False)
    for blob_id, loc in list(lost.items()):
        lost[blob_id] = replace(loc, refcount=values.get(blob_id, 0))


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
def sync_index(repo: Repository, *, gone: set[bytes] | None = None) -> SyncReport:
    """Bring this host's index of a repository up to date (see the module docstring).
    ``gone``: packs to treat as deleted although they are still listed (a live gc's list)."""
    report = SyncReport()
    index = repo.index
    gone = gone or set()
    # records first: a take uploads its packs before its record, so every record listed here
    # finds its packs in the listing that follows; records a forget has declared it drops
    # count as gone (the forgetting host, or the next writer, deletes them)
    records = repo.record_ids()
    records -= set().union(*repo.forget_intents().values())
    listed: dict[bytes, tuple[int, float]] = {}
    for name, size, mtime in repo.backend.list_stat("packs"):
        pack = pack_id_of(name)
        if pack is not None and pack not in gone:
            listed[pack] = (size, mtime)
    with index.read() as txn:
        known = {pack: size for pack, size, _count in index.iter_packs(txn)}
    indexed = indexed_snapshot_ids(index)

    # 1. snapshots forgotten elsewhere
    unreleased = drop_records(repo, index, sorted(indexed - records), report)
    # 2. packs deleted elsewhere
    vanished = {p for p in known if p not in listed}
    lost = drop_packs(index, vanished)
    report.packs_dropped = len(vanished)
    # 3. packs this index has not seen
    new = sorted((p, listed[p][0]) for p in listed if p not in known)
    added = add_pack_tables(index, _readable(read_tables(repo, new), report), report, remembered=lost)
    if unreleased:
        # a forgotten snapshot's trees were already deleted by a gc elsewhere: what they held
        # was never released, so count again from the snapshots that remain
        recount(repo, index, lost)
    # 4. referenced blobs whose pack vanished and that no new pack holds
    live_lost = {b: loc for b, loc in lost.items() if loc.refcount > 0}
    if live_lost:
        newest_first = sorted((p for p in listed if p in known), key=lambda p: -listed[p][1])
        _relocate(repo, index, live_lost, [(p, listed[p][0]) for p in newest_first], report)
        if live_lost:
            report.blobs_lost += len(live_lost)
            report.notes.append(f"{len(live_lost)} referenced blob(s) are in no pack: 'snap verify' names them")
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
    for name, _size in report.bad_packs:
        report.notes.append(f"{name}: pack table unreadable ('snap verify' reports it)")
    return report


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

