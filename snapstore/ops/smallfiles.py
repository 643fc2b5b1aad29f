"""Reader processes for small files: read, hash and compress many files per job, on every core.

A take of a tree of small files is bound by per-file work (open, read, fstat, close, hash,
compress, a few Python objects), and in one process the interpreter lock lets only one thread
do the Python part of it at a time. So the files that are one chunk (smaller than the
chunker's minimum) go to a pool of forked processes in batches: each job reads a batch of
files with the fewest syscalls (the walk's lstat stands for the stat at open, then one
``read``, one ``fstat`` to see the file as read, its extended attributes through the same
descriptor, one ``close``), computes each blob id and
compresses and (in an encrypted repository) seals each blob. The take's process then only
claims ids (dedup is decided there, as for every other blob), appends to packs and builds trees.
:func:`read_xattrs` is the one way a take reads extended attributes, by path or through the
descriptor a file's content was read from.

What a batch returns for a file is a :class:`SmallRead`. A file that changed while it was read
(size or mtime differ from what the walk saw, or fewer bytes than its size) is read again, and
one still changing the second time is kept as read with a warning and no files-cache entry,
exactly as the take's own reader does. A file that grew past one chunk is handed back
(``too_big``) for the take's chunking reader.

The pool's processes come from a fork server (``forkserver``), never from a fork of the take:
the take runs threads (readers sealing with OpenSSL, an S3 lease's refresher) and a fork taken
while one of them holds a lock inside a C library leaves the child waiting on it for ever. The
children get the write-only part of the key material (ids and sealing: nothing that decrypts)
and the configuration once, when they start, over the server's local socket; they only ever run
:func:`read_batch`: no index, lock or backend is touched in a child. Each child seals with a
seal session of its own (a session's nonces are counters: two processes must never share one).
Children ignore SIGINT (the take stops them).

The pool is :class:`ReaderPool`, not ``concurrent.futures.ProcessPoolExecutor``: the executor's
workers share one result pipe, and a worker killed (SIGKILL, the OOM killer) while it is writing
a result larger than the pipe's buffer leaves the executor's manager thread waiting for the rest
of that message for ever: no future fails, the take hangs (CPython 3.11 and 3.12 alike). Here
each child has a socket of its own, whose other end only the take holds, so a child that dies
mid-message gives end-of-file on its own socket and the pool fails every outstanding batch.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import deque
from concurrent.futures import BrokenExecutor, Future
from typing import TYPE_CHECKING, Any, NamedTuple

from snapstore import faults
from snapstore.errors import SnapError
from snapstore.format.chunker import chunk_id
from snapstore.format.packfile import TYPE_DATA
from snapstore.repo.packsink import encode_blob

if TYPE_CHECKING:  # imported when a pool is made: a take of a few files (and a plaintext one) skips them
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from snapstore.format.crypto import RepoCrypto

_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_NOATIME = getattr(os, "O_NOATIME", 0)


class SmallRead(NamedTuple):
    """One file of a batch as read (a tuple: cheap to send back over the pool's pipe)."""

    error: str  # '' or the one-line reason it could not be read
    warning: str  # '' or: changed while it was read, twice
    too_big: bool  # grew past one chunk: read it with the chunking reader instead
    st: os.stat_result | None  # the file as its content was read
    size: int  # bytes stored
    read_bytes: int  # bytes read (twice the size when read again)
    blob_id: bytes  # b'' for an empty file
    code: int  # how payload is encoded (compression, and the encrypted flag)
    payload: bytes  # the blob as a pack stores it
    cacheable: bool  # steady while read and not racy: the files cache may trust it
    xattrs: dict[bytes, bytes] | None  # of the file as read (None: not read; the take reads them)


class _Config(NamedTuple):
    crypto: RepoCrypto | None
    level: int
    limit: int  # the largest size that is one chunk
    started_ns: int


class _Start(NamedTuple):
    """What a child is given when it starts (picklable: it crosses the fork server's socket)."""

    material: bytes | None  # write-only KeyMaterial.to_bytes(), None for a plaintext repository
    pad: bool
    level: int
    limit: int
    started_ns: int
    take_pid: int  # the take's process: a reader outlives it by no more than a moment


_config: _Config | None = None


def _exit_with(pid: int) -> None:
    """End this reader when process ``pid`` (the take) ends, however it ends. A take killed by
    SIGKILL cannot stop its pool; an idle child sees end-of-file on its socket, but one busy
    with a slow read (a network file system) would live on, holding the take's stdout and
    stderr open (a caller reading them, a cron wrapper or a soak, waits until it ends)."""
    import select
    import threading

    try:
        fd = os.pidfd_open(pid)
    except OSError:  # gone already (or no pidfd: Linux < 5.3)
        from snapstore.storage.locking import pid_alive

        if not pid_alive(pid):
            os._exit(1)
        return

    def watch() -> None:
        select.select([fd], [], [])  # readable once the process has ended
        os._exit(1)

    threading.Thread(target=watch, name="snap-take-watch", daemon=True).start()


def _init(start: _Start) -> None:
    from snapstore.format.crypto import KeyMaterial, RepoCrypto

    global _config
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with(start.take_pid)
    crypto = None if start.material is None else RepoCrypto(KeyMaterial.from_bytes(start.material), pad=start.pad)
    _config = _Config(crypto, start.level, start.limit, start.started_ns)


class ReaderPoolBroken(BrokenExecutor):
    """A reader process died: every batch not yet back fails with this."""


_DIED = "a small-file reader process died (killed, or out of memory) while the batch was pending"


def _serve(conn: Connection, start: _Start) -> None:
    """A child's loop: read a batch, send back its :class:`SmallRead` list; until end-of-file."""
    _init(start)
    while True:
        try:
            files = conn.recv()
        except (EOFError, OSError):  # the take closed its end (or ended)
            return
        if files is None:
            return
        reply: tuple[bool, Any]
        try:
            reply = (True, read_batch(files))
        except Exception as exc:  # a defect: the take reports it, the child serves on
            reply = (False, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:
            return


class _Child:
    """One reader process, its socket, and the futures of the batches sent to it (in order)."""

    __slots__ = ("conn", "futures", "process")

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.futures: deque[Future[list[SmallRead]]] = deque()


class ReaderPool:
    """``workers`` reader processes from the fork server, fed batches by one thread (the take's
    calling thread); a thread of the pool reads their results and completes each batch's future.
    A child that dies fails every outstanding future with :class:`ReaderPoolBroken`, and later
    submits too.

    Only the submitting thread writes to the children and only the pool's thread reads from
    them, never holding a lock while it reads: a child's result can always be read, so the child
    always comes back for its next batch, so a submit blocked on a full socket (the only
    back-pressure: the take bounds the bytes it has out) always goes on."""

    def __init__(self, workers: int, start: _Start) -> None:
        import multiprocessing

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])  # children start with this module imported
        self._lock = threading.Lock()  # the futures of the children, the flags
        self._send_lock = threading.Lock()  # a batch's future is queued in the order it is sent
        self._broken = False
        self._closed = False
        self._children: list[_Child] = []
        self._wake_reader, self._wake_writer = multiprocessing.Pipe(duplex=False)
        try:
            for _ in range(workers):
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(target=_serve, args=(theirs, start), name="snap-small-reader", daemon=True)
                process.start()
                theirs.close()  # only the child holds its end now: its death is end-of-file here
                self._children.append(_Child(process, ours))
        except BaseException:
            self._stop_children()
            raise
        self._receiver = threading.Thread(target=self._receive, name="snap-small-results", daemon=True)
        self._receiver.start()

    def submit(self, files: list[tuple[bytes, int, int]]) -> Future[list[SmallRead]]:
        """Read ``(path, size, mtime_ns)`` files in the least busy child (see :func:`read_batch`)."""
        future: Future[list[SmallRead]] = Future()
        with self._send_lock:
            with self._lock:
                if self._broken or self._closed:
                    future.set_exception(ReaderPoolBroken(_DIED if self._broken else "the reader pool is shut down"))
                    return future
                child = min(self._children, key=lambda c: len(c.futures))
                child.futures.append(future)
            try:
                child.conn.send(files)
            except OSError:  # it died: the pool's thread sees its end-of-file and fails the pool
                pass
        return future

    def _receive(self) -> None:
        """The pool's thread: complete futures as results come back; fail all when a child dies."""
        from multiprocessing.connection import wait

        try:
            conns = {child.conn: child for child in self._children}
            sentinels = {child.process.sentinel: child for child in self._children}
            while True:
                ready = wait([self._wake_reader, *conns, *sentinels])
                if self._wake_reader in ready:
                    return
                for conn in ready:
                    child = conns.get(conn)  # type: ignore[call-overload]
                    if child is None:
                        continue
                    ok, value = child.conn.recv()  # EOFError: it died, mid-message or between
                    with self._lock:
                        future = child.futures.popleft()
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(SnapError(f"a small-file reader process failed: {value}"))
                for sentinel, child in sentinels.items():
                    if sentinel in ready and not conn_ready(child.conn):
                        raise EOFError  # it ended, and left no result to read
        except BaseException:  # noqa: BLE001 - any failure here must fail the futures, never strand them
            self._fail()

    def _detach(self, *, broken: bool) -> list[Future[list[SmallRead]]] | None:
        """Mark the pool broken (or closed) and take its outstanding futures; None when it was
        shut down already."""
        with self._lock:
            if self._closed:
                return None
            if broken:
                self._broken = True
            else:
                self._closed = True
            futures = [future for child in self._children for future in child.futures]
            for child in self._children:
                child.futures.clear()
        return futures

    def _fail(self) -> None:
        futures = self._detach(broken=True)
        if futures is None:
            return
        for child in self._children:  # the others may be mid-batch: what they read is not wanted
            if child.process.is_alive():
                child.process.kill()
        for future in futures:
            if not future.done():
                future.set_exception(ReaderPoolBroken(_DIED))

    def shutdown(self) -> None:
        """Stop the children and the pool's thread; outstanding batches are cancelled."""
        futures = self._detach(broken=False)
        if futures is None:
            return
        self._wake_writer.send(None)
        self._receiver.join()
        for future in futures:
            future.cancel()
        self._stop_children()
        self._wake_reader.close()
        self._wake_writer.close()

    def _stop_children(self) -> None:
        for child in self._children:
            child.conn.close()  # end-of-file: an idle child returns from its loop
        for child in self._children:
            child.process.join(timeout=2)
            if child.process.is_alive():  # busy with a slow read: nothing it holds needs keeping
                child.process.kill()
                child.process.join()


