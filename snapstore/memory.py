"""This process's resident memory in a long, threaded command (a take): the C allocator's
settings, and giving back the pages of a mapped file (the LMDB index) once they are read.

A take's Python objects stay small (tens of MB), but with glibc's defaults its RSS grew with
the number of files: every thread that allocates gets an arena of its own, and each arena keeps
what it once held; and glibc's mmap threshold is dynamic, so after the first big buffer is
freed, buffers of up to 32 MiB come from the heap instead of their own mapping, and a heap
pinned by small long-lived objects between them does not give them back. So a take keeps two
arenas, a fixed threshold (:data:`MMAP_THRESHOLD`), and trims after each pack
(``malloc_trim`` gives back the free pages inside the heaps, not only at their tops).

LMDB reads its file through a shared read-only mapping, so every index page a take has looked
at counts in its RSS as a file page, up to the whole file: :func:`release_file_mapping` drops
them from the page tables now and then (they stay in the page cache).

glibc only (``mallopt`` / ``malloc_trim`` through ctypes); elsewhere (musl, macOS) nothing is
changed. Set before the threads start: an arena is bound to a thread when it first allocates.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

# Above the largest chunk (4 MiB) and its encoded form: what is bigger gets a mapping of its own.
# glibc's starting 128 KiB would map every chunk, and fresh pages for each of them cost more
# CPU than the trims below (measured: 1 GB first take +2.5 s CPU for 12 MB less RSS).
MMAP_THRESHOLD = 4 * 1024 * 1024 + 64 * 1024
# Setting the mmap threshold also freezes the trim threshold at glibc's 128 KiB (the dynamic
# mode would raise it to twice the mmap threshold): then nearly every free() of a chunk's buffer
# shrinks the heap and the next chunk faults fresh zeroed pages back in. The take trims by itself
# after each pack (:func:`trim`), so free() need not: measured on the 1 GB first take, 4 A/B
# rounds, a quiet 2-core machine: 10.7 -> 9.7 s CPU, 7.6 -> 6.8 s wall, peak RSS 122 -> 129 MB.
TRIM_THRESHOLD = 64 * 1024 * 1024
ARENAS = 2

_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is False:
        _libc = None
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                _libc = libc
            except (OSError, AttributeError):  # not glibc: musl has no mallopt
                _libc = None
    return _libc if isinstance(_libc, ctypes.CDLL) else None


def tune_for_take() -> bool:
    """Bound the arenas and fix the mmap threshold (before a take's threads start); whether
    the allocator took the settings (False off glibc)."""
    libc = _glibc()
    if libc is None:
        return False
    done = libc.mallopt(M_ARENA_MAX, ARENAS) == 1
    done = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and done
    done = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and done
    return done


def trim() -> None:
    """Give the free memory at the tops of the heaps back to the system (after a big phase)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


MADV_DONTNEED = 4


def release_file_mapping(path: str) -> int:
    """Drop this process's resident pages of the shared, read-only mappings of the file at
    ``path`` (LMDB's map of its data file): the pages stay in the page cache and fault back in
    on the next read, but no longer count in this process's RSS. Returns the bytes advised (0
    off Linux, or when the file is not mapped). Safe while other threads read the mapping:
    a shared file mapping's pages are re-read from the page cache, never lost."""
    libc = _glibc()
    if libc is None:
        return 0
    try:
        st = os.stat(path)
        with open("/proc/self/maps", "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return 0
    advised = 0
    for line in lines:
        fields = line.split(maxsplit=5)
        # address perms offset dev inode [path]: only shared read-only mappings of this file
        if len(fields) < 6 or int(fields[4]) != st.st_ino or fields[1][:2] != b"r-" or fields[1][3:4] != b"s":
            continue
        start, end = (int(part, 16) for part in fields[0].split(b"-"))
        offset = int(fields[2], 16)
        length = min(end - start, max(0, st.st_size - offset))  # the rest of a big map was never touched
        length = (length + 4095) & ~4095
        if length and libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), MADV_DONTNEED) == 0:
            advised += length
    return advised
