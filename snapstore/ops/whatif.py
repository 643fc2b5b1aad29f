"""The dedup trial of ``snap stats --what-if DIR``: chunk and compress a directory in memory, for
several chunker and compression settings, without a repository.

For each average chunk size the directory is read once: every regular file (symlinks are not
followed; unreadable files are counted and skipped) is cut by the same FastCDC chunker a take
uses (min = avg / 4, max = avg * 4, the proportions of the defaults), each chunk hashed with
BLAKE3; a chunk met for the first time is compressed at every level asked with the take's own
:func:`snapstore.format.compress.compress` (zstd with the raw fallback). So stored sizes are
what a take at the same settings would write as blob payloads; trees and pack headers (a few
hundred bytes per directory, 98 bytes per blob) are left out. Nothing is kept but the set of
chunk ids met (32 bytes each) and the running sums: memory is bounded whatever the size of DIR.

``against`` (named membership tests: the chunks of a snapshot, a repository's index) adds, for
each, what a new take would store beyond the chunks it knows.

Speed: the chunk column is read + FastCDC + BLAKE3 throughput over the logical bytes, the
compression column zstd throughput over the distinct bytes, both on one thread of this machine.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from snapstore.errors import SourceNotFound
from snapstore.format.chunker import Chunker, ChunkerParams, chunk_id
from snapstore.format.compress import compress

Known = Callable[[bytes], bool]  # is this chunk id already stored?


def params_for(avg: int) -> ChunkerParams:
    """Chunker sizes for an average, in the default proportions (256K / 1M / 4M)."""
    return ChunkerParams(min_size=max(avg // 4, 64), avg_size=avg, max_size=avg * 4)


@dataclass(frozen=True)
class TrialRow:
    """The figures of one (chunker, compression level) setting."""

    chunker: ChunkerParams
    level: int
    files: int
    logical_bytes: int
    chunks: int  # chunk references
    distinct_chunks: int
    raw_bytes: int  # distinct chunks, uncompressed
    stored_bytes: int  # distinct chunks, compressed at ``level``
    chunk_seconds: float
    compress_seconds: float
    new_raw_bytes: dict[str, int] | None = None  # with ``against``: what a take would add, per test
    new_stored_bytes: dict[str, int] | None = None
    unreadable: int = 0

    @property
    def dedup(self) -> float | None:
        return round(self.logical_bytes / self.raw_bytes, 3) if self.raw_bytes else None

    @property
    def compression(self) -> float | None:
        return round(self.raw_bytes / self.stored_bytes, 3) if self.stored_bytes else None

    @property
    def total(self) -> float | None:
        return round(self.logical_bytes / self.stored_bytes, 3) if self.stored_bytes else None

    @property
    def chunk_mb_s(self) -> float | None:
        return round(self.logical_bytes / self.chunk_seconds / 1e6, 1) if self.chunk_seconds > 0 else None

    @property
    def compress_mb_s(self) -> float | None:
        return round(self.raw_bytes / self.compress_seconds / 1e6, 1) if self.compress_seconds > 0 else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "chunk_min": self.chunker.min_size, "chunk_avg": self.chunker.avg_size, "chunk_max": self.chunker.max_size,
            "compression_level": self.level, "files": self.files, "logical_bytes": self.logical_bytes,
            "chunks": self.chunks, "distinct_chunks": self.distinct_chunks, "raw_bytes": self.raw_bytes,
            "stored_bytes": self.stored_bytes, "dedup": self.dedup, "compression": self.compression,
            "total": self.total, "chunk_mb_s": self.chunk_mb_s, "compress_mb_s": self.compress_mb_s,
            "unreadable": self.unreadable,
        }
        if self.new_stored_bytes is not None and self.new_raw_bytes is not None:
            out["against"] = {name: {"new_raw_bytes": self.new_raw_bytes[name],
                                     "new_stored_bytes": self.new_stored_bytes[name]}
                              for name in self.new_stored_bytes}
        return out


def iter_files(root: str) -> Iterator[str]:
    """Regular files under ``root`` (or ``root`` itself), in name order, never following links."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise SourceNotFound(f"no such file or directory: {root}") from None
    if stat.S_ISREG(st.st_mode):
        yield root
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    yield path
            except OSError:
                continue


def trial(root: str, chunkers: Sequence[ChunkerParams], levels: Sequence[int], *,
          against: dict[str, Known] | None = None) -> list[TrialRow]:
    """One :class:`TrialRow` per (chunker, level), in the order given."""
    files = list(iter_files(root))
    tests = against or {}
    rows: list[TrialRow] = []
    for params in chunkers:
        chunker = Chunker(params)
        seen: set[bytes] = set()
        stored = dict.fromkeys(levels, 0)
        comp_s = dict.fromkeys(levels, 0.0)
        new_raw = dict.fromkeys(tests, 0)
        new_stored = {level: dict.fromkeys(tests, 0) for level in levels}
        logical = refs = raw = unreadable = readable = 0
        chunk_s = 0.0
        for path in files:
            started = time.perf_counter()
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed below
            except OSError:
                unreadable += 1
                continue
            try:
                for view in chunker.cut(handle):
                    data = bytes(view)
                    blob_id = chunk_id(data)
                    refs += 1
                    logical += len(data)
                    if blob_id in seen:
                        continue
                    seen.add(blob_id)
                    raw += len(data)
                    missing = [name for name, known in tests.items() if not known(blob_id)]
                    for name in missing:
                        new_raw[name] += len(data)
                    chunk_s += time.perf_counter() - started
                    for level in levels:
                        t0 = time.perf_counter()
                        size = len(compress(data, level)[1])
                        comp_s[level] += time.perf_counter() - t0
                        stored[level] += size
                        for name in missing:
                            new_stored[level][name] += size
                    started = time.perf_counter()
                readable += 1
            except OSError:
                unreadable += 1
            finally:
                handle.close()
            chunk_s += time.perf_counter() - started
        for level in levels:
            rows.append(TrialRow(params, level, readable, logical, refs, len(seen), raw, stored[level], chunk_s,
                                 comp_s[level], dict(new_raw) if tests else None,
                                 dict(new_stored[level]) if tests else None, unreadable))
    return rows
