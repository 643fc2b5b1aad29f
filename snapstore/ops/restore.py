"""The restore pipeline: write a snapshot, or parts of it, into a directory.

Files keep their path inside the snapshot under the target (``agents/Z/SOUL.md`` lands in
``TARGET/agents/Z/SOUL.md``). Each file is written under a temporary name in its directory
and renamed when complete, so a failed restore never leaves half a file under a real name.
Zero blocks become holes wherever they fall (sparse files stay sparse). Contents are written by a thread pool
(zstd and file writes release the GIL); metadata (owner when root, mode, mtime) is applied
after the contents, directories last and deepest first.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from snapstore.errors import ChunkUnreadable, SnapError, TargetNotEmpty, TargetProtected
from snapstore.format.chunker import chunk_id
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Entry
from snapstore.ops.protected import RepositoryLike, is_inside, protected_dirs, repository_holding
from snapstore.storage.backend import raise_os_error
from snapstore.view.vfs import SnapshotView, as_bytes_path, show_path

TMP_MARK = b".snap-restore-"
MAX_QUEUED = 256
INLINE_FILE = 64 * 1024
# small files are written in batches whose blobs are read in pack order: neighbours come in one
# read (one request on object storage instead of one per file)
SMALL_BATCH_FILES = 64
SMALL_BATCH_BYTES = 2 * 1024 * 1024
# on object storage files up to 1 MiB go in batches too, of up to 8 MiB (a worker holds one
# batch's blobs at a time): their blobs, in pack order and read across small gaps
# (``Repository.read_blobs``), come in a few requests instead of one per file
REMOTE_BATCH_FILE = 1024 * 1024
REMOTE_BATCH_FILES = 256
REMOTE_BATCH_BYTES = 8 * 1024 * 1024
HOLE_BLOCK = 4096  # the block size of the filesystems restores go to: the smallest hole they keep
_ZERO_BLOCK = bytes(HOLE_BLOCK)


@dataclass
class RestoreStats:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    holes: list[str] = field(default_factory=list)  # with --partial: what was zero-filled
    skipped: list[str] = field(default_factory=list)  # sockets, protected places: not written, said why
    leftovers_removed: int = 0  # temporary files of an interrupted restore, removed with --overwrite

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


class _ZeroIds:
    """Ids of all-zero chunks by length, so holes are found without reading data.

    A zero id is the id of a zero buffer of that length, and content-defined chunks rarely
    share a length: hashing one per new length cost a restore as much BLAKE3 as checking the
    chunks themselves (about 1 GB of zeros for the 1 GB set). So above ``_ASK_INDEX`` bytes a
    chunk is hashed as zeros only when the index says it compresses like zeros do (zstd makes
    1 MiB of them ~50 bytes); any other is read, and write_sparse still leaves its zero blocks
    as holes. A chunk missing from the index is hashed, as every chunk was: its zero id alone
    restores it."""

    _ASK_INDEX = 16 * 1024  # below, hashing zeros costs about what an index lookup does
    _ZERO_RATIO = 64  # zeros shrink >100x even sealed and padded (16 KiB -> 122 bytes)

    def __init__(self, id_of: Callable[[bytes], bytes] = chunk_id,
                 stored_len: Callable[[bytes], int | None] | None = None) -> None:
        self._id_of = id_of  # the repository's blob id (keyed when encrypted)
        self._stored_len = stored_len  # the chunk's size in its pack, from the index
        self._ids: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def is_zero(self, blob_id: bytes, length: int) -> bool:
        with self._lock:
            known = self._ids.get(length)
        if known is None:
            if length >= self._ASK_INDEX and self._stored_len is not None:
                stored = self._stored_len(blob_id)
                if stored is not None and stored * self._ZERO_RATIO > length:
                    return False  # stored too large to be zeros
            known = self._id_of(bytes(length))  # outside the lock: the pool's threads hash in parallel
            with self._lock:
                self._ids[length] = known
        return known == blob_id


def write_sparse(fd: int, data: bytes, at: int) -> None:
    """Write ``data`` at offset ``at`` of a new file, leaving every filesystem block that would
    be all zeros unwritten (a hole), wherever it falls inside the chunk.

    Chunk boundaries are content-defined, so a mostly empty file has its few bytes inside large
    chunks that are nearly all zeros; skipping only whole zero chunks would allocate all of them.
    A chunk without HOLE_BLOCK zeros in a row has no such block and is written in one call.
    """
    zero = _ZERO_BLOCK
    size = len(data)
    if data.find(zero) < 0:
        os.pwrite(fd, data, at)
        return
    view = memoryview(data)
    written = 0  # data[:written] is on disk or a hole
    search = 0
    while True:
        found = data.find(zero, search)
        if found < 0:
            break
        block = found + (-(at + found)) % HOLE_BLOCK  # the first block boundary of the file at or after it
        end = block
        while end + HOLE_BLOCK <= size and data.startswith(zero, end):
            end += HOLE_BLOCK
        if end == block:
            search = block + 1  # no aligned zero block here; the next one starts after ``block``
            continue
        if block > written:
            os.pwrite(fd, view[written:block], at + written)
        written = search = end
    if written < size:
        os.pwrite(fd, view[written:], at + written)


def check_not_protected(target: str | bytes, repo: RepositoryLike) -> None:
    """Refuse a target inside a repository or a snapstore cache (``--overwrite`` there would
    replace the repository's own files): one line, nothing written."""
    real = os.path.realpath(os.fsencode(target))
    for place, what in protected_dirs(repo):
        if is_inside(real, place):
            raise TargetProtected(f"restore target {os.fsdecode(target)} is inside {what} "
                                  f"({os.fsdecode(place)}); nothing was written")
    other = repository_holding(real)
    if other is not None:
        raise TargetProtected(f"restore target {os.fsdecode(target)} is inside the repository "
                              f"{os.fsdecode(other)}; nothing was written")


def check_target(target: str, overwrite: bool) -> None:
    if os.path.exists(target) and not os.path.isdir(target):
        raise TargetNotEmpty(f"restore target exists and is not a directory: {target}")
    if os.path.isdir(target) and os.listdir(target) and not overwrite:
        raise TargetNotEmpty(f"restore target is not empty: {target} (use --overwrite to restore into it)")


class Restorer:
    def __init__(self, view: SnapshotView, target: str, *, overwrite: bool, partial: bool,
                 workers: int, progress: Callable[[dict[str, object]], None] | None) -> None:
        self.view = view
        self.target = os.fsencode(os.path.abspath(target))
        self.overwrite = overwrite
        self.partial = partial
        self._xattr_refused: set[bytes] = set()
        self._xattr_lock = threading.Lock()
        self.stats = RestoreStats()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="snap-restore")
        # a small file is written by the walking thread where a read costs less than a thread
        # handoff (a local disk); on object storage each one waits a round trip, so they go to
        # the pool like the rest and several wait at once
        self.inline_small = view.repo.backend.parallel_gets == 0
        remote = view.repo.backend.remote
        self.batch_file = REMOTE_BATCH_FILE if remote else INLINE_FILE
        self.batch_files = REMOTE_BATCH_FILES if remote else SMALL_BATCH_FILES
        self.batch_bytes = REMOTE_BATCH_BYTES if remote else SMALL_BATCH_BYTES
        self._small: list[tuple[bytes, Entry]] = []
        self._small_bytes = 0
        self.zero = _ZeroIds(view.repo.blob_id, self._stored_len)
        self.is_root = os.geteuid() == 0
        self.progress = progress
        self._lock = threading.Lock()
        self._last = 0.0
        # paths inside the target (relative) that hold a repository or a cache: never written
        real_target = os.path.realpath(self.target)
        self.protected: list[tuple[bytes, str]] = []
        for place, what in protected_dirs(view.repo):
            if is_inside(place, real_target) and place != real_target:
                self.protected.append((os.path.relpath(place, real_target), what))

    def _stored_len(self, blob_id: bytes) -> int | None:
        loc = self.view.repo.index.get_chunk(blob_id)
        return None if loc is None else loc.stored_len

    def _protected(self, rel: bytes) -> str:
        for place, what in self.protected:
            if rel == place or rel.startswith(place + b"/"):
                return what
        return ""

    def _remove_leftovers(self, directory: bytes) -> None:
        """Remove the temporary files a killed restore left in ``directory`` (--overwrite)."""
        try:
            names = [n for n in os.listdir(directory) if n.startswith(TMP_MARK)]
        except OSError:
            return
        for name in names:
            try:
                os.unlink(os.path.join(directory, name))
                self.stats.leftovers_removed += 1
            except OSError:
                pass

    def _dest(self, rel: bytes) -> bytes:
        return os.path.join(self.target, rel) if rel else self.target

    def _apply_meta(self, path: bytes, entry: Entry) -> None:
        if entry.kind == SYMLINK:
            if self.is_root:
                os.lchown(path, entry.uid, entry.gid)
            self._set_xattrs(path, entry)
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
            return
        if self.is_root:
            os.chown(path, entry.uid, entry.gid)
        os.chmod(path, stat.S_IMODE(entry.mode))
        self._set_xattrs(path, entry)  # after chmod: an access ACL's mask is the group bits
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))

    def _set_xattrs(self, path: bytes, entry: Entry) -> None:
        """Extended attributes and ACLs; one the target refuses (no support, no permission for
        ``security.*`` or ``trusted.*``) is skipped and named once per attribute name."""
        for name, value in entry.xattrs.items():
            try:
                os.setxattr(path, name, value, follow_symlinks=False)
            except OSError as exc:
                with self._xattr_lock:
                    if name not in self._xattr_refused:
                        self._xattr_refused.add(name)
                        self.stats.skipped.append(f"extended attribute {os.fsdecode(name)} not restored on "
                                                  f"{os.fsdecode(path)} and others ({exc.strerror})")

    def _write_batch(self, batch: list[tuple[bytes, Entry]]) -> list[tuple[bytes, Exception]]:
        """Write small files whose blobs are read together, in pack order; returns the files
        that failed with their errors (collected by the walking thread)."""
        ids = [blob_id for _rel, entry in batch for blob_id, length in entry.chunk_refs()
               if not self.zero.is_zero(blob_id, length)]
        fetched = dict(self.view.repo.read_blobs(self.view.repo.in_pack_order(ids)))
        failures: list[tuple[bytes, Exception]] = []
        for rel, entry in batch:
            try:
                self._write_file(rel, entry, fetched)
            except (ChunkUnreadable, OSError) as exc:
                failures.append((rel, exc))
        return failures

    def _write_file(self, rel: bytes, entry: Entry, fetched: dict[bytes, bytes | ChunkUnreadable] | None = None
                    ) -> None:
        """Write one file; ``fetched``: its blobs, already read (a batch of small files)."""
        dest = self._dest(rel)
        tmp = os.path.join(os.path.dirname(dest), TMP_MARK + os.urandom(4).hex().encode() + b"-" +
                           os.path.basename(dest)[:100])
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            # where each non-zero chunk goes; all-zero chunks stay holes
            wanted: list[bytes] = []
            places: list[tuple[int, int]] = []
            pos = 0
            for blob_id, length in entry.chunk_refs():
                if not self.zero.is_zero(blob_id, length):
                    wanted.append(blob_id)
                    places.append((pos, length))
                pos += length
            # neighbouring chunks of one pack come in one read (one request on object storage)
            blobs = (self.view.repo.read_blobs(wanted) if fetched is None
                     else ((blob_id, fetched[blob_id]) for blob_id in wanted))
            for (_blob_id, data), (at, length) in zip(blobs, places, strict=True):
                if isinstance(data, ChunkUnreadable):
                    if not self.partial:
                        raise data
                    with self._lock:
                        self.stats.holes.append(
                            f"{show_path(rel)}: bytes {at}-{at + length} zero-filled ({data.message})")
                    continue
                write_sparse(fd, data, at)
            os.ftruncate(fd, entry.size)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        try:
            self._apply_meta(tmp, entry)
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise IsADirectoryError(21, "a directory is in the way", dest)
            os.rename(tmp, dest)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        with self._lock:
            self.stats.files += 1
            self.stats.bytes += entry.size
            self._report(rel)

    def _report(self, rel: bytes) -> None:
        if self.progress is None:
            return
        moment = time.monotonic()
        if moment - self._last > 0.2:
            self._last = moment
            self.progress({"files": self.stats.files, "bytes": self.stats.bytes, "path": show_path(rel)})

    def _replace(self, dest: bytes) -> None:
        """Make room for a non-file entry at ``dest`` (only with --overwrite)."""
        if os.path.lexists(dest) and not (os.path.isdir(dest) and not os.path.islink(dest)):
            os.unlink(dest)

    def _make_special(self, rel: bytes, entry: Entry) -> None:
        dest = self._dest(rel)
        if self.overwrite:
            self._replace(dest)
        if entry.kind == SYMLINK:
            os.symlink(entry.target, dest)
            self.stats.symlinks += 1
        elif entry.kind == FIFO:
            os.mkfifo(dest, stat.S_IMODE(entry.mode))
        elif entry.kind in (CHARDEV, BLOCKDEV):
            if not self.is_root:
                raise PermissionError(1, "creating device files needs root", dest)
            os.mknod(dest, entry.mode, entry.rdev)
        elif entry.kind == SOCKET:
            # a socket belongs to the process that listens on it; its name is listed by ls
            self.stats.skipped.append(f"{show_path(rel)}: a socket cannot be restored (skipped)")
            return
        self._apply_meta(dest, entry)

    def _collect(self, rel: bytes, fut: Future[list[tuple[bytes, Exception]] | None]) -> None:
        try:
            failures = fut.result() or []
        except (ChunkUnreadable, OSError) as raised:
            failures = [(rel, raised)]
        for failed, error in failures:
            if isinstance(error, ChunkUnreadable):
                self.stats.errors.append(f"{show_path(failed)}: {error.message}")
            elif isinstance(error, OSError):
                self._fail(failed, error)

    def _flush_small(self, futures: deque[tuple[bytes, Future[list[tuple[bytes, Exception]] | None]]]) -> None:
        batch, self._small, self._small_bytes = self._small, [], 0
        if not batch:
            return
        if self.inline_small:
            done: Future[list[tuple[bytes, Exception]] | None] = Future()
            done.set_result(self._write_batch(batch))
            self._collect(batch[0][0], done)
        else:
            futures.append((batch[0][0], self.pool.submit(self._write_batch, batch)))

    def run(self, items: Iterable[tuple[bytes, Entry]]) -> RestoreStats:
        started = time.monotonic()
        dirs: list[tuple[bytes, Entry]] = []
        futures: deque[tuple[bytes, Future[list[tuple[bytes, Exception]] | None]]] = deque()
        links: list[tuple[bytes, bytes]] = []
        first_of_link: dict[int, bytes] = {}
        # The snapshot root's own metadata goes to the target only if the target is ours.
        fresh_target = not os.path.exists(self.target) or not os.listdir(self.target)
        os.makedirs(self.target, exist_ok=True)
        if self.overwrite and not fresh_target:
            self._remove_leftovers(self.target)
        try:
            for rel, entry in items:
                dest = self._dest(rel)
                protected = self._protected(rel) if self.protected else ""
                if protected:
                    if rel in {p for p, _ in self.protected}:
                        self.stats.skipped.append(f"{show_path(rel)}: not restored over {protected}")
                    continue
                try:
                    if entry.kind == DIR:
                        if rel:
                            if os.path.lexists(dest) and not os.path.isdir(dest):
                                if not self.overwrite:
                                    raise FileExistsError(17, "exists", dest)
                                os.unlink(dest)
                            elif self.overwrite and os.path.isdir(dest):
                                self._remove_leftovers(dest)
                            os.makedirs(dest, exist_ok=True)
                            dirs.append((rel, entry))
                        elif fresh_target:
                            dirs.append((rel, entry))
                        self.stats.dirs += 1
                    elif entry.kind == FILE:
                        if entry.hardlink and entry.hardlink in first_of_link:
                            links.append((first_of_link[entry.hardlink], rel))
                            continue
                        if entry.hardlink:
                            first_of_link[entry.hardlink] = rel
                        if entry.size < self.batch_file:
                            self._small.append((rel, entry))
                            self._small_bytes += entry.size
                            if len(self._small) >= self.batch_files or self._small_bytes >= self.batch_bytes:
                                self._flush_small(futures)
                            continue
                        futures.append((rel, self.pool.submit(self._write_file, rel, entry)))
                        while len(futures) > MAX_QUEUED or (futures and futures[0][1].done()):
                            self._collect(*futures.popleft())
                    else:
                        self._make_special(rel, entry)
                except OSError as exc:
                    self._fail(rel, exc)
            self._flush_small(futures)
            while futures:
                self._collect(*futures.popleft())
            for first, rel in links:
                dest = self._dest(rel)
                try:
                    if self.overwrite:
                        self._replace(dest)
                    os.link(self._dest(first), dest)
                    self.stats.files += 1
                except OSError as exc:
                    self._fail(rel, exc)
            for rel, entry in reversed(dirs):
                try:
                    self._apply_meta(self._dest(rel), entry)
                except OSError as exc:
                    self._fail(rel, exc)
        except KeyboardInterrupt:
            self.pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            self.pool.shutdown(wait=True)
        self.stats.duration_s = time.monotonic() - started
        return self.stats

    def unreadable_dir(self, rel: bytes, exc: ChunkUnreadable) -> None:
        """A directory whose tree cannot be read: named, and everything else is restored."""
        self.stats.errors.append(f"{show_path(rel) if rel else '/'}: directory unreadable, nothing under it "
                                 f"restored ({exc.message})")

    def _fail(self, rel: bytes, exc: OSError) -> None:
        import errno

        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise raise_os_error(exc, f"restoring {show_path(rel)}")
        self.stats.errors.append(f"{show_path(rel)}: {exc.strerror or exc}")


