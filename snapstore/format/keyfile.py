"""Key files: a repository's key material wrapped by a password through Argon2id.

A key file is a small JSON document in the repository's ``keys/`` (docs/format.md)::

    {"format": "snapstore-key", "version": 1, "id": "<16 hex>", "repository": "<repository id>",
     "kind": "full" | "write-only", "created": "2026-12-01T22:00:00Z",
     "kdf": {"algorithm": "argon2id", "profile": "default", "memory_kib": 65536, "iterations": 3,
             "lanes": 4, "salt": "<base64, 16 bytes>"},
     "cipher": "aes-256-gcm", "nonce": "<base64, 12 bytes>", "wrapped": "<base64>",
     "checksum": "<BLAKE3 hex of the canonical JSON of every other field>"}

``wrapped`` is the AEAD (``cipher``) of the msgpack key material under the key that Argon2id
derives from the password and ``salt``; every other field but ``checksum`` is its associated
data, so nothing in the file can be changed without the unwrap failing. The checksum is not a
secret: it tells a damaged file (checksum mismatch: try the redundant copy) from a wrong password
(checksum fine, AEAD fails). The KDF parameters are recorded per file; ``profile`` names the set
they came from, and ``test`` (tiny memory, for test suites only) is shown wherever keys are listed.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from snapstore.errors import FormatError
from snapstore.format.crypto import CIPHERS, DEFAULT_CIPHER, KeyMaterial, _b64, _unb64

FORMAT = "snapstore-key"
VERSION = 1
MAX_KEY_FILE = 64 * 1024


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters (RFC 9106 names: memory m in KiB, passes t, lanes p)."""

    memory_kib: int
    iterations: int
    lanes: int
    profile: str = "default"

    def check(self) -> None:
        """Bounds that keep a crafted key file from asking for 1 TiB of memory or an hour of CPU."""
        if not 1 <= self.lanes <= 64 or not 1 <= self.iterations <= 64:
            raise FormatError(f"key file KDF parameters out of range (t={self.iterations}, p={self.lanes})")
        if not 8 * self.lanes <= self.memory_kib <= 4 * 1024 * 1024:
            raise FormatError(f"key file KDF memory out of range ({self.memory_kib} KiB)")


#: ``default``: RFC 9106's second recommended option (64 MiB, t=3, p=4; about 0.2 s here).
#: ``test``: the smallest Argon2id allows, for test suites only; it is recorded in the key file
#: and listed by ``snap key list``, never picked without being asked for.
KDF_PROFILES: dict[str, KdfParams] = {
    "default": KdfParams(memory_kib=64 * 1024, iterations=3, lanes=4, profile="default"),
    "test": KdfParams(memory_kib=8, iterations=1, lanes=1, profile="test"),
}


def kdf_profile(name: str) -> KdfParams:
    try:
        return KDF_PROFILES[name]
    except KeyError:
        raise FormatError(f"unknown KDF profile {name!r} (known: {', '.join(KDF_PROFILES)})") from None


def derive_kek(password: bytes, salt: bytes, params: KdfParams) -> bytes:
    """The key-encryption key: Argon2id(password, salt) with ``params``, 32 bytes."""
    params.check()
    return Argon2id(salt=salt, length=32, iterations=params.iterations, lanes=params.lanes,
                    memory_cost=params.memory_kib).derive(password)


class KeyFileDamaged(FormatError):
    """The key file does not parse or its checksum does not match: damage, not a wrong password."""

    kind = "key_file_damaged"


