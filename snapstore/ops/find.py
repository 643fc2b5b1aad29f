"""``snap find``: which snapshots hold a path matching a glob, with sizes and times (restic's find).

A pattern means what an ``--exclude`` pattern means (:mod:`snapstore.ops.excludes`): a shell
glob matched against an item's name and against its path in the snapshot, so ``*.json``
finds every JSON file and ``agents/*/priority_weights.json`` those paths.

Cost: snapshots share most of their trees, so the matches below a directory are computed
once per (tree id, path) and reused by every snapshot holding that same directory at that
same path; a day's new snapshot costs only the directories that changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import DIR, KIND_NAMES, Entry
from snapstore.ops.excludes import Excludes
from snapstore.view.vfs import SnapshotView, show_path


@dataclass(frozen=True)
class Found:
    """One matching item of one snapshot."""

    snapshot: Snapshot
    path: bytes
    entry: Entry

    def to_json(self) -> dict[str, object]:
        snap, entry = self.snapshot, self.entry
        return {"snapshot": snap.id, "short_id": snap.short_id, "time": snap.summary()["time"], "tier": snap.tier,
                "hostname": snap.hostname, "path": show_path(self.path), "type": KIND_NAMES[entry.kind],
                "size": entry.size, "mtime_ns": entry.mtime_ns}


class Finder:
    """Matches of one pattern, memoised per (tree id, path) across snapshots."""

    def __init__(self, view: SnapshotView, pattern: str) -> None:
        self.view = view
        self.pattern = Excludes([pattern])
        self._memo: dict[tuple[bytes, bytes], list[tuple[bytes, Entry]]] = {}

    def _below(self, tree_id: bytes, prefix: bytes) -> list[tuple[bytes, Entry]]:
        key = (tree_id, prefix)
        found = self._memo.get(key)
        if found is not None:
            return found
        found = []
        for child in self.view.repo.read_tree(tree_id):
            path = prefix + b"/" + child.name if prefix else child.name
            if self.pattern.match(path, child.name):
                found.append((path, child))
            if child.kind == DIR:
                found.extend(self._below(child.subtree, path))
        self._memo[key] = found
        return found

    def find(self, snaps: Iterable[Snapshot]) -> Iterator[Found]:
        """Every match in each of ``snaps`` (in their order), depth first in name order."""
        for snap in snaps:
            for path, entry in self._below(bytes.fromhex(snap.root), b""):
                yield Found(snap, path, entry)
