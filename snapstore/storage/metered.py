"""Request and byte counts around any backend, for ``--json`` output and benchmarks.

:class:`MeteredBackend` counts the operations asked of the backend below it (``requests``), the
payload bytes read (``fetched_bytes``: ``get``, ``get_tagged``, ``get_range``) and written
(``sent_bytes``: ``put_file``, ``put_bytes`` and conditional writes that took place). Over a
retrying wrapper one request is one operation however many attempts it took; the retries are
counted there. With ``report_path`` (``SNAP_S3_STATS=FILE`` for remote repositories) the
process appends its counters to that file as one JSON line when the backend is closed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace

from snapstore.storage.backend import Backend, BackendStats, ForwardingBackend


class MeteredBackend(ForwardingBackend):
    """``inner`` with its traffic counted."""

    def __init__(self, inner: Backend, *, report_path: str | None = None) -> None:
        super().__init__(inner)
        self.report_path = report_path
        self._lock = threading.Lock()
        self._requests = 0
        self._fetched = 0
        self._sent = 0
        self._closed = False

    def _count(self, *, fetched: int = 0, sent: int = 0, requests: int = 1) -> None:
        with self._lock:
            self._requests += requests
            self._fetched += fetched
            self._sent += sent

    def put_file(self, name: str, local_path: str) -> None:
        size = os.path.getsize(local_path)
        self._count()
        self.inner.put_file(name, local_path)
        self._count(sent=size, requests=0)

    def put_bytes(self, name: str, data: bytes) -> None:
        self._count()
        self.inner.put_bytes(name, data)
        self._count(sent=len(data), requests=0)

    def create_exclusive(self, name: str, data: bytes) -> str | None:
        self._count()
        tag = self.inner.create_exclusive(name, data)
        if tag is not None:
            self._count(sent=len(data), requests=0)
        return tag

    def replace_if(self, name: str, data: bytes, tag: str) -> str | None:
        self._count()
        new = self.inner.replace_if(name, data, tag)
        if new is not None:
            self._count(sent=len(data), requests=0)
        return new

    def delete_if(self, name: str, tag: str) -> None:
        self._count()
        self.inner.delete_if(name, tag)

    def delete(self, name: str) -> None:
        self._count()
        self.inner.delete(name)

    def rename(self, name: str, new_name: str) -> None:
        self._count()
        self.inner.rename(name, new_name)

    def get(self, name: str) -> bytes:
        self._count()
        data = self.inner.get(name)
        self._count(fetched=len(data), requests=0)
        return data

    def get_tagged(self, name: str) -> tuple[bytes, str] | None:
        self._count()
        got = self.inner.get_tagged(name)
        if got is not None:
            self._count(fetched=len(got[0]), requests=0)
        return got

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        self._count()
        data = self.inner.get_range(name, offset, length)
        self._count(fetched=len(data), requests=0)
        return data

    def size(self, name: str) -> int | None:
        self._count()
        return self.inner.size(name)

    def mtime(self, name: str) -> float | None:
        self._count()
        return self.inner.mtime(name)

    def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        self._count()
        return self.inner.list_stat(prefix)

    def check(self) -> None:
        self._count()
        self.inner.check()

    def is_empty(self) -> bool:
        self._count()
        return self.inner.is_empty()

    def stats(self) -> BackendStats:
        inner = self.inner.stats()
        with self._lock:
            return replace(inner, requests=inner.requests + self._requests,
                           fetched_bytes=inner.fetched_bytes + self._fetched,
                           sent_bytes=inner.sent_bytes + self._sent)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.inner.close()
        finally:
            if self.report_path:
                line = json.dumps({"pid": os.getpid(), "argv": sys.argv[1:], **self.stats().to_json()})
                try:
                    with open(self.report_path, "a") as handle:
                        handle.write(line + "\n")
                except OSError:
                    pass  # the report is for tests and benchmarks: never fail a command over it