def select(view: SnapshotView, snap: Snapshot, paths: list[str], *,
           on_unreadable: Callable[[bytes, ChunkUnreadable], None] | None = None) -> Iterator[tuple[bytes, Entry]]:
    """Everything to restore for ``paths`` (all of the snapshot when empty), with the parent
    directories of each selected path so that their metadata is restored too. Every path is
    looked up before the first item is produced, so a wrong path writes nothing.
    ``on_unreadable``: told of each directory whose tree cannot be read (skipped, see walk)."""
    if not paths:
        return view.walk(view.root(snap), on_unreadable=on_unreadable)
    rels = [as_bytes_path(given) for given in paths]
    for rel in rels:
        view.lookup(snap, rel)  # raises PathNotFound
    rels = [r for r in sorted(set(rels)) if not any(r.startswith(o + b"/") or (o == b"" and r) for o in rels)]

    def produce() -> Iterator[tuple[bytes, Entry]]:
        parents_done: set[bytes] = set()
        for rel in rels:
            parts = rel.split(b"/") if rel else []
            for i in range(1, len(parts)):
                parent = b"/".join(parts[:i])
                if parent not in parents_done:
                    parents_done.add(parent)
                    yield parent, view.lookup(snap, parent)
            yield from view.walk(view.lookup(snap, rel), rel, on_unreadable=on_unreadable)

    return produce()


def restore_snapshot(view: SnapshotView, snap: Snapshot, paths: list[str], target: str, *,
                     overwrite: bool = False, partial: bool = False, workers: int | None = None,
                     progress: Callable[[dict[str, object]], None] | None = None) -> RestoreStats:
    """Restore ``paths`` of ``snap`` (everything when empty) under ``target``."""
    check_not_protected(target, view.repo)
    check_target(target, overwrite)
    workers = workers or view.repo.backend.parallel_gets or max(2, (os.cpu_count() or 2))
    restorer = Restorer(view, target, overwrite=overwrite, partial=partial, workers=workers, progress=progress)
    items = select(view, snap, paths, on_unreadable=restorer.unreadable_dir)
    try:
        return restorer.run(items)
    except SnapError:
        raise
    except OSError as exc:
        raise raise_os_error(exc, f"restoring into {target}") from None
