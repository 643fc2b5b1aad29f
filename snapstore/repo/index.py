"""The LMDB index: every piece of LMDB code lives here.

Named databases (keys and values are bytes):

    chunks     blob id (32)  -> pack id (16) | u64 offset | u32 stored_len | u32 raw_len
                                | u8 type | u8 compression | u32 refcount
    packs      pack id (16)  -> u64 size | u32 blob count
    pending    pack id (16)  -> b""   packs written by a take that has not committed yet
    dead       blob id (32)  -> b""   blobs whose refcount dropped to zero (gc candidates)
    snapshots  snapshot id (hex, ascii) -> the snapshot record (JSON)
    pins       snapshot id (hex, ascii) -> b""
    files      absolute path (bytes) -> msgpack [size, mtime_ns, ctime_ns, inode, chunk refs]
    meta       key -> value (index version, ...)

The index is a cache of what the backend holds: ``snap repair index`` rebuilds it from the
packs and snapshot records. Writers commit in one transaction, so a reader never sees half a
snapshot.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lmdb
import msgpack

from snapstore.errors import FormatError, NoSpace, RepositoryDamaged, SnapError

CHUNK_VALUE = struct.Struct("<16sQIIBBI")
PACK_VALUE = struct.Struct("<QI")
INDEX_VERSION = b"1"
MAP_SIZE = 1 << 40  # address space only; the file grows with use


@dataclass(frozen=True, slots=True)
class ChunkLocation:
    pack: bytes  # 16 raw bytes; hex is the file name
    offset: int
    stored_len: int
    raw_len: int
    type: int
    compression: int
    refcount: int

    def pack_value(self) -> bytes:
        return CHUNK_VALUE.pack(
            self.pack, self.offset, self.stored_len, self.raw_len, self.type, self.compression, self.refcount
        )

    @classmethod
    def unpack(cls, raw: bytes) -> ChunkLocation:
        if len(raw) != CHUNK_VALUE.size:
            raise FormatError("malformed chunk index record")
        return cls(*CHUNK_VALUE.unpack(raw))


class Index:
    """An open LMDB environment with snapstore's named databases."""

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        try:
            self.env = lmdb.open(
                path,
                map_size=MAP_SIZE,
                max_dbs=16,
                max_readers=512,
                subdir=True,
                readonly=readonly,
                metasync=True,
                sync=True,
                readahead=False,
            )
        except lmdb.Error as exc:
            raise RepositoryDamaged(f"cannot open index {path}: {exc}") from None
        if not readonly:
            self.env.reader_check()
        create = not readonly
        self.chunks = self.env.open_db(b"chunks", create=create)
        self.packs = self.env.open_db(b"packs", create=create)
        self.pending = self.env.open_db(b"pending", create=create)
        self.dead = self.env.open_db(b"dead", create=create)
        self.snapshots = self.env.open_db(b"snapshots", create=create)
        self.pins = self.env.open_db(b"pins", create=create)
        self.files = self.env.open_db(b"files", create=create)
        self.meta = self.env.open_db(b"meta", create=create)
        if not readonly:
            with self.env.begin(write=True) as txn:
                if txn.get(b"version", db=self.meta) is None:
                    txn.put(b"version", INDEX_VERSION, db=self.meta)

    def close(self) -> None:
        self.env.close()

    def read(self) -> lmdb.Transaction:
        return self.env.begin(buffers=False)

    def write(self) -> lmdb.Transaction:
        return self.env.begin(write=True)

    # -- chunks ---------------------------------------------------------------------------
    def get_chunk(self, blob_id: bytes, txn: lmdb.Transaction | None = None) -> ChunkLocation | None:
        found: bytes | memoryview | None
        if txn is None:
            with self.env.begin() as own:
                found = own.get(blob_id, db=self.chunks)
        else:
            found = txn.get(blob_id, db=self.chunks)
        return None if found is None else ChunkLocation.unpack(bytes(found))

    def has_chunk(self, blob_id: bytes) -> bool:
        with self.env.begin() as txn:
            return txn.get(blob_id, db=self.chunks) is not None

    def add_pack(self, pack: bytes, size: int, entries: list[Any], *, pending: bool) -> None:
        """Index a finished pack's blobs with refcount 0 (they become live when referenced)."""
        with self.env.begin(write=True) as txn:
            txn.put(pack, PACK_VALUE.pack(size, len(entries)), db=self.packs)
            if pending:
                txn.put(pack, b"", db=self.pending)
            for e in entries:
                if txn.get(e.id, db=self.chunks) is None:
                    loc = ChunkLocation(pack, e.offset, e.stored_len, e.raw_len, e.type, e.compression, 0)
                    txn.put(e.id, loc.pack_value(), db=self.chunks)

    def drop_unreferenced_packs(self, packs: list[tuple[bytes, list[Any]]]) -> None:
        """Un-index packs that no commit refers to (a take or copy that failed part way): the
        pack and pending records, and each of their blobs indexed there with refcount 0."""
        with self.env.begin(write=True) as txn:
            for pack, entries in packs:
                for e in entries:
                    raw = txn.get(e.id, db=self.chunks)
                    if raw is not None:
                        loc = ChunkLocation.unpack(bytes(raw))
                        if loc.pack == pack and loc.refcount == 0:
                            txn.delete(e.id, db=self.chunks)
                            txn.delete(e.id, db=self.dead)
                txn.delete(pack, db=self.packs)
                txn.delete(pack, db=self.pending)

    def iter_chunks(self, txn: lmdb.Transaction) -> Iterator[tuple[bytes, ChunkLocation]]:
        with txn.cursor(db=self.chunks) as cur:
            for key, value in cur:
                yield bytes(key), ChunkLocation.unpack(bytes(value))

    def iter_packs(self, txn: lmdb.Transaction) -> Iterator[tuple[bytes, int, int]]:
        with txn.cursor(db=self.packs) as cur:
            for key, value in cur:
                size, count = PACK_VALUE.unpack(value)
                yield bytes(key), size, count

    def iter_keys(self, txn: lmdb.Transaction, db: Any) -> Iterator[bytes]:
        with txn.cursor(db=db) as cur:
            for key in cur.iternext(keys=True, values=False):
                yield bytes(key)

    # -- snapshots ------------------------------------------------------------------------
    def snapshot_records(self) -> list[bytes]:
        with self.env.begin() as txn, txn.cursor(db=self.snapshots) as cur:
            return [bytes(v) for _k, v in cur]

    def pinned(self) -> set[str]:
        with self.env.begin() as txn:
            return {k.decode() for k in self.iter_keys(txn, self.pins)}

    # -- files cache ----------------------------------------------------------------------
    def get_file(self, txn: lmdb.Transaction, path: bytes) -> list[Any] | None:
        raw = txn.get(path, db=self.files)
        if raw is None:
            return None
        try:
            value = msgpack.unpackb(raw)
        except Exception:
            return None
        return value if isinstance(value, list) and len(value) == 5 else None

    @staticmethod
    def pack_value(size: int, count: int) -> bytes:
        return PACK_VALUE.pack(size, count)

    def prune_files_cache(self) -> int:
        """Drop files-cache entries whose chunks are no longer all indexed (gc removed some).
        Such an entry could never be used again; this keeps the cache from growing forever."""
        stale: list[bytes] = []
        with self.env.begin() as txn, txn.cursor(db=self.files) as cur:
            for key, raw in cur:
                try:
                    value = msgpack.unpackb(raw)
                    chunks = value[4]
                    ok = all(txn.get(chunks[i : i + 32], db=self.chunks) is not None
                             for i in range(0, len(chunks), 36))
                except Exception:
                    ok = False
                if not ok:
                    stale.append(bytes(key))
        if stale:
            with self.env.begin(write=True) as txn:
                for key in stale:
                    txn.delete(key, db=self.files)
        return len(stale)

    def put_files(self, entries: dict[bytes, bytes]) -> None:
        """Write files-cache entries (path -> encoded value) in one transaction."""
        with self.env.begin(write=True) as txn:
            for path, value in entries.items():
                txn.put(path, value, db=self.files)

    @staticmethod
    def encode_file(size: int, mtime_ns: int, ctime_ns: int, inode: int, chunks: bytes) -> bytes:
        return msgpack.packb([size, mtime_ns, ctime_ns, inode, chunks], use_bin_type=True)


