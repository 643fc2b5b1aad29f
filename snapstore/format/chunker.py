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


class Chunker:
    """Cuts a byte stream into content-defined chunks. One instance per thread."""

    def __init__(self, params: ChunkerParams) -> None:
        from pyfastcdc import FastCDC

        self.params = params
        self._cdc = FastCDC(
            params.avg_size, min_size=params.min_size, max_size=params.max_size, seed=params.seed
        )

    def cut(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield the chunks of ``stream``; each view is valid only until the next is yielded."""
        for piece in self._cdc.cut_stream(stream):
            yield piece.data
