"""Reader processes for small files: read, hash and compress many files per job, on every core.

A take of a tree of small files is bound by per-file work (open, read, fstat, close, hash,
compress, a few Python objects), and in one process the interpreter lock lets only one thread
do the Python part of it at a time. So the files that are one chunk (smaller than the
chunker's minimum) go to a pool of forked processes in batches: each job reads a batch of
files with the fewest syscalls (the walk's lstat stands for the stat at open, then one
``read``, one ``fstat`` to see the file as read, one ``close``), computes each blob id and
compresses and (in an encrypted repository) seals each blob. The take's process then only
claims ids (dedup is decided there, as for every other blob), appends to packs and builds trees.

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
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, NamedTuple

from snapstore import faults
from snapstore.format.chunker import chunk_id
from snapstore.format.packfile import TYPE_DATA
from snapstore.repo.packsink import encode_blob

if TYPE_CHECKING:  # imported when a pool is made: a take of a few files (and a plaintext one) skips them
    from concurrent.futures import ProcessPoolExecutor

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
    SIGKILL cannot stop its pool, and the fork server's children wait on queues whose other
    ends they hold themselves: without this they lived on, holding the take's stdout and stderr
    open (a caller reading them, a cron wrapper or a soak, waited forever)."""
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


def make_pool(workers: int, *, crypto: RepoCrypto | None, level: int, limit: int,
              started_ns: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` reader processes (started by the fork server on the first job)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    material = None if crypto is None else crypto.material.write_only().to_bytes()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # children start with this module imported
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init,
                               initargs=(_Start(material, crypto.pad if crypto else True, level, limit, started_ns,
                                                os.getpid()),))


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


def _read_once(config: _Config, path: bytes, attempt: int) -> tuple[bytes, os.stat_result]:
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
    finally:
        os.close(fd)
    return data, after


def _read(config: _Config, path: bytes, size: int, mtime_ns: int) -> SmallRead:
    read_bytes = 0
    warning = ""
    try:
        data, after = _read_once(config, path, 1)
        read_bytes = len(data)
        steady = (size, mtime_ns) == (after.st_size, after.st_mtime_ns) and len(data) == after.st_size
        if not steady and len(data) <= config.limit:
            before = after
            data, after = _read_once(config, path, 2)
            read_bytes += len(data)
            steady = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns) \
                and len(data) == after.st_size
            if not steady:
                warning = (f"{os.fsdecode(path)}: changed while it was read, twice; stored as read the second "
                           "time, which may mix old and new content")
    except OSError as exc:
        return SmallRead(f"{os.fsdecode(path)}: {exc.strerror or exc}", "", False, None, 0, read_bytes, b"", 0,
                         b"", False)
    if len(data) > config.limit:
        return SmallRead("", "", True, None, 0, read_bytes, b"", 0, b"", False)
    if not data:
        return SmallRead("", warning, False, after, 0, read_bytes, b"", 0, b"", steady and not racy(
            after, config.started_ns))
    crypto = config.crypto
    blob_id = crypto.ids.blob_id(data) if crypto is not None else chunk_id(data)
    blob = encode_blob(blob_id, data, config.level, blob_type=TYPE_DATA, crypto=crypto)
    return SmallRead("", warning, False, after, len(data), read_bytes, blob_id, blob.code, blob.payload,
                     steady and not racy(after, config.started_ns))
