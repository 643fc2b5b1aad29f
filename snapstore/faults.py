"""Fault injection for tests, switched on by environment variables (all off by default).

``SNAP_TEST_UNREADABLE=GLOB``   opening a source file whose name matches fails with EACCES
                                 (root can read anything, so tests need this to see it fail).
``SNAP_TEST_SLOW_STORE=SECONDS`` each stored blob waits this long (to kill a take mid-way).
``SNAP_TEST_ENOSPC_AFTER=BYTES`` pack writes fail with ENOSPC after this many bytes.
``SNAP_TEST_FLIP_PACK=N``        the Nth pack this process finishes (1 = the first) gets one byte
                                 flipped on disk after it is written and fsynced, before it is read
                                 back: a bad write, as a failing disk or controller makes one.
``SNAP_TEST_PAUSE_READ=GLOB`` with ``SNAP_TEST_PAUSE_DIR=DIR``: a take reading a source file
                                 whose name matches stops after its first chunk, creates
                                 ``DIR/paused-N`` (N: the how-manieth read of that file) and waits
                                 for ``DIR/resume-N``, so a test can change the file mid-read.
``SNAP_TEST_PAUSE_AT=NAME`` with ``SNAP_TEST_PAUSE_DIR=DIR``: at the named point (archive:
                                 archive-before-read-back, archive-before-remove; take:
                                 take-before-commit, its packs stored, its lease held) create
                                 ``DIR/paused-NAME`` and wait for ``DIR/resume-NAME``.

The variables are read once, when this module is imported: a test sets them for the whole
command it runs, and a take asks for them several times a file (a lookup in ``os.environ``
costs more than the rest of a check that is off).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import threading
import time

_ENV: dict[str, str] = {name: value for name, value in os.environ.items() if name.startswith("SNAP_TEST_")}
_get = _ENV.get


def check_open(path: bytes) -> None:
    pattern = _get("SNAP_TEST_UNREADABLE")
    if pattern and fnmatch.fnmatchcase(os.path.basename(os.fsdecode(path)), pattern):
        raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))


def slow_store() -> None:
    delay = _get("SNAP_TEST_SLOW_STORE")
    if delay:
        time.sleep(float(delay))


_written = 0


def check_write(size: int) -> None:
    global _written
    limit = _get("SNAP_TEST_ENOSPC_AFTER")
    if limit:
        _written += size
        if _written > int(limit):
            raise OSError(errno.ENOSPC, "No space left on device")


def crash_point(name: str) -> None:
    """``SNAP_TEST_CRASH_AT=NAME`` kills this process with SIGKILL at the named point, so tests
    can check crash safety at exact places (gc: after-rewrite, after-commit, mid-delete)."""
    if _get("SNAP_TEST_CRASH_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def slow_read() -> None:
    """``SNAP_TEST_SLOW_READ=SECONDS``: each blob read waits this long (a long-running reader)."""
    delay = _get("SNAP_TEST_SLOW_READ")
    if delay:
        time.sleep(float(delay))


_packs_finished = 0
_packs_lock = threading.Lock()


def flip_pack_byte(path: str) -> None:
    """``SNAP_TEST_FLIP_PACK=N``: flip the middle byte of the Nth finished pack file."""
    global _packs_finished
    which = _get("SNAP_TEST_FLIP_PACK")
    if not which:
        return
    with _packs_lock:
        _packs_finished += 1
        hit = _packs_finished == int(which)
    if hit:
        with open(path, "r+b") as handle:
            handle.seek(os.path.getsize(path) // 2)
            byte = handle.read(1)
            handle.seek(-1, os.SEEK_CUR)
            handle.write(bytes([byte[0] ^ 0x01]))


def pause_read(path: bytes, attempt: int) -> None:
    """The mid-read pause of ``SNAP_TEST_PAUSE_READ`` (see the module docstring); waits at most
    two minutes for the test to say resume, so a broken test cannot hang a take for ever."""
    pattern = _get("SNAP_TEST_PAUSE_READ")
    where = _get("SNAP_TEST_PAUSE_DIR")
    if not pattern or not where or not fnmatch.fnmatchcase(os.path.basename(os.fsdecode(path)), pattern):
        return
    _pause(where, str(attempt))


def _pause(where: str, tag: str) -> None:
    """Say ``DIR/paused-TAG``, then wait for ``DIR/resume-TAG`` (two minutes at most, so that a
    broken test cannot hang a command for ever)."""
    with open(os.path.join(where, f"paused-{tag}"), "w"):
        pass
    resume = os.path.join(where, f"resume-{tag}")
    deadline = time.monotonic() + 120
    while not os.path.exists(resume) and time.monotonic() < deadline:
        time.sleep(0.01)


def pause_point(name: str) -> None:
    """The named pause of ``SNAP_TEST_PAUSE_AT`` (see the module docstring); at most two minutes."""
    where = _get("SNAP_TEST_PAUSE_DIR")
    if _get("SNAP_TEST_PAUSE_AT") != name or not where:
        return
    _pause(where, name)
