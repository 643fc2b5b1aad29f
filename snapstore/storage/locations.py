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
