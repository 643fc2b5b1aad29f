"""Content-defined chunking (FastCDC 2020, compiled by pyfastcdc) and chunk ids (BLAKE3).

The parameters are a frozen dataclass stored in the repository config: changing them would
change every boundary and defeat dedup, so they are fixed at ``snap init``.
"""

from __future__ import annotations

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


class Chunker:
    """Cuts a byte stream into content-defined chunks. One instance per thread.

    The instance keeps one buffer of ``max_size + read_size`` bytes for all the streams it
    cuts. pyfastcdc's own ``cut_stream`` allocates and zero-fills ``2 * max_size`` (8 MiB) for
    every stream, which a take's readers did once per file of more than one chunk (~180 us
    of a 300 KiB file's ~200 us of chunking, measured in docs/benchmarks.md); here the
    buffer is cut with ``cut_buf`` and the last chunk of each fill, which may have been cut
    only because the buffer ended, is carried to the front and cut again with more bytes.
    A FastCDC cut depends only on the bytes from its chunk's start, so the chunks are the
    ones ``cut_stream`` gives.
    """

    def __init__(self, params: ChunkerParams, *, read_size: int = READ_SIZE) -> None:
        from pyfastcdc import FastCDC

        self.params = params
        self.read_size = read_size
        self._cdc = FastCDC(
            params.avg_size, min_size=params.min_size, max_size=params.max_size, seed=params.seed
        )
        self._buffer: bytearray | None = None

    def cut(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield the chunks of ``stream``; each view is valid only until the next is yielded."""
        if self._buffer is None:
            self._buffer = bytearray(self.params.max_size + self.read_size)
        buffer = self._buffer
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
            buffer[:held] = view[last.offset:filled].tobytes()
