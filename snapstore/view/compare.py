"""Picking what to compare and running the comparison over a repository: shared by ``snap diff``
and the web UI's diff page, so both choose the same pair and show the same changes.

:func:`pick_pair` chooses (old, new) from one or two snapshot specs; :func:`iter_changes` runs
:func:`snapstore.view.diff.diff_entries` under some paths (all looked up before the first
change, so a wrong path fails before any output); :func:`content_of` compares a modified file's
two contents (text, JSON key level, or a note).
"""

from __future__ import annotations

from collections.abc import Iterator

from snapstore.errors import PathNotFound, SnapshotNotFound
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import FILE, Entry
from snapstore.repo.repository import Repository
from snapstore.view.diff import MODIFIED, Change, ContentDiff, compare_content, diff_entries, too_large
from snapstore.view.selectors import resolve_snapshot
from snapstore.view.vfs import SnapshotView, show_path


def pick_pair(repo: Repository, spec_a: str, spec_b: str | None, *, host: str | None = None
              ) -> tuple[Snapshot, Snapshot]:
    """(old, new): A and B as given; without B, A against the newest of its tier, or the
    previous snapshot of the tier against A when A is the newest (``host``: among that host's)."""
    a = resolve_snapshot(repo, spec_a, host=host)
    if spec_b is not None:
        return a, resolve_snapshot(repo, spec_b, host=host)
    tier = [s for s in repo.snapshots() if s.tier == a.tier and (host is None or s.hostname == host)]
    if tier[-1].id != a.id:
        return a, tier[-1]
    if len(tier) < 2:
        raise SnapshotNotFound(f"snapshot {a.short_id} is the only one in tier {a.tier!r}; "
                               "give a second snapshot to compare with")
    return tier[-2], a


def lookup_or_none(view: SnapshotView, snap: Snapshot, path: bytes | str) -> Entry | None:
    try:
        return view.lookup(snap, path)
    except PathNotFound:
        return None


def iter_changes(view: SnapshotView, old: Snapshot, new: Snapshot, paths: list[bytes]) -> Iterator[Change]:
    """The changes under each path (all paths are looked up before the first change)."""
    pairs: list[tuple[bytes, Entry | None, Entry | None]] = []
    for path in paths:
        a, b = lookup_or_none(view, old, path), lookup_or_none(view, new, path)
        if a is None and b is None:
            raise PathNotFound(f"path not in snapshot {old.short_id} nor in {new.short_id}: {show_path(path)}")
        pairs.append((path, a, b))

    def run() -> Iterator[Change]:
        for path, a, b in pairs:
            yield from diff_entries(view.repo.read_tree, path, a, b, is_root=(path == b""))

    return run()


def content_of(view: SnapshotView, change: Change, cap: int) -> ContentDiff | None:
    """The content comparison of a modified file (None for other changes)."""
    old, new = change.old, change.new
    if change.kind != MODIFIED or old is None or new is None or old.kind != FILE:
        return None
    big = too_large(old.size, new.size, cap)
    if big is not None:
        return big
    return compare_content(change.path, view.read(old, 0, old.size), view.read(new, 0, new.size))