class WrongKeyPassword(Exception):
    """The key file is intact but the password does not unwrap it."""


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class KeyFile:
    """One parsed key file. Build with :func:`wrap_key`, read with :meth:`from_bytes`."""

    id: str
    repo_id: str
    kind: str
    created: str
    kdf: KdfParams
    salt: bytes
    cipher: str
    nonce: bytes
    wrapped: bytes
    extra: dict[str, Any] = field(default_factory=dict)  # unknown fields, kept (and authenticated)

    def _fields(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update({
            "format": FORMAT, "version": VERSION, "id": self.id, "repository": self.repo_id, "kind": self.kind,
            "created": self.created,
            "kdf": {"algorithm": "argon2id", "profile": self.kdf.profile, "memory_kib": self.kdf.memory_kib,
                    "iterations": self.kdf.iterations, "lanes": self.kdf.lanes, "salt": _b64(self.salt)},
            "cipher": self.cipher, "nonce": _b64(self.nonce),
        })
        return out

    def _aad(self) -> bytes:
        return _canonical(self._fields())

    def checksum(self) -> str:
        fields = self._fields()
        fields["wrapped"] = _b64(self.wrapped)
        return blake3.blake3(_canonical(fields)).hexdigest()

    def to_bytes(self) -> bytes:
        fields = self._fields()
        fields["wrapped"] = _b64(self.wrapped)
        fields["checksum"] = self.checksum()
        return json.dumps(fields, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, raw: bytes) -> KeyFile:
        """Parse a key file; KeyFileDamaged when it does not parse or its checksum is wrong."""
        if len(raw) > MAX_KEY_FILE:
            raise KeyFileDamaged("key file too large")
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            if data.get("format") != FORMAT:
                raise ValueError("not a snapstore key file")
            if data.get("version") != VERSION:
                raise ValueError(f"unsupported key file version {data.get('version')!r}")
            kdf = data["kdf"]
            if not isinstance(kdf, dict) or kdf.get("algorithm") != "argon2id":
                raise ValueError("unknown key derivation")
            params = KdfParams(memory_kib=_int(kdf["memory_kib"]), iterations=_int(kdf["iterations"]),
                               lanes=_int(kdf["lanes"]), profile=str(kdf.get("profile", "default")))
            kind = data["kind"]
            if kind not in ("full", "write-only"):
                raise ValueError(f"unknown key kind {kind!r}")
            cipher = data["cipher"]
            if cipher not in CIPHERS:
                raise ValueError(f"unknown cipher {cipher!r}")
            known = {"format", "version", "id", "repository", "kind", "created", "kdf", "cipher", "nonce",
                     "wrapped", "checksum"}
            key_id = data["id"]
            if not isinstance(key_id, str) or not key_id or any(c not in "0123456789abcdef" for c in key_id):
                raise ValueError("bad key id")
            parsed = cls(
                id=key_id, repo_id=str(data["repository"]), kind=kind, created=str(data["created"]),
                kdf=params, salt=_unb64(kdf["salt"]), cipher=cipher, nonce=_unb64(data["nonce"], 12),
                wrapped=_unb64(data["wrapped"]), extra={k: v for k, v in data.items() if k not in known},
            )
            checksum = data["checksum"]
        except (KeyError, TypeError, ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise KeyFileDamaged(f"key file does not parse ({exc})") from None
        if parsed.checksum() != checksum:
            raise KeyFileDamaged(f"key file {parsed.id} is damaged (checksum mismatch)")
        params.check()
        if len(parsed.salt) < 16:
            raise KeyFileDamaged(f"key file {parsed.id}: salt too short")
        return parsed

    def unwrap(self, password: bytes) -> KeyMaterial:
        """The key material; WrongKeyPassword when the password is not this file's."""
        kek = derive_kek(password, self.salt, self.kdf)
        try:
            plain = CIPHERS[self.cipher](kek).decrypt(self.nonce, self.wrapped, self._aad())
        except InvalidTag:
            raise WrongKeyPassword(self.id) from None
        material = KeyMaterial.from_bytes(plain)
        if material.repo_id != self.repo_id or material.kind != self.kind:
            raise KeyFileDamaged(f"key file {self.id} does not match the key material it holds")
        return material


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def wrap_key(material: KeyMaterial, password: bytes, *, profile: str = "default", key_id: str | None = None,
             created: str | None = None) -> KeyFile:
    """A new key file holding ``material`` under ``password`` (a fresh salt and nonce each time)."""
    if not password:
        raise ValueError("empty password")
    params = kdf_profile(profile)
    unsigned = KeyFile(
        id=key_id or secrets.token_hex(8), repo_id=material.repo_id, kind=material.kind,
        created=created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), kdf=params, salt=os.urandom(16),
        cipher=DEFAULT_CIPHER if material.cipher not in CIPHERS else material.cipher, nonce=os.urandom(12),
        wrapped=b"",
    )
    kek = derive_kek(password, unsigned.salt, params)
    wrapped = CIPHERS[unsigned.cipher](kek).encrypt(unsigned.nonce, material.to_bytes(), unsigned._aad())
    return replace(unsigned, wrapped=wrapped)
