"""The backup pipeline: walk -> files cache -> chunk -> hash -> compress -> pack -> commit.

Threads: the calling thread walks the sources in name order and builds trees; a pool of
readers chunks and hashes files (pyfastcdc and blake3 release the GIL); a pool of compressors
runs zstd and appends blobs to the current pack. Memory is bounded: at most ``WINDOW`` walked
entries wait for their files, and at most ``INFLIGHT`` chunks wait for compression.

Packs are written by :class:`snapstore.repo.packsink.PackSink` (the one pack writer): each is
written under tmp/, fsynced, re-read and checked, put into packs/, then indexed with refcount 0
and marked pending; a take that fails removes what it wrote (a local repository) or leaves
complete pending packs for gc (remote). Blobs are encoded by ``packsink.encode_blob``.

Crash safety: The snapshot becomes real only in the final
commit (record file, then one LMDB transaction that counts its references), so a take killed
at any moment leaves earlier snapshots untouched; what it wrote is unreferenced and gc frees it.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from snapstore import faults, memory
from snapstore.errors import Interrupted, SnapError, SourceNotFound, UsageError
from snapstore.format.chunker import Chunker
from snapstore.format.packfile import TYPE_DATA, TYPE_TREE, remove_unfinished
from snapstore.format.snapshot import Snapshot, SnapshotStats
from snapstore.format.tree import (
    BLOCKDEV,
    CHARDEV,
    CHUNK_REF,
    DIR,
    FIFO,
    FILE,
    SOCKET,
    SYMLINK,
    Entry,
    encode_tree,
)
from snapstore.host import host_name
from snapstore.ops.excludes import ASIDE_DIR_NAME as ASIDE_DIR_NAME  # where mirror and recover find it
from snapstore.ops.excludes import CACHEDIR_TAG, Excludes, WalkRules, is_cache_dir
from snapstore.ops.protected import is_inside, protected_dirs
from snapstore.ops.smallfiles import ReaderPool, SmallRead, make_pool, racy, read_xattrs
from snapstore.repo.index import CachedDir, CachedFile, Txn, index_errors
from snapstore.repo.packsink import EncodedBlob, PackSink, StoredPack, encode_blob
from snapstore.repo.repository import Repository
from snapstore.storage.backend import raise_os_error

WINDOW = 2048
INFLIGHT = 4
FILES_CACHE_BATCH = 4096
INLINE_FILE = 64 * 1024  # files smaller than this are read by the walking thread
INLINE_BLOB = 16 * 1024  # blobs smaller than this are compressed by the thread that found them
MAX_ERRORS_KEPT = 50
# small files (one chunk) go to reader processes in batches once a take has met this many (a
# take of a few files does not pay for starting processes); a batch is at most this many files
# or bytes; at most this many bytes of such files are read and not yet in a pack
POOL_AFTER = 200
BATCH_FILES = 64
BATCH_BYTES = 512 << 10
BATCHED_BYTES_MAX = 8 << 20
SWITCH_INTERVAL_S = 0.001  # the interpreter's thread switch interval during a take (see take_snapshot)


# -- sources: where each given path appears inside the snapshot ---------------------------
@dataclass(frozen=True)
class Source:
    """One path to take: ``path`` on disk (absolute) and ``member``, its path in the snapshot."""

    path: bytes
    member: bytes
    follow: bool = False  # a symlink given with a trailing slash: the directory it points to is taken


def source_for(given: str, base: str) -> Source:
    """Map a path as given to its place in the snapshot, the way tar does.

    A relative path keeps its form relative to ``base`` (``agents/Z`` stays ``agents/Z``;
    ``.`` is the snapshot root). An absolute path, or a relative one that climbs above
    ``base``, is stored absolute without its leading slash (``/var/log`` -> ``var/log``).
    A symlink to a directory given with a trailing slash (``link/``) is followed, as tar and
    restic do: its directory is stored under the link's name.
    """
    raw = os.fsencode(given)
    bbase = os.fsencode(os.path.abspath(base))
    absolute = os.path.normpath(os.path.join(bbase, raw))
    follow = raw.endswith(b"/") and os.path.islink(absolute) and os.path.isdir(absolute)
    if not os.path.isabs(raw):
        rel = os.path.relpath(absolute, bbase)
        if rel == b".":
            return Source(absolute, b"", follow)
        if not rel.startswith(b".."):
            return Source(absolute, rel, follow)
    return Source(absolute, absolute.lstrip(b"/"), follow)


def _source_stat(src: Source) -> os.stat_result:
    return os.stat(src.path) if src.follow else os.lstat(src.path)


def normalize_sources(sources: list[Source]) -> list[Source]:
    """Sorted, without duplicates and without paths nested inside another source."""
    out: list[Source] = []
    for src in sorted(set(sources), key=lambda s: s.member):
        if any(src.member == o.member or o.member == b"" or src.member.startswith(o.member + b"/") for o in out):
            continue
        out.append(src)
    return out


# -- the registry of blobs that exist or are being stored by this take --------------------
class BlobRegistry:
    """Decides, once per blob id, whether this take must store it."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self._lock = threading.Lock()
        self._pending: set[bytes] = set()

    def claim(self, blob_id: bytes) -> bool:
        with self._lock:
            if blob_id in self._pending or self.repo.index.has_chunk(blob_id):
                return False
            self._pending.add(blob_id)
            return True

    def claim_many(self, blob_ids: list[bytes]) -> set[bytes]:
        """:meth:`claim` for several ids with one index transaction: the ones to store."""
        out: set[bytes] = set()
        with self._lock:
            # begun under the lock: every id released before it is in the index it sees
            with self.repo.index.read() as txn:
                for blob_id in blob_ids:
                    if blob_id not in self._pending and blob_id not in out \
                            and self.repo.index.get_chunk(blob_id, txn) is None:
                        out.add(blob_id)
            self._pending.update(out)
        return out

    def release(self, blob_ids: list[bytes]) -> None:
        """Forget ids once they are in the index (keeps the pending set small)."""
        with self._lock:
            self._pending.difference_update(blob_ids)


