"""Where repository files live: the storage-backend interface and the local-directory backend.

Packs, snapshot records and the repository config go through a :class:`Backend`, so that the
LMDB index is only a rebuildable cache of what the backend holds, and a remote backend (S3)
can be added without touching the store. Names are ``/``-separated relative paths such as
``packs/ab/ab12....pack`` or ``snapshots/<id>.json``.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Protocol

from snapstore.errors import NoSpace, SnapError


class Backend(Protocol):
    """The few operations snapstore needs from a storage location."""

    def put_file(self, name: str, local_path: str) -> None:
        """Store a finished local file under ``name`` atomically (consumes ``local_path``)."""

    def put_bytes(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` atomically (readers see all of it or nothing)."""

    def get(self, name: str) -> bytes: ...

    def get_range(self, name: str, offset: int, length: int) -> bytes: ...

    def size(self, name: str) -> int | None:
        """The size of ``name``, or None when it does not exist."""

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        """``(name, size)`` of every file under ``prefix``."""

    def delete(self, name: str) -> None: ...

    def local_tmp_dir(self) -> str:
        """A local directory for files being written (on the same filesystem when local)."""


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


class LocalBackend:
    """A repository directory on a local filesystem."""

    def __init__(self, root: str, max_open: int = 64) -> None:
        self.root = root
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._fd_lock = threading.Lock()
        self._max_open = max_open

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def local_tmp_dir(self) -> str:
        path = self._path("tmp")
        os.makedirs(path, exist_ok=True)
        return path

    def put_file(self, name: str, local_path: str) -> None:
        target = self._path(name)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        os.rename(local_path, target)
        fsync_dir(parent)

    def put_bytes(self, name: str, data: bytes) -> None:
        target = self._path(name)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(self.local_tmp_dir(), f"{os.path.basename(name)}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.rename(tmp, target)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise raise_os_error(exc, f"writing {name}") from None
        fsync_dir(parent)

    def get(self, name: str) -> bytes:
        with open(self._path(name), "rb") as handle:
            return handle.read()

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

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        base = self._path(prefix)
        if not os.path.isdir(base):
            return
        for dirpath, _dirs, files in os.walk(base):
            for fname in sorted(files):
                full = os.path.join(dirpath, fname)
                try:
                    size = os.stat(full).st_size
                except FileNotFoundError:
                    continue
                yield os.path.relpath(full, self.root), size

    def delete(self, name: str) -> None:
        self.forget_fd(name)
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass

    def close(self) -> None:
        with self._fd_lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
