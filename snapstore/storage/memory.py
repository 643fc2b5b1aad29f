"""An in-memory backend: the whole protocol over a dict, for fast in-process tests.

:class:`MemoryBackend` behaves like a remote store (``remote=True`` by default): the repository
keeps its index in a cache directory, holds leases and syncs its index from it, exactly as on
S3, so leases, index sync and gc races can be tested in one process in milliseconds. Every
operation takes one lock, so each is atomic; conditional writes compare a per-object version
counter (the tag). ``clock`` stamps mtimes (a test can age the packs past a safety window).

Tests reach it through a location: :func:`serve` registers a backend under ``mem://NAME`` for
the length of a ``with`` block, and :func:`snapstore.storage.locations.parse_location` accepts
``mem://`` only for a name registered at that moment. Nothing registers one outside tests, so
users cannot reach it by accident (an unregistered ``mem://`` is an unsupported URL). Each open
of the location gets its own view (its own temporary directory; closing it leaves the data),
as each host has its own cache in front of one bucket.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from snapstore.storage.backend import Backend, BackendStats, ForwardingBackend

SCHEME = "mem"


@dataclass(frozen=True)
class _Object:
    data: bytes
    version: int
    mtime: float


class MemoryBackend:
    """Files as bytes in a dict; thread-safe; a stand-in for S3 in tests."""

    def __init__(self, *, remote: bool = True, parallel_puts: int = 4, default_safety_window_s: float = 3600.0,
                 clock: Callable[[], float] = time.time, name: str = "memory") -> None:
        self._remote = remote
        self._parallel_puts = parallel_puts
        self._safety = default_safety_window_s
        self.clock = clock
        self.name = name
        self._lock = threading.Lock()
        self._objects: dict[str, _Object] = {}
        self._version = 0
        self._tmp: str | None = None

    @property
    def remote(self) -> bool:
        return self._remote

    @property
    def parallel_puts(self) -> int:
        return self._parallel_puts

    @property
    def parallel_gets(self) -> int:
        return 4 if self._remote else 0

    @property
    def default_safety_window_s(self) -> float:
        return self._safety

    # -- writing (callers hold self._lock for the _store helpers) ---------------------------
    def _store(self, name: str, data: bytes) -> str:
        self._version += 1
        self._objects[name] = _Object(bytes(data), self._version, self.clock())
        return str(self._version)

    def put_file(self, name: str, local_path: str) -> None:
        with open(local_path, "rb") as handle:
            data = handle.read()
        with self._lock:
            self._store(name, data)
        os.unlink(local_path)

    def put_bytes(self, name: str, data: bytes) -> None:
        with self._lock:
            self._store(name, data)

    def create_exclusive(self, name: str, data: bytes) -> str | None:
        with self._lock:
            if name in self._objects:
                return None
            return self._store(name, data)

    def replace_if(self, name: str, data: bytes, tag: str) -> str | None:
        with self._lock:
            current = self._objects.get(name)
            if current is None or str(current.version) != tag:
                return None
            return self._store(name, data)

    def delete_if(self, name: str, tag: str) -> None:
        with self._lock:
            current = self._objects.get(name)
            if current is not None and str(current.version) == tag:
                del self._objects[name]

    def delete(self, name: str) -> None:
        with self._lock:
            self._objects.pop(name, None)

    def rename(self, name: str, new_name: str) -> None:
        with self._lock:
            current = self._objects.pop(name, None)
            if current is None:
                raise FileNotFoundError(2, "no such object", name)
            self._store(new_name, current.data)

    # -- reading --------------------------------------------------------------------------
    def _get(self, name: str) -> _Object:
        with self._lock:
            current = self._objects.get(name)
        if current is None:
            raise FileNotFoundError(2, "no such object", name)
        return current

    def get(self, name: str) -> bytes:
        return self._get(name).data

    def get_tagged(self, name: str) -> tuple[bytes, str] | None:
        with self._lock:
            current = self._objects.get(name)
        return None if current is None else (current.data, str(current.version))

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self._get(name).data[offset:offset + max(length, 0)]

    def size(self, name: str) -> int | None:
        with self._lock:
            current = self._objects.get(name)
        return None if current is None else len(current.data)

    def mtime(self, name: str) -> float | None:
        with self._lock:
            current = self._objects.get(name)
        return None if current is None else current.mtime

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        for name, size, _mtime in self.list_stat(prefix):
            yield name, size

    def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        start = prefix.strip("/") + "/" if prefix.strip("/") else ""
        with self._lock:  # a snapshot of the listing, as one S3 page is
            found = sorted((n, len(o.data), o.mtime) for n, o in self._objects.items() if n.startswith(start))
        yield from found

    # -- the location as a whole ----------------------------------------------------------
    def check(self) -> None:
        """Always usable."""

    def is_empty(self) -> bool:
        with self._lock:
            return not self._objects

    def local_tmp_dir(self) -> str:
        with self._lock:
            if self._tmp is None:
                self._tmp = tempfile.mkdtemp(prefix="snap-mem-")
            return self._tmp

    def set_local_tmp_dir(self, path: str) -> None:
        with self._lock:
            self._tmp = path

    def describe(self) -> str:
        return f"{SCHEME}://{self.name}"

    def stats(self) -> BackendStats:
        return BackendStats()

    def close(self) -> None:
        """Nothing to release; the data stays for the next open."""

    # -- for tests --------------------------------------------------------------------------
    def names(self, prefix: str = "") -> builtins.list[str]:
        """Every stored name starting with ``prefix``, sorted."""
        with self._lock:
            return sorted(n for n in self._objects if n.startswith(prefix))

    def set_mtime(self, name: str, mtime: float) -> None:
        """Pretend ``name`` was written at ``mtime`` (to age packs past a safety window)."""
        with self._lock:
            current = self._objects[name]
            self._objects[name] = _Object(current.data, current.version, mtime)


class _View(ForwardingBackend):
    """One open of a ``mem://`` location: its own temporary directory; close keeps the data."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._tmp: str | None = None
        self._own_tmp = False

    def local_tmp_dir(self) -> str:
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="snap-mem-")
            self._own_tmp = True
        return self._tmp

    def set_local_tmp_dir(self, path: str) -> None:
        self._tmp = path

    def close(self) -> None:
        if self._own_tmp and self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._own_tmp = False


_served: dict[str, Backend] = {}
_served_lock = threading.Lock()


@contextlib.contextmanager
def serve(name: str, backend: Backend) -> Iterator[str]:
    """Make ``backend`` reachable as ``mem://NAME`` inside the block; yields the URL."""
    with _served_lock:
        if name in _served:
            raise ValueError(f"mem://{name} is already served")
        _served[name] = backend
    try:
        yield f"{SCHEME}://{name}"
    finally:
        with _served_lock:
            _served.pop(name, None)


def is_served(name: str) -> bool:
    with _served_lock:
        return name in _served


def open_served(name: str) -> Backend:
    """A view of the backend served as ``mem://NAME`` (FileNotFoundError-free: check first)."""
    with _served_lock:
        backend = _served.get(name)
    if backend is None:
        raise KeyError(name)
    return _View(backend)