# -- walking ------------------------------------------------------------------------------
@dataclass(slots=True)
class _Walked:
    """One walked item: a directory start/end or a non-directory entry."""

    kind: str  # "enter", "leave", "entry", "error"; "dir" (a digest), "cached" (entries reused)
    name: bytes = b""
    st: os.stat_result | None = None
    path: bytes = b""
    future: Future[_FileResult] | None = None
    result: _FileResult | None = None
    error: str = ""
    shared: bool = False  # a further name of a hard-linked file: its content was read once
    batch: _Batch | None = None  # the reader-process batch that reads this small file
    digest: bytes = b""  # "dir": the lstat of the directory's non-directory entries
    reused: CachedDir | None = None  # "cached": what the last take stored for the directory

    def ready(self) -> bool:
        if self.batch is not None and not self.batch.done():
            return False
        return self.future is None or self.future.done()


@dataclass(slots=True)
class _Batch:
    """Small files read together by a reader process (see snapstore.ops.smallfiles)."""

    items: list[_Walked] = field(default_factory=list)
    nbytes: int = 0
    future: Future[list[SmallRead]] | None = None  # None while it is still being filled
    ingested: bool = False

    def done(self) -> bool:
        return self.ingested or (self.future is not None and self.future.done())


@dataclass
class _FileResult:
    chunks: bytes = b""
    size: int = 0
    read_bytes: int = 0
    error: str = ""
    cache_value: CachedFile | None = None
    st: os.stat_result | None = None  # the file as its content was read (its metadata goes in the entry)
    st_before: os.stat_result | None = None  # as it was opened
    warning: str = ""  # still changing when read again
    xattrs: dict[bytes, bytes] | None = None  # read through the descriptor the content was read from


@dataclass
class _Frame:
    name: bytes
    st: os.stat_result | None
    entries: list[Entry] = field(default_factory=list)
    path: bytes = b""
    digest: bytes = b""  # set by a "dir" item: the directory may go to the directories cache
    clean: bool = True  # every entry made it into the tree (no error)
    reused: CachedDir | None = None  # its non-directory entries are those of this tree's


def _dir_digest(entries: list[tuple[bytes, os.stat_result]]) -> bytes | None:
    """What a directory's non-directory entries are, by their lstat (every field their tree
    entries are made of, and ctime, which any change of content, xattrs or link target
    moves): None when one is a hard link (its content is shared across directories)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, st in entries:
        if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
            return None
        digest.update(name + b"\0" + _DIGEST_FIELDS.pack(
            st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev,
            st.st_rdev))
    return digest.digest()


_DIGEST_FIELDS = struct.Struct("<QQQqqqQQQ")


def _subdirs_digest(entries: list[Entry]) -> bytes:
    """What a directory's subdirectory entries are (metadata, xattrs and their trees)."""
    return hashlib.blake2b(encode_tree([e for e in entries if e.kind == DIR]), digest_size=16).digest()


_names_cache: dict[tuple[str, int], str] = {}


def _owner_names(uid: int, gid: int) -> tuple[str, str]:
    user = _names_cache.get(("u", uid))
    if user is None:
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = ""
        _names_cache[("u", uid)] = user
    group = _names_cache.get(("g", gid))
    if group is None:
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = ""
        _names_cache[("g", gid)] = group
    return user, group


def _entry_from_stat(name: bytes, st: os.stat_result | None, kind: str) -> Entry:
    if st is None:
        return Entry(name=name, kind=kind, mode=stat.S_IFDIR | 0o755)
    user, group = _owner_names(st.st_uid, st.st_gid)
    return Entry(name=name, kind=kind, mode=st.st_mode, uid=st.st_uid, gid=st.st_gid,
                 mtime_ns=st.st_mtime_ns, user=user, group=group)


def _children(entries: list[Entry]) -> bytes:
    """``b"".join(tree_children(encode_tree(entries)))`` without decoding the tree just encoded."""
    out: list[bytes] = []
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.subtree:
            out.append(entry.subtree)
        if entry.chunks:
            out.extend(entry.chunk_ids())
    return b"".join(out)


class TakeCancelled(Exception):
    pass


