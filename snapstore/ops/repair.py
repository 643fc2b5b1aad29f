"""Index repair: rebuild the LMDB index from the pack files and snapshot records alone.

Nothing is deleted. A pack whose table is unreadable is salvaged by scanning its blob headers
(each salvaged blob is checked against its id) into a new pack written by the one pack sink
(:mod:`snapstore.repo.packsink`: checked on disk before it is stored), and only once every new
pack is stored and the new index built is the damaged file moved to ``damaged/packs/`` (a
failure before that removes the new packs and the half-built index: the repository stays as it
was); a snapshot record that does not parse or authenticate goes to ``damaged/snapshots/`` and
is written again from the old index's copy when it has one (unless a forget intent names the
snapshot: that forget is finishing), so the snapshot is kept, not dropped; the old index
directory is kept as ``damaged/index-<time>`` (in the local cache directory of a remote
repository). Every such move is reported. Snapshots whose blobs are all present come
back whole; a snapshot with missing blobs comes back too, and the report names what it lacks
(``snap verify`` lists the paths). The index is built with the same steps as the remote sync
(:mod:`snapstore.repo.indexsync`), into an empty index.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field

from snapstore import faults
from snapstore.errors import FormatError
from snapstore.format.packfile import BlobEntry, scan_blobs
from snapstore.format.snapshot import Snapshot
from snapstore.repo.index import Index
from snapstore.repo.indexsync import (
    SyncReport,
    add_pack_tables,
    add_records,
    mark_dead,
    pack_id_of,
    read_records,
    read_tables,
    recount,
    sync_pins,
)
from snapstore.repo.packsink import EncodedBlob, PackSink
from snapstore.repo.repository import Repository, pack_name, snapshot_name


@dataclass
class RepairReport:
    packs: int = 0
    blobs: int = 0
    duplicate_blobs: int = 0
    snapshots: int = 0
    incomplete_snapshots: list[str] = field(default_factory=list)
    salvaged_blobs: int = 0
    moved_aside: list[str] = field(default_factory=list)
    restored_records: list[str] = field(default_factory=list)  # snapshot ids written again from the index
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def _index_copy(repo: Repository, name: str) -> Snapshot | None:
    """The copy of the snapshot record ``name`` that the index (the one being replaced) keeps,
    when it is there and is the record of that name."""
    snap_id = name.rsplit("/", 1)[-1].removesuffix(".json")
    with repo.index.read() as txn:
        raw = repo.index.get_snapshot(txn, snap_id)
    if raw is None:
        return None
    try:
        snap = Snapshot.from_bytes(raw)
    except FormatError:
        return None
    return snap if snap.id == snap_id and snapshot_name(snap.id) == name else None


def _move_aside(repo: Repository, name: str, report: RepairReport) -> None:
    repo.backend.rename(name, f"damaged/{name}")
    report.moved_aside.append(f"{name} -> damaged/{name}")


def _salvage(repo: Repository, pack: bytes, size: int, sink: PackSink) -> int:
    """Blobs of a pack with a broken table, checked one by one, appended to ``sink`` (the one
    pack sink: the new pack is checked before anything refers to it). Returns how many."""
    name = pack_name(pack)
    count = 0

    def read_at(offset: int, length: int) -> bytes:
        return repo.backend.get_range(name, offset, length)

    try:
        for entry in scan_blobs(read_at, size):
            payload = read_at(entry.offset, entry.stored_len)
            found = repo.salvage_entry(entry, payload)  # decrypted, decompressed, id checked
            if found is None:
                continue
            sink.add(found.id, found.type, EncodedBlob(found.compression, payload, found.raw_len))
            count += 1
    except FormatError:
        pass
    return count


def repair_index(repo: Repository) -> RepairReport:
    """Rebuild ``repo``'s index (the repository must be open in ``exclusive`` mode)."""
    repo.require_full_key("repair it")
    started = time.monotonic()
    report = RepairReport()
    _remove_killed_rebuilds(repo.cache_dir)
    build_dir = os.path.join(repo.cache_dir, f"index.rebuild-{os.getpid()}")
    shutil.rmtree(build_dir, ignore_errors=True)
    os.makedirs(build_dir)
    new = Index(build_dir)
    sync = SyncReport()
    # Salvaged blobs of every damaged pack go to new packs (one per salvaged pack and blob type,
    # so the report says where each went). A damaged pack is moved aside only at the end, once
    # every new pack is checked and stored and the new index is built: a failure before that
    # deletes the new packs and the half-built index, and nothing has moved.
    sink = PackSink(repo.backend, pack_size=repo.config.pack_size, parallel=repo.backend.parallel_puts,
                    what="writing salvaged pack", crypto=repo.crypto)
    damaged: list[bytes] = []
    try:
        listed: list[tuple[bytes, int]] = []
        for name, size in sorted(repo.backend.list("packs")):
            pack = pack_id_of(name)
            if pack is None:
                report.notes.append(f"ignored {name}: not a pack file name")
                continue
            listed.append((pack, size))
        packs: list[tuple[bytes, int, list[BlobEntry]]] = []
        for pack, size, entries in read_tables(repo, listed):
            if entries is not None:
                packs.append((pack, size, entries))
                continue
            damaged.append(pack)
            report.salvaged_blobs += _salvage(repo, pack, size, sink)
            for stored in sink.flush():
                packs.append((stored.id, stored.size, list(stored.entries)))
                report.notes.append(f"pack {pack.hex()}: table unreadable; {len(stored.entries)} intact blobs "
                                    f"copied to {stored.id.hex()}")
        add_pack_tables(new, packs, sync)
        faults.crash_point("repair-mid-build")
        report.packs = len(packs)
        report.blobs = sync.blobs_added
        report.duplicate_blobs = sync.duplicate_blobs
        # A repository view over the new index, to read trees while counting.
        staged = Repository(repo.path, repo.backend, repo.config, new, cache_dir=repo.cache_dir)
        staged.crypto = repo.crypto
        ids = []
        for name, _size in sorted(repo.backend.list("snapshots")):
            if not name.endswith(".json"):
                continue
            snap_id = name.rsplit("/", 1)[-1][: -len(".json")]
            if snapshot_name(snap_id) != name:
                report.notes.append(f"{name}: not a snapshot record name")
                continue
            ids.append(snap_id)
        readable = read_records(staged, ids, sync)
        report.notes.extend(sync.notes)
        declared = set().union(*repo.forget_intents().values())
        for name in sync.bad_records:  # records that do not parse, authenticate or match their name
            try:
                _move_aside(repo, name, report)
            except FileNotFoundError:
                continue
            copy = _index_copy(repo, name)
            if copy is not None and copy.id not in declared:
                repo.store_record(copy)  # the record as it was stored, sealed again
                readable.append(copy)
                report.restored_records.append(copy.id)
                report.notes.append(f"{name} was damaged: written again from the index's copy")
        sync.notes.clear()
        add_records(staged, new, readable, sync, require_root=False)
        report.snapshots = len(sync.snapshots_added)
        report.incomplete_snapshots = list(sync.incomplete_snapshots)
        report.notes.extend(sync.notes)
        sync_pins(staged, new)
        _drop_unreadable_trees(staged, new, report)
        with new.read() as txn:
            unreferenced = [blob_id for blob_id, loc in new.iter_chunks(txn) if loc.refcount == 0]
        mark_dead(new, unreferenced)
        sink.mark_committed()  # the new index refers to the salvaged packs
    except BaseException:
        sink.abort()
        new.close()
        shutil.rmtree(build_dir, ignore_errors=True)  # the old index stays in place, untouched
        raise
    sink.close()
    new.close()
    for pack in damaged:
        _move_aside(repo, pack_name(pack), report)
    # swap: the old index is kept aside, the rebuilt one takes its place
    repo.index.close()
    old = os.path.join(repo.cache_dir, "index")
    if os.path.exists(old):
        os.makedirs(os.path.join(repo.cache_dir, "damaged"), exist_ok=True)
        name = _free_name(os.path.join(repo.cache_dir, "damaged"), "index-" + time.strftime("%Y%m%dT%H%M%S",
                                                                                           time.gmtime()))
        os.rename(old, os.path.join(repo.cache_dir, "damaged", name))
        report.moved_aside.append(f"index -> damaged/{name} (the old index; safe to delete)")
    os.rename(build_dir, old)
    repo.index = Index(old)
    report.duration_s = time.monotonic() - started
    return report


