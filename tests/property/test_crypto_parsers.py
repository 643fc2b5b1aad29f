"""Garbage into the encrypted-frame and key-file parsers: a typed error, never a crash."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from snapstore.errors import FormatError
from snapstore.format.crypto import KIND_DATA, KIND_TABLE, DecryptError, KeyMaterial, RepoCrypto
from snapstore.format.keyfile import KeyFile, KeyFileDamaged, WrongKeyPassword, wrap_key
from snapstore.repo.keystore import parse_export

MATERIAL = KeyMaterial.generate("ab" * 16)
CRYPTO = RepoCrypto(MATERIAL)
GOOD_FRAME = CRYPTO.encode_blob(bytes(32), 0, 0, b"payload")
GOOD_KEY = wrap_key(MATERIAL, b"pw", profile="test").to_bytes()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_sealed_frames_of_garbage(data: bytes) -> None:
    try:
        CRYPTO.decode_blob(bytes(32), 0, data)
    except DecryptError:
        return
    raise AssertionError("garbage opened")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GOOD_FRAME) - 1), st.integers(1, 255))
def test_sealed_frame_with_a_changed_byte(at: int, xor: int) -> None:
    bad = bytearray(GOOD_FRAME)
    bad[at] ^= xor
    try:
        CRYPTO.decode_blob(bytes(32), 0, bytes(bad))
    except DecryptError:
        return
    raise AssertionError("tampered frame opened")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100), st.sampled_from([KIND_TABLE, KIND_DATA]))
def test_shared_frames_of_garbage(data: bytes, kind: int) -> None:
    try:
        CRYPTO.open_shared(KIND_TABLE, b"ctx", data)
    except DecryptError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_key_material_of_garbage(data: bytes) -> None:
    try:
        KeyMaterial.from_bytes(data)
    except FormatError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), json_values.map(lambda v: json.dumps(v).encode())))
def test_key_files_of_garbage(data: bytes) -> None:
    try:
        KeyFile.from_bytes(data)
    except KeyFileDamaged:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(json.loads(GOOD_KEY))), json_values)
def test_key_file_with_a_field_replaced(name: str, value: object) -> None:
    data = json.loads(GOOD_KEY)
    data[name] = value
    try:
        KeyFile.from_bytes(json.dumps(data).encode()).unwrap(b"pw")
    except (KeyFileDamaged, WrongKeyPassword):
        return
    assert data == json.loads(GOOD_KEY)  # only an unchanged file may open


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_exported_text_of_garbage(data: bytes) -> None:
    try:
        KeyFile.from_bytes(parse_export(b"snapstore key export v1\n" + data))
    except KeyFileDamaged:
        pass
