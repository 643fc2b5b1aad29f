"""Copying snapshots to another repository, sending only the blobs the target lacks.

Works between any two repositories (local or S3, in either direction): blob ids are the BLAKE3
of the raw content, so a blob means the same thing everywhere, whatever the chunker settings.
(Deduplication *between hosts* writing to one repository needs equal chunker settings; a copy
does not.)

For each snapshot the target does not have yet (records are content-addressed: the same id is
the same snapshot), oldest first:

1. walk its trees in the source; a tree the target holds *alive* (refcount > 0) is complete
   there and is not entered; every other tree is entered, and each blob the target's index
   lacks is wanted;
2. read the wanted blobs' stored (compressed) payloads from the source, pack by pack in offset
   order with neighbouring blobs fetched in one ranged read, check each against its id
   (decompress + BLAKE3), and append them unchanged to new target packs (data and trees in
   separate packs, as a take writes them);
3. finish each pack with the one pack sink (:mod:`snapstore.repo.packsink`): fsync, read back
   and checksum, put it to the target, read its table back from the target and compare it with
   what was written, index it as pending;
4. commit the record in the target (record file, then one transaction counting references),
   exactly as a take commits.

A copy that fails removes the packs it stored for the snapshot it was copying (snapshots it
already committed stay); a copy killed half way leaves unreferenced packs in the target (gc
removes them), never a snapshot with missing data. Copying again skips what is there: a second copy of the same
snapshots sends nothing.

Between repositories whose ids or encryption differ (plaintext into encrypted, or two encrypted
repositories with different keys) a payload means nothing in the target, so the copy
**re-encodes** instead (:class:`_Translator`): each blob is read and checked in the source,
its id recomputed with the target's id key, compressed and sealed for the target; trees are
rewritten bottom-up with the new ids, and so the record gets a new root and a new id. Steps 3
and 4 are the same.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from snapstore.errors import ChunkUnreadable, RepositoryDamaged, SnapshotNotFound, UsageError
from snapstore.format.packfile import TYPE_DATA, TYPE_TREE, BlobEntry
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import CHUNK_REF, encode_tree, tree_children
from snapstore.repo.index import ChunkLocation, index_errors
from snapstore.repo.packsink import EncodedBlob, PackSink, StoredPack, encode_blob
from snapstore.repo.repository import Repository, pack_name

MAX_GAP = 64 * 1024  # neighbouring blobs closer than this are fetched in one ranged read
MAX_SPAN = 8 * 1024 * 1024  # and one ranged read is at most this long


@dataclass
class CopyResult:
    copied: list[dict[str, object]] = field(default_factory=list)
    skipped: list[dict[str, object]] = field(default_factory=list)
    blobs_sent: int = 0
    trees_sent: int = 0
    bytes_sent: int = 0  # stored (compressed) payload bytes written to target packs
    packs_written: int = 0
    blobs_checked: int = 0  # payloads decompressed and hash-checked before sending
    tables_checked: int = 0  # target pack tables read back and compared after the upload
    duration_s: float = 0.0

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class _Plan:
    data: list[bytes]
    trees: list[bytes]
    children: dict[bytes, bytes]  # tree id -> concatenated child ids (as a take passes them)


def plan_snapshot(source: Repository, target: Repository, snap: Snapshot, sending: set[bytes]) -> _Plan:
    """What the target lacks of ``snap`` (``sending``: ids already queued by this copy)."""
    data: list[bytes] = []
    trees: list[bytes] = []
    children: dict[bytes, bytes] = {}
    seen: set[bytes] = set()
    stack = [bytes.fromhex(snap.root)]
    while stack:
        tree_id = stack.pop()
        if tree_id in seen:
            continue
        seen.add(tree_id)
        loc = target.index.get_chunk(tree_id)
        if loc is not None and loc.refcount > 0:
            continue  # alive in the target: everything below it is there
        children[tree_id] = b"".join(tree_children(source.read_blob(tree_id)))
        if loc is None and tree_id not in sending:
            trees.append(tree_id)
            sending.add(tree_id)
        for entry in source.read_tree(tree_id):
            if entry.subtree:
                stack.append(entry.subtree)
            elif entry.chunks:
                for blob_id in entry.chunk_ids():
                    if blob_id not in sending and not target.index.has_chunk(blob_id):
                        data.append(blob_id)
                        sending.add(blob_id)
    return _Plan(data, trees, children)


class _TargetPacks:
    """New packs in the target, written by the one pack sink; each stored pack's table is read
    back from the target and compared before the pack is indexed (pending)."""

    def __init__(self, target: Repository, result: CopyResult) -> None:
        self.target = target
        self.result = result
        self.sink = PackSink(target.backend, pack_size=target.config.pack_size,
                             parallel=target.backend.parallel_puts, on_stored=self._stored,
                             on_discard=target.index.drop_unreferenced_packs, delete_on_abort=not target.remote,
                             what="writing target pack", crypto=target.crypto)

    def add(self, entry: BlobEntry, payload: bytes) -> None:
        # the payload is stored exactly as the source encoded it: the sink does not look inside
        self.sink.add(entry.id, entry.type, EncodedBlob(entry.compression, payload, entry.raw_len))
        self.result.bytes_sent += len(payload)
        if entry.type == TYPE_TREE:
            self.result.trees_sent += 1
        else:
            self.result.blobs_sent += 1

    def _stored(self, pack: StoredPack) -> None:
        table = self.target.read_pack_table(pack.id)
        if [(e.id, e.offset, e.stored_len) for e in table] != [(e.id, e.offset, e.stored_len) for e in pack.entries]:
            raise RepositoryDamaged(f"pack {pack.id.hex()} in the target does not hold what was sent")
        with index_errors(f"indexing pack {pack.id.hex()}", self.target.index):
            self.target.index.add_pack(pack.id, pack.size, list(pack.entries), pending=True)

    def flush(self) -> list[bytes]:
        """Finish every open pack; returns the packs finished since the last flush."""
        done = [p.id for p in self.sink.flush()]
        self.result.packs_written += len(done)
        self.result.tables_checked += len(done)
        return done

    def committed(self) -> None:
        self.sink.mark_committed()

    def close(self, ok: bool) -> None:
        if ok:
            self.sink.close()
        else:
            self.sink.abort()


def _send(source: Repository, ids: Iterable[bytes], out: _TargetPacks, result: CopyResult) -> None:
    """Read ``ids`` from the source (coalesced ranged reads), check them, append to ``out``."""
    by_pack: dict[bytes, list[tuple[bytes, ChunkLocation]]] = defaultdict(list)
    for blob_id in ids:
        loc = source.index.get_chunk(blob_id)
        if loc is None:
            raise ChunkUnreadable(f"chunk {blob_id.hex()[:16]} is not in the source index", blob_id)
        by_pack[loc.pack].append((blob_id, loc))
    for pack in sorted(by_pack):
        items = sorted(by_pack[pack], key=lambda item: item[1].offset)
        i = 0
        while i < len(items):
            start = items[i][1].offset
            end = start + items[i][1].stored_len
            j = i
            while j + 1 < len(items):
                nxt = items[j + 1][1]
                if nxt.offset - end > MAX_GAP or nxt.offset + nxt.stored_len - start > MAX_SPAN:
                    break
                j += 1
                end = max(end, nxt.offset + nxt.stored_len)
            try:
                span = source.backend.get_range(pack_name(pack), start, end - start)
            except FileNotFoundError:
                raise ChunkUnreadable(f"pack {pack.hex()} is missing in the source", items[i][0], pack.hex()) from None
            for blob_id, loc in items[i : j + 1]:
                payload = span[loc.offset - start : loc.offset - start + loc.stored_len]
                try:
                    source.decode_payload(blob_id, loc.type, loc.compression, payload, loc.raw_len, pack.hex())
                except ChunkUnreadable:
                    raise ChunkUnreadable(f"chunk {blob_id.hex()[:16]} in source pack {pack.hex()} is corrupt; "
                                          "nothing was committed ('snap verify' on the source)", blob_id,
                                          pack.hex()) from None
                result.blobs_checked += 1
                out.add(BlobEntry(blob_id, loc.type, loc.compression, 0, loc.stored_len, loc.raw_len), payload)
            i = j + 1


def same_encoding(source: Repository, target: Repository) -> bool:
    """Whether a payload of the source means the same in the target (ids and keys equal)."""
    a, b = source.crypto, target.crypto
    if a is None or b is None:
        return a is None and b is None
    return (a.material.id_key, a.material.table_key, a.material.seal_public) == \
        (b.material.id_key, b.material.table_key, b.material.seal_public)


class _Translator:
    """Re-encodes snapshots for a target with other ids or keys (see the module docstring)."""

    def __init__(self, source: Repository, target: Repository, out: _TargetPacks, result: CopyResult) -> None:
        self.source = source
        self.target = target
        self.out = out
        self.result = result
        self.ids: dict[bytes, bytes] = {}  # source blob id -> target blob id
        self.trees: dict[bytes, bytes] = {}  # source tree id -> target tree id
        self.queued: set[bytes] = set()  # target ids written by this copy
        self.children: dict[bytes, bytes] = {}  # new target tree -> its children (for the commit)
        self.sent: list[bytes] = []  # target ids of the current snapshot that must arrive

    def _put(self, new_id: bytes, blob_type: int, data: bytes) -> bool:
        if new_id in self.queued or self.target.index.has_chunk(new_id):
            return False
        encoded = encode_blob(new_id, data, self.target.config.compression_level, blob_type=blob_type,
                              crypto=self.target.crypto)
        self.out.add(BlobEntry(new_id, blob_type, encoded.code, 0, len(encoded.payload), encoded.raw_len),
                     encoded.payload)
        self.queued.add(new_id)
        self.sent.append(new_id)
        return True

    def chunk(self, src_id: bytes) -> bytes:
        known = self.ids.get(src_id)
        if known is not None:
            return known
        data = self.source.read_blob(src_id)  # decrypted and checked against its source id
        self.result.blobs_checked += 1
        new_id = self.target.blob_id(data)
        self._put(new_id, TYPE_DATA, data)
        self.ids[src_id] = new_id
        return new_id

    def tree(self, src_id: bytes) -> bytes:
        known = self.trees.get(src_id)
        if known is not None:
            return known
        entries = []
        for entry in self.source.read_tree(src_id):
            if entry.subtree:
                entry = replace(entry, subtree=self.tree(entry.subtree))
            elif entry.chunks:
                entry = replace(entry, chunks=b"".join(CHUNK_REF.pack(self.chunk(cid), length)
                                                       for cid, length in entry.chunk_refs()))
            entries.append(entry)
        data = encode_tree(entries)
        self.result.blobs_checked += 1
        new_id = self.target.blob_id(data)
        if self._put(new_id, TYPE_TREE, data):
            self.children[new_id] = b"".join(tree_children(data))
        self.trees[src_id] = new_id
        return new_id

    def snapshot(self, snap: Snapshot) -> Snapshot:
        """The record as the target stores it: its trees (and their blobs) written first."""
        self.sent = []
        root = self.tree(bytes.fromhex(snap.root))
        return self.target.snapshot_with_id(replace(snap, root=root.hex(), id=""))


def copy_snapshots(source: Repository, target: Repository, snapshots: list[Snapshot], *,
                   progress: Callable[[dict[str, object]], None] | None = None) -> CopyResult:
    """Copy ``snapshots`` from ``source`` (open for reading) to ``target`` (open for writing)."""
    if source.config.id == target.config.id:
        raise UsageError("source and target are the same repository")
    started = time.monotonic()
    result = CopyResult()
    present = {s.id for s in target.snapshots()}
    out = _TargetPacks(target, result)
    sending: set[bytes] = set()
    ok = False
    translator = None if same_encoding(source, target) else _Translator(source, target, out, result)
    try:
        for snap in sorted(snapshots, key=lambda s: (s.time, s.id)):
            if translator is not None:
                snap = translator.snapshot(snap)
                packs = out.flush()
                if snap.id in present:
                    result.skipped.append(snap.summary())
                    continue
                missing = [b for b in translator.sent if not target.index.has_chunk(b)]
                if missing:
                    raise RepositoryDamaged(f"{len(missing)} blob(s) of snapshot {snap.short_id} did not reach "
                                            "the target; nothing was committed")
                target.commit_snapshot(snap, packs=packs, new_trees=translator.children, files={})
                out.committed()
                present.add(snap.id)
                result.copied.append(snap.summary())
                if progress:
                    progress({"files": len(result.copied), "bytes": result.bytes_sent, "path": snap.short_id})
                continue
            if snap.id in present:
                result.skipped.append(snap.summary())
                continue
            plan = plan_snapshot(source, target, snap, sending)
            _send(source, plan.data, out, result)
            _send(source, plan.trees, out, result)
            packs = out.flush()
            missing = [b for b in plan.data + plan.trees if not target.index.has_chunk(b)]
            if missing:
                raise RepositoryDamaged(f"{len(missing)} blob(s) of snapshot {snap.short_id} did not reach the "
                                        "target; nothing was committed")
            target.commit_snapshot(snap, packs=packs, new_trees=plan.children, files={})
            out.committed()
            present.add(snap.id)
            result.copied.append(snap.summary())
            if progress:
                progress({"files": len(result.copied), "bytes": result.bytes_sent, "path": snap.short_id})
        ok = True
    finally:
        out.close(ok)
    result.duration_s = time.monotonic() - started
    return result


def select_snapshots(repo: Repository, specs: list[str], *, tier: str | None, latest: bool) -> list[Snapshot]:
    """Snapshots named by ``specs``; else those of ``tier`` (all, or the latest with
    ``latest``); else the latest one with ``latest``; else every snapshot."""
    if specs:
        if tier or latest:
            raise UsageError("give SNAPSHOT... or --tier/--latest, not both")
        from snapstore.view.selectors import resolve_snapshot

        chosen = {s.id: s for s in (resolve_snapshot(repo, spec) for spec in specs)}
        return list(chosen.values())
    snaps = repo.snapshots()
    if tier:
        snaps = [s for s in snaps if s.tier == tier]
        if not snaps:
            raise SnapshotNotFound(f"no snapshot in tier {tier!r} in this repository")
    if latest:
        snaps = snaps[-1:]
    return snaps
