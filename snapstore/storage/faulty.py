"""Fault injection around any backend, for tests: failed requests, lost answers, flipped bytes,
and hooks that hold an operation at an exact point (race tests).

A :class:`Fault` matches operations by name patterns (``fnmatch``: ``op="put_*"``,
``name="packs/*"``) and hits the first ``times`` of them (``times=-1``: all). What it does:

- ``fail``: raise before the operation reaches the backend (by default a
  :class:`TransientError` saying ``ServiceUnavailable``, what a throttled S3 answers);
- ``lose_reply``: let the operation happen, then raise as if the answer never came back;
- ``corrupt``: flip one byte of what is written (``put_file``, ``put_bytes``) or read
  (``get``, ``get_range``), the bad write that a read-back must catch;
- ``call`` / ``call_after``: run ``hook(op, name)`` before / after the operation, e.g. to run
  another host's take at an exact point of a gc, or wait for an event another thread sets.

``SNAP_TEST_S3_FAIL_FIRST=N`` wraps remote backends in one with ``fail_first=N``
(:mod:`snapstore.storage.locations`): the first N requests of the process fail, the retry path.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from snapstore.errors import TransientError
from snapstore.storage.backend import Backend, BackendStats, ForwardingBackend

ACTIONS = ("fail", "lose_reply", "corrupt", "call", "call_after")


def injected_unavailable(op: str, name: str) -> BaseException:
    return TransientError(f"{op} of {name or 'the repository'} failed: ServiceUnavailable (an injected fault)")


@dataclass
class Fault:
    """One kind of failure, for the operations it matches (see the module docstring)."""

    op: str = "*"
    name: str = "*"
    action: str = "fail"
    times: int = 1
    error: Callable[[str, str], BaseException] = injected_unavailable
    hook: Callable[[str, str], None] | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")
        if self.action in ("call", "call_after") and self.hook is None:
            raise ValueError("a 'call' fault needs a hook")

    def matches(self, op: str, name: str) -> bool:
        return fnmatch.fnmatchcase(op, self.op) and fnmatch.fnmatchcase(name, self.name)


def _flip(data: bytes) -> bytes:
    if not data:
        return data
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]


class FaultyBackend(ForwardingBackend):
    """``inner`` with the faults of ``faults`` (and ``fail_first`` failing requests) injected."""

    def __init__(self, inner: Backend, faults: Iterable[Fault] = (), *, fail_first: int = 0) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self.faults: list[Fault] = list(faults)
        if fail_first > 0:
            self.faults.append(Fault(times=fail_first))
        self.injected = 0

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take(self, op: str, name: str) -> Fault | None:
        """The first live fault matching this operation, its hit counted."""
        with self._lock:
            for fault in self.faults:
                if (fault.times < 0 or fault.hits < fault.times) and fault.matches(op, name):
                    fault.hits += 1
                    if fault.action not in ("call", "call_after"):
                        self.injected += 1
                    return fault
        return None

    def _before(self, op: str, name: str) -> Fault | None:
        fault = self._take(op, name)
        if fault is None:
            return None
        if fault.action == "fail":
            raise fault.error(op, name)
        if fault.action == "call":
            assert fault.hook is not None
            fault.hook(op, name)
            return None
        return fault

    @staticmethod
    def _after(fault: Fault | None, op: str, name: str) -> None:
        if fault is None:
            return
        if fault.action == "lose_reply":
            raise fault.error(op, name)
        if fault.action == "call_after":
            assert fault.hook is not None
            fault.hook(op, name)

    # -- writes -------------------------------------------------------------------------
    def put_file(self, name: str, local_path: str) -> None:
        fault = self._before("put_file", name)
        if fault is not None and fault.action == "corrupt":
            with open(local_path, "r+b") as handle:
                data = handle.read()
                handle.seek(0)
                handle.write(_flip(data))
        self.inner.put_file(name, local_path)
        self._after(fault, "put_file", name)

    def put_bytes(self, name: str, data: bytes) -> None:
        fault = self._before("put_bytes", name)
        self.inner.put_bytes(name, _flip(data) if fault is not None and fault.action == "corrupt" else data)
        self._after(fault, "put_bytes", name)

    def create_exclusive(self, name: str, data: bytes) -> str | None:
        fault = self._before("create_exclusive", name)
        tag = self.inner.create_exclusive(name, data)
        self._after(fault, "create_exclusive", name)
        return tag

    def replace_if(self, name: str, data: bytes, tag: str) -> str | None:
        fault = self._before("replace_if", name)
        new = self.inner.replace_if(name, data, tag)
        self._after(fault, "replace_if", name)
        return new

    def delete_if(self, name: str, tag: str) -> None:
        fault = self._before("delete_if", name)
        self.inner.delete_if(name, tag)
        self._after(fault, "delete_if", name)

    def delete(self, name: str) -> None:
        fault = self._before("delete", name)
        self.inner.delete(name)
        self._after(fault, "delete", name)

    def rename(self, name: str, new_name: str) -> None:
        fault = self._before("rename", name)
        self.inner.rename(name, new_name)
        self._after(fault, "rename", name)

    # -- reads --------------------------------------------------------------------------
    def get(self, name: str) -> bytes:
        fault = self._before("get", name)
        data = self.inner.get(name)
        self._after(fault, "get", name)
        return _flip(data) if fault is not None and fault.action == "corrupt" else data

    def get_tagged(self, name: str) -> tuple[bytes, str] | None:
        fault = self._before("get_tagged", name)
        got = self.inner.get_tagged(name)
        self._after(fault, "get_tagged", name)
        return got

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        fault = self._before("get_range", name)
        data = self.inner.get_range(name, offset, length)
        self._after(fault, "get_range", name)
        return _flip(data) if fault is not None and fault.action == "corrupt" else data

    def size(self, name: str) -> int | None:
        fault = self._before("size", name)
        value = self.inner.size(name)
        self._after(fault, "size", name)
        return value

    def mtime(self, name: str) -> float | None:
        fault = self._before("mtime", name)
        value = self.inner.mtime(name)
        self._after(fault, "mtime", name)
        return value

    def list_stat(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        fault = self._before("list_stat", prefix)
        items = self.inner.list_stat(prefix)
        if fault is not None and fault.action == "lose_reply":
            # the listing breaks off after its first entry: a resumable failure
            for item in items:
                yield item
                break
            raise fault.error("list_stat", prefix)
        yield from items
        self._after(fault, "list_stat", prefix)

    def check(self) -> None:
        fault = self._before("check", "")
        self.inner.check()
        self._after(fault, "check", "")

    def is_empty(self) -> bool:
        fault = self._before("is_empty", "")
        value = self.inner.is_empty()
        self._after(fault, "is_empty", "")
        return value

    def stats(self) -> BackendStats:
        inner = self.inner.stats()
        with self._lock:
            return replace(inner, injected_failures=inner.injected_failures + self.injected)
