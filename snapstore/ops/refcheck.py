"""Recounting references from scratch, to check the stored refcounts (verify, tests).

The fresh count replays :func:`snapstore.repo.refcount.add_reference` for every snapshot's root
on a store that starts at zero for every indexed blob, so it means exactly what the stored
counts mean.
"""

from __future__ import annotations

from snapstore.format.packfile import TYPE_TREE
from snapstore.repo.refcount import add_reference
from snapstore.repo.repository import Repository


class _FreshCounts:
    def __init__(self, types: dict[bytes, int]) -> None:
        self.types = types
        self.counts: dict[bytes, int] = dict.fromkeys(types, 0)
        self.missing: set[bytes] = set()

    def count(self, blob_id: bytes) -> int:
        if blob_id not in self.counts:
            self.missing.add(blob_id)
            self.counts[blob_id] = 0
        return self.counts[blob_id]

    def set_count(self, blob_id: bytes, value: int) -> None:
        self.counts[blob_id] = value

    def is_tree(self, blob_id: bytes) -> bool:
        return self.types.get(blob_id) == TYPE_TREE


def recount(repo: Repository) -> tuple[dict[bytes, int], dict[bytes, int], set[bytes]]:
    """``(stored, fresh, missing)``: refcounts as stored (in the index and its ``lost``
    table), as recounted, and ids referenced but not indexed."""
    stored: dict[bytes, int] = {}
    types: dict[bytes, int] = {}
    from snapstore.format.snapshot import Snapshot

    with repo.index.read() as txn:  # one transaction: counts and snapshots from the same commit
        for blob_id, loc in repo.index.iter_chunks(txn):
            stored[blob_id] = loc.refcount
            types[blob_id] = loc.type
        for blob_id, count in repo.index.iter_lost(txn):  # referenced blobs in no pack count too
            stored[blob_id] = count
        snapshots = [Snapshot.from_bytes(raw) for raw in repo.index.snapshot_records(txn)]
    fresh = _FreshCounts(types)

    def children(tree_id: bytes) -> list[bytes]:
        if tree_id in fresh.missing:
            return []
        return repo.tree_children(tree_id)

    for snap in snapshots:
        add_reference(fresh, bytes.fromhex(snap.root), children)
    return stored, fresh.counts, fresh.missing


def refcount_mismatches(repo: Repository) -> list[tuple[bytes, int, int]]:
    """``(id, stored, fresh)`` for every blob whose stored count is wrong."""
    stored, fresh, _missing = recount(repo)
    return [(k, stored.get(k, 0), fresh.get(k, 0)) for k in sorted(set(stored) | set(fresh))
            if stored.get(k, 0) != fresh.get(k, 0)]
