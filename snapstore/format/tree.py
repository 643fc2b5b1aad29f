"""Tree objects: one directory of a snapshot, canonically serialised and content-addressed.

A tree is a msgpack map ``{"v": 1, "e": [entry, ...]}`` with entries sorted by name (bytes).
Each entry is a map with short keys; keys at their default value are left out so that the
encoding stays small and new optional keys do not change old trees:

    n  name (bytes)            k  kind: f file, d dir, l symlink, p fifo, c char dev, b block dev, s socket
    m  mode (st_mode)          u/g  uid/gid            un/gn  user/group name
    t  mtime_ns                s  size (files)         c  chunks: concatenated (32-byte id, u32 length)
    sub  subtree id (dirs)     lt  symlink target (bytes)   h  hard-link group (files with nlink > 1)
    r  rdev (devices)          x  extended attributes: map name (bytes) -> value (bytes), POSIX
                                  ACLs included (``system.posix_acl_access`` / ``_default``)

``x`` came after the first trees (docs/format.md): it is optional, so trees without extended
attributes are byte-identical to what older versions wrote, and older versions read a tree
with ``x`` (they keep unknown keys and drop only the attributes).

A tree's id is the BLAKE3 of its bytes, so an unchanged directory has the same id in every
snapshot and costs nothing to store again.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from snapstore.errors import FormatError
from snapstore.format.chunker import ID_SIZE

TREE_VERSION = 1
CHUNK_REF = struct.Struct("<32sI")

FILE = "f"
DIR = "d"
SYMLINK = "l"
FIFO = "p"
CHARDEV = "c"
BLOCKDEV = "b"
SOCKET = "s"
KINDS = {FILE, DIR, SYMLINK, FIFO, CHARDEV, BLOCKDEV, SOCKET}
KIND_NAMES = {FILE: "file", DIR: "dir", SYMLINK: "symlink", FIFO: "fifo", CHARDEV: "chardev",
              BLOCKDEV: "blockdev", SOCKET: "socket"}


@dataclass(slots=True)
class Entry:
    """One name in a directory of a snapshot."""

    name: bytes
    kind: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    size: int = 0
    user: str = ""
    group: str = ""
    chunks: bytes = b""  # packed CHUNK_REF records
    subtree: bytes = b""
    target: bytes = b""
    hardlink: int = 0
    rdev: int = 0
    xattrs: dict[bytes, bytes] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def chunk_refs(self) -> Iterator[tuple[bytes, int]]:
        """``(chunk id, raw length)`` of each chunk of a file, in order."""
        return CHUNK_REF.iter_unpack(self.chunks)  # type: ignore[return-value]

    def chunk_ids(self) -> list[bytes]:
        data = self.chunks
        step = CHUNK_REF.size
        return [data[i : i + ID_SIZE] for i in range(0, len(data), step)]

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.name, "k": self.kind, "m": self.mode}
        if self.uid:
            out["u"] = self.uid
        if self.gid:
            out["g"] = self.gid
        if self.user:
            out["un"] = self.user
        if self.group:
            out["gn"] = self.group
        if self.mtime_ns:
            out["t"] = self.mtime_ns
        if self.size:
            out["s"] = self.size
        if self.chunks:
            out["c"] = self.chunks
        if self.subtree:
            out["sub"] = self.subtree
        if self.target:
            out["lt"] = self.target
        if self.hardlink:
            out["h"] = self.hardlink
        if self.rdev:
            out["r"] = self.rdev
        if self.xattrs:
            out["x"] = {name: self.xattrs[name] for name in sorted(self.xattrs)}  # canonical order
        out.update(self.extra)
        return out

    @classmethod
    def from_map(cls, data: dict[str, Any]) -> Entry:
        known = {"n", "k", "m", "u", "g", "un", "gn", "t", "s", "c", "sub", "lt", "h", "r", "x"}
        entry = cls(
            name=data["n"],
            kind=data["k"],
            mode=data.get("m", 0),
            uid=data.get("u", 0),
            gid=data.get("g", 0),
            user=data.get("un", ""),
            group=data.get("gn", ""),
            mtime_ns=data.get("t", 0),
            size=data.get("s", 0),
            chunks=data.get("c", b""),
            subtree=data.get("sub", b""),
            target=data.get("lt", b""),
            hardlink=data.get("h", 0),
            rdev=data.get("r", 0),
            xattrs=data.get("x", {}),
            extra={k: v for k, v in data.items() if k not in known},
        )
        if not isinstance(entry.name, bytes) or entry.kind not in KINDS or len(entry.chunks) % CHUNK_REF.size:
            raise FormatError("malformed tree entry")
        if not isinstance(entry.xattrs, dict) or not all(
                isinstance(k, bytes) and isinstance(v, bytes) for k, v in entry.xattrs.items()):
            raise FormatError("malformed extended attributes in a tree entry")
        return entry


def encode_tree(entries: list[Entry]) -> bytes:
    """Canonical bytes of a directory (entries sorted by name)."""
    ordered = sorted(entries, key=lambda e: e.name)
    return msgpack.packb({"v": TREE_VERSION, "e": [e.to_map() for e in ordered]}, use_bin_type=True)


def decode_tree(data: bytes) -> list[Entry]:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if not isinstance(obj, dict) or obj.get("v") != TREE_VERSION:
            raise FormatError("unsupported tree version")
        return [Entry.from_map(item) for item in obj["e"]]
    except FormatError:
        raise
    except Exception as exc:  # msgpack raises many types on garbage
        raise FormatError(f"malformed tree object: {exc}") from None


def tree_children(data: bytes) -> list[bytes]:
    """Ids a tree references (subtrees and chunks, with multiplicity): what refcounts count."""
    out: list[bytes] = []
    for entry in decode_tree(data):
        if entry.subtree:
            out.append(entry.subtree)
        if entry.chunks:
            out.extend(entry.chunk_ids())
    return out
