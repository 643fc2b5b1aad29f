"""Content-defined chunking (FastCDC 2020, compiled by pyfastcdc) and chunk ids (BLAKE3).

The parameters are a frozen dataclass stored in the repository config: changing them would
change every boundary and defeat dedup, so they are fixed at ``snap init``.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import blake3

ID_SIZE = 32


def chunk_id(data: bytes | memoryview) -> bytes:
    """The id of a blob: BLAKE3 of its uncompressed bytes (32 bytes)."""
    return blake3.blake3(data).digest()


@dataclass(frozen=True)
class ChunkerParams:
    """FastCDC sizes. pyfastcdc's real average is about ``avg + min``."""

    min_size: int = 256 * 1024
    avg_size: int = 1024 * 1024
    max_size: int = 4 * 1024 * 1024
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChunkerParams:
        return cls(**{k: int(v) for k, v in data.items() if k in cls.__dataclass_fields__})


# bytes read per refill of a chunker's buffer beyond the largest chunk it may hold back (2 MiB
# re-cut too many carried bytes: 4-12% slower on a 64 MiB file than cut_stream; 4 MiB is even)
READ_SIZE = 4 * 1024 * 1024
# buffers up to this size come from the heap; larger ones are anonymous mappings of their own,
# whose pages are zero without a memset, faulted in only as far as the stream fills them, and
# given back when the stream ends (heap buffers of a few MiB made a take's peak RSS 3-10 MB higher)
HEAP_BUFFER_MAX = 1024 * 1024


def _buffer(size: int) -> bytearray | mmap.mmap:
    return bytearray(size) if size <= HEAP_BUFFER_MAX else mmap.mmap(-1, size)


def _regular_file_size(stream: BinaryIO) -> int | None:
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (BytesIO) or a closed one
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


class Chunker:
    """Cuts a byte stream into content-defined chunks. One instance per thread.

    pyfastcdc's own ``cut_stream`` allocates and zero-fills ``2 * max_size`` (8 MiB) for every
    stream, which a take's readers did once per file of at least ``min_size``: in a take (mmap
    threshold 4 MiB, see snapstore.memory) a fresh mapping, 2,048 page faults and an unmap
    each time, ~3 ms per file (docs/benchmarks.md). Here a stream whose size is known gets a
    buffer of that size plus one byte, one of unknown or larger size ``max_size + read_size``;
    the buffer is cut with ``cut_buf``, and the last chunk of each fill, which may have been
    cut only because the buffer ended, is carried to the front and cut again with the next
    bytes. A FastCDC cut depends only on the bytes from its chunk's start, so the chunks are
    the ones ``cut_stream`` gives.
    """

    def __init__(self, params: ChunkerParams, *, read_size: int = READ_SIZE) -> None:
        from pyfastcdc import FastCDC

        self.params = params
        self.read_size = read_size
        self._cdc = FastCDC(
            params.avg_size, min_size=params.min_size, max_size=params.max_size, seed=params.seed
        )

    def cut(self, stream: BinaryIO, size_hint: int | None = None) -> Iterator[memoryview]:
        """Yield the chunks of ``stream``; each view is valid only until the next is yielded.

        ``size_hint`` (the file's size when opened; else a regular file's size from its
        descriptor) only sizes the first buffer: a stream that turns out longer is read on in
        a full-sized one.
        """
        full = self.params.max_size + self.read_size
        if size_hint is None:
            size_hint = _regular_file_size(stream)
        buffer = _buffer(full if size_hint is None else max(1, min(full, size_hint + 1)))
        view = memoryview(buffer)
        readinto = getattr(stream, "readinto", None)
        held = 0  # bytes at the buffer's front carried from the last fill
        while True:
            filled = held
            while filled < len(buffer):
                if readinto is not None:
                    got = readinto(view[filled:])
                else:
                    data = stream.read(len(buffer) - filled)
                    got = len(data)
                    view[filled:filled + got] = data
                if not got:
                    break
                filled += got
            at_end = filled < len(buffer)
            if not filled:
                return
            last = None
            for piece in self._cdc.cut_buf(view[:filled]):
                if last is not None:
                    yield last.data
                last = piece
            assert last is not None
            if at_end:
                yield last.data
                return
            # the last chunk ended with the buffer: cut it again with the next bytes after it
            held = last.length
            carried = view[last.offset:filled].tobytes()
            if len(buffer) < full:  # the stream is longer than its hint said
                buffer = _buffer(full)
                view = memoryview(buffer)
            buffer[:held] = carried
