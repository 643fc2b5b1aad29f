"""Restore's zero-chunk ids (snapstore.ops.restore._ZeroIds): holes found without reading data,
and zeros hashed only for chunks whose stored size could be zeros."""

from __future__ import annotations

import os

from snapstore.format.chunker import chunk_id
from snapstore.ops.restore import _ZeroIds


def test_zero_chunks_are_found_and_only_plausible_ones_hashed() -> None:
    hashed: list[int] = []

    def id_of(data: bytes) -> bytes:
        hashed.append(len(data))
        return chunk_id(data)

    big = 1 << 20
    zero_id, data_id, lost_id = chunk_id(bytes(big)), chunk_id(os.urandom(big + 1)), chunk_id(bytes(big + 2))
    stored = {zero_id: 122, data_id: big + 100}  # zeros compress ~20,000x; random data not at all
    zero = _ZeroIds(id_of, stored.get)
    assert zero.is_zero(zero_id, big)
    assert not zero.is_zero(data_id, big + 1)
    assert hashed == [big]  # the random chunk's length was never hashed as zeros
    assert zero.is_zero(zero_id, big) and hashed == [big]  # known lengths: no hash, no lookup
    # a chunk the index does not know is hashed as before: its zero id alone restores it
    assert zero.is_zero(lost_id, big + 2) and hashed == [big, big + 2]
    # small chunks skip the lookup: hashing a few KiB of zeros costs what a lookup does
    small = _ZeroIds(id_of, lambda _blob: 10**9)
    assert small.is_zero(chunk_id(bytes(100)), 100)
    assert not small.is_zero(chunk_id(b"x" * 101), 101)
