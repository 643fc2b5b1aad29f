"""Repository locks: flock on two files, so a dead holder never needs a manual unlock.

``locks/write`` serialises writers (take, forget, gc, repair): exclusive.
``locks/read`` protects packs from deletion: readers and takes hold it shared, gc and repair
exclusive. So readers never block each other or a take, and gc waits for mounts and restores.
Each holder also leaves ``locks/holders/<pid>-<name>.json`` so that a refused caller can name
who holds the lock; files left by dead processes of this host (a kill -9) are removed by the
next process that takes a lock there (and ignored when naming holders).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass

from snapstore.errors import RepositoryLocked
from snapstore.host import host_name

READ = "read"
WRITE = "write"


@dataclass
class HeldLock:
    fd: int
    holder_file: str

    def release(self) -> None:
        try:
            os.unlink(self.holder_file)
        except OSError:
            pass
        os.close(self.fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(info: dict[str, object], pid: int) -> bool:
    """A holder note of a process of this host that no longer runs (the pid says nothing of
    another host's processes: a note from a shared directory of another host is kept)."""
    return info.get("host", host_name()) == host_name() and not pid_alive(pid)


def sweep_holders(lock_dir: str) -> int:
    """Remove the holder notes of dead processes of this host; returns how many."""
    holders_dir = os.path.join(lock_dir, "holders")
    removed = 0
    try:
        names = os.listdir(holders_dir)
    except OSError:
        return 0
    for fname in names:
        pid_text = fname.split("-", 1)[0]
        if not fname.endswith(".json") or not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        path = os.path.join(holders_dir, fname)
        try:
            with open(path) as handle:
                info = json.load(handle)
        except (OSError, ValueError):
            info = {}
        if not isinstance(info, dict):
            info = {}
        if _stale(info, int(pid_text)):
            try:
                os.unlink(path)
                removed += 1
            except OSError:
                pass
    return removed


def describe_holders(lock_dir: str, name: str) -> str:
    holders_dir = os.path.join(lock_dir, "holders")
    found = []
    try:
        names = sorted(os.listdir(holders_dir))
    except FileNotFoundError:
        names = []
    for fname in names:
        if not fname.endswith(f"-{name}.json"):
            continue
        path = os.path.join(holders_dir, fname)
        try:
            with open(path) as handle:
                info = json.load(handle)
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError):
            continue
        if pid == os.getpid():
            continue
        if _stale(info, pid):
            try:
                os.unlink(path)
            except OSError:
                pass
            continue
        found.append(f"{info.get('command', '?')} (pid {pid} on {info.get('host', '?')})")
    return ", ".join(found) if found else "another process"


def acquire(lock_dir: str, name: str, *, exclusive: bool, wait: float, command: str) -> HeldLock:
    """Take lock ``name``; poll for up to ``wait`` seconds, then raise :class:`RepositoryLocked`."""
    os.makedirs(os.path.join(lock_dir, "holders"), exist_ok=True)
    fd = os.open(os.path.join(lock_dir, name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + max(wait, 0.0)
    delay = 0.05
    while True:
        try:
            fcntl.flock(fd, flags)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                mode = "exclusive" if exclusive else "shared"
                raise RepositoryLocked(
                    f"repository is locked by {describe_holders(lock_dir, name)}; "
                    f"could not take the {mode} {name} lock"
                    + (f" within {wait:g}s" if wait > 0 else " (use --wait SECONDS to wait)")
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    sweep_holders(lock_dir)  # notes a kill -9 left behind would otherwise pile up
    holder = os.path.join(lock_dir, "holders", f"{os.getpid()}-{name}.json")
    try:
        with open(holder, "w") as handle:
            json.dump(
                {"pid": os.getpid(), "command": command or " ".join(sys.argv[:2]),
                 "host": host_name(), "since": time.time()},
                handle,
            )
    except OSError:
        pass
    return HeldLock(fd, holder)


def acquire_for(lock_dir: str, mode: str, *, wait: float, command: str) -> list[HeldLock]:
    """The locks of a repository open mode: ``read`` (read lock shared), ``write`` (write lock
    exclusive, read lock shared) or ``exclusive`` (both exclusive). Released in reverse order."""
    held: list[HeldLock] = []
    try:
        if mode in ("write", "exclusive"):
            held.append(acquire(lock_dir, WRITE, exclusive=True, wait=wait, command=command))
        held.append(acquire(lock_dir, READ, exclusive=(mode == "exclusive"), wait=wait, command=command))
    except BaseException:
        release_all(held)
        raise
    return held


def release_all(held: list[HeldLock]) -> None:
    for lock in reversed(held):
        lock.release()