def conn_ready(conn: Connection) -> bool:
    """Whether ``conn`` has something to read (a message, or end-of-file)."""
    try:
        return conn.poll()
    except (EOFError, OSError):
        return True


def make_pool(workers: int, *, crypto: RepoCrypto | None, level: int, limit: int,
              started_ns: int) -> ReaderPool:
    """A pool of ``workers`` reader processes for this take."""
    material = None if crypto is None else crypto.material.write_only().to_bytes()
    return ReaderPool(workers, _Start(material, crypto.pad if crypto else True, level, limit, started_ns,
                                      os.getpid()))


def racy(st: os.stat_result, started_ns: int) -> bool:
    """A file changed within the timestamp tick of a take cannot be trusted to the files cache:
    on a filesystem with coarse timestamps a second write in the same tick keeps its mtime
    (git's "racy clean" problem). Only coarse timestamps (whole microseconds or coarser) within
    two seconds of the take's start count; nanosecond ones are exact."""
    newest = max(st.st_mtime_ns, st.st_ctime_ns)
    return newest % 1000 == 0 and newest >= started_ns - 2_000_000_000


def read_batch(files: list[tuple[bytes, int, int]]) -> list[SmallRead]:
    """Read ``(path, size, mtime_ns)`` files (size and mtime as the walk saw them)."""
    config = _config
    assert config is not None, "read_batch runs in a pool made by make_pool"
    return [_read(config, path, size, mtime_ns) for path, size, mtime_ns in files]


