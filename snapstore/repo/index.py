"""The LMDB index: every piece of LMDB code lives here, behind typed methods.

Named databases (keys and values are bytes)::

    chunks     blob id (32)  -> pack id (16) | u64 offset | u32 stored_len | u32 raw_len
                                | u8 type | u8 compression | u32 refcount
    packs      pack id (16)  -> u64 size | u32 blob count
    pending    pack id (16)  -> b""   packs written by a take that has not committed yet
    dead       blob id (32)  -> b""   blobs whose refcount dropped to zero (gc candidates)
    snapshots  snapshot id (hex, ascii) -> the snapshot record (JSON)
    pins       snapshot id (hex, ascii) -> b""
    filecache  BLAKE3-128 of the absolute path (16) -> msgpack [size, mtime_ns, ctime_ns, inode, chunk refs]
    lost       blob id (32)  -> u32 refcount   referenced blobs that are in no pack (lost packs)
    meta       key -> value (``version``: the index layout, :data:`INDEX_VERSION`;
               ``recount``: a :class:`RecountFlag`, set while the refcounts may be inexact)

Reference counts stay exact across damage: a blob that is referenced but in no pack (its pack
vanished, or a repair found it nowhere) is counted in ``lost``, never in ``chunks``, so takes
store it again instead of deduplicating against it; when a pack holding it is indexed again (a
take re-stored it, a pack came back) it takes its count from there. A lost *tree* cannot be
walked, so its children miss its references: when one comes back with references, or a tree
could not be read while counting, the index is flagged (:meth:`Index.flag_recount`) until a
full recount (:func:`snapstore.repo.indexsync.recount`) clears the flag; gc refuses to run
on a flagged index.

The files cache is keyed by a fixed-size hash of the path, so a path of any length works (LMDB
keys stop at 511 bytes) and the key size does not grow with the paths. An entry proves a file
unchanged only through :meth:`Index.unchanged_chunks`, the one rule take and watch share.

The index is a cache of what the backend holds: it is rebuilt from the packs and snapshot
records when missing, and ``snap repair index`` rebuilds it on demand. Its layout has its own
version, independent of the repository format: version 1 kept the files cache in a ``files``
database keyed by the raw path; an index of version 1 is re-keyed in place when opened for
writing. Writers commit in one
transaction, so a reader never sees half a snapshot. Callers get transactions from
:meth:`Index.read` / :meth:`Index.write` and pass them to the typed methods; they never name a
database.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import blake3
import lmdb
import msgpack

from snapstore import memory
from snapstore.errors import FormatError, NoSpace, RepositoryDamaged, SnapError
from snapstore.format.chunker import ID_SIZE
from snapstore.format.packfile import TYPE_TREE
from snapstore.format.tree import CHUNK_REF

CHUNK_VALUE = struct.Struct("<16sQIIBBI")
PACK_VALUE = struct.Struct("<QI")
INDEX_VERSION = 3  # 3: the ``lost`` table and the recount flag
LOST_VALUE = struct.Struct("<I")
FILE_KEY_SIZE = 16  # BLAKE3-128 of the path: collisions would also need equal size, times and inode
MAP_SIZE = 1 << 40  # address space only; the file grows with use

Txn = lmdb.Transaction


def cache_root() -> str:
    """``$XDG_CACHE_HOME/snapstore`` (``~/.cache/snapstore``): this user's caches of every repository."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "snapstore")


def cache_dir_for(repo_id: str) -> str:
    """Where this host keeps a repository's index: ``$XDG_CACHE_HOME/snapstore/<repository id>``
    (``~/.cache/snapstore/<id>``)."""
    return os.path.join(cache_root(), repo_id)


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

    def with_refcount(self, value: int) -> ChunkLocation:
        return ChunkLocation(self.pack, self.offset, self.stored_len, self.raw_len, self.type, self.compression,
                             value)


