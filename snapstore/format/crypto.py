"""Encryption of repository objects: key material, keyed ids, session keys, AEAD frames, padding.

docs/security.md explains the design and docs/format.md is the byte-level reference. In short:

* :class:`KeyMaterial` is what a key file protects: the **id key** (keyed BLAKE3 blob ids), the
  **table key** (pack tables, pins, lease notes: everything index sync needs), the chunker seed,
  and the repository's X25519 key pair. A write-only key holds the same minus the private key.
* Content (data and tree blobs, snapshot records) is **sealed**: each writing process opens a
  :class:`SealSession` with a fresh ephemeral X25519 key agreed with the repository public key;
  HKDF-SHA256 of the shared secret is the session key, and every frame of the session uses a
  counter nonce (never random: 2^64 frames per session, one key per session). Only a holder of
  the private key (a full key) re-derives the session key (:class:`Opener`).
* Index-level objects are **shared frames** under the table key with random 96-bit nonces: there
  are a few per pack or per process (far below the 2^32 messages that bound random nonces).
* Every frame carries its kind and what it belongs to (blob id and type, pack id, object name)
  in the associated data: a frame moved to another place does not open.

Primitives come from pyca/cryptography (AEAD, X25519, HKDF) and blake3; nothing here is a
primitive of its own. Frames that do not open raise :class:`DecryptError` (repository damage),
never return data.
"""

from __future__ import annotations

import base64
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import blake3
import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from snapstore.errors import FormatError

#: AEADs a repository may use (the name is recorded in its key material and config).
CIPHERS: dict[str, type[AESGCM] | type[ChaCha20Poly1305]] = {
    "aes-256-gcm": AESGCM,
    "chacha20-poly1305": ChaCha20Poly1305,
}
#: Chosen by measurement on the reference machine (benchmarks/bench_crypto.py, docs/security.md).
DEFAULT_CIPHER = "aes-256-gcm"
TAG = 16

FRAME_VERSION = 1
# Kinds of frame; the kind is in the associated data, so a tree never opens as a record.
KIND_DATA = 1
KIND_TREE = 2
KIND_SNAPSHOT = 3
KIND_TABLE = 16
KIND_PINS = 17
KIND_LEASE = 18
KIND_CHECK = 19
SEALED_KINDS = frozenset({KIND_DATA, KIND_TREE, KIND_SNAPSHOT})
SHARED_KINDS = frozenset({KIND_TABLE, KIND_PINS, KIND_LEASE, KIND_CHECK})

# sealed:  u8 version | u8 kind | 32s session (ephemeral X25519 public key) | u64 counter
SEALED_HEADER = struct.Struct("<BB32sQ")
# shared:  u8 version | u8 kind | 12s random nonce
SHARED_HEADER = struct.Struct("<BB12s")
# inside a sealed blob frame: u8 compression | u32 body length, then body, then zero padding
BLOB_BODY = struct.Struct("<BI")

HKDF_INFO = b"snapstore v2 session key"
_SNAPSHOT_ID_CONTEXT = "snapstore 2026-12 snapshot record ids"
_HOST_CONTEXT = "snapstore 2026-12 lease host tokens"


class DecryptError(FormatError):
    """A frame does not authenticate: tampered, damaged, or not meant for this place or key."""

    kind = "decrypt"


