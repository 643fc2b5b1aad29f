"""Index repair: rebuild the LMDB index from the pack files and snapshot records alone.

Nothing is deleted. A pack whose table is unreadable is salvaged by scanning its blob headers
(each salvaged blob is checked against its id) into a new pack, and the damaged file is moved
to ``damaged/packs/``; a snapshot record that does not parse goes to ``damaged/snapshots/``;
the old index directory is kept as ``damaged/index-<time>``. Every such move is reported.
Snapshots whose blobs are all present come back whole; a snapshot with missing blobs comes
back too, and the report names what it lacks (``snap verify`` lists the paths).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field

from snapstore.chunker import chunk_id
from snapstore.compress import decompress
from snapstore.errors import ChunkUnreadable, FormatError
from snapstore.index import ChunkLocation, Index, TxnCounts
from snapstore.packfile import PackWriter, scan_blobs
from snapstore.refcount import add_reference
from snapstore.repository import Repository, pack_name, snapshot_name
from snapstore.snapshot import Snapshot


@dataclass
class RepairReport:
    packs: int = 0
    blobs: int = 0
    duplicate_blobs: int = 0
    snapshots: int = 0
    incomplete_snapshots: list[str] = field(default_factory=list)
    salvaged_blobs: int = 0
    moved_aside: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


class _TolerantCounts(TxnCounts):
    """Counts over the new index that skip blobs it does not have (and remember them)."""

    def __init__(self, index: Index, txn: object) -> None:
        super().__init__(index, txn)  # type: ignore[arg-type]
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


def _move_aside(repo: Repository, name: str, report: RepairReport) -> None:
    src = os.path.join(repo.path, name)
    dest = os.path.join(repo.path, "damaged", name)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.rename(src, dest)
    report.moved_aside.append(f"{name} -> damaged/{name}")


def _salvage(repo: Repository, pack: bytes, size: int, report: RepairReport) -> list[tuple[bytes, object]]:
    """Blobs of a pack with a broken table, checked one by one, copied into a new pack."""
    name = pack_name(pack)
    good = []

    def read_at(offset: int, length: int) -> bytes:
        return repo.backend.get_range(name, offset, length)

    try:
        for entry in scan_blobs(read_at, size):
            payload = read_at(entry.offset, entry.stored_len)
            try:
                if chunk_id(decompress(entry.compression, payload, entry.raw_len)) == entry.id:
                    good.append((entry, payload))
            except ValueError:
                continue
    except FormatError:
        pass
    if not good:
        return []
    new_id = os.urandom(16)
    writer = PackWriter(os.path.join(repo.backend.local_tmp_dir(), f"{new_id.hex()}.pack.tmp"))
    for entry, payload in good:
        writer.add(entry.id, entry.type, entry.compression, payload, entry.raw_len)
    writer.finish()
    repo.backend.put_file(pack_name(new_id), writer.path)
    report.salvaged_blobs += len(good)
    report.notes.append(f"pack {pack.hex()}: table unreadable; {len(good)} intact blobs copied to {new_id.hex()}")
    return [(new_id, (writer.size, writer.entries))]


def repair_index(repo: Repository) -> RepairReport:
    """Rebuild ``repo``'s index (the repository must be open in ``exclusive`` mode)."""
    started = time.monotonic()
    report = RepairReport()
    build_dir = os.path.join(repo.path, f"index.rebuild-{os.getpid()}")
    shutil.rmtree(build_dir, ignore_errors=True)
    os.makedirs(build_dir)
    new = Index(build_dir)
    try:
        packs: list[tuple[bytes, int, list]] = []
        for name, size in sorted(repo.backend.list("packs")):
            stem = os.path.basename(name)
            try:
                pack = bytes.fromhex(stem[: -len(".pack")]) if stem.endswith(".pack") else b""
            except ValueError:
                pack = b""
            if len(pack) != 16:
                report.notes.append(f"ignored {name}: not a pack file name")
                continue
            try:
                packs.append((pack, size, repo.read_pack_table(pack)))
            except (FormatError, OSError):
                for new_id, (new_size, entries) in _salvage(repo, pack, size, report):  # type: ignore[misc]
                    packs.append((new_id, new_size, entries))
                _move_aside(repo, name, report)
        with new.write() as txn:
            for pack, size, entries in packs:
                txn.put(pack, new.pack_value(size, len(entries)), db=new.packs)
                for e in entries:
                    if txn.get(e.id, db=new.chunks) is not None:
                        report.duplicate_blobs += 1
                        continue
                    loc = ChunkLocation(pack, e.offset, e.stored_len, e.raw_len, e.type, e.compression, 0)
                    txn.put(e.id, loc.pack_value(), db=new.chunks)
                    report.blobs += 1
        report.packs = len(packs)
        # A repository view over the new index, to read trees while counting.
        staged = Repository(repo.path, repo.backend, repo.config, new)

        def children(tree_id: bytes) -> list[bytes]:
            try:
                return staged.tree_children(tree_id)
            except (ChunkUnreadable, FormatError):
                return []

        for name, _size in sorted(repo.backend.list("snapshots")):
            if not name.endswith(".json"):
                continue
            try:
                snap = Snapshot.from_bytes(repo.backend.get(name))
                if snapshot_name(snap.id) != name:
                    raise FormatError("record name does not match its id")
            except (FormatError, OSError) as exc:
                report.notes.append(f"{name}: {exc}")
                _move_aside(repo, name, report)
                continue
            with new.write() as txn:
                counts = _TolerantCounts(new, txn)
                add_reference(counts, bytes.fromhex(snap.root), children)
                txn.put(snap.id.encode(), snap.to_bytes(), db=new.snapshots)
            report.snapshots += 1
            if counts.missing:
                report.incomplete_snapshots.append(snap.id)
                report.notes.append(f"snapshot {snap.short_id} lacks {len(counts.missing)} blob(s): "
                                    "'snap verify' lists the paths")
        try:
            pins = json.loads(repo.backend.get("pins.json"))
        except (OSError, ValueError):
            pins = []
        with new.write() as txn:
            for pin in pins:
                if txn.get(str(pin).encode(), db=new.snapshots) is not None:
                    txn.put(str(pin).encode(), b"", db=new.pins)
            for blob_id, loc in list(new.iter_chunks(txn)):
                if loc.refcount == 0:
                    txn.put(blob_id, b"", db=new.dead)
    finally:
        new.close()
    # swap: the old index is kept aside, the rebuilt one takes its place
    repo.index.close()
    old = os.path.join(repo.path, "index")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    if os.path.exists(old):
        os.makedirs(os.path.join(repo.path, "damaged"), exist_ok=True)
        os.rename(old, os.path.join(repo.path, "damaged", f"index-{stamp}"))
        report.moved_aside.append(f"index -> damaged/index-{stamp} (the old index; safe to delete)")
    os.rename(build_dir, old)
    repo.index = Index(old)
    report.duration_s = time.monotonic() - started
    return report
