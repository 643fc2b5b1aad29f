"""Where repository files live: the storage-backend interface and the local-directory backend.

Packs, snapshot records, leases and the repository config go through a :class:`Backend`, so that
the LMDB index is only a rebuildable cache of what the backend holds, and a remote backend (S3,
:mod:`snapstore.storage.s3`) works without touching the store. Names are ``/``-separated
relative paths such as ``packs/ab/ab12....pack`` or ``snapshots/<id>.json``.

:class:`Backend` is the whole interface: every caller uses only what it declares, and every
backend (:class:`LocalBackend`, :class:`snapstore.storage.s3.S3Backend`,
:class:`snapstore.storage.memory.MemoryBackend`) implements all of it. Behaviour that is the
same for any backend is a wrapper around one, not part of it (:class:`ForwardingBackend` is
their base): retries (:mod:`snapstore.storage.retrying`), request and byte counts
(:mod:`snapstore.storage.metered`), fault injection for tests (:mod:`snapstore.storage.faulty`).

Which backend serves a repository location is :mod:`snapstore.storage.locations`' business.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from snapstore.errors import NoSpace, SnapError


@dataclass(frozen=True)
class BackendStats:
    """What a backend (and the wrappers around it) did so far in this process.

    ``requests``: operations asked of the backend; ``retries``: operations tried again after a
    transient failure; ``injected_failures``: failures a test's fault injection made up;
    ``fetched_bytes`` / ``sent_bytes``: payload bytes read from / written to it. A bare backend
    counts nothing: :class:`snapstore.storage.metered.MeteredBackend` does.
    """

    requests: int = 0
    retries: int = 0
    injected_failures: int = 0
    fetched_bytes: int = 0
    sent_bytes: int = 0

    def to_json(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries, "injected_failures": self.injected_failures,
                "fetched_bytes": self.fetched_bytes, "sent_bytes": self.sent_bytes}


class Backend(Protocol):
    """Every operation snapstore needs from a storage location, with the semantics it relies on.

    Capabilities, read-only:

    - ``remote``: the files live elsewhere, shared by several hosts; the repository then keeps
      its index and flock files in a local cache directory, holds a lease in ``locks/`` and
      brings its index up to date from the backend at open;
    - ``parallel_puts``: how many pack uploads a take or copy runs at once;
    - ``parallel_gets``: how many reads a restore keeps in flight (0: one per core; a remote
      store's reads wait on the network, not on a core, so it wants more than the cores);
    - ``default_safety_window_s``: gc's safety window when the config sets none.

    Not found: :meth:`get`, :meth:`get_range` and :meth:`rename` raise ``FileNotFoundError``
    for a missing name; :meth:`size`, :meth:`mtime` and :meth:`get_tagged` return None;
    :meth:`delete` of a missing name does nothing. Every write is atomic: a reader sees the old
    file, the whole new one, or (after a delete) none, never a part. :meth:`rename` is atomic
    on a local disk and a copy then a delete on S3 (a crash in between leaves both names).

    Conditional writes, for the gc lease: a *tag* names one version of a file (an S3 ETag, an
    inode and mtime, a counter). :meth:`create_exclusive`, :meth:`replace_if` and
    :meth:`delete_if` are atomic with respect to each other on the same name; the lease writes
    its name only through them. A server without conditional writes degrades to plain writes,
    and the lease reads back what it wrote (:mod:`snapstore.storage.lease`).

    Errors: a failure that may pass (timeout, 5xx, throttling) is a
    :class:`~snapstore.errors.TransientError`, which the retrying wrapper tries again; refused
    credentials :class:`~snapstore.errors.RemoteAccessDenied`; a missing bucket
    :class:`~snapstore.errors.RepositoryNotFound`; local disk errors stay ``OSError``.
    Every method may be called from several threads at once.
    """

    @property
    def remote(self) -> bool: ...

    @property
    def parallel_puts(self) -> int: ...

    @property
    def parallel_gets(self) -> int: ...

    @property
    def default_safety_window_s(self) -> float: ...

    # -- writing ------------------------------------------------------------------------
    def put_file(self, name: str, local_path: str) -> None:
        """Store a finished local file under ``name``, replacing any; ``local_path`` (a file in
        :meth:`local_tmp_dir`) is consumed on success and left in place on failure."""

    def put_bytes(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, replacing any."""

    def create_exclusive(self, name: str, data: bytes) -> str | None:
        """Create ``name`` holding ``data`` unless it exists: the new tag, or None if it existed."""

    def replace_if(self, name: str, data: bytes, tag: str) -> str | None:
        """Overwrite ``name`` only while its tag is still ``tag``: the new tag, or None when the
        file changed or is gone."""

    def delete_if(self, name: str, tag: str) -> None:
        """Delete ``name`` if its tag is still ``tag``; nothing otherwise."""

    def delete(self, name: str) -> None:
        """Delete ``name``; a missing name is not an error."""

    def rename(self, name: str, new_name: str) -> None:
        """Move ``name`` to ``new_name`` (replacing it); FileNotFoundError when ``name`` is absent."""

    # -- reading ------------------------------------------------------------------------
    def get(self, name: str) -> bytes:
        """The whole of ``name``."""

    def get_tagged(self, name: str) -> tuple[bytes, str] | None:
        """``(data, tag)`` of ``name``, or None when it does not exist."""

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``name`` from ``offset`` (fewer only at the end of the file)."""

    def size(self, name: str) -> int | None:
        """The size of ``name``, or None when it does not exist."""

    def mtime(self, name: str) -> float | None:
        """When ``name`` was last written (epoch seconds), or None when it does not exist."""

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(name, size)`` of every file under ``prefix/``, in the order of :meth:`list_stat`."""

    def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        """``(name, size, mtime)`` of every file under ``prefix/``, sorted by name (code-point
        order, which is S3's), so that a listing broken off can resume after the last name."""

    # -- the location as a whole --------------------------------------------------------
    def check(self) -> None:
        """Raise RepositoryNotFound when the place itself (the bucket) is missing, or
        RemoteAccessDenied when the credentials are refused; nothing when it is usable."""

    def is_empty(self) -> bool:
        """True when no file at all is stored here (``snap init`` wants an empty place)."""

    def local_tmp_dir(self) -> str:
        """A local directory for files being written (on the same filesystem when local)."""

    def set_local_tmp_dir(self, path: str) -> None:
        """Use ``path`` as :meth:`local_tmp_dir` from now on (a remote repository's cache);
        a local backend keeps its own ``tmp/`` so that :meth:`put_file` stays a rename."""

    def describe(self) -> str:
        """Where the files are, for messages (a path or a URL)."""

    def stats(self) -> BackendStats:
        """The counters so far (all zero unless a metering wrapper counts)."""

    def close(self) -> None:
        """Release connections and open files; further calls are not allowed. Idempotent."""


class ForwardingBackend:
    """A backend that hands every operation to ``inner``: the base of the wrappers, which
    override only what they change (kopia's blob.Storage wrappers are the model)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def remote(self) -> bool:
        return self.inner.remote

    @property
    def parallel_puts(self) -> int:
        return self.inner.parallel_puts

    @property
    def parallel_gets(self) -> int:
        return self.inner.parallel_gets

    @property
    def default_safety_window_s(self) -> float:
        return self.inner.default_safety_window_s

    def put_file(self, name: str, local_path: str) -> None:
        self.inner.put_file(name, local_path)

    def put_bytes(self, name: str, data: bytes) -> None:
        self.inner.put_bytes(name, data)

    def create_exclusive(self, name: str, data: bytes) -> str | None:
        return self.inner.create_exclusive(name, data)

    def replace_if(self, name: str, data: bytes, tag: str) -> str | None:
        return self.inner.replace_if(name, data, tag)

    def delete_if(self, name: str, tag: str) -> None:
        self.inner.delete_if(name, tag)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def rename(self, name: str, new_name: str) -> None:
        self.inner.rename(name, new_name)

    def get(self, name: str) -> bytes:
        return self.inner.get(name)

    def get_tagged(self, name: str) -> tuple[bytes, str] | None:
        return self.inner.get_tagged(name)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self.inner.get_range(name, offset, length)

    def size(self, name: str) -> int | None:
        return self.inner.size(name)

    def mtime(self, name: str) -> float | None:
        return self.inner.mtime(name)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        for name, size, _mtime in self.list_stat(prefix):
            yield name, size

    def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        return self.inner.list_stat(prefix)

    def check(self) -> None:
        self.inner.check()

    def is_empty(self) -> bool:
        return self.inner.is_empty()

    def local_tmp_dir(self) -> str:
        return self.inner.local_tmp_dir()

    def set_local_tmp_dir(self, path: str) -> None:
        self.inner.set_local_tmp_dir(path)

    def describe(self) -> str:
        return self.inner.describe()

    def stats(self) -> BackendStats:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def raise_os_error(exc: OSError, what: str) -> SnapError:
    """Map an OSError to the user-facing error (disk full gets its own exit code)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"no space left on device while {what}")
    return SnapError(f"{what}: {exc.strerror or exc}")


