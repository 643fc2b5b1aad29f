"""The history of one path across snapshots, collapsed to the versions of its content.

:func:`collect_versions` takes, oldest first, each snapshot with the entry found at the path
(or ``None`` where the path does not exist) and returns a :class:`VersionHistory`: one
:class:`Version` per run of consecutive snapshots holding the same content, with the first and
last snapshot of the run, how many snapshots hold it, the size and mtime, and a content id. A
run ends where the content changes or the path is absent; a version whose content equals an
earlier one (a revert) says so in ``same_as``, so a user picking "the last good weights.json"
sees both when it existed and that it came back.

Content ids are computed from the tree entries alone, never from file data: for a file the
BLAKE3 of its chunk list (chunk ids and lengths, as stored in the tree), for a directory its
tree id, for a symlink the BLAKE3 of its target. Equal chunk lists mean equal content in one
repository (one chunker configuration), so the cost grows with the number of snapshots (one
path lookup each, O(depth) tree reads), not with the size of the files or of the snapshots.
Metadata (mode, owner, mtime) does not make a new version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import blake3

from snapstore.format.tree import DIR, FILE, SYMLINK, Entry

S = TypeVar("S")


def content_id(entry: Entry) -> str:
    """The hex id of an entry's content (see the module docstring); kind-prefixed for others."""
    if entry.kind == FILE:
        return blake3.blake3(entry.chunks).hexdigest()
    if entry.kind == DIR:
        return entry.subtree.hex()
    if entry.kind == SYMLINK:
        return blake3.blake3(entry.target).hexdigest()
    return blake3.blake3(f"{entry.kind}:{entry.rdev}".encode()).hexdigest()


@dataclass(frozen=True)
class Version(Generic[S]):
    """One run of snapshots holding the same content at the path (``number`` counts from 1)."""

    number: int
    content_id: str
    kind: str
    size: int
    mtime_ns: int
    first: S
    last: S
    snapshots: int
    same_as: int | None = None  # number of an earlier version with the same content


@dataclass(frozen=True)
class VersionHistory(Generic[S]):
    """Every version of a path, oldest first, and how many snapshots were looked at."""

    versions: tuple[Version[S], ...]
    searched: int
    present: int

    @property
    def absent(self) -> int:
        return self.searched - self.present

    @property
    def distinct(self) -> int:
        """How many different contents (reverts counted once)."""
        return sum(1 for v in self.versions if v.same_as is None)


def collect_versions(observations: Iterable[tuple[S, Entry | None]]) -> VersionHistory[S]:
    """Collapse ``(snapshot, entry or None)`` pairs, oldest first, into versions."""
    versions: list[Version[S]] = []
    first_number: dict[str, int] = {}
    current: Version[S] | None = None
    searched = present = 0
    for snap, entry in observations:
        searched += 1
        if entry is None:
            if current is not None:
                versions.append(current)
                current = None
            continue
        present += 1
        ident = content_id(entry)
        if current is not None and current.content_id == ident and current.kind == entry.kind:
            current = Version(current.number, ident, entry.kind, current.size, current.mtime_ns,
                              current.first, snap, current.snapshots + 1, current.same_as)
            continue
        if current is not None:
            versions.append(current)
        number = len(versions) + 1
        same_as = first_number.get(f"{entry.kind}:{ident}")
        first_number.setdefault(f"{entry.kind}:{ident}", number)
        size = entry.size if entry.kind in (FILE, SYMLINK) else 0
        current = Version(number, ident, entry.kind, size, entry.mtime_ns, snap, snap, 1, same_as)
    if current is not None:
        versions.append(current)
    return VersionHistory(tuple(versions), searched, present)