@contextmanager
def index_errors(what: str, index: Index | None = None) -> Iterator[None]:
    """Turn an LMDB failure inside the block into the user-facing error: a full disk (or a full
    map) is :class:`NoSpace`, one line with its exit code, never an ``lmdb.Error`` traceback. The
    failed transaction was aborted, so the index is as it was. LMDB reports a short write on a
    full disk as EIO, so with ``index`` given, an I/O error while its filesystem is (nearly)
    full counts as a full disk too."""
    try:
        yield
    except lmdb.MapFullError:
        raise NoSpace(f"no space left in the index map while {what}") from None
    except lmdb.Error as exc:
        text = str(exc)
        if "No space left" in text or "quota" in text.lower() or (index is not None and _nearly_full(index)):
            raise NoSpace(f"no space left on device while {what}") from None
        raise SnapError(f"{what}: index error: {text}") from None


def _nearly_full(index: Index) -> bool:
    try:
        st = os.statvfs(index.env.path())
    except (OSError, lmdb.Error):
        return False
    return st.f_bavail * st.f_frsize < 1024 * 1024


class TxnCounts:
    """The refcount store of :mod:`snapstore.repo.refcount` over one write transaction."""

    def __init__(self, index: Index, txn: lmdb.Transaction) -> None:
        self.index = index
        self.txn = txn
        # refcount.py asks count / set_count / is_tree of one id in a row: a small cache serves
        # that without holding every location a big commit touches (memory would grow with it).
        self._cache: dict[bytes, ChunkLocation] = {}

    def location(self, blob_id: bytes) -> ChunkLocation:
        loc = self._cache.get(blob_id)
        if loc is None:
            loc = self.index.get_chunk(blob_id, self.txn)
            if loc is None:
                raise KeyError(blob_id)
            if len(self._cache) >= 1024:
                self._cache.clear()
            self._cache[blob_id] = loc
        return loc

    def count(self, blob_id: bytes) -> int:
        return self.location(blob_id).refcount

    def is_tree(self, blob_id: bytes) -> bool:
        from snapstore.format.packfile import TYPE_TREE

        return self.location(blob_id).type == TYPE_TREE

    def set_count(self, blob_id: bytes, value: int) -> None:
        loc = self.location(blob_id)
        new = ChunkLocation(loc.pack, loc.offset, loc.stored_len, loc.raw_len, loc.type, loc.compression, value)
        self._cache[blob_id] = new
        self.txn.put(blob_id, new.pack_value(), db=self.index.chunks)
        if value == 0:
            self.txn.put(blob_id, b"", db=self.index.dead)
        elif loc.refcount == 0:
            self.txn.delete(blob_id, db=self.index.dead)
