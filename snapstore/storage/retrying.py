"""Retries around any backend: an operation that fails with a :class:`TransientError` is tried
again after an exponential, jittered wait, up to ``attempts`` times in all.

The backend below says what is transient (S3: timeouts, dropped connections, 5xx answers,
throttling such as ``SlowDown``; see :mod:`snapstore.storage.s3`); everything else passes
through at once. The waits are botocore's "standard" ones: a random fraction of
``base * 2 ** (attempt - 1)`` seconds, at most ``cap``. After the last attempt the error goes up
with the count appended, as a :class:`TransientError` (a :class:`RemoteError`, exit code 15).

Every operation of the protocol is safe to repeat: writes replace whole files, a delete of a
missing name is not an error, ``put_file`` keeps its local file until it succeeds. Two need
care: a conditional write whose answer was lost may have been done (the lease recognises its own
write when it reads it back), and a listing broken off half-way resumes after the last name it
gave, which the protocol's sorted order makes exact.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TypeVar

from snapstore.errors import TransientError
from snapstore.storage.backend import Backend, BackendStats, ForwardingBackend

T = TypeVar("T")
DEFAULT_ATTEMPTS = 6


class RetryingBackend(ForwardingBackend):
    """``inner`` with each operation tried up to ``attempts`` times on transient errors."""

    def __init__(self, inner: Backend, *, attempts: int = DEFAULT_ATTEMPTS, base: float = 1.0, cap: float = 20.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(inner)
        self.attempts = max(1, attempts)
        self.base = base
        self.cap = cap
        self._sleep = sleep
        self._lock = threading.Lock()
        self.retries = 0

    def _wait(self, attempt: int) -> None:
        with self._lock:
            self.retries += 1
        self._sleep(min(self.cap, random.random() * self.base * 2 ** (attempt - 1)))

    def _give_up(self, exc: TransientError, attempt: int) -> TransientError:
        return TransientError(f"{exc} (gave up after {attempt} attempts)")

    def _retry(self, fn: Callable[..., T], *args: object) -> T:
        attempt = 1
        while True:
            try:
                return fn(*args)
            except TransientError as exc:
                if attempt >= self.attempts:
                    raise self._give_up(exc, attempt) from None
                self._wait(attempt)
                attempt += 1

    # -- every operation, retried ---------------------------------------------------------
    def put_file(self, name: str, local_path: str) -> None:
        self._retry(self.inner.put_file, name, local_path)

    def put_bytes(self, name: str, data: bytes) -> None:
        self._retry(self.inner.put_bytes, name, data)

    def create_exclusive(self, name: str, data: bytes) -> str | None:
        return self._retry(self.inner.create_exclusive, name, data)

    def replace_if(self, name: str, data: bytes, tag: str) -> str | None:
        return self._retry(self.inner.replace_if, name, data, tag)

    def delete_if(self, name: str, tag: str) -> None:
        self._retry(self.inner.delete_if, name, tag)

    def delete(self, name: str) -> None:
        self._retry(self.inner.delete, name)

    def rename(self, name: str, new_name: str) -> None:
        self._retry(self.inner.rename, name, new_name)

    def get(self, name: str) -> bytes:
        return self._retry(self.inner.get, name)

    def get_tagged(self, name: str) -> tuple[bytes, str] | None:
        return self._retry(self.inner.get_tagged, name)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self._retry(self.inner.get_range, name, offset, length)

    def size(self, name: str) -> int | None:
        return self._retry(self.inner.size, name)

    def mtime(self, name: str) -> float | None:
        return self._retry(self.inner.mtime, name)

    def check(self) -> None:
        self._retry(self.inner.check)

    def is_empty(self) -> bool:
        return self._retry(self.inner.is_empty)

    def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        last: str | None = None
        attempt = 1
        while True:
            try:
                for item in self.inner.list_stat(prefix):
                    if last is not None and item[0] <= last:
                        continue  # given before the listing broke off
                    yield item
                    last = item[0]
                    attempt = 1  # progress: the next break gets all its attempts again
                return
            except TransientError as exc:
                if attempt >= self.attempts:
                    raise self._give_up(exc, attempt) from None
                self._wait(attempt)
                attempt += 1

    def stats(self) -> BackendStats:
        inner = self.inner.stats()
        with self._lock:
            return replace(inner, retries=inner.retries + self.retries)
