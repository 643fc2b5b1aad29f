"""Hierarchical reference counting, as pure arithmetic over a counter store.

What a count means: the number of references to an object from snapshots (to their root tree)
and from *live* trees (to subtrees and chunks, with multiplicity). A tree's own references
are counted only while the tree is live (count > 0): when a tree goes 0 -> 1 its children are
incremented, when it goes 1 -> 0 they are decremented. So a subtree shared by many snapshots
is touched once per snapshot, not walked, and the cost of a forget is what it frees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class CountStore(Protocol):
    def count(self, blob_id: bytes) -> int:
        """The stored count; raises KeyError for an unknown id."""

    def set_count(self, blob_id: bytes, value: int) -> None: ...

    def is_tree(self, blob_id: bytes) -> bool: ...


Children = Callable[[bytes], list[bytes]]


def add_reference(store: CountStore, root: bytes, children: Children) -> None:
    """Count one more reference to ``root`` (and, if it comes alive, to what it references)."""
    stack = [root]
    while stack:
        blob_id = stack.pop()
        value = store.count(blob_id)
        store.set_count(blob_id, value + 1)
        if value == 0 and store.is_tree(blob_id):
            stack.extend(children(blob_id))


def drop_reference(store: CountStore, root: bytes, children: Children) -> list[bytes]:
    """Count one reference less to ``root``; returns the ids whose count reached zero."""
    freed: list[bytes] = []
    stack = [root]
    while stack:
        blob_id = stack.pop()
        value = store.count(blob_id)
        if value <= 0:
            # Already dead: the index was repaired or an earlier gc was interrupted.
            continue
        store.set_count(blob_id, value - 1)
        if value == 1:
            freed.append(blob_id)
            if store.is_tree(blob_id):
                stack.extend(children(blob_id))
    return freed