@dataclass(frozen=True, slots=True)
class RecountFlag:
    """Why the index's refcounts may be inexact (gc must wait for a recount)."""

    reason: str
    since: float

    def encode(self) -> bytes:
        return json.dumps({"reason": self.reason, "since": self.since}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> RecountFlag:
        try:
            data = json.loads(raw)
            return cls(str(data["reason"]), float(data["since"]))
        except (ValueError, KeyError, TypeError):
            return cls("the recount flag is unreadable", 0.0)


_packers = threading.local()  # CachedFile.encode's msgpack.Packer, one per thread


@dataclass(frozen=True)
class CachedDir:
    """A directories-cache entry: the lstat digest of a directory's non-directory entries,
    the digest of its subdirectory entries, the tree a take stored for it, and what its
    non-directory entries add up to (for the snapshot's counts)."""

    digest: bytes  # 16
    subdirs: bytes  # 16
    tree_id: bytes
    files: int
    links: int
    size: int
    chunks: int

    _LAYOUT = struct.Struct(f"<16s16s{ID_SIZE}sQQQQ")

    def encode(self) -> bytes:
        return self._LAYOUT.pack(self.digest, self.subdirs, self.tree_id, self.files, self.links, self.size,
                                 self.chunks)

    @classmethod
    def decode(cls, raw: bytes) -> CachedDir | None:
        if len(raw) != cls._LAYOUT.size:
            return None  # a damaged entry is only a miss
        return cls(*cls._LAYOUT.unpack(raw))


@dataclass(frozen=True, slots=True)
class CachedFile:
    """A files-cache entry: the stat of a file when it was read, and its chunk refs."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    chunks: bytes  # concatenated CHUNK_REF records

    def encode(self) -> bytes:
        # a Packer per thread: msgpack.packb makes (and frees) a 256 KiB buffer on every call
        packer = getattr(_packers, "packer", None)
        if packer is None:
            packer = _packers.packer = msgpack.Packer(use_bin_type=True)
        return packer.pack([self.size, self.mtime_ns, self.ctime_ns, self.inode, self.chunks])

    @classmethod
    def decode(cls, raw: bytes) -> CachedFile | None:
        try:
            value = msgpack.unpackb(raw)
        except Exception:  # a damaged entry is only a cache miss
            return None
        if not (isinstance(value, list) and len(value) == 5 and isinstance(value[4], bytes)):
            return None
        return cls(*value)

    @classmethod
    def of(cls, st: os.stat_result, chunks: bytes) -> CachedFile:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, chunks)

    def matches(self, st: os.stat_result) -> bool:
        # ctime too: a file rewritten with its old mtime restored (touch -r, rsync) has a new ctime
        return (self.size, self.mtime_ns, self.ctime_ns, self.inode) == \
            (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def file_key(path: bytes) -> bytes:
    """The files-cache key of an absolute path."""
    return blake3.blake3(path).digest(length=FILE_KEY_SIZE)


def chunk_ids(refs: bytes) -> Iterator[bytes]:
    """The blob ids in concatenated CHUNK_REF records."""
    for i in range(0, len(refs), CHUNK_REF.size):
        yield refs[i : i + ID_SIZE]


class Index:
    """An open LMDB environment with snapstore's named databases."""

    def __init__(self, path: str, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._open()
        if not readonly:
            self._upgrade()

    def _open(self) -> None:
        readonly = self.readonly
        try:
            self.env = lmdb.open(
                self.path,
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
            raise RepositoryDamaged(f"cannot open index {self.path}: {exc}") from None
        if not readonly:
            self.env.reader_check()
        create = not readonly
        self._chunks = self.env.open_db(b"chunks", create=create)
        self._packs = self.env.open_db(b"packs", create=create)
        self._pending = self.env.open_db(b"pending", create=create)
        self._dead = self.env.open_db(b"dead", create=create)
        self._snapshots = self.env.open_db(b"snapshots", create=create)
        self._pins = self.env.open_db(b"pins", create=create)
        # version 1 had a ``files`` database keyed by raw paths; ``filecache`` replaces it
        self._files = self.env.open_db(b"filecache", create=create)
        self._meta = self.env.open_db(b"meta", create=create)
        self._lost = self.env.open_db(b"lost", create=create)
        try:  # added after layout 3 was defined: an index opened read-only may not have it yet
            self._dirs: Any = self.env.open_db(b"dircache", create=create)
        except lmdb.NotFoundError:
            self._dirs = None

    def _upgrade(self) -> None:
        """Bring an index of an older layout to :data:`INDEX_VERSION` (it is a cache: what
        cannot be carried over is dropped and refills by use)."""
        with self.env.begin() as txn:
            raw = txn.get(b"version", db=self._meta)
        version = int(raw) if raw is not None and bytes(raw).isdigit() else None
        if version == INDEX_VERSION:
            return
        if version == 1:
            self._rekey_files_cache()
        with self.env.begin(write=True) as txn:
            if version not in (None, 1, 2):  # a layout this code does not know: start the files cache afresh
                txn.drop(self._files, delete=False)
            if version is not None:
                # layouts before 3 kept no counts for lost blobs: count once from the snapshots
                self.flag_recount(txn, f"index layout {version} kept no counts of lost blobs")
            txn.put(b"version", str(INDEX_VERSION).encode(), db=self._meta)

    def _rekey_files_cache(self) -> None:
        """Version 1 -> 2: copy the raw-path ``files`` entries to ``filecache`` under their
        hashed keys, in batches (memory stays bounded); killed half way, the next open redoes it."""
        old = self.env.open_db(b"files", create=True)
        after = b""
        while True:
            with self.env.begin(write=True) as txn, txn.cursor(db=old) as cur:
                found = cur.set_range(after) if after else cur.first()
                batch = 0
                while found and batch < 10_000:
                    key = bytes(cur.key())
                    if key != after:
                        txn.put(file_key(key), bytes(cur.value()), db=self._files)
                        batch += 1
                        after = key
                    found = cur.next()
            if batch == 0:
                break
        with self.env.begin(write=True) as txn:
            txn.drop(old, delete=True)

    def version(self) -> int | None:
        with self.env.begin() as txn:
            raw = txn.get(b"version", db=self._meta)
        return int(raw) if raw is not None and bytes(raw).isdigit() else None

    def close(self) -> None:
        self.env.close()

    def release_mapped(self) -> None:
        """Drop this process's resident pages of the index file (:mod:`snapstore.memory`): a
        take looks at most of the file, and each page read would stay in its RSS."""
        memory.release_file_mapping(os.path.join(self.path, "data.mdb"))

    # -- compaction -----------------------------------------------------------------------
    def usage(self) -> tuple[int, int]:
        """The data file's size and the bytes of the pages its databases use. The B-trees
        have random keys (ids, path hashes), so the file keeps the high-water mark of every
        big write (copy-on-write pages, freed only after the transaction) and its pages are
        about two-thirds full."""
        size = os.path.getsize(os.path.join(self.path, "data.mdb"))
        stat = self.env.stat()
        pages = 2 + stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]  # 2 meta pages
        with self.env.begin() as txn:
            for name in self._names(txn):
                found = txn.stat(self.env.open_db(name, txn=txn, create=False))
                pages += found["branch_pages"] + found["leaf_pages"] + found["overflow_pages"]
        return size, pages * stat["psize"]

    def _names(self, txn: Txn) -> list[bytes]:
        with txn.cursor() as cur:  # the main database holds only the named databases' records
            return [bytes(key) for key in cur.iternext(keys=True, values=False)]

    def opened_elsewhere(self) -> bool:
        """Whether another process has this index open. Every process that opens an LMDB
        environment holds a POSIX lock on its ``lock.mdb`` for as long as it has it open; the
        kernel lists them in /proc/locks (only Linux says: elsewhere, assume it is shared)."""
        try:
            inode = os.stat(os.path.join(self.path, "lock.mdb")).st_ino
            with open("/proc/locks", "rb") as handle:
                table = handle.read().splitlines()
        except OSError:
            return True
        me, ours = str(os.getpid()).encode(), str(inode).encode()
        for line in table:
            fields = line.split()
            # "1: POSIX  ADVISORY  READ  <pid> <major>:<minor>:<inode> <start> <end>" (a process of
            # another pid namespace shows as pid 0: not this one)
            if len(fields) >= 6 and fields[1] == b"POSIX" and fields[5].rsplit(b":", 1)[-1] == ours \
                    and fields[4] != me:
                return True
        return False

    def compact(self, batch: int = 20_000) -> tuple[int, int]:
        """Rewrite the index with only its live records, every page full: each database is
        copied in key order with appends (LMDB then fills a leaf before starting the next, where
        random inserts split pages in half), in transactions of ``batch`` records so that the
        copy's dirty pages stay few; the new file then replaces the old one in one rename.
        Returns the file's size before and after.

        The caller holds the cache's ``sync`` lock (no process opens the index meanwhile) and
        the repository's write lock (no other writer), and has made sure that no other process
        has the index open (:meth:`opened_elsewhere`): one would go on with the old file.
        Killed part way, the old file is intact and the copy is removed by the next compaction."""
        data = os.path.join(self.path, "data.mdb")
        before = os.path.getsize(data)
        work = self.path.rstrip("/") + ".compact"
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        try:
            copy = lmdb.open(work, map_size=MAP_SIZE, max_dbs=16, subdir=True, sync=False, metasync=False,
                             readahead=False)
            try:
                with self.env.begin() as src:
                    for name in self._names(src):
                        self._copy_db(src, name, copy, batch)
                        self.release_mapped()
                copy.sync(True)
            finally:
                copy.close()
            self.env.close()
            os.replace(os.path.join(work, "data.mdb"), data)
            _fsync_dir(self.path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if not self._is_open():
                self._open()
        return before, os.path.getsize(data)

    def _copy_db(self, src: Txn, name: bytes, copy: lmdb.Environment, batch: int) -> None:
        source = self.env.open_db(name, txn=src, create=False)
        target = copy.open_db(name, create=True)
        with src.cursor(db=source) as cur:
            items = cur.iternext(keys=True, values=True)
            while True:
                chunk = [(bytes(k), bytes(v)) for k, v in itertools.islice(items, batch)]
                if not chunk:
                    break
                with copy.begin(write=True) as txn, txn.cursor(db=target) as out:
                    out.putmulti(chunk, append=True)

    def _is_open(self) -> bool:
        try:
            self.env.flags()
        except lmdb.Error:
            return False
        return True

    def read(self) -> Txn:
        return self.env.begin(buffers=False)

    def write(self) -> Txn:
        return self.env.begin(write=True)

    # -- chunks ---------------------------------------------------------------------------
    def get_chunk(self, blob_id: bytes, txn: Txn | None = None) -> ChunkLocation | None:
        found: bytes | memoryview | None
        if txn is None:
            with self.env.begin() as own:
                found = own.get(blob_id, db=self._chunks)
        else:
            found = txn.get(blob_id, db=self._chunks)
        return None if found is None else ChunkLocation.unpack(bytes(found))

    def has_chunk(self, blob_id: bytes) -> bool:
        with self.env.begin() as txn:
            return txn.get(blob_id, db=self._chunks) is not None

    def put_chunk(self, txn: Txn, blob_id: bytes, loc: ChunkLocation) -> None:
        txn.put(blob_id, loc.pack_value(), db=self._chunks)

    def delete_chunk(self, txn: Txn, blob_id: bytes) -> None:
        """Forget a blob (and its dead mark)."""
        txn.delete(blob_id, db=self._chunks)
        txn.delete(blob_id, db=self._dead)

    def set_dead(self, txn: Txn, blob_id: bytes, dead: bool) -> None:
        if dead:
            txn.put(blob_id, b"", db=self._dead)
        else:
            txn.delete(blob_id, db=self._dead)

    def is_dead(self, txn: Txn, blob_id: bytes) -> bool:
        return txn.get(blob_id, db=self._dead) is not None

    def iter_chunks(self, txn: Txn) -> Iterator[tuple[bytes, ChunkLocation]]:
        with txn.cursor(db=self._chunks) as cur:
            for key, value in cur:
                yield bytes(key), ChunkLocation.unpack(bytes(value))

    def iter_dead(self, txn: Txn) -> Iterator[bytes]:
        yield from self._keys(txn, self._dead)

    def chunks_indexed(self, txn: Txn, refs: bytes) -> bool:
        """Whether every blob of concatenated CHUNK_REF records is indexed."""
        get, db = txn.get, self._chunks
        return all(get(blob_id, db=db) is not None for blob_id in chunk_ids(refs))

    def index_blob(self, txn: Txn, blob_id: bytes, loc: ChunkLocation) -> ChunkLocation:
        """Index a blob found in a pack (a take's, or one listed by a sync or repair). A blob
        that was lost keeps the count of its references (``loc.refcount`` otherwise); a lost
        tree that comes back referenced flags the index, since its children miss its counts."""
        lost = self.pop_lost(txn, blob_id)
        if lost is not None:
            loc = loc.with_refcount(lost)
            if lost > 0 and loc.type == TYPE_TREE:
                self.flag_recount(txn, f"lost tree {blob_id.hex()[:16]} was stored again")
        self.put_chunk(txn, blob_id, loc)
        return loc

    # -- lost blobs -----------------------------------------------------------------------
    def get_lost(self, txn: Txn, blob_id: bytes) -> int | None:
        raw = txn.get(blob_id, db=self._lost)
        return None if raw is None else int(LOST_VALUE.unpack(bytes(raw))[0])

    def set_lost(self, txn: Txn, blob_id: bytes, count: int) -> None:
        """Count the references to a blob that is in no pack (0: forget it)."""
        if count > 0:
            txn.put(blob_id, LOST_VALUE.pack(count), db=self._lost)
        else:
            txn.delete(blob_id, db=self._lost)

    def pop_lost(self, txn: Txn, blob_id: bytes) -> int | None:
        found = self.get_lost(txn, blob_id)
        if found is not None:
            txn.delete(blob_id, db=self._lost)
        return found

    def iter_lost(self, txn: Txn) -> Iterator[tuple[bytes, int]]:
        with txn.cursor(db=self._lost) as cur:
            for key, value in cur:
                yield bytes(key), int(LOST_VALUE.unpack(bytes(value))[0])

    def replace_lost(self, txn: Txn, counts: dict[bytes, int]) -> None:
        txn.drop(self._lost, delete=False)
        for blob_id, count in counts.items():
            self.set_lost(txn, blob_id, count)

    # -- the recount flag -----------------------------------------------------------------
    def flag_recount(self, txn: Txn, reason: str) -> None:
        """Mark the refcounts as possibly inexact (kept: the first reason is the one shown)."""
        if txn.get(b"recount", db=self._meta) is None:
            txn.put(b"recount", RecountFlag(reason, time.time()).encode(), db=self._meta)

    def recount_flag(self, txn: Txn | None = None) -> RecountFlag | None:
        raw: bytes | memoryview | None
        if txn is None:
            with self.env.begin() as own:
                raw = own.get(b"recount", db=self._meta)
        else:
            raw = txn.get(b"recount", db=self._meta)
        return None if raw is None else RecountFlag.decode(bytes(raw))

    def clear_recount(self, txn: Txn) -> None:
        txn.delete(b"recount", db=self._meta)

    # -- the repository's change marker (snapstore.repo.generation) ------------------------
    def synced_generation(self) -> str | None:
        """The marker token the last complete sync ran under (None: list at the next open)."""
        with self.env.begin() as txn:
            raw = txn.get(b"generation", db=self._meta)
        return None if raw is None else bytes(raw).decode("ascii", "replace")

    def set_synced_generation(self, token: str | None) -> None:
        with self.env.begin(write=True) as txn:
            if token is None:
                txn.delete(b"generation", db=self._meta)
            else:
                txn.put(b"generation", token.encode("ascii"), db=self._meta)

    def writer_in_flight(self) -> bool:
        """Whether a writer of this host changed (or may have changed) a remote repository
        and has not announced it yet (set at its open, cleared after its announcement)."""
        with self.env.begin() as txn:
            return txn.get(b"writer-in-flight", db=self._meta) is not None

    def set_writer_in_flight(self, value: bool, *, synced: str | None = None) -> None:
        """Set or clear the flag; clearing it also records ``synced`` as the token the index is
        up to date under (None: list at the next open), in the same transaction."""
        with self.env.begin(write=True) as txn:
            if value:
                txn.put(b"writer-in-flight", b"1", db=self._meta)
                return
            txn.delete(b"writer-in-flight", db=self._meta)
            if synced is None:
                txn.delete(b"generation", db=self._meta)
            else:
                txn.put(b"generation", synced.encode("ascii"), db=self._meta)

    # -- packs ----------------------------------------------------------------------------
    def add_pack(self, pack: bytes, size: int, entries: list[Any], *, pending: bool) -> None:
        """Index a finished pack's blobs with refcount 0 (they become live when referenced;
        a blob that was lost keeps its count: :meth:`index_blob`)."""
        with self.env.begin(write=True) as txn:
            self.put_pack(txn, pack, size, len(entries))
            if pending:
                txn.put(pack, b"", db=self._pending)
            for e in entries:
                if txn.get(e.id, db=self._chunks) is None:
                    loc = ChunkLocation(pack, e.offset, e.stored_len, e.raw_len, e.type, e.compression, 0)
                    self.index_blob(txn, e.id, loc)
        self.release_mapped()  # a pack's random ids touch most leaves of the chunks tree

    def drop_unreferenced_packs(self, packs: list[tuple[bytes, list[bytes]]]) -> None:
        """Un-index packs (each with its blob ids) that no commit refers to (a take or copy
        that failed part way): the pack and pending records, and each of their blobs indexed
        there with refcount 0."""
        with self.env.begin(write=True) as txn:
            for pack, blob_ids in packs:
                for blob_id in blob_ids:
                    loc = self.get_chunk(blob_id, txn)
                    if loc is not None and loc.pack == pack and loc.refcount == 0:
                        self.delete_chunk(txn, blob_id)
                self.delete_pack(txn, pack)

    def put_pack(self, txn: Txn, pack: bytes, size: int, count: int) -> None:
        txn.put(pack, PACK_VALUE.pack(size, count), db=self._packs)

    def pack_size(self, txn: Txn, pack: bytes) -> int | None:
        """The size of an indexed pack (None: not indexed)."""
        raw = txn.get(pack, db=self._packs)
        return None if raw is None else int(PACK_VALUE.unpack(bytes(raw))[0])

    def has_pack(self, txn: Txn, pack: bytes) -> bool:
        return txn.get(pack, db=self._packs) is not None

    def delete_pack(self, txn: Txn, pack: bytes) -> None:
        """Forget a pack (and its pending mark); its blobs are the caller's business."""
        txn.delete(pack, db=self._packs)
        txn.delete(pack, db=self._pending)

    def clear_pending(self, txn: Txn, pack: bytes) -> None:
        txn.delete(pack, db=self._pending)

    def iter_packs(self, txn: Txn) -> Iterator[tuple[bytes, int, int]]:
        with txn.cursor(db=self._packs) as cur:
            for key, value in cur:
                size, count = PACK_VALUE.unpack(value)
                yield bytes(key), size, count

    def iter_pending(self, txn: Txn) -> Iterator[bytes]:
        yield from self._keys(txn, self._pending)

    # -- snapshots ------------------------------------------------------------------------
    def has_snapshot(self, txn: Txn, snap_id: str) -> bool:
        return txn.get(snap_id.encode(), db=self._snapshots) is not None

    def get_snapshot(self, txn: Txn, snap_id: str) -> bytes | None:
        raw = txn.get(snap_id.encode(), db=self._snapshots)
        return None if raw is None else bytes(raw)

    def put_snapshot(self, txn: Txn, snap_id: str, record: bytes) -> None:
        txn.put(snap_id.encode(), record, db=self._snapshots)

    def delete_snapshot(self, txn: Txn, snap_id: str) -> None:
        """Drop a snapshot record and its pin (references are the caller's business)."""
        txn.delete(snap_id.encode(), db=self._snapshots)
        txn.delete(snap_id.encode(), db=self._pins)

    def snapshot_ids(self, txn: Txn | None = None) -> set[str]:
        if txn is None:
            with self.env.begin() as own:
                return {k.decode() for k in self._keys(own, self._snapshots)}
        return {k.decode() for k in self._keys(txn, self._snapshots)}

    def snapshot_records(self, txn: Txn | None = None) -> list[bytes]:
        if txn is None:
            with self.env.begin() as own, own.cursor(db=self._snapshots) as cur:
                return [bytes(v) for _k, v in cur]
        with txn.cursor(db=self._snapshots) as cur:
            return [bytes(v) for _k, v in cur]

    def set_pin(self, txn: Txn, snap_id: str, pinned: bool) -> None:
        if pinned:
            txn.put(snap_id.encode(), b"", db=self._pins)
        else:
            txn.delete(snap_id.encode(), db=self._pins)

    def pinned(self, txn: Txn | None = None) -> set[str]:
        if txn is None:
            with self.env.begin() as own:
                return {k.decode() for k in self._keys(own, self._pins)}
        return {k.decode() for k in self._keys(txn, self._pins)}

    # -- files cache ----------------------------------------------------------------------
    def has_files(self, txn: Txn) -> bool:
        """Whether the files cache holds any entry (a first take into a repository has none,
        and need not look up each of its files)."""
        return bool(txn.stat(self._files)["entries"])

    def get_file(self, txn: Txn, path: bytes) -> CachedFile | None:
        raw = txn.get(file_key(path), db=self._files)
        return None if raw is None else CachedFile.decode(bytes(raw))

    def unchanged_chunks(self, txn: Txn, path: bytes, st: os.stat_result) -> bytes | None:
        """The chunk refs of the file at ``path`` when the files cache proves it unchanged since
        they were stored: an entry whose size, mtime, ctime and inode equal ``st`` and whose
        chunks are all still indexed. None otherwise. Take (skip reading) and watch (no change)
        both decide with this one rule."""
        cached = self.get_file(txn, path)
        if cached is None or not cached.matches(st) or not self.chunks_indexed(txn, cached.chunks):
            return None
        return cached.chunks

    def put_files(self, entries: dict[bytes, CachedFile], txn: Txn | None = None) -> None:
        """Write files-cache entries (absolute path -> entry), in ``txn`` or a transaction of their own."""
        if txn is None:
            with self.env.begin(write=True) as own:
                self.put_files(entries, own)
            self.release_mapped()  # a batch of random keys touches most leaves of the files cache
            return
        for path, entry in entries.items():
            txn.put(file_key(path), entry.encode(), db=self._files)

    # -- directories cache --------------------------------------------------------------
    def unchanged_dir(self, path: bytes, digest: bytes) -> CachedDir | None:
        """What a take stored for the directory at ``path``, when the lstat of its
        non-directory entries (``digest``) is still the same and the tree it stored is still
        referenced: its chunks then are too (counts are hierarchical), unless blobs were lost
        (a pack vanished or was cut short: the ``lost`` table) or the counts are in doubt (the
        recount flag), and then nothing is trusted. None otherwise."""
        if self._dirs is None:
            return None
        with self.env.begin() as txn:
            if txn.stat(self._lost)["entries"] or txn.get(b"recount", db=self._meta) is not None:
                return None
            raw = txn.get(file_key(path), db=self._dirs)
            cached = None if raw is None else CachedDir.decode(bytes(raw))
            if cached is None or cached.digest != digest:
                return None
            loc = self.get_chunk(cached.tree_id, txn)
        return cached if loc is not None and loc.refcount > 0 else None

    def put_dirs(self, entries: dict[bytes, CachedDir]) -> None:
        """Remember what a take stored for these directories (path -> entry)."""
        if self._dirs is None or not entries:
            return
        with self.env.begin(write=True) as txn:
            for path, cached in entries.items():
                txn.put(file_key(path), cached.encode(), db=self._dirs)
        self.release_mapped()

    def prune_files_cache(self) -> int:
        """Drop files-cache entries whose chunks are no longer all indexed (gc removed some).
        Such an entry could never be used again; this keeps the cache from growing forever."""
        stale: list[bytes] = []
        with self.env.begin() as txn, txn.cursor(db=self._files) as cur:
            for key, raw in cur:
                cached = CachedFile.decode(bytes(raw))
                if cached is None or not self.chunks_indexed(txn, cached.chunks):
                    stale.append(bytes(key))
        if stale:
            with self.env.begin(write=True) as txn:
                for key in stale:
                    txn.delete(key, db=self._files)
        return len(stale)

    @staticmethod
    def _keys(txn: Txn, db: Any) -> Iterator[bytes]:
        with txn.cursor(db=db) as cur:
            for key in cur.iternext(keys=True, values=False):
                yield bytes(key)


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


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _nearly_full(index: Index) -> bool:
    try:
        st = os.statvfs(index.env.path())
    except (OSError, lmdb.Error):
        return False
    return st.f_bavail * st.f_frsize < 1024 * 1024


_META_PAGE = struct.Struct("<16xII8x8xI44x48xQQ")  # magic, version, page size, last page, txn id
LMDB_MAGIC = 0xBEEFC0DE


def check_file(path: str) -> str:
    """Why the LMDB file at ``path`` cannot be mapped safely ("" when it can). LMDB maps the
    file and trusts its meta pages: pages past the end of a truncated file fault with SIGBUS
    when touched, so the meta pages are read and checked against the size first."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(2 * 65536)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if size < 2 * 4096 or len(head) < _META_PAGE.size:
        return f"truncated ({size} bytes)"
    best: tuple[int, int, int] | None = None  # (txn id, page size, last page) of the newer meta
    magic, _version, psize, _last, _txnid = _META_PAGE.unpack_from(head, 0)
    if magic != LMDB_MAGIC or psize < 512 or psize > 65536 or psize & (psize - 1):
        return "not an LMDB file"
    for at in (0, psize):
        if at + _META_PAGE.size > len(head):
            return f"truncated ({size} bytes)"
        magic, _version, _psize, last, txnid = _META_PAGE.unpack_from(head, at)
        if magic == LMDB_MAGIC and (best is None or txnid > best[0]):
            best = (txnid, psize, last)
    assert best is not None
    _txnid, psize, last = best
    if size < (last + 1) * psize:
        return f"truncated ({size} bytes, its pages need {(last + 1) * psize})"
    return ""


def open_index(cache_dir: str, *, legacy: str | None = None) -> tuple[Index, str, bool]:
    """The index in ``<cache_dir>/index``, a one-line note of what had to be done ("" when
    it was there and sound), and whether it is new (empty: to be built). An index that older
    versions kept at ``legacy`` (``<repo>/index`` of a local repository) is moved here (copied
    when it cannot be moved; it is then left where it was). An index that cannot be mapped
    safely (truncated, unreadable) is moved to ``<cache_dir>/damaged/`` and an empty one takes
    its place: the caller rebuilds it from the packs and records. The caller holds the cache's ``sync`` lock."""
    where = os.path.join(cache_dir, "index")
    data = os.path.join(where, "data.mdb")
    note = ""
    if not os.path.exists(data) and legacy is not None and os.path.exists(os.path.join(legacy, "data.mdb")):
        note = _adopt(legacy, where)
    if os.path.exists(data):
        problem = check_file(data)
        if problem:
            aside = os.path.join(cache_dir, "damaged", f"index-{os.getpid()}-{os.urandom(4).hex()}")
            os.makedirs(os.path.dirname(aside), exist_ok=True)
            os.rename(where, aside)
            note = f"the index in {where} is {problem}: moved to {aside}, rebuilding it from the packs and records"
    fresh = not os.path.exists(data)
    os.makedirs(where, exist_ok=True)
    index = Index(where)
    if fresh and not note:
        note = f"no index in {where}: building it from the packs and records"
    return index, note, fresh


def _adopt(legacy: str, where: str) -> str:
    """Move (or copy) an index from where older versions kept it."""
    os.makedirs(os.path.dirname(where), exist_ok=True)
    if check_file(os.path.join(legacy, "data.mdb")):
        return ""  # not worth carrying over: the caller builds a new one
    try:
        os.rename(legacy, where)
        return f"moved the index from {legacy} to {where}"
    except OSError:
        pass  # another filesystem, or a repository we may not change
    try:
        env = lmdb.open(legacy, readonly=True, lock=False, subdir=True, max_dbs=16)
        try:
            os.makedirs(where, exist_ok=True)
            env.copy(where, compact=True)
        finally:
            env.close()
    except (lmdb.Error, OSError):
        shutil.rmtree(where, ignore_errors=True)
        return ""
    shutil.rmtree(legacy, ignore_errors=True)
    return f"copied the index from {legacy} to {where}"


class TxnCounts:
    """The refcount store of :mod:`snapstore.repo.refcount` over one write transaction."""

    def __init__(self, index: Index, txn: Txn) -> None:
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
        return self.location(blob_id).type == TYPE_TREE

    def set_count(self, blob_id: bytes, value: int) -> None:
        loc = self.location(blob_id)
        new = loc.with_refcount(value)
        self._cache[blob_id] = new
        self.index.put_chunk(self.txn, blob_id, new)
        if value == 0:
            self.index.set_dead(self.txn, blob_id, True)
        elif loc.refcount == 0:
            self.index.set_dead(self.txn, blob_id, False)

