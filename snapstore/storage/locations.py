"""Repository locations: a local path or ``s3://BUCKET/PREFIX``, and the backend for each.

:func:`parse_location` reads ``--repo``; :func:`open_backend` gives the backend for a location,
wrapped as its kind needs (docs/remote.md). boto3 is imported only when an S3 backend is opened.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from snapstore.errors import UsageError
from snapstore.storage.backend import Backend, LocalBackend

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


@dataclass(frozen=True)
class Location:
    """Where a repository is: a local directory, or a bucket and key prefix on S3."""

    kind: str  # "local", "s3", or "mem" (tests only: snapstore.storage.memory.serve)
    path: str = ""  # local: absolute path; mem: the served name
    bucket: str = ""
    prefix: str = ""  # s3: keys start with PREFIX/ ("" for the bucket root)

    @property
    def remote(self) -> bool:
        return self.kind != "local"

    @property
    def url(self) -> str:
        if self.kind == "local":
            return self.path
        if self.kind == "mem":
            return f"mem://{self.path}"
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
    if scheme == "mem" and rest.startswith("//"):
        from snapstore.storage import memory

        if memory.is_served(rest[2:]):  # only while a test serves it: never a user's location
            return Location("mem", path=rest[2:])
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
    """The backend for ``location`` (``endpoint``: the S3 endpoint URL, else the environment).

    A local directory is used bare. A remote backend is wrapped, from the outside in: counts
    (``SNAP_S3_STATS=FILE`` appends them at close), retries (``SNAP_S3_MAX_ATTEMPTS`` attempts
    in all, default 6), and for tests injected failures (``SNAP_TEST_S3_FAIL_FIRST=N``), which
    sit below the retries as a failing server would.
    """
    if location.kind == "local":
        return LocalBackend(location.path)
    if location.kind == "mem":
        from snapstore.storage import memory
        from snapstore.storage.metered import MeteredBackend

        return MeteredBackend(memory.open_served(location.path))
    from snapstore.storage.s3 import S3Backend

    return wrap_remote(S3Backend(location.bucket, location.prefix, endpoint=endpoint))


def wrap_remote(backend: Backend) -> Backend:
    """``backend`` with the wrappers every remote repository gets (see :func:`open_backend`)."""
    from snapstore.storage.faulty import FaultyBackend
    from snapstore.storage.metered import MeteredBackend
    from snapstore.storage.retrying import DEFAULT_ATTEMPTS, RetryingBackend

    fail_first = _env_int("SNAP_TEST_S3_FAIL_FIRST", 0)
    if fail_first > 0:
        backend = FaultyBackend(backend, fail_first=fail_first)
    attempts = _env_int("SNAP_S3_MAX_ATTEMPTS", DEFAULT_ATTEMPTS)
    if attempts > 1:
        backend = RetryingBackend(backend, attempts=attempts)
    return MeteredBackend(backend, report_path=os.environ.get("SNAP_S3_STATS") or None)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default