class NeedsFullKey(Exception):
    """Raised inside the format layer when a write-only key is asked to open sealed content;
    the repository layer turns it into the user-facing error."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object, length: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    raw = base64.b64decode(text.encode(), validate=True)
    if length is not None and len(raw) != length:
        raise ValueError(f"expected {length} bytes, got {len(raw)}")
    return raw


# -- key material ----------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyMaterial:
    """The secrets of one repository, as one key file unwraps them."""

    repo_id: str
    cipher: str
    id_key: bytes
    table_key: bytes
    chunker_seed: int
    seal_public: bytes
    seal_private: bytes | None  # None: a write-only key

    @property
    def full(self) -> bool:
        return self.seal_private is not None

    @property
    def kind(self) -> str:
        return "full" if self.full else "write-only"

    @classmethod
    def generate(cls, repo_id: str, cipher: str = DEFAULT_CIPHER) -> KeyMaterial:
        if cipher not in CIPHERS:
            raise ValueError(f"unknown cipher {cipher!r}")
        private = X25519PrivateKey.generate()
        return cls(
            repo_id=repo_id, cipher=cipher, id_key=os.urandom(32), table_key=os.urandom(32),
            chunker_seed=int.from_bytes(os.urandom(8), "little") >> 1,  # pyfastcdc takes a positive int
            seal_public=private.public_key().public_bytes_raw(), seal_private=private.private_bytes_raw(),
        )

    def write_only(self) -> KeyMaterial:
        """The same repository's material without the private key: can write, cannot read content."""
        return replace(self, seal_private=None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": 1, "repository": self.repo_id, "cipher": self.cipher, "id_key": _b64(self.id_key),
            "table_key": _b64(self.table_key), "chunker_seed": self.chunker_seed,
            "seal_public": _b64(self.seal_public),
        }
        if self.seal_private is not None:
            out["seal_private"] = _b64(self.seal_private)
        return out

    @classmethod
    def from_json(cls, data: object) -> KeyMaterial:
        """Parse key material; raises FormatError on anything malformed."""
        try:
            if not isinstance(data, dict) or data.get("v") != 1:
                raise ValueError("unknown key material version")
            cipher = data["cipher"]
            if cipher not in CIPHERS:
                raise ValueError(f"unknown cipher {cipher!r}")
            seed = data["chunker_seed"]
            if not isinstance(seed, int) or not 0 <= seed < 1 << 64:
                raise ValueError("bad chunker seed")
            private = data.get("seal_private")
            material = cls(
                repo_id=str(data["repository"]), cipher=cipher, id_key=_unb64(data["id_key"], 32),
                table_key=_unb64(data["table_key"], 32), chunker_seed=seed,
                seal_public=_unb64(data["seal_public"], 32),
                seal_private=None if private is None else _unb64(private, 32),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"malformed key material: {exc}") from None
        if material.seal_private is not None:
            derived = X25519PrivateKey.from_private_bytes(material.seal_private).public_key().public_bytes_raw()
            if derived != material.seal_public:
                raise FormatError("malformed key material: private and public key do not match")
        return material

    def to_bytes(self) -> bytes:
        return msgpack.packb(self.to_json(), use_bin_type=True)

    @classmethod
    def from_bytes(cls, raw: bytes) -> KeyMaterial:
        try:
            data = msgpack.unpackb(raw, raw=False, strict_map_key=True)
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise FormatError(f"malformed key material: {exc}") from None
        return cls.from_json(data)


# -- ids ---------------------------------------------------------------------------------------
class KeyedIds:
    """Blob ids as BLAKE3 in keyed mode: equal content, equal id, inside this repository only."""

    def __init__(self, id_key: bytes) -> None:
        self._key = id_key
        self._snapshot_key = blake3.blake3(id_key, derive_key_context=_SNAPSHOT_ID_CONTEXT).digest()

    def blob_id(self, data: bytes | memoryview) -> bytes:
        # one thread, as for plaintext ids: take, restore and verify already hash on every core,
        # and BLAKE3's own threads only contend with them (restore of 1 GB spent most of its time here)
        return blake3.blake3(data, key=self._key).digest()

    def snapshot_id(self, body: bytes) -> str:
        """The name of a snapshot record: keyed too, so it says nothing about the record."""
        return blake3.blake3(body, key=self._snapshot_key).hexdigest()


# -- padding -----------------------------------------------------------------------------------
PAD_FRACTION_BITS = 7  # 128 buckets per power of two: at most 1/128 (0.78%) added to a blob
PAD_MIN = 64