def _local_tag(st: os.stat_result) -> str:
    # Every write goes to a new file renamed into place, so a new version has a new inode;
    # mtime and size guard against an inode number reused after a delete.
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


class LocalBackend:
    """A repository directory on a local filesystem.

    Writes go to a file in ``tmp/``, fsynced, then renamed into place (the directory fsynced
    too), so a crash leaves the old file or the new one. Conditional writes hold a flock on the
    file's directory, which orders them against each other across processes.
    """

    remote = False
    parallel_puts = 1
    parallel_gets = 0
    default_safety_window_s = 0.0

    def __init__(self, root: str, max_open: int = 64) -> None:
        self.root = root
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._fd_lock = threading.Lock()
        self._max_open = max_open
        self._tmp_seq = 0

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def local_tmp_dir(self) -> str:
        path = self._path("tmp")
        os.makedirs(path, exist_ok=True)
        return path

    def set_local_tmp_dir(self, path: str) -> None:
        """Ignored: ``tmp/`` inside the repository keeps :meth:`put_file` a rename."""

    def _tmp_name(self, name: str) -> str:
        with self._fd_lock:
            self._tmp_seq += 1
            seq = self._tmp_seq
        return os.path.join(self.local_tmp_dir(),
                            f"{os.path.basename(name)}.{os.getpid()}.{threading.get_ident()}.{seq}.tmp")

    def _write_tmp(self, name: str, data: bytes) -> str:
        tmp = self._tmp_name(name)
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            _unlink_quietly(tmp)
            raise raise_os_error(exc, f"writing {name}") from None
        return tmp

    def put_file(self, name: str, local_path: str) -> None:
        target = self._path(name)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        self.forget_fd(name)
        os.rename(local_path, target)
        fsync_dir(parent)

    def put_bytes(self, name: str, data: bytes) -> None:
        target = self._path(name)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        tmp = self._write_tmp(name, data)
        try:
            os.rename(tmp, target)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise raise_os_error(exc, f"writing {name}") from None
        self.forget_fd(name)
        fsync_dir(parent)

    # -- conditional writes -------------------------------------------------------------
    def _dir_lock(self, name: str) -> int:
        parent = os.path.dirname(self._path(name))
        os.makedirs(parent, exist_ok=True)
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
        return fd

    def _tag(self, name: str) -> str | None:
        try:
            return _local_tag(os.stat(self._path(name)))
        except FileNotFoundError:
            return None

    def create_exclusive(self, name: str, data: bytes) -> str | None:
        target = self._path(name)
        lock = self._dir_lock(name)
        try:
            tmp = self._write_tmp(name, data)
            try:
                os.link(tmp, target)  # fails when the name exists: the create is exclusive
            except FileExistsError:
                return None
            finally:
                _unlink_quietly(tmp)
            fsync_dir(os.path.dirname(target))
            return self._tag(name)
        finally:
            os.close(lock)

    def replace_if(self, name: str, data: bytes, tag: str) -> str | None:
        lock = self._dir_lock(name)
        try:
            if self._tag(name) != tag:
                return None
            self.put_bytes(name, data)
            return self._tag(name)
        finally:
            os.close(lock)

    def delete_if(self, name: str, tag: str) -> None:
        lock = self._dir_lock(name)
        try:
            if self._tag(name) == tag:
                self.delete(name)
        finally:
            os.close(lock)

    # -- reading ------------------------------------------------------------------------
    def get(self, name: str) -> bytes:
        with open(self._path(name), "rb") as handle:
            return handle.read()

    def get_tagged(self, name: str) -> tuple[bytes, str] | None:
        try:
            with open(self._path(name), "rb") as handle:
                return handle.read(), _local_tag(os.fstat(handle.fileno()))
        except FileNotFoundError:
            return None

    def _fd(self, name: str) -> int:
        with self._fd_lock:
            fd = self._fds.get(name)
            if fd is not None:
                self._fds.move_to_end(name)
                return fd
            fd = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC)
            self._fds[name] = fd
            while len(self._fds) > self._max_open:
                _, old = self._fds.popitem(last=False)
                os.close(old)
            return fd

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        fd = self._fd(name)
        data = os.pread(fd, length, offset)
        if len(data) < length:
            # A short read may be a pack replaced since we opened it: retry once on a fresh fd.
            self.forget_fd(name)
            data = os.pread(self._fd(name), length, offset)
        return data

    def forget_fd(self, name: str) -> None:
        with self._fd_lock:
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)

    def size(self, name: str) -> int | None:
        try:
            return os.stat(self._path(name)).st_size
        except FileNotFoundError:
            return None

    def mtime(self, name: str) -> float | None:
        try:
            return os.stat(self._path(name)).st_mtime
        except OSError:
            return None

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        for name, size, _mtime in self.list_stat(prefix):
            yield name, size

    def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        base = prefix.strip("/")
        yield from self._walk(base)

    def _walk(self, rel: str) -> Iterator[tuple[str, int, float]]:
        try:
            with os.scandir(self._path(rel)) as scan:
                entries = builtins.list(scan)
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting a directory's entries with "/" after each subdirectory's name gives the
        # code-point order of the full names, the order the protocol promises.
        keyed = sorted(((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e) for e in entries)
        for _key, entry in keyed:
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(name)
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                yield name, st.st_size, st.st_mtime

    def delete(self, name: str) -> None:
        self.forget_fd(name)
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass

    def rename(self, name: str, new_name: str) -> None:
        self.forget_fd(name)
        self.forget_fd(new_name)
        target = self._path(new_name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(self._path(name), target)
        fsync_dir(os.path.dirname(target))

    # -- the location as a whole --------------------------------------------------------
    def check(self) -> None:
        """Nothing to check beyond what opening the repository does (its config.json)."""

    def is_empty(self) -> bool:
        try:
            return not os.listdir(self.root)
        except FileNotFoundError:
            return True

    def describe(self) -> str:
        return self.root

    def stats(self) -> BackendStats:
        return BackendStats()

    def close(self) -> None:
        with self._fd_lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