def _drop_unreadable_trees(repo: Repository, index: Index, report: RepairReport) -> None:
    """Count every reference again; a tree in a sound pack that does not read back (a damaged
    blob) leaves the index for the ``lost`` table, like a blob in no pack: a take stores it
    again instead of deduplicating against it, and the counts are exact (no recount flag)."""
    for _round in range(8):  # a dropped tree's own subtrees may be next; each round drops some
        unreadable = recount(repo, index)
        if not unreadable:
            return
        with index.write() as txn:
            for tree_id in set(unreadable):
                loc = index.get_chunk(tree_id, txn)
                if loc is None:
                    continue
                index.delete_chunk(txn, tree_id)
                index.set_lost(txn, tree_id, loc.refcount)
                report.notes.append(f"tree {tree_id.hex()[:16]} in pack {loc.pack.hex()} is damaged: it left the "
                                    "index ('snap verify' names the paths under it; a take stores it again)")
    with index.write() as txn:
        index.flag_recount(txn, "trees kept failing to read during the repair")


def _remove_killed_rebuilds(cache_dir: str) -> None:
    """Half-built indexes of repairs that were killed (the old index stayed in place: nothing
    else needs them). Only this host's processes use this cache, so a dead pid is conclusive."""
    from snapstore.storage.locking import pid_alive

    for name in os.listdir(cache_dir):
        pid = name.removeprefix("index.rebuild-")
        if name.startswith("index.rebuild-") and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(os.path.join(cache_dir, name), ignore_errors=True)


def _free_name(directory: str, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``... : a name not yet taken in ``directory`` (two
    repairs within one second must not collide)."""
    name, n = base, 1
    while os.path.exists(os.path.join(directory, name)):
        n += 1
        name = f"{base}-{n}"
    return name