def padded_length(n: int) -> int:
    """The stored length of a frame body of ``n`` bytes: ``n`` rounded up to a multiple of a
    quantum that grows with the size (2^(bits(n) - 1 - PAD_FRACTION_BITS), at least PAD_MIN). A
    stored size then tells an observer the size only to within 1/128, not to the byte, which is
    what chunk-size attacks on content-defined chunking read."""
    quantum = max(PAD_MIN, 1 << max(0, n.bit_length() - 1 - PAD_FRACTION_BITS))
    return -(-n // quantum) * quantum


# -- AEAD frames -------------------------------------------------------------------------------
# Scratch buffers for blob plaintexts (Opener.open_scratch): one per reading thread, grown in
# MiB steps up to the largest frame met (chunks are at most 4 MiB); larger frames (big trees)
# get a buffer of their own, so that a long-lived process keeps at most this much per thread.
SCRATCH_STEP = 1 << 20
SCRATCH_MAX = 8 << 20


def _aead(cipher: str, key: bytes) -> AESGCM | ChaCha20Poly1305:
    return CIPHERS[cipher](key)


def _session_key(shared_secret: bytes, session: bytes, public: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=session + public, info=HKDF_INFO).derive(shared_secret)


def _nonce(counter: int) -> bytes:
    return b"\0\0\0\0" + counter.to_bytes(8, "big")


class SealSession:
    """One writer's session: seals blobs and records for the repository's private key.

    Thread-safe: frames take consecutive counters under a lock, so the take's thread pool can
    seal in parallel; the AEAD itself runs outside the lock.
    """

    def __init__(self, cipher: str, public_key: bytes) -> None:
        ephemeral = X25519PrivateKey.generate()
        self.session = ephemeral.public_key().public_bytes_raw()
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public_key))
        self._aead = _aead(cipher, _session_key(shared, self.session, public_key))
        self._counter = 0
        self._lock = threading.Lock()

    def seal(self, kind: int, context: bytes, plaintext: bytes) -> bytes:
        if kind not in SEALED_KINDS:
            raise ValueError(f"kind {kind} is not sealed")
        with self._lock:
            counter = self._counter
            self._counter += 1
        header = SEALED_HEADER.pack(FRAME_VERSION, kind, self.session, counter)
        return header + self._aead.encrypt(_nonce(counter), plaintext, header + context)