def read_xattrs(target: bytes | int) -> dict[bytes, bytes]:
    """The extended attributes of a file, POSIX ACLs included: name -> value. ``target`` is a
    path (the entry itself, not a symlink's target) or a descriptor of the file opened (its
    content and its attributes then come from one inode). A filesystem without them, or one
    attribute that vanished or may not be read, gives what could be read (a backup never fails
    on them)."""
    if not isinstance(target, int) and not target:
        return {}
    follow = isinstance(target, int)  # a descriptor is the file itself; a path: never a symlink's target
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError:
        return {}
    out: dict[bytes, bytes] = {}
    for name in names:
        try:
            out[os.fsencode(name)] = os.getxattr(target, name, follow_symlinks=follow)
        except OSError:
            continue
    return out


def _read_once(config: _Config, path: bytes,
               attempt: int) -> tuple[bytes, os.stat_result, dict[bytes, bytes]]:
    faults.check_open(path)
    try:
        fd = os.open(path, _FLAGS | _NOATIME)
    except PermissionError:  # O_NOATIME needs the file's owner (or root)
        fd = os.open(path, _FLAGS)
    try:
        limit = config.limit
        data = os.read(fd, limit + 1)
        if data:
            faults.pause_read(path, attempt)
        after = os.fstat(fd)
        # a short read before the end (a network or FUSE file system): read on
        while len(data) < after.st_size and len(data) <= limit:
            more = os.read(fd, limit + 1 - len(data))
            if not more:
                break
            data += more
            after = os.fstat(fd)
        xattrs = read_xattrs(fd)
    finally:
        os.close(fd)
    return data, after, xattrs


def _read(config: _Config, path: bytes, size: int, mtime_ns: int) -> SmallRead:
    read_bytes = 0
    warning = ""
    try:
        data, after, xattrs = _read_once(config, path, 1)
        read_bytes = len(data)
        steady = (size, mtime_ns) == (after.st_size, after.st_mtime_ns) and len(data) == after.st_size
        if not steady and len(data) <= config.limit:
            before = after
            data, after, xattrs = _read_once(config, path, 2)
            read_bytes += len(data)
            steady = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns) \
                and len(data) == after.st_size
            if not steady:
                warning = (f"{os.fsdecode(path)}: changed while it was read, twice; stored as read the second "
                           "time, which may mix old and new content")
    except OSError as exc:
        return SmallRead(f"{os.fsdecode(path)}: {exc.strerror or exc}", "", False, None, 0, read_bytes, b"", 0,
                         b"", False, None)
    if len(data) > config.limit:
        return SmallRead("", "", True, None, 0, read_bytes, b"", 0, b"", False, None)
    if not data:
        return SmallRead("", warning, False, after, 0, read_bytes, b"", 0, b"", steady and not racy(
            after, config.started_ns), xattrs)
    crypto = config.crypto
    blob_id = crypto.ids.blob_id(data) if crypto is not None else chunk_id(data)
    blob = encode_blob(blob_id, data, config.level, blob_type=TYPE_DATA, crypto=crypto)
    return SmallRead("", warning, False, after, len(data), read_bytes, blob_id, blob.code, blob.payload,
                     steady and not racy(after, config.started_ns), xattrs)
