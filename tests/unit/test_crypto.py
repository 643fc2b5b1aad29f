"""Frames, keyed ids, padding and key files (snapstore.format.crypto, snapstore.format.keyfile)."""

from __future__ import annotations

import json
import os
import threading

import pytest

from snapstore.format.compress import RAW, ZSTD, compress, decompress
from snapstore.format.crypto import (
    KIND_LEASE,
    KIND_TABLE,
    SCRATCH_MAX,
    DecryptError,
    KeyMaterial,
    NeedsFullKey,
    RepoCrypto,
    padded_length,
)
from snapstore.format.keyfile import KeyFile, KeyFileDamaged, WrongKeyPassword, wrap_key
from tests.conftest import run_threads


@pytest.fixture(scope="module")
def material() -> KeyMaterial:
    return KeyMaterial.generate("ab" * 16)


def test_blob_round_trip_and_binding(material: KeyMaterial) -> None:
    crypto = RepoCrypto(material)
    blob_id = crypto.ids.blob_id(b"hello world")
    frame = crypto.encode_blob(blob_id, 0, 1, b"compressed body")
    assert b"compressed body" not in frame
    assert crypto.decode_blob(blob_id, 0, frame) == (1, b"compressed body")
    with pytest.raises(DecryptError):  # another id: the frame was moved
        crypto.decode_blob(bytes(32), 0, frame)
    with pytest.raises(DecryptError):  # read as a tree
        crypto.decode_blob(blob_id, 1, frame)
    for at in (0, 1, 5, 40, len(frame) // 2, len(frame) - 1):  # a flipped bit anywhere
        bad = bytearray(frame)
        bad[at] ^= 0x01
        with pytest.raises(DecryptError):
            crypto.decode_blob(blob_id, 0, bytes(bad))


def test_blob_bodies_read_in_turn_from_one_thread(material: KeyMaterial) -> None:
    # decode_blob hands out a view of the thread's scratch buffer: each body read before the
    # next decode is right, whatever the sizes (growing, shrinking, beyond the scratch cap)
    crypto = RepoCrypto(material)
    bodies = [os.urandom(n) for n in (3, 2 << 20, 100, 5 << 20, SCRATCH_MAX + 1000, 10)]
    frames = [(crypto.ids.blob_id(b), crypto.encode_blob(crypto.ids.blob_id(b), 0, RAW, b)) for b in bodies]
    for body, (blob_id, frame) in zip(bodies, frames, strict=True):
        code, got = crypto.decode_blob(blob_id, 0, memoryview(frame))
        assert code == RAW and bytes(got) == body
    # a frame that does not authenticate raises; the next one opens into the same buffer
    blob_id, frame = frames[1]
    bad = bytearray(frame)
    bad[-20] ^= 0x01
    with pytest.raises(DecryptError):
        crypto.decode_blob(blob_id, 0, bytes(bad))
    assert bytes(crypto.decode_blob(blob_id, 0, frame)[1]) == bodies[1]


def test_blob_bodies_of_parallel_readers_do_not_mix(material: KeyMaterial) -> None:
    crypto = RepoCrypto(material)
    bodies = [bytes([i]) * (1 << 20) for i in range(4)]
    frames = [(crypto.ids.blob_id(b), crypto.encode_blob(crypto.ids.blob_id(b), 0, RAW, b)) for b in bodies]
    wrong: list[int] = []
    start = threading.Barrier(4)

    def reader(i: int) -> None:
        start.wait()
        for _ in range(30):
            blob_id, frame = frames[i]
            got = crypto.decode_blob(blob_id, 0, frame)[1]
            if got[0] != i or got[-1] != i or bytes(got) != bodies[i]:
                wrong.append(i)

    run_threads(reader, 4)
    assert not wrong


def test_decompress_takes_views_and_returns_bytes() -> None:
    data = b"log line\n" * 5000
    code, packed = compress(data, 3)
    assert code == ZSTD
    out = decompress(code, memoryview(b"xx" + packed)[2:], len(data))
    assert out == data and isinstance(out, bytes)
    raw = decompress(RAW, memoryview(data)[:100], 100)
    assert raw == data[:100] and isinstance(raw, bytes)
    with pytest.raises(ValueError):
        decompress(RAW, memoryview(data)[:100], 99)


def test_counter_nonces_are_distinct_and_sessions_differ(material: KeyMaterial) -> None:
    crypto = RepoCrypto(material)
    frames = [crypto.encode_blob(bytes(32), 0, 0, b"same") for _ in range(3)]
    counters = {f[34:42] for f in frames}
    assert len(counters) == 3 and len({f[2:34] for f in frames}) == 1  # one session, three counters
    other = RepoCrypto(material).encode_blob(bytes(32), 0, 0, b"same")
    assert other[2:34] != frames[0][2:34]  # a new process: a new session key
    assert RepoCrypto(material).decode_blob(bytes(32), 0, other) == (0, b"same")


def test_write_only_seals_but_cannot_open(material: KeyMaterial) -> None:
    writer = RepoCrypto(material.write_only())
    reader = RepoCrypto(material)
    blob_id = writer.ids.blob_id(b"data")
    assert blob_id == reader.ids.blob_id(b"data")  # shared id key: dedup works
    frame = writer.encode_blob(blob_id, 0, 0, b"data")
    with pytest.raises(NeedsFullKey):
        writer.decode_blob(blob_id, 0, frame)
    assert reader.decode_blob(blob_id, 0, frame) == (0, b"data")
    table = writer.seal_shared(KIND_TABLE, b"pack", b"ids and sizes")
    assert reader.open_shared(KIND_TABLE, b"pack", table) == b"ids and sizes"
    with pytest.raises(DecryptError):
        reader.open_shared(KIND_LEASE, b"pack", table)
    with pytest.raises(DecryptError):
        reader.open_shared(KIND_TABLE, b"other pack", table)


def test_keyed_ids_depend_on_the_repository(material: KeyMaterial) -> None:
    other = KeyMaterial.generate("cd" * 16)
    assert RepoCrypto(material).ids.blob_id(b"x") != RepoCrypto(other).ids.blob_id(b"x")
    assert RepoCrypto(material).ids.snapshot_id(b"x") != RepoCrypto(material).ids.blob_id(b"x").hex()


def test_padding_bounds() -> None:
    for n in [1, 63, 64, 65, 1000, 4096, 100_000, 1 << 20, (1 << 20) + 1, 4_000_000]:
        p = padded_length(n)
        assert p >= n
        assert p - n < max(64, n / 128 + 1)
    assert padded_length((1 << 20) + 1) == (1 << 20) + 8192


def test_key_material_round_trip(material: KeyMaterial) -> None:
    assert KeyMaterial.from_bytes(material.to_bytes()) == material
    assert KeyMaterial.from_bytes(material.write_only().to_bytes()).seal_private is None


def test_key_file_wrong_password_is_not_damage(material: KeyMaterial) -> None:
    keyfile = wrap_key(material, b"pw", profile="test")
    parsed = KeyFile.from_bytes(keyfile.to_bytes())
    assert parsed.unwrap(b"pw") == material
    with pytest.raises(WrongKeyPassword):
        parsed.unwrap(b"not it")
    data = json.loads(keyfile.to_bytes())
    data["wrapped"] = data["wrapped"][:-4] + ("AAAA" if data["wrapped"][-4:] != "AAAA" else "BBBB")
    with pytest.raises(KeyFileDamaged):
        KeyFile.from_bytes(json.dumps(data).encode())
    data = json.loads(keyfile.to_bytes())
    data["kdf"]["memory_kib"] = 16  # weakening the parameters is caught by the checksum...
    with pytest.raises(KeyFileDamaged):
        KeyFile.from_bytes(json.dumps(data).encode())


def test_key_file_parameters_are_authenticated(material: KeyMaterial) -> None:
    """...and rewriting the checksum too does not help: the parameters are associated data."""
    import blake3

    keyfile = wrap_key(material, b"pw", profile="test")
    data = json.loads(keyfile.to_bytes())
    data["kind"] = "write-only"
    del data["checksum"]
    data["checksum"] = blake3.blake3(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    forged = KeyFile.from_bytes(json.dumps(data).encode())
    with pytest.raises(WrongKeyPassword):
        forged.unwrap(b"pw")


def test_default_kdf_profile_is_rfc9106() -> None:
    from snapstore.format.keyfile import KDF_PROFILES

    default = KDF_PROFILES["default"]
    assert (default.memory_kib, default.iterations, default.lanes) == (65536, 3, 4)
