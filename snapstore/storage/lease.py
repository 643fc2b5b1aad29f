"""Leases: who is working on a remote repository, as small JSON objects under ``locks/``.

flock cannot reach across hosts, so on a remote repository every process announces itself
(the flock files in the local cache still order the processes of one host):

    locks/gc.json                   the one gc (also repair, forget --prune): exclusive
    locks/take-<host>-<pid>.json    a writer: take, forget, pin, the target of a copy
    locks/read-<host>-<pid>.json    a reader: list, restore, cat, ls, mount, verify, copy source

A lease is ``{"kind", "owner", "host", "pid", "command", "started", "expires", "deleting"}``;
a daemon thread renews it every ``ttl / 3`` seconds (``SNAP_LEASE_TTL``, default 300 s). It
counts as alive until ``expires`` plus ``SKEW_S`` (clock skew between hosts), and as dead at
once when it names this host and a process that no longer exists. The gc lease is taken with a
conditional create (``If-None-Match: *``) or, over an expired one, a conditional replace
(``If-Match``), so two hosts cannot both hold it. ``deleting`` lists the pack files a running
gc is about to delete: a process that starts later treats them as gone. docs/format.md
("Remote repositories") gives the whole protocol and why it is safe.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from snapstore.errors import RemoteError, RepositoryLocked, SnapError
from snapstore.host import host_name
from snapstore.storage.backend import Backend
from snapstore.storage.locking import pid_alive

GC_LEASE = "locks/gc.json"
SKEW_S = 30.0
KINDS = ("gc", "take", "read")


def lease_ttl() -> float:
    try:
        return max(float(os.environ.get("SNAP_LEASE_TTL", "") or 300.0), 1.0)
    except ValueError:
        return 300.0


@dataclass(frozen=True)
class LeaseInfo:
    """A lease as read back from the repository."""

    name: str
    kind: str
    owner: str
    host: str
    pid: int
    command: str
    started: float
    expires: float
    deleting: tuple[str, ...] = ()

    def alive(self, now: float | None = None) -> bool:
        moment = time.time() if now is None else now
        if moment > self.expires + SKEW_S:
            return False
        return not (self.host == host_name() and self.pid != os.getpid() and not pid_alive(self.pid))

    def describe(self) -> str:
        return f"{self.command or 'snap ' + self.kind} (pid {self.pid} on {self.host})"

    @classmethod
    def parse(cls, name: str, raw: bytes, codec: LeaseCodec | None = None) -> LeaseInfo | None:
        try:
            if codec is not None:
                raw = codec.open(name, raw)
            data = json.loads(raw)
            return cls(name=name, kind=str(data["kind"]), owner=str(data["owner"]), host=str(data["host"]),
                       pid=int(data["pid"]), command=str(data.get("command", "")),
                       started=float(data["started"]), expires=float(data["expires"]),
                       deleting=tuple(str(d) for d in data.get("deleting", ())))
        except (ValueError, KeyError, TypeError, SnapError):
            return None  # SnapError: an encrypted note that does not authenticate


class LeaseCodec(Protocol):
    """How an encrypted repository hides lease notes (host, pid, command) and the host name in
    lease object names; provided by the repository layer (table key, id key)."""

    def seal(self, name: str, body: bytes) -> bytes: ...

    def open(self, name: str, raw: bytes) -> bytes: ...

    def host_token(self, host: str) -> str: ...


def read_leases(backend: Backend, codec: LeaseCodec | None = None) -> list[LeaseInfo]:
    """Every lease object in ``locks/`` that parses (dead ones included)."""
    found = []
    for name, _size in backend.list("locks"):
        if not name.endswith(".json"):
            continue
        try:
            raw = backend.get(name)
        except FileNotFoundError:
            continue  # released while we listed
        info = LeaseInfo.parse(name, raw, codec)
        if info is not None:
            found.append(info)
    return found


def read_gc_lease(backend: Backend, codec: LeaseCodec | None = None) -> LeaseInfo | None:
    return read_gc_lease_object(backend, codec)[1]


def read_gc_lease_object(backend: Backend, codec: LeaseCodec | None = None) -> tuple[bool, LeaseInfo | None]:
    """Whether the gc lease object exists (alive, dead or unreadable), and the lease when it parses."""
    try:
        raw = backend.get(GC_LEASE)
    except FileNotFoundError:
        return False, None
    return True, LeaseInfo.parse(GC_LEASE, raw, codec)


class Lease:
    """This process's lease on a remote repository: acquire, renew in the background, release."""

    def __init__(self, backend: Backend, kind: str, command: str = "", ttl: float | None = None, *,
                 clock: Callable[[], float] = time.time, codec: LeaseCodec | None = None) -> None:
        """``clock``: this host's wall clock (a test gives hosts skewed clocks); ``codec``: an
        encrypted repository's lease notes."""
        if kind not in KINDS:
            raise ValueError(kind)
        self.backend = backend
        self.kind = kind
        self.command = command or " ".join(["snap", *sys.argv[1:2]])
        self.ttl = ttl or lease_ttl()
        self.clock = clock
        self.owner = secrets.token_hex(8)
        self.host = host_name()
        self.pid = os.getpid()
        self.started = clock()
        self.codec = codec
        host_part = self._safe(self.host) if codec is None else codec.host_token(self.host)
        self.name = GC_LEASE if kind == "gc" else f"locks/{kind}-{host_part}-{self.pid}.json"
        self.deleting: tuple[str, ...] = ()
        self._etag = ""
        self._last_renewed = 0.0
        self._lost = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()

    @staticmethod
    def _safe(text: str) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:64] or "host"

    def _body(self, name: str = "") -> bytes:
        body = json.dumps({
            "kind": self.kind, "owner": self.owner, "host": self.host, "pid": self.pid,
            "command": self.command, "started": self.started, "expires": self.clock() + self.ttl,
            "deleting": list(self.deleting),
        }, sort_keys=True).encode()
        return body if self.codec is None else self.codec.seal(name or self.name, body)

    # -- acquiring ----------------------------------------------------------------------
    def acquire(self, wait: float = 0.0) -> None:
        if self.kind == "gc":
            self._acquire_exclusive(wait)
        else:
            self.backend.put_bytes(self.name, self._body())
        self._last_renewed = self.clock()
        self._thread = threading.Thread(target=self._renew_loop, name="snap-lease", daemon=True)
        self._thread.start()

    def _acquire_exclusive(self, wait: float) -> None:
        deadline = time.monotonic() + max(wait, 0.0)
        delay = 0.2
        while True:
            holder = self._try_exclusive()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise RepositoryLocked(
                    f"repository is locked by {holder.describe()}: a gc lease ({GC_LEASE}) is held"
                    + (f" after waiting {wait:g}s" if wait > 0 else " (use --wait SECONDS to wait)"))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _try_exclusive(self) -> LeaseInfo | None:
        """Take the gc lease; returns the live holder instead when there is one."""
        for _attempt in range(5):
            current = self.backend.get_tagged(GC_LEASE)
            if current is None:
                etag = self.backend.create_exclusive(GC_LEASE, self._body())
            else:
                info = LeaseInfo.parse(GC_LEASE, current[0], self.codec)
                if info is not None and info.owner == self.owner:
                    self._etag = current[1]  # our own write, whose answer was lost and retried
                    return None
                if info is not None and info.alive(self.clock()):
                    return info
                etag = self.backend.replace_if(GC_LEASE, self._body(), current[1])  # take over a dead lease
            if etag is None:
                continue  # someone else wrote it between our read and our write: look again
            check = self.backend.get_tagged(GC_LEASE)  # a server without conditional writes: read back
            read_back = LeaseInfo.parse(GC_LEASE, check[0], self.codec) if check is not None else None
            mine = (read_back or _NOBODY).owner == self.owner
            if mine:
                self._etag = check[1] if check else etag
                return None
        current = self.backend.get_tagged(GC_LEASE)
        info = LeaseInfo.parse(GC_LEASE, current[0], self.codec) if current else None
        return info or LeaseInfo(GC_LEASE, "gc", "?", "?", 0, "another gc", 0.0, self.clock() + self.ttl)

    # -- keeping it ---------------------------------------------------------------------
    def _write(self) -> None:
        with self._write_lock:
            if self.kind == "gc":
                etag = self.backend.replace_if(GC_LEASE, self._body(), self._etag)
                if etag is None:
                    self._lost = "another process took over the gc lease"
                    return
                self._etag = etag
            else:
                self.backend.put_bytes(self.name, self._body())
            self._last_renewed = self.clock()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._write()
            except Exception:  # noqa: BLE001 - a failed renewal shows in check()
                continue

    def update(self, *, deleting: list[str]) -> None:
        """Announce the files about to be deleted (gc), renewing the lease at the same time."""
        self.deleting = tuple(deleting)
        self._write()
        self.check()

    def check(self) -> None:
        """Raise when the lease can no longer be trusted (lost, or not renewed for a ttl)."""
        if self._lost:
            raise RemoteError(f"{self._lost}; nothing more is done: run the command again")
        if self.clock() - self._last_renewed > self.ttl:
            raise RemoteError(f"the {self.kind} lease lapsed (not renewed for {self.ttl:.0f} s); nothing more is "
                              "done: run the command again")

    def others(self) -> list[LeaseInfo]:
        """Live leases of other processes."""
        now = self.clock()
        return [info for info in read_leases(self.backend, self.codec)
                if info.owner != self.owner and info.alive(now)]

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            if self.kind == "gc":
                if self._etag and not self._lost:
                    self.backend.delete_if(GC_LEASE, self._etag)
            else:
                self.backend.delete(self.name)
        except Exception:  # noqa: BLE001 - an unreleased lease expires by itself
            pass


_NOBODY = LeaseInfo("", "", "", "", 0, "", 0.0, 0.0)
