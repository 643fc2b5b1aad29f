"""The chunker's own buffering gives exactly the chunks pyfastcdc's ``cut_stream`` gives."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from snapstore.format.chunker import Chunker, ChunkerParams

SMALL = ChunkerParams(min_size=64, avg_size=256, max_size=1024)


class ShortReads:
    """A stream with only ``read``, returning at most ``step`` bytes per call (as a pipe may)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._stream = io.BytesIO(data)
        self._step = step

    def read(self, n: int) -> bytes:
        return self._stream.read(min(n, self._step))


def reference(params: ChunkerParams, data: bytes) -> list[bytes]:
    cdc = FastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size, seed=params.seed)
    return [bytes(c.data) for c in cdc.cut_stream(io.BytesIO(data))]


# runs of one byte value (no boundary until max_size) between random stretches
pieces = st.lists(st.binary(min_size=1, max_size=3000) | st.integers(1, 5000).map(bytes), max_size=8)


@settings(max_examples=200, deadline=None)
@given(pieces, st.integers(1, 2048), st.integers(1, 5000), st.none() | st.integers(0, 50000))
def test_same_chunks_as_cut_stream(parts: list[bytes], read_size: int, step: int, hint: int | None) -> None:
    data = b"".join(parts)
    chunker = Chunker(SMALL, read_size=read_size)
    want = reference(SMALL, data)
    assert [bytes(v) for v in chunker.cut(io.BytesIO(data))] == want
    assert [bytes(v) for v in chunker.cut(io.BytesIO(data), len(data))] == want
    # a wrong hint (the file grew or shrank after its stat) and short reads
    assert [bytes(v) for v in chunker.cut(ShortReads(data, step), hint)] == want


@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_default_sizes_at_the_buffer_edge(extra: int, tmp_path: Path) -> None:
    params = ChunkerParams()
    data = os.urandom(params.max_size + Chunker(params).read_size + extra) + bytes(3 * params.max_size)
    chunks = [bytes(v) for v in Chunker(params).cut(io.BytesIO(data))]
    assert chunks == reference(params, data)
    assert b"".join(chunks) == data
    (tmp_path / "f").write_bytes(data)
    with open(tmp_path / "f", "rb", buffering=0) as handle:  # sized from its descriptor
        assert [bytes(v) for v in Chunker(params).cut(handle)] == chunks
