"""AEAD and KDF speed on this machine: the measurement behind the cipher choice in docs/security.md.

Run from the repository root with the venv active::

    python benchmarks/bench_crypto.py              # AES-256-GCM vs ChaCha20-Poly1305, keyed BLAKE3, Argon2id
    python benchmarks/bench_crypto.py --json
    python benchmarks/bench_crypto.py --padding /tmp/snapbench/data-1000000000-0-s0   # padding cost

Rows: one-thread encrypt and decrypt MB/s of each AEAD on 1 MiB blobs (snap's chunk size) and on
4 KiB blobs (small trees); two threads at once (whether the library releases the GIL, which a take
needs, since it encrypts on its chunk thread pool); keyed vs plain BLAKE3; and the time of one
Argon2id derivation with the default and the test-only parameter sets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import blake3
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from snapstore.format.keyfile import KDF_PROFILES, derive_kek  # noqa: E402


def _rate(fn: Callable[[], object], nbytes: int, seconds: float = 1.0) -> float:
    """MB/s of ``fn`` (which handles ``nbytes``), best of three runs of about ``seconds`` each."""
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            fn()
            count += 1
        best = max(best, count * nbytes / elapsed / 1e6)
    return best


def _threaded_rate(fn: Callable[[], object], nbytes: int, threads: int, rounds: int = 2000) -> float:
    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _i: fn(), range(rounds)))
        elapsed = time.perf_counter() - start
    return rounds * nbytes / elapsed / 1e6


def measure() -> dict[str, object]:
    key = os.urandom(32)
    nonce = os.urandom(12)
    aad = os.urandom(70)
    rows: dict[str, object] = {}
    for name, cls in (("aes-256-gcm", AESGCM), ("chacha20-poly1305", ChaCha20Poly1305)):
        aead = cls(key)
        for label, size in (("1MiB", 1 << 20), ("4KiB", 4096)):
            data = os.urandom(size)
            sealed = aead.encrypt(nonce, data, aad)
            rows[f"{name} encrypt {label} MB/s"] = round(_rate(lambda a=aead, d=data: a.encrypt(nonce, d, aad), size))
            rows[f"{name} decrypt {label} MB/s"] = round(
                _rate(lambda a=aead, s=sealed: a.decrypt(nonce, s, aad), size))
        big = os.urandom(1 << 20)
        for threads in (1, 2):  # same harness for both: the ratio says whether the GIL is released
            rows[f"{name} encrypt 1MiB, {threads} thread(s) in a pool MB/s"] = round(
                _threaded_rate(lambda a=aead, b=big: a.encrypt(nonce, b, aad), 1 << 20, threads))
    data = os.urandom(1 << 20)
    rows["blake3 plain 1MiB MB/s"] = round(_rate(lambda: blake3.blake3(data).digest(), 1 << 20))
    rows["blake3 keyed 1MiB MB/s"] = round(_rate(lambda: blake3.blake3(data, key=key).digest(), 1 << 20))
    salt = os.urandom(16)
    for profile, params in KDF_PROFILES.items():
        start = time.perf_counter()
        derive_kek(b"correct horse battery staple", salt, params)
        rows[f"argon2id {profile} ({params.memory_kib} KiB, t={params.iterations}, p={params.lanes}) s"] = round(
            time.perf_counter() - start, 3)
    return rows


def padding_cost(root: str) -> dict[str, object]:
    """What padding stored blobs to buckets costs on a data set: every file chunked with the default
    chunker, each unique chunk compressed as a take would, then framed with and without padding."""
    from snapstore.format.chunker import Chunker, ChunkerParams
    from snapstore.format.compress import compress
    from snapstore.format.crypto import BLOB_BODY, padded_length, sealed_overhead

    chunker = Chunker(ChunkerParams())
    seen: set[bytes] = set()
    raw = plain = padded = blobs = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            with open(path, "rb") as handle:
                for piece in chunker.cut(handle):
                    digest = blake3.blake3(piece).digest()
                    if digest in seen:
                        continue
                    seen.add(digest)
                    _code, body = compress(bytes(piece), 3)
                    inner = BLOB_BODY.size + len(body)
                    raw += len(piece)
                    plain += inner + sealed_overhead()
                    padded += padded_length(inner) + sealed_overhead()
                    blobs += 1
    return {"data set": root, "unique chunks": blobs, "raw bytes": raw, "stored, no padding": plain,
            "stored, padded": padded, "padding cost %": round(100 * (padded - plain) / max(plain, 1), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--padding", metavar="DIR", help="measure the padding cost on this data set instead")
    args = parser.parse_args()
    import cryptography

    rows = padding_cost(args.padding) if args.padding else measure()
    meta = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "cryptography": cryptography.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return
    for key, value in meta.items():
        print(f"# {key}: {value}")
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