class Opener:
    """Opens sealed frames with the repository's private key (full keys only). Session keys are
    derived once per session and kept in a small LRU."""

    def __init__(self, cipher: str, private_key: bytes) -> None:
        self._cipher = cipher
        self._private = X25519PrivateKey.from_private_bytes(private_key)
        self._public = self._private.public_key().public_bytes_raw()
        self._sessions: OrderedDict[bytes, AESGCM | ChaCha20Poly1305] = OrderedDict()
        self._lock = threading.Lock()
        self._scratch = threading.local()

    def _for_session(self, session: bytes) -> AESGCM | ChaCha20Poly1305:
        with self._lock:
            aead = self._sessions.get(session)
            if aead is not None:
                self._sessions.move_to_end(session)
                return aead
        try:
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(session))
        except ValueError:  # a low-order point: no session of ours
            raise DecryptError("sealed frame names an impossible session key") from None
        aead = _aead(self._cipher, _session_key(shared, session, self._public))
        with self._lock:
            self._sessions[session] = aead
            if len(self._sessions) > 1024:
                self._sessions.popitem(last=False)
        return aead

    def _parse(self, kind: int, view: memoryview) -> tuple[AESGCM | ChaCha20Poly1305, bytes]:
        """The session's AEAD and the frame's nonce, after its header checks out."""
        if len(view) < SEALED_HEADER.size + TAG:
            raise DecryptError("sealed frame too short")
        version, got_kind, session, counter = SEALED_HEADER.unpack_from(view)
        if version != FRAME_VERSION:
            raise DecryptError(f"unknown frame version {version}")
        if got_kind != kind:
            raise DecryptError(f"frame of kind {got_kind} where kind {kind} was expected")
        return self._for_session(session), _nonce(counter)

    def open(self, kind: int, context: bytes, frame: bytes | memoryview) -> bytes:
        # no copy of the frame: the AEAD reads the ciphertext where it lies (a slice of a
        # pack read); only the 42-byte header is copied, into the associated data
        view = memoryview(frame)
        aead, nonce = self._parse(kind, view)
        try:
            return aead.decrypt(nonce, view[SEALED_HEADER.size :], b"".join((view[: SEALED_HEADER.size], context)))
        except InvalidTag:
            raise DecryptError("sealed frame does not authenticate (tampered or damaged)") from None

    def open_scratch(self, kind: int, context: bytes, frame: bytes | memoryview) -> memoryview:
        """:meth:`open` into this thread's scratch buffer: a view that is valid until the same
        thread opens the next frame this way, for a reader that consumes the plaintext at once
        (decompresses it, copies it out).

        Why: a fresh buffer per blob (1-4 MiB) is fresh memory each time, and its page faults
        cost an encrypted restore or verify more than AES-GCM itself (65,000 minor faults
        against plaintext's 20,000 on the 1 GB set). The tag is checked as in :meth:`open`; a
        frame that does not authenticate raises, and what the AEAD wrote into the buffer before
        its tag check is never handed out."""
        view = memoryview(frame)
        aead, nonce = self._parse(kind, view)
        size = len(view) - SEALED_HEADER.size - TAG
        into = getattr(aead, "decrypt_into", None)  # cryptography 45+
        if into is None or size > SCRATCH_MAX:
            return memoryview(self.open(kind, context, view))
        buf: bytearray | None = getattr(self._scratch, "buf", None)
        if buf is None or len(buf) < size:
            # a new buffer rather than a resize: a view of the old one may still be alive
            buf = self._scratch.buf = bytearray(-(-size // SCRATCH_STEP) * SCRATCH_STEP)
        out = memoryview(buf)[:size]
        try:
            into(nonce, view[SEALED_HEADER.size :], b"".join((view[: SEALED_HEADER.size], context)), out)
        except InvalidTag:
            raise DecryptError("sealed frame does not authenticate (tampered or damaged)") from None
        return out


class SharedCipher:
    """Frames under the table key (random nonces): pack tables, pins, lease notes."""

    def __init__(self, cipher: str, table_key: bytes) -> None:
        self._aead = _aead(cipher, table_key)

    def seal(self, kind: int, context: bytes, plaintext: bytes) -> bytes:
        if kind not in SHARED_KINDS:
            raise ValueError(f"kind {kind} is not a shared frame")
        header = SHARED_HEADER.pack(FRAME_VERSION, kind, os.urandom(12))
        return header + self._aead.encrypt(header[2:], plaintext, header + context)

    def open(self, kind: int, context: bytes, frame: bytes | memoryview) -> bytes:
        frame = bytes(frame)
        if len(frame) < SHARED_HEADER.size + TAG:
            raise DecryptError("encrypted object too short")
        version, got_kind, nonce = SHARED_HEADER.unpack_from(frame)
        if version != FRAME_VERSION:
            raise DecryptError(f"unknown frame version {version}")
        if got_kind != kind:
            raise DecryptError(f"encrypted object of kind {got_kind} where kind {kind} was expected")
        header = frame[: SHARED_HEADER.size]
        try:
            return self._aead.decrypt(nonce, frame[SHARED_HEADER.size :], header + context)
        except InvalidTag:
            raise DecryptError("encrypted object does not authenticate (tampered, damaged or another key)") from None


class LeaseNotes:
    """Lease notes under the table key, and host names in lease object names as a keyed token
    (every key holder can read leases: write-only hosts take part in the gc protocol)."""

    def __init__(self, crypto: RepoCrypto) -> None:
        self._crypto = crypto
        self._host_key = blake3.blake3(crypto.material.id_key, derive_key_context=_HOST_CONTEXT).digest()

    def seal(self, name: str, body: bytes) -> bytes:
        return self._crypto.seal_shared(KIND_LEASE, name.encode(), body)

    def open(self, name: str, raw: bytes) -> bytes:
        return self._crypto.open_shared(KIND_LEASE, name.encode(), raw)

    def host_token(self, host: str) -> str:
        return blake3.blake3(host.encode(), key=self._host_key).hexdigest()[:16]


def sealed_overhead() -> int:
    """Bytes a sealed blob frame adds to its padded body."""
    return SEALED_HEADER.size + TAG


def blob_context(blob_id: bytes, blob_type: int) -> bytes:
    return bytes([blob_type]) + blob_id


# -- the repository's crypto, assembled --------------------------------------------------------
class RepoCrypto:
    """Everything one open repository needs to encrypt and decrypt, built from its key material.

    ``encode_blob``/``decode_blob`` are the one blob-encoding step: (compression code, compressed
    body) <-> sealed, padded frame bound to the blob's id and type.
    """

    def __init__(self, material: KeyMaterial, *, pad: bool = True) -> None:
        self.material = material
        self.ids = KeyedIds(material.id_key)
        self.shared = SharedCipher(material.cipher, material.table_key)
        self._opener = Opener(material.cipher, material.seal_private) if material.seal_private else None
        self._session: SealSession | None = None
        self._session_lock = threading.Lock()
        self.pad = pad

    @property
    def full(self) -> bool:
        return self._opener is not None

    def session(self) -> SealSession:
        """This process's seal session, made on first use (one per take, gc, copy...)."""
        with self._session_lock:
            if self._session is None:
                self._session = SealSession(self.material.cipher, self.material.seal_public)
            return self._session

    def opener(self) -> Opener:
        if self._opener is None:
            raise NeedsFullKey("this key is write-only: it cannot read what the repository holds")
        return self._opener

    def encode_blob(self, blob_id: bytes, blob_type: int, compression: int, body: bytes | memoryview) -> bytes:
        kind = KIND_TREE if blob_type == 1 else KIND_DATA
        inner = BLOB_BODY.size + len(body)
        target = padded_length(inner) if self.pad else inner
        plaintext = b"".join((BLOB_BODY.pack(compression, len(body)), body, bytes(target - inner)))
        return self.session().seal(kind, blob_context(blob_id, blob_type), plaintext)

    def decode_blob(self, blob_id: bytes, blob_type: int, frame: bytes | memoryview) -> tuple[int, memoryview]:
        """``(compression code, body)`` of a sealed blob; DecryptError when it does not open here.
        The body is a view into this thread's scratch buffer (:meth:`Opener.open_scratch`),
        valid until the thread decodes its next blob: read it before that (zstd reads it in
        place; :func:`snapstore.format.compress.decompress` copies a raw one out once)."""
        kind = KIND_TREE if blob_type == 1 else KIND_DATA
        plaintext = self.opener().open_scratch(kind, blob_context(blob_id, blob_type), frame)
        if len(plaintext) < BLOB_BODY.size:
            raise DecryptError("sealed blob too short")
        compression, length = BLOB_BODY.unpack_from(plaintext)
        if BLOB_BODY.size + length > len(plaintext):
            raise DecryptError("sealed blob body longer than its frame")
        return compression, memoryview(plaintext)[BLOB_BODY.size : BLOB_BODY.size + length]

    def seal_record(self, snap_id: str, body: bytes) -> bytes:
        return self.session().seal(KIND_SNAPSHOT, snap_id.encode(), body)

    def open_record(self, snap_id: str, frame: bytes) -> bytes:
        return self.opener().open(KIND_SNAPSHOT, snap_id.encode(), frame)

    def seal_shared(self, kind: int, context: bytes, plaintext: bytes) -> bytes:
        return self.shared.seal(kind, context, plaintext)

    def open_shared(self, kind: int, context: bytes, frame: bytes | memoryview) -> bytes:
        return self.shared.open(kind, context, frame)
