"""Blob compression: zstd, with a raw fallback for data that does not shrink.

Codes stored in pack headers: 0 = raw, 1 = zstd. zstd already gives up quickly on random input
(gigabytes per second), but a sample of the first 32 KiB lets a large incompressible chunk
(gzip'd logs, weight files) skip the full attempt; the sample is compressed at level 1.
"""

from __future__ import annotations

import threading

import zstandard

RAW = 0
ZSTD = 1

_SAMPLE = 32 * 1024
_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def compress(data: bytes, level: int) -> tuple[int, bytes]:
    """Return ``(code, payload)``: zstd if it saves space, else the raw bytes."""
    if level <= 0 or len(data) < 64:
        return RAW, data
    if len(data) > 8 * _SAMPLE:
        # zstd level 1 on a 32 KiB sample costs ~0.3% of compressing the chunk
        sample = _compressor(1).compress(data[:_SAMPLE])
        if len(sample) > _SAMPLE * 0.98:
            return RAW, data
    packed = _compressor(level).compress(data)
    if len(packed) >= len(data):
        return RAW, data
    return ZSTD, packed


def decompress(code: int, payload: bytes | memoryview, raw_length: int, *, limit: int = 0) -> bytes:
    """Invert :func:`compress`; raises ``ValueError`` on bad input or a length mismatch.
    ``raw_length`` -1: not known (salvage of an encrypted pack), at most ``limit`` bytes.
    ``payload`` may be a view (of a pack read, of a decrypted frame): zstd reads it in place,
    and a raw one is copied out once, so that the result is always ``bytes``."""
    if code == RAW:
        out = payload if isinstance(payload, bytes) else bytes(payload)
    elif code == ZSTD:
        try:
            out = _decompressor().decompress(payload, max_output_size=raw_length if raw_length >= 0 else limit)
        except zstandard.ZstdError as exc:
            raise ValueError(f"zstd: {exc}") from None
    else:
        raise ValueError(f"unknown compression code {code}")
    if raw_length >= 0 and len(out) != raw_length:
        raise ValueError(f"length {len(out)} != expected {raw_length}")
    return out
