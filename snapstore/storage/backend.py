"""Where repository files live: the storage-backend interface and the local-directory backend.

Packs, snapshot records and the repository config go through a :class:`Backend`, so that the
LMDB index is only a rebuildable cache of what the backend holds, and a remote backend (S3,
:mod:`snapstore.storage.s3`) works without touching the store. Names are ``/``-separated
relative paths such as ``packs/ab/ab12....pack`` or ``snapshots/<id>.json``.

A repository *location* is a local path or an ``s3://BUCKET/PREFIX`` URL
(:func:`parse_location`); :func:`open_backend` gives the backend for one. boto3 is imported
only when an S3 backend is opened.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from snapstore.errors import NoSpace, SnapError, UsageError


class Backend(Protocol):
    """The few operations snapstore needs from a storage location.

    ``remote`` says whether the files live elsewhere (then the index and locks live in a local
    cache directory); ``parallel_puts`` is how many pack uploads a take runs at once;
    ``default_safety_window_s`` is gc's safety window when the config sets none.
    """

    remote: bool
    parallel_puts: int
    default_safety_window_s: float

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

    def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        """``(name, size, mtime)`` of every file under ``prefix`` (mtime in epoch seconds)."""

    def mtime(self, name: str) -> float | None:
        """When ``name`` was last written (epoch seconds), or None when it does not exist."""

    def delete(self, name: str) -> None: ...

    def rename(self, name: str, new_name: str) -> None:
        """Move ``name`` to ``new_name`` (replacing it); FileNotFoundError when ``name`` is absent."""

    def local_tmp_dir(self) -> str:
        """A local directory for files being written (on the same filesystem when local)."""

    def describe(self) -> str:
        """Where the files are, for messages (a path or a URL)."""


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

    remote = False
    parallel_puts = 1
    default_safety_window_s = 0.0

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
        for name, size, _mtime in self.list_stat(prefix):
            yield name, size

    def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        base = self._path(prefix)
        if not os.path.isdir(base):
            return
        for dirpath, _dirs, files in os.walk(base):
            for fname in sorted(files):
                full = os.path.join(dirpath, fname)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue
                yield os.path.relpath(full, self.root), st.st_size, st.st_mtime

    def mtime(self, name: str) -> float | None:
        try:
            return os.stat(self._path(name)).st_mtime
        except OSError:
            return None

    def delete(self, name: str) -> None:
        self.forget_fd(name)
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass

    def rename(self, name: str, new_name: str) -> None:
        self.forget_fd(name)
        target = self._path(new_name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(self._path(name), target)
        fsync_dir(os.path.dirname(target))

    def describe(self) -> str:
        return self.root

    def close(self) -> None:
        with self._fd_lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


# -- repository locations -------------------------------------------------------------------
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class Location:
    """Where a repository is: a local directory, or a bucket and key prefix on S3."""

    kind: str  # "local" or "s3"
    path: str = ""  # local: absolute path
    bucket: str = ""
    prefix: str = ""  # s3: keys start with PREFIX/ ("" for the bucket root)

    @property
    def remote(self) -> bool:
        return self.kind != "local"

    @property
    def url(self) -> str:
        if self.kind == "local":
            return self.path
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def looks_remote(text: str) -> bool:
    """True for anything written like a URL (``scheme:/...``, ``s3:...``), valid or not."""
    match = _SCHEME.match(text)
    if match is None or len(match.group(1)) < 2:
        return False
    return text[match.end():].startswith("/") or match.group(1).lower() == "s3"


def parse_location(text: str) -> Location:
    """A repository location from ``--repo``: a path, or ``s3://BUCKET[/PREFIX]``.

    Anything else written like a URL (``s4://x``, ``s3:/bucket``, restic's ``s3:host/bucket``)
    is a :class:`UsageError`, never taken for a directory named ``s3:``.
    """
    if not text or not text.strip():
        raise UsageError("empty repository location")
    if not looks_remote(text):
        return Location("local", path=os.path.abspath(os.path.expanduser(text)))
    scheme = text.split(":", 1)[0].lower()
    rest = text.split(":", 1)[1]
    if scheme != "s3":
        raise UsageError(f"unsupported repository URL {text!r}: use a local path or s3://BUCKET/PREFIX")
    if not rest.startswith("//") or rest.startswith("///"):
        fixed = "s3://" + rest.lstrip("/")
        raise UsageError(f"malformed repository URL {text!r} (did you mean {fixed!r}?); "
                         "the form is s3://BUCKET/PREFIX, the endpoint goes in --s3-endpoint")
    bucket, _, prefix = rest[2:].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise UsageError(f"invalid bucket name {bucket!r} in {text!r} (3-63 characters: a-z, 0-9, '.', '-')")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts) or "//" in prefix.strip("/"):
        raise UsageError(f"invalid key prefix {prefix!r} in {text!r}")
    return Location("s3", bucket=bucket, prefix="/".join(parts))


def open_backend(location: Location, *, endpoint: str | None = None) -> Backend:
    """The backend for ``location`` (``endpoint``: the S3 endpoint URL, else the environment)."""
    if location.kind == "local":
        return LocalBackend(location.path)
    from snapstore.storage.s3 import S3Backend

    return S3Backend(location.bucket, location.prefix, endpoint=endpoint)
