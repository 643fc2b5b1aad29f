"""The snapshot record: what one take produced, and its canonical serialisation.

A record is immutable once written. It is stored as ``snapshots/<id>.json`` in the repository
(the truth) and mirrored in the LMDB index (a cache). The id is the BLAKE3 of the canonical
JSON of every other field, so a record names itself. Mutable facts about a snapshot (pins)
live elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import blake3

from snapstore.clock import format_time, parse_time
from snapstore.errors import FormatError

RECORD_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SnapshotStats:
    """What a take saw and stored."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0  # logical size of the files
    new_bytes: int = 0  # bytes written to packs by this take (compressed, with headers)
    new_chunks: int = 0
    chunks: int = 0
    read_bytes: int = 0  # bytes read from source files (0 for unchanged ones)
    duration_s: float = 0.0
    unreadable: int = 0
    errors: tuple[str, ...] = ()
    verified: str = ""  # result of the after-take check
    changed: int = 0  # files still changing when re-read: stored as last read, maybe inconsistent
    warnings: tuple[str, ...] = ()  # what a person should know (changing files, a time in the past)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["errors"] = list(self.errors)
        # newer fields only when set, so records without them keep their bytes and ids
        for name in ("changed", "warnings"):
            if not out[name]:
                del out[name]
        if "warnings" in out:
            out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SnapshotStats:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["errors"] = tuple(known.get("errors", ()))
        known["warnings"] = tuple(known.get("warnings", ()))
        return cls(**known)


@dataclass(frozen=True)
class Snapshot:
    """One snapshot record."""

    time: datetime
    tier: str
    root: str  # hex id of the root tree
    paths: tuple[str, ...]  # source paths as given, made absolute
    hostname: str = ""
    username: str = ""
    tags: tuple[str, ...] = ()
    stats: SnapshotStats = field(default_factory=SnapshotStats)
    root_meta: dict[str, int] = field(default_factory=dict)  # mode, uid, gid, mtime_ns of the root dir
    #: required sources that did not exist at take time: the snapshot is incomplete (``latest``
    #: and a tier's keep-N pass over it); written only when non-empty, so older ids stay valid
    missing: tuple[str, ...] = ()
    #: who approved this take and why (``--approved-by``, ``--reason``); ``unapproved``: its
    #: tier has ``require_approval`` and nobody did (taken all the same: no holes in the trail)
    approved_by: str = ""
    reason: str = ""
    unapproved: bool = False
    #: the id this record was first taken under, when ``snap tag`` rewrote it (restic's
    #: ``original``): tags are part of the record, so new tags make a new record and a new id
    original: str = ""
    id: str = ""

    @property
    def incomplete(self) -> bool:
        return bool(self.missing)

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def body(self) -> dict[str, Any]:
        """The record without its id: what the id is computed from."""
        return {
            "version": RECORD_VERSION,
            "time": format_time(self.time),
            "time_ns": (self.time - _EPOCH) // timedelta(microseconds=1) * 1000,
            "tier": self.tier,
            "tags": list(self.tags),
            "hostname": self.hostname,
            "username": self.username,
            "paths": list(self.paths),
            "root": self.root,
            "stats": self.stats.to_json(),
            **({"root_meta": dict(self.root_meta)} if self.root_meta else {}),
            **({"missing": list(self.missing)} if self.missing else {}),
            **({"approved_by": self.approved_by} if self.approved_by else {}),
            **({"reason": self.reason} if self.reason else {}),
            **({"unapproved": True} if self.unapproved else {}),
            **({"original": self.original} if self.original else {}),
        }

    def to_bytes(self) -> bytes:
        data = self.body()
        data["id"] = self.id
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    def with_id(self, id_of: Callable[[bytes], str] | None = None) -> Snapshot:
        """This record with its id computed from its body: BLAKE3, or ``id_of`` (an encrypted
        repository's keyed id)."""
        canonical = json.dumps(self.body(), sort_keys=True, separators=(",", ":")).encode()
        ident = id_of(canonical) if id_of is not None else blake3.blake3(canonical).hexdigest()
        return Snapshot(**{**self.__dict__, "id": ident})

    @classmethod
    def from_bytes(cls, raw: bytes) -> Snapshot:
        try:
            data = json.loads(raw)
            if "time_ns" in data:
                moment = _EPOCH + timedelta(microseconds=data["time_ns"] // 1000)
            else:
                moment = parse_time(data["time"])
            return cls(
                time=moment,
                tier=str(data["tier"]),
                root=str(data["root"]),
                paths=tuple(data.get("paths", ())),
                hostname=str(data.get("hostname", "")),
                username=str(data.get("username", "")),
                tags=tuple(data.get("tags", ())),
                stats=SnapshotStats.from_json(data.get("stats", {})),
                root_meta={str(k): int(v) for k, v in data.get("root_meta", {}).items()},
                missing=tuple(str(m) for m in data.get("missing", ())),
                approved_by=str(data.get("approved_by", "")),
                reason=str(data.get("reason", "")),
                unapproved=bool(data.get("unapproved", False)),
                original=str(data.get("original", "")),
                id=str(data["id"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"malformed snapshot record: {exc}") from None

    def summary(self) -> dict[str, Any]:
        """The ``--json`` form used by ``snap list`` and ``snap take``."""
        return {
            "id": self.id,
            "short_id": self.short_id,
            "time": format_time(self.time),
            "tier": self.tier,
            "tags": list(self.tags),
            "hostname": self.hostname,
            "paths": list(self.paths),
            "files": self.stats.files,
            "bytes": self.stats.bytes,
            "new_bytes": self.stats.new_bytes,
            "duration_s": round(self.stats.duration_s, 3),
            "unreadable": self.stats.unreadable,
            "incomplete": self.incomplete,
            **({"missing": list(self.missing)} if self.missing else {}),
            **({"approved_by": self.approved_by} if self.approved_by else {}),
            **({"reason": self.reason} if self.reason else {}),
            **({"unapproved": True} if self.unapproved else {}),
            **({"original": self.original} if self.original else {}),
        }