class Take:
    """One run of the backup pipeline. Use :func:`take_snapshot`."""

    def __init__(self, repo: Repository, *, level: int, workers: int, verify: str,
                 excludes: list[str], progress: Callable[[dict[str, object]], None] | None,
                 rules: WalkRules = WalkRules()) -> None:
        self.repo = repo
        self.rules = rules
        self.level = level
        self.verify = verify
        self.excludes = Excludes(excludes)
        self.progress = progress
        self.registry = BlobRegistry(repo)
        self.sink = PackSink(repo.backend, pack_size=repo.config.pack_size, parallel=repo.backend.parallel_puts,
                             verify=verify != "none", on_stored=self._indexed,
                             on_discard=repo.index.drop_unreferenced_packs, delete_on_abort=not repo.remote,
                             what="writing pack", crypto=repo.crypto)
        self.packs: list[bytes] = []
        self.new_blobs: list[bytes] = []  # kept only for --verify full
        self.keep_new_blobs = verify == "full"
        self.readers = ThreadPoolExecutor(workers, thread_name_prefix="snap-read")
        self.compressors = ThreadPoolExecutor(workers, thread_name_prefix="snap-zstd")
        self.inflight = threading.BoundedSemaphore(INFLIGHT)
        self.failure: BaseException | None = None
        self.local = threading.local()
        # small files: reader processes (started once a take has met POOL_AFTER of them)
        self.workers = workers
        self.small_limit = repo.config.chunker.min_size  # a file up to this size is one chunk
        self.pool: ReaderPool | None = None
        self._small_seen = 0
        self._collecting: _Batch | None = None
        self._batches: deque[_Batch] = deque()
        self._batched_bytes = 0
        # children of the trees this take creates, as concatenated ids (compact), for the commit
        self.new_trees: dict[bytes, bytes] = {}
        # files-cache entries go to LMDB in batches during the take, so memory does not grow with
        # the number of files; an entry is only trusted while its chunks are indexed, so writing
        # it before the snapshot commits is safe.
        self.files_cache: dict[bytes, CachedFile] = {}
        self.files_cached = True  # False: the files cache was empty when the take began
        # the directories cache (Index.unchanged_dir): a directory whose non-directory entries
        # all have the lstat they had at the last take reuses them from that take's tree (a
        # local read; on object storage it would be a request per directory, and a write-only
        # key cannot read trees)
        self.dir_cache = not repo.remote and repo.can_read
        self.dir_updates: dict[bytes, CachedDir] = {}
        self.hardlinks: dict[tuple[int, int], Future[_FileResult] | _FileResult] = {}
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.changed = 0
        self.stat_files = self.stat_dirs = self.stat_links = 0
        self.stat_bytes = self.stat_read = self.stat_chunks = self.unreadable = 0
        # never back up the repository, its local cache or the snapstore cache: by identity
        # (device, inode), so a bind mount or a symlinked path to them is excluded too
        self.protected: dict[tuple[int, int], str] = {}
        for place, what in protected_dirs(repo):
            try:
                pst = os.stat(place)
            except OSError:
                continue
            self.protected.setdefault((pst.st_dev, pst.st_ino), what)
        self.excluded: list[str] = []
        self.started_ns = time.time_ns()
        self.root_meta: dict[str, int] = {}
        self._last_progress = 0.0

    # -- chunk storage (compressor threads) ---------------------------------------------
    def _indexed(self, pack: StoredPack) -> None:
        """A pack is checked and in the backend (finisher thread): index it, pending."""
        with index_errors(f"indexing pack {pack.id.hex()}", self.repo.index):
            self.repo.index.add_pack(pack.id, pack.size, list(pack.entries), pending=True)
        self.registry.release([e.id for e in pack.entries])
        memory.trim()  # every 32 MiB stored: the freed buffers between long-lived objects go back

    def _store(self, blob_id: bytes, blob_type: int, data: bytes) -> None:
        try:
            if self.failure is None:
                faults.slow_store()
                self.sink.add(blob_id, blob_type, encode_blob(blob_id, data, self.level, blob_type=blob_type,
                                                              crypto=self.repo.crypto))
                if self.keep_new_blobs:
                    self.new_blobs.append(blob_id)
        except BaseException as exc:  # surfaced by the walking thread
            if self.failure is None:
                self.failure = exc
        finally:
            self.inflight.release()

    def _submit_blob(self, blob_id: bytes, blob_type: int, data: bytes) -> None:
        if self.failure is not None:
            raise TakeCancelled
        self.inflight.acquire()
        if len(data) < INLINE_BLOB:
            self._store(blob_id, blob_type, data)  # zstd on a few KiB is cheaper than a thread handoff
            if self.failure is not None:
                raise self.failure
        else:
            self.compressors.submit(self._store, blob_id, blob_type, data)

    # -- file reading (reader threads) --------------------------------------------------
    def _chunker(self) -> Chunker:
        chunker = getattr(self.local, "chunker", None)
        if chunker is None:
            chunker = self.local.chunker = Chunker(self.repo.config.chunker)
        return chunker

    def _read_file(self, path: bytes, st: os.stat_result) -> _FileResult:
        """Read and chunk a file; one that changed while it was read is read again, and one
        still changing the second time is kept as last read, with a warning (as restic does):
        without this, a file overwritten in place mid-read is stored as a mix of old and new
        blocks, one truncated mid-read at a length neither version had."""
        first = self._read_once(path, st, 1)
        if first.error or first.st is None or not self._changed(first):
            return first
        second = self._read_once(path, first.st, 2)
        if second.error or not self._changed(second):
            second.read_bytes += first.read_bytes
            return second
        second.read_bytes += first.read_bytes
        second.cache_value = None  # the next take reads it again
        second.warning = (f"{os.fsdecode(path)}: changed while it was read, twice; stored as read the second "
                          "time, which may mix old and new content")
        return second

    @staticmethod
    def _changed(result: _FileResult) -> bool:
        before, after = result.st_before, result.st
        assert before is not None and after is not None
        moved = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
        return moved or result.size != after.st_size

    def _read_once(self, path: bytes, st: os.stat_result, attempt: int) -> _FileResult:
        refs: list[bytes] = []
        size = 0
        try:
            faults.check_open(path)
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(path, flags | getattr(os, "O_NOATIME", 0))
            except PermissionError:
                fd = os.open(path, flags)
            with os.fdopen(fd, "rb", buffering=0) as handle:
                # the file as opened (it may have changed since the walk saw it), and as left
                before = os.fstat(fd)
                min_size = self.repo.config.chunker.min_size
                pieces: Iterator[memoryview | bytes]
                head = handle.read(min_size + 1) if before.st_size < min_size else b""
                if before.st_size < min_size and len(head) <= min_size:
                    pieces = iter([head] if head else [])  # small file: one chunk, no chunker
                else:
                    handle.seek(0)
                    pieces = self._chunker().cut(handle, before.st_size)  # type: ignore[arg-type]
                for piece in pieces:
                    if self.failure is not None:
                        raise TakeCancelled
                    blob_id = self.repo.blob_id(piece)
                    refs.append(CHUNK_REF.pack(blob_id, len(piece)))
                    size += len(piece)
                    if self.registry.claim(blob_id):
                        self._submit_blob(blob_id, TYPE_DATA, bytes(piece))
                    if len(refs) == 1:
                        faults.pause_read(path, attempt)
                after = os.fstat(fd)
                xattrs = read_xattrs(fd)
        except TakeCancelled:
            raise
        except OSError as exc:
            return _FileResult(error=f"{os.fsdecode(path)}: {exc.strerror or exc}")
        chunks = b"".join(refs)
        steady = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
        steady = steady and size == after.st_size and not racy(after, self.started_ns)
        cache = CachedFile.of(after, chunks) if steady else None
        return _FileResult(chunks=chunks, size=size, read_bytes=size, cache_value=cache, st=after, st_before=before,
                           xattrs=xattrs)

    # -- small files in reader processes (calling thread) -------------------------------
    def _batch(self, item: _Walked, st: os.stat_result) -> None:
        batch = self._collecting
        if batch is None:
            batch = self._collecting = _Batch()
        batch.items.append(item)
        batch.nbytes += st.st_size
        item.batch = batch
        if len(batch.items) >= BATCH_FILES or batch.nbytes >= BATCH_BYTES:
            self._submit_batch()

    def _submit_batch(self) -> None:
        batch, self._collecting = self._collecting, None
        if batch is None:
            return
        if self.pool is None:
            self.pool = make_pool(self.workers, crypto=self.repo.crypto, level=self.level, limit=self.small_limit,
                                  started_ns=self.started_ns)
        files = [(item.path, item.st.st_size, item.st.st_mtime_ns) for item in batch.items]  # type: ignore[union-attr]
        batch.future = self.pool.submit(files)
        self._batches.append(batch)
        self._batched_bytes += batch.nbytes
        # store what has come back; wait when too many bytes are out
        while self._batches and (self._batches[0].done() or self._batched_bytes > BATCHED_BYTES_MAX):
            self._ingest(self._batches[0])

    def _ingest(self, batch: _Batch) -> None:
        """Claim, seal and store the blobs of a batch read by a reader process (calling thread)."""
        if batch.ingested:
            return
        if batch.future is None:
            self._submit_batch()  # the one being filled: send it now
        assert batch.future is not None
        try:
            reads = batch.future.result()
        except BrokenExecutor:
            # a reader process died (killed, out of memory): what is stored stays unreferenced
            # for gc, nothing is committed
            raise SnapError("a small-file reader process of this take died (killed, or out of memory); "
                            "nothing was committed: run the take again") from None
        batch.ingested = True
        self._batched_bytes -= batch.nbytes
        if self._batches and self._batches[0] is batch:
            self._batches.popleft()
        elif batch in self._batches:
            self._batches.remove(batch)
        if self.failure is not None:
            raise TakeCancelled
        new = self.registry.claim_many([read.blob_id for read in reads if read.size])
        for item, read in zip(batch.items, reads, strict=True):
            item.result = self._small_result(item, read, new)
        # break the item <-> batch cycle and drop the reads (their payloads are in a pack now):
        # left to the cyclic collector, consumed batches pile up between its full passes, and
        # those come rarer as the heap grows
        batch.items.clear()
        batch.future = None

    def _small_result(self, item: _Walked, read: SmallRead, new: set[bytes]) -> _FileResult | None:
        if read.error:
            return _FileResult(error=read.error)
        if read.too_big:  # it grew past one chunk since the walk
            item.future = self.readers.submit(self._read_file, item.path, item.st)  # type: ignore[arg-type]
            return None
        chunks = b""
        if read.size:
            chunks = CHUNK_REF.pack(read.blob_id, read.size)
            if read.blob_id in new:
                new.discard(read.blob_id)  # the same content twice in one batch is stored once
                faults.slow_store()
                self.sink.add(read.blob_id, TYPE_DATA, EncodedBlob(read.code, read.payload, read.size))
                if self.keep_new_blobs:
                    self.new_blobs.append(read.blob_id)
        cache = CachedFile.of(read.st, chunks) if read.cacheable and read.st is not None else None
        return _FileResult(chunks=chunks, size=read.size, read_bytes=read.read_bytes, cache_value=cache, st=read.st,
                           st_before=item.st, warning=read.warning, xattrs=read.xattrs)

    # -- walking (calling thread) -------------------------------------------------------
    def _walk_dir(self, path: bytes, member: bytes, dev: int | None = None) -> Iterator[_Walked]:
        try:
            with os.scandir(path) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield _Walked("error", error=f"{os.fsdecode(path)}: {exc.strerror or exc}")
            return
        if self.rules.exclude_caches and is_cache_dir(path):
            self.excluded.append(f"{os.fsdecode(path)} (a cache: CACHEDIR.TAG)")
            items = [item for item in items if item.name == CACHEDIR_TAG]
        walked: list[tuple[os.DirEntry[bytes], bytes, os.stat_result]] = []
        for item in items:
            child_member = member + b"/" + item.name if member else item.name
            if self.excludes.match(child_member, item.name):  # also the recovery's aside dirs
                continue
            try:
                st = item.stat(follow_symlinks=False)
            except OSError as exc:
                yield _Walked("error", error=f"{os.fsdecode(item.path)}: {exc.strerror or exc}")
                continue
            walked.append((item, child_member, st))
        reused = None
        if self.dir_cache:
            digest = _dir_digest([(item.name, st) for item, _m, st in walked if not stat.S_ISDIR(st.st_mode)])
            if digest is not None:
                yield _Walked("dir", path=path, digest=digest)
                reused = self._reusable(path, digest)
        if reused is not None:
            # nothing in it but its subdirectories changed since the last take: its other
            # entries are those of the tree that take stored, and are not looked at again
            yield _Walked("cached", path=path, reused=reused)
        for item, child_member, st in walked:
            if reused is None or stat.S_ISDIR(st.st_mode):
                yield from self._walk_path(item.path, item.name, child_member, st, dev)

    def _remember_dir(self, frame: _Frame, tree_id: bytes) -> None:
        reused = frame.reused
        subdirs = [e for e in frame.entries if e.kind == DIR]
        if reused is not None:
            counts = (reused.files, reused.links, reused.size, reused.chunks)
        else:
            files = [e for e in frame.entries if e.kind == FILE]
            counts = (len(files), sum(1 for e in frame.entries if e.kind == SYMLINK), sum(e.size for e in files),
                      sum(len(e.chunks) // CHUNK_REF.size for e in files))
        cached = CachedDir(frame.digest, _subdirs_digest(subdirs), tree_id, *counts)
        if cached != reused:
            self.dir_updates[frame.path] = cached

    def _reusable(self, path: bytes, digest: bytes) -> CachedDir | None:
        """What the last take stored for ``path``, when the directories cache says its
        non-directory entries are unchanged (:meth:`Index.unchanged_dir`)."""
        return self.repo.index.unchanged_dir(path, digest)

    def _dir_tree(self, frame: _Frame) -> bytes:
        """The tree of a directory whose non-directory entries are reused: the tree the last
        take stored when its subdirectory entries are also the same (nothing to encode or
        store), else those entries (read from that tree) with the subdirectories now."""
        reused = frame.reused
        assert reused is not None
        if _subdirs_digest(frame.entries) == reused.subdirs:
            return reused.tree_id
        try:
            kept = [e for e in self.repo.read_tree(reused.tree_id) if e.kind != DIR]
        except (SnapError, OSError) as exc:
            # it was readable when the walk trusted it: a damaged pack since, say
            raise SnapError(f"{os.fsdecode(frame.path)}: the tree of its last take cannot be read ({exc}); "
                            "take again") from None
        return self._store_tree(kept + frame.entries)

    def _walk_path(self, path: bytes, name: bytes, member: bytes, st: os.stat_result,
                   parent_dev: int | None = None) -> Iterator[_Walked]:
        if stat.S_ISDIR(st.st_mode):
            what = self.protected.get((st.st_dev, st.st_ino))
            if what is not None:
                # never back up the repository into itself, nor the caches (as borg does)
                self.excluded.append(f"{os.fsdecode(path)} ({what})")
                return
            yield _Walked("enter", name, st, path)
            if self.rules.one_file_system and parent_dev is not None and st.st_dev != parent_dev:
                self.excluded.append(f"{os.fsdecode(path)} (another file system)")  # kept as an empty mount point
            else:
                yield from self._walk_dir(path, member, st.st_dev)
            yield _Walked("leave")
        else:
            yield _Walked("entry", name, st, path)

    def _walk_sources(self, sources: list[Source]) -> Iterator[_Walked]:
        """Walk every source under a virtual root built from their member paths.

        A member path is always a suffix of its source's absolute path, so the real directory
        behind each virtual directory is found by stripping components; its metadata is used.
        """
        root_source = next((s for s in sources if not s.member), None)
        if root_source is not None:  # "." was given: the source directory is the root
            st = _source_stat(root_source)
            yield _Walked("enter", b"", st, root_source.path)
            yield from self._walk_dir(root_source.path, b"", st.st_dev)
            yield _Walked("leave")
            return
        tree: dict[bytes, object] = {}
        reals: dict[bytes, bytes] = {}
        for src in sources:
            parts = src.member.split(b"/")
            real = src.path
            for i in range(len(parts), -1, -1):
                reals.setdefault(b"/".join(parts[:i]), real)
                real = os.path.dirname(real)
            node = tree
            for part in parts[:-1]:
                node = node.setdefault(part, {})  # type: ignore[assignment]
            node[parts[-1]] = src

        def real_stat(member: bytes) -> os.stat_result | None:
            try:
                return os.lstat(reals[member])
            except (OSError, KeyError):
                return None

        def virtual(node: dict[bytes, object], member: bytes) -> Iterator[_Walked]:
            for name in sorted(node):
                child = node[name]
                child_member = member + b"/" + name if member else name
                if isinstance(child, Source):
                    try:
                        st = _source_stat(child)
                    except OSError as exc:
                        yield _Walked("error", error=f"{os.fsdecode(child.path)}: {exc.strerror or exc}")
                        continue
                    yield from self._walk_path(child.path, name, child_member, st)
                else:
                    yield _Walked("enter", name, real_stat(child_member), reals.get(child_member, b""))
                    yield from virtual(child, child_member)  # type: ignore[arg-type]
                    yield _Walked("leave")

        yield _Walked("enter", b"", real_stat(b""), b"")
        yield from virtual(tree, b"")
        yield _Walked("leave")

    def _dispatch(self, item: _Walked, txn: Txn) -> None:
        """Decide for a walked file: files-cache hit, shared hard link, or a read job."""
        st = item.st
        assert st is not None
        if not stat.S_ISREG(st.st_mode):
            return
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            seen = self.hardlinks.get(key)
            if seen is not None:
                item.shared = True
                if isinstance(seen, _FileResult):
                    item.result = _FileResult(chunks=seen.chunks, size=seen.size)
                else:
                    item.future = seen
                return
        cached = self.repo.index.unchanged_chunks(txn, item.path, st) if self.files_cached else None
        if cached is not None:
            item.result = _FileResult(chunks=cached, size=st.st_size)
        if item.result is None:
            small = st.st_nlink == 1 and st.st_size <= self.small_limit
            if small:
                self._small_seen += 1
            if small and self._small_seen > POOL_AFTER:
                self._batch(item, st)
            elif st.st_size < INLINE_FILE:
                # A small file costs less to read here than to hand to a reader thread and back.
                item.result = self._read_file(item.path, st)
            else:
                item.future = self.readers.submit(self._read_file, item.path, st)
        if st.st_nlink > 1:
            self.hardlinks[(st.st_dev, st.st_ino)] = item.result or item.future  # type: ignore[assignment]

    def _store_tree(self, entries: list[Entry]) -> bytes:
        data = encode_tree(entries)
        tree_id = self.repo.blob_id(data)
        if self.registry.claim(tree_id):
            self.new_trees[tree_id] = _children(entries)
            self._submit_blob(tree_id, TYPE_TREE, data)
        return tree_id

    def _consume(self, item: _Walked, stack: list[_Frame]) -> bytes | None:
        """Apply one walked item (in walk order) to the trees being built."""
        if item.kind == "error":
            self.unreadable += 1
            self._error(item.error)
            if stack:
                stack[-1].clean = False
            return None
        if item.kind == "dir":
            stack[-1].digest = item.digest
            return None
        if item.kind == "cached":
            reused = item.reused
            assert reused is not None
            self.stat_files += reused.files
            self.stat_links += reused.links
            self.stat_bytes += reused.size
            self.stat_chunks += reused.chunks
            stack[-1].reused = reused
            return None
        if item.kind == "enter":
            stack.append(_Frame(item.name, item.st, path=item.path))
            return None
        if item.kind == "leave":
            frame = stack.pop()
            tree_id = self._store_tree(frame.entries) if frame.reused is None else self._dir_tree(frame)
            if frame.digest and frame.clean:
                self._remember_dir(frame, tree_id)
            self.stat_dirs += 1
            if not stack:
                if frame.st is not None:
                    self.root_meta = {"mode": frame.st.st_mode, "uid": frame.st.st_uid, "gid": frame.st.st_gid,
                                      "mtime_ns": frame.st.st_mtime_ns}
                return tree_id
            entry = _entry_from_stat(frame.name, frame.st, DIR)
            entry.subtree = tree_id
            entry.xattrs = read_xattrs(frame.path) if frame.st is not None else {}
            stack[-1].entries.append(entry)
            return None
        st = item.st
        assert st is not None
        mode = st.st_mode
        xattrs: dict[bytes, bytes] | None = None  # as read with the content, else read here
        if stat.S_ISREG(mode):
            if item.batch is not None and not item.batch.ingested:
                self._ingest(item.batch)
            result = item.result if item.result is not None else item.future.result()  # type: ignore[union-attr]
            if result.error:
                self.unreadable += 1
                self._error(result.error)
                stack[-1].clean = False
                return None
            # the metadata that goes with the content read (the walk's stat may be older)
            entry = _entry_from_stat(item.name, result.st if result.st is not None and not item.shared else st, FILE)
            entry.size = result.size
            entry.chunks = result.chunks
            if result.warning and not item.shared:
                self.changed += 1
                if len(self.warnings) < MAX_ERRORS_KEPT:
                    self.warnings.append(result.warning)
            if st.st_nlink > 1:
                entry.hardlink = hash((st.st_dev, st.st_ino)) & 0x7FFFFFFFFFFFFFFF or 1
                self.hardlinks[(st.st_dev, st.st_ino)] = _FileResult(chunks=result.chunks, size=result.size)
            if result.cache_value is not None and not item.shared:
                self.files_cache[item.path] = result.cache_value
                if len(self.files_cache) >= FILES_CACHE_BATCH:
                    self.repo.index.put_files(self.files_cache)
                    self.files_cache.clear()
            self.stat_files += 1
            self.stat_bytes += result.size
            self.stat_read += 0 if item.shared else result.read_bytes
            self.stat_chunks += len(result.chunks) // CHUNK_REF.size
            if not item.shared:
                xattrs = result.xattrs
        elif stat.S_ISLNK(mode):
            entry = _entry_from_stat(item.name, st, SYMLINK)
            try:
                entry.target = os.readlink(item.path)
            except OSError as exc:
                self.unreadable += 1
                self._error(f"{os.fsdecode(item.path)}: {exc.strerror}")
                stack[-1].clean = False
                return None
            entry.size = len(entry.target)
            self.stat_links += 1
        else:
            kind = FIFO if stat.S_ISFIFO(mode) else CHARDEV if stat.S_ISCHR(mode) else \
                BLOCKDEV if stat.S_ISBLK(mode) else SOCKET
            entry = _entry_from_stat(item.name, st, kind)
            if kind in (CHARDEV, BLOCKDEV):
                entry.rdev = st.st_rdev
        entry.xattrs = read_xattrs(item.path) if xattrs is None else xattrs
        stack[-1].entries.append(entry)
        return None

    def _error(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(message)

    def _report(self, path: bytes, force: bool = False) -> None:
        if self.progress is None:
            return
        moment = time.monotonic()
        if force or moment - self._last_progress > 0.2:
            self._last_progress = moment
            self.progress({"files": self.stat_files, "bytes": self.stat_bytes, "read": self.stat_read,
                           "stored": self.sink.bytes_written, "path": os.fsdecode(path)})

    def run(self, sources: list[Source]) -> bytes:
        """Walk, store everything, flush packs; returns the root tree id (not yet committed)."""
        window: deque[_Walked] = deque()
        stack: list[_Frame] = []
        root: bytes | None = None
        # The files-cache lookups share one read transaction, renewed every few thousand
        # entries: a read transaction held for the whole take would pin every page the take's
        # own writes replace, and the index file would grow with each batch.
        txn = self.repo.index.read()
        self.files_cached = self.repo.index.has_files(txn)
        seen = 0
        try:
            for item in self._walk_sources(sources):
                if self.failure is not None:
                    break
                if item.kind == "entry":
                    self._dispatch(item, txn)
                    seen += 1
                    if seen % 2048 == 0:
                        txn.abort()
                        txn = self.repo.index.read()
                        # the index pages looked at so far would stay in this process's RSS
                        self.repo.index.release_mapped()
                window.append(item)
                while window and (len(window) > WINDOW or window[0].ready()):
                    head = window.popleft()
                    root = self._consume(head, stack) or root
                    if head.path:
                        self._report(head.path)
                    if self.failure is not None:
                        break
            if self.failure is None:
                self._submit_batch()
            while window and self.failure is None:
                root = self._consume(window.popleft(), stack) or root
        finally:
            txn.abort()
            if self.pool is not None:
                self.pool.shutdown()
        self.readers.shutdown(wait=True)
        self.compressors.shutdown(wait=True)
        if self.failure is not None:
            raise self.failure
        self.packs = [p.id for p in self.sink.flush()]
        self.sink.close()
        # trusted only while the tree they name is referenced: written before the commit, safe
        self.repo.index.put_dirs(self.dir_updates)
        assert root is not None
        return root

    def run_stream(self, stream: StdinSource) -> bytes:
        """Chunk ``stream.handle`` (a pipe: read once, in order, through the same bounded
        pipeline as a file) into one file at ``stream.name``; returns the root tree id."""
        parts = os.fsencode(stream.name).split(b"/")
        refs: list[bytes] = []
        size = 0
        try:
            for piece in self._chunker().cut(stream.handle):
                blob_id = self.repo.blob_id(piece)
                refs.append(CHUNK_REF.pack(blob_id, len(piece)))
                size += len(piece)
                if self.registry.claim(blob_id):
                    self._submit_blob(blob_id, TYPE_DATA, bytes(piece))
                self._report(parts[-1])
        except OSError as exc:
            raise UsageError(f"--stdin: cannot read standard input: {exc.strerror or exc}") from None
        user, group = _owner_names(os.getuid(), os.getgid())
        node = Entry(name=parts[-1], kind=FILE, mode=stat.S_IFREG | 0o644, uid=os.getuid(), gid=os.getgid(),
                     mtime_ns=stream.mtime_ns, user=user, group=group, size=size, chunks=b"".join(refs))
        tree_id = self._store_tree([node])
        for name in reversed(parts[:-1]):  # the directories of NAME, like those of a source path
            node = Entry(name=name, kind=DIR, mode=stat.S_IFDIR | 0o755, uid=os.getuid(), gid=os.getgid(),
                         mtime_ns=stream.mtime_ns, user=user, group=group, subtree=tree_id)
            tree_id = self._store_tree([node])
        self.stat_files, self.stat_dirs = 1, len(parts)
        self.stat_bytes = self.stat_read = size
        self.stat_chunks = len(refs)
        self.compressors.shutdown(wait=True)
        self.readers.shutdown(wait=True)
        if self.failure is not None:
            raise self.failure
        self.packs = [p.id for p in self.sink.flush()]
        self.sink.close()
        return tree_id

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        self.readers.shutdown(wait=True, cancel_futures=True)
        self.compressors.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class StdinSource:
    """``take --stdin --stdin-name NAME``: one file read from a stream (a database dump piped in)."""

    handle: BinaryIO
    name: str  # its path in the snapshot (relative; may name directories: db/dump.sql)
    mtime_ns: int


def check_stdin_name(name: str) -> str:
    """A ``--stdin-name`` that is a clean relative path (``UsageError`` else)."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in name:
        raise UsageError(f"--stdin-name {name!r}: give a relative path such as dump.sql or db/dump.sql")
    return name


@dataclass(frozen=True)
class TakeResult:
    snapshot: Snapshot
    packs: int
    excluded: tuple[str, ...] = ()  # directories left out because they are a repository or a cache


def take_snapshot(
    repo: Repository,
    sources: list[Source],
    *,
    tier: str = "manual",
    tags: tuple[str, ...] = (),
    level: int | None = None,
    verify: str = "quick",
    excludes: list[str] | None = None,
    workers: int | None = None,
    when: datetime | None = None,
    progress: Callable[[dict[str, object]], None] | None = None,
    missing: tuple[str, ...] = (),
    approved_by: str = "",
    reason: str = "",
    unapproved: bool = False,
    rules: WalkRules = WalkRules(),
    stdin: StdinSource | None = None,
) -> TakeResult:
    """Take one snapshot of ``sources`` and commit it. ``verify``: none, quick (re-read and
    checksum each new pack) or full (also decompress every new blob and check its id).
    ``missing``: required sources that were not there; the record names them (incomplete)."""
    from snapstore import clock

    for src in sources:
        if not os.path.lexists(src.path):
            raise SourceNotFound(f"source path does not exist: {os.fsdecode(src.path)}")
        real = os.path.realpath(src.path)
        if is_inside(real, os.path.realpath(os.fsencode(repo.backend.local_tmp_dir()))):
            continue  # scratch space, not the repository: an import extracts its archive there
        for place, what in protected_dirs(repo):
            if is_inside(real, place):
                raise UsageError(f"{os.fsdecode(src.path)} is inside {what} ({os.fsdecode(place)}), which a take "
                                 "never stores (use 'snap copy' for a second copy of a repository)")
    sources = normalize_sources(sources)
    remove_unfinished(repo.backend.local_tmp_dir())
    started = time.monotonic()
    moment = when or clock.now()
    warnings: list[str] = []
    if when is None:
        newest = max(repo.snapshots(), key=lambda snap: snap.time, default=None)
        if newest is not None and moment < newest.time:
            # SNAP_NOW in the past (or a clock set back): 'latest' goes by time and would never show it
            warnings.append(f"this snapshot's time {clock.format_time(moment)} is before that of the newest "
                            f"snapshot {newest.short_id} ({clock.format_time(newest.time)}): 'latest' will not "
                            "name it (is SNAP_NOW or the clock set in the past?)")
    ncpu = os.cpu_count() or 2
    memory.tune_for_take()  # before the take's threads start (peak RSS: see snapstore.memory)
    take = Take(repo, level=repo.config.compression_level if level is None else level,
                workers=workers or max(2, ncpu), verify=verify, excludes=excludes or [], progress=progress,
                rules=rules)
    # The walking thread makes a syscall or two per file (scandir's readdir, lstat, open) and
    # gives up the interpreter lock for each; a compressor, reader or pack thread holding it then
    # keeps it up to the switch interval (5 ms by default) before the walk may go on. A shorter
    # interval bounds that wait: real tree, 8 A/B pairs, wall 0.96x (0.87-1.00) at 1 ms.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL_S))
    try:
        root = take.run(sources) if stdin is None else take.run_stream(stdin)
    except BaseException as exc:
        if take.failure is None:
            take.failure = exc
        take.shutdown()
        take.sink.abort()
        failure = take.failure
        if isinstance(exc, KeyboardInterrupt) or isinstance(failure, KeyboardInterrupt):
            raise Interrupted("take interrupted; nothing was committed, earlier snapshots are intact") from None
        if isinstance(failure, OSError):
            raise raise_os_error(failure, "taking snapshot") from None
        if isinstance(failure, TakeCancelled):
            raise SnapError("take cancelled") from None
        raise failure from None
    finally:
        sys.setswitchinterval(interval)
    verified = f"{take.sink.packs_checked} new packs re-read and checksummed" if verify != "none" else "skipped"
    if verify == "full" and not repo.can_read:
        verified += "; new blobs not decrypted (a write-only key cannot read them back)"
    elif verify == "full":
        for blob_id in take.new_blobs:
            repo.read_blob(blob_id)  # raises ChunkUnreadable on a mismatch
        verified += f"; {len(take.new_blobs)} new blobs decompressed and hash-checked"
    stats = SnapshotStats(
        files=take.stat_files, dirs=take.stat_dirs, symlinks=take.stat_links, bytes=take.stat_bytes,
        new_bytes=take.sink.bytes_written, new_chunks=take.sink.blobs_written, chunks=take.stat_chunks,
        read_bytes=take.stat_read, duration_s=time.monotonic() - started, unreadable=take.unreadable,
        errors=tuple(take.errors), verified=verified, changed=take.changed,
        warnings=tuple(take.warnings + warnings),
    )
    snapshot = Snapshot(
        time=moment,
        tier=tier, root=root.hex(),
        paths=tuple(os.fsdecode(s.path) for s in sources) if stdin is None else (f"<stdin>/{stdin.name}",),
        hostname=host_name(),
        username=_owner_names(os.getuid(), os.getgid())[0], tags=tuple(tags),
        stats=stats, root_meta=take.root_meta, missing=tuple(missing),
        approved_by=approved_by, reason=reason, unapproved=unapproved,
    )
    snapshot = repo.snapshot_with_id(snapshot)
    # the pipeline's buffers are freed: give them back, and the index pages read, before the
    # commit reads the index again
    memory.trim()
    repo.index.release_mapped()
    faults.crash_point("take-before-commit")
    faults.pause_point("take-before-commit")
    try:
        with index_errors("committing snapshot", repo.index):
            repo.commit_snapshot(snapshot, packs=take.packs, new_trees=take.new_trees, files=take.files_cache)
    except OSError as exc:
        raise raise_os_error(exc, "committing snapshot") from None
    if take.progress:
        take._report(b"", force=True)
    return TakeResult(snapshot, len(take.packs), excluded=tuple(take.excluded))
