"""``snap restore --mirror``: a true rollback of the restored paths.

``--overwrite`` replaces the files a snapshot has and leaves everything else; ``--mirror``
makes each restored path end equal to the snapshot's tree: what is there and not in the
snapshot (a rogue ``skills/bad/evil.py`` added since the backup) is **moved aside** to
``TARGET/.snap-aside/restore-<UTC time>/`` under its own path, never deleted, and then the
snapshot is restored over the rest with ``--overwrite``.

Only what the snapshot's tier covers is touched: a path outside every source the snapshot
recorded (a daily snapshot of ``agents/*/memory`` does not cover ``agents/Z/SOUL.md``, nor the
caches and logs a tier does not back up) is left alone. Directories named ``.snap-aside`` are
never moved. Planned first (:func:`plan_mirror`, which reads but changes nothing), then the
moves and the restore.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from snapstore import clock
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import DIR, Entry
from snapstore.ops.backup import ASIDE_DIR_NAME
from snapstore.ops.restore import RestoreStats, check_target, restore_snapshot
from snapstore.view.vfs import SnapshotView, as_bytes_path, show_path


def source_members(view: SnapshotView, snap: Snapshot) -> list[bytes]:
    """Where each source the snapshot recorded sits in its tree. A source path was stored either
    relative to the directory the take ran from, or absolute without its leading ``/``: so its
    place is the longest suffix of the recorded path that the tree holds (none: the root)."""
    out: list[bytes] = []
    for recorded in snap.paths:
        parts = [p for p in os.fsencode(recorded).split(b"/") if p]
        found = b""
        for start in range(len(parts)):
            candidate = b"/".join(parts[start:])
            try:
                view.lookup(snap, candidate)
            except Exception:  # PathNotFound, or a component that is not a directory
                continue
            found = candidate
            break
        out.append(found)
    return out


def _covered(rel: bytes, members: list[bytes]) -> str:
    """'inside' a source, 'above' one (a directory on the way to a source), or 'outside'."""
    for m in members:
        if m == b"" or rel == m or rel.startswith(m + b"/"):
            return "inside"
    if any(m.startswith(rel + b"/") for m in members):
        return "above"
    return "outside"


@dataclass
class MirrorPlan:
    aside: str  # where the extra entries go
    moves: list[bytes] = field(default_factory=list)  # paths relative to the target

    def to_json(self) -> dict[str, object]:
        return {"aside": self.aside if self.moves else None, "moved_aside": [show_path(m) for m in self.moves]}


def plan_mirror(view: SnapshotView, snap: Snapshot, paths: list[str], target: str) -> MirrorPlan:
    """What ``--mirror`` would move aside (reads the live tree and the snapshot, changes nothing)."""
    root_dir = os.fsencode(os.path.abspath(target))
    plan = MirrorPlan(os.path.join(os.path.abspath(target), ASIDE_DIR_NAME.decode(),
                                   f"restore-{clock.format_path_time(clock.now())}"))
    members = source_members(view, snap)
    roots = [as_bytes_path(p) for p in paths] or [b""]
    for rel in roots:
        view.lookup(snap, rel)  # a path the snapshot lacks: PathNotFound before anything moves
    roots = [r for r in sorted(set(roots)) if not any(r != o and (o == b"" or r.startswith(o + b"/")) for o in roots)]

    def visit(rel: bytes, entry: Entry) -> Iterator[bytes]:
        live = os.path.join(root_dir, rel) if rel else root_dir
        try:
            names = sorted(os.listdir(live))
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            if name == ASIDE_DIR_NAME:
                continue
            child_rel = rel + b"/" + name if rel else name
            where = _covered(child_rel, members)
            if where == "outside":
                continue  # the tier does not back it up: not ours to roll back
            child = view.child(entry, name)
            is_dir = os.path.isdir(os.path.join(live, name)) and not os.path.islink(os.path.join(live, name))
            if child is None or (child.kind == DIR) != is_dir:
                if where == "inside":
                    yield child_rel
                continue
            if is_dir:
                yield from visit(child_rel, child)

    for rel in roots:
        entry = view.lookup(snap, rel)
        live = os.path.join(root_dir, rel) if rel else root_dir
        if entry.kind == DIR and os.path.isdir(live) and not os.path.islink(live):
            plan.moves.extend(visit(rel, entry))
    return plan


@dataclass(frozen=True)
class MirrorResult:
    stats: RestoreStats
    plan: MirrorPlan


def mirror_restore(view: SnapshotView, snap: Snapshot, paths: list[str], target: str, *,
                   progress: Callable[[dict[str, object]], None] | None = None) -> MirrorResult:
    """Move aside what the snapshot lacks within ``paths`` (all of it when empty), then restore."""
    check_target(target, overwrite=True)
    plan = plan_mirror(view, snap, paths, target)
    root_dir = os.fsencode(os.path.abspath(target))
    aside = os.fsencode(plan.aside)
    for rel in plan.moves:
        dest = os.path.join(aside, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.rename(os.path.join(root_dir, rel), dest)  # same filesystem: the aside dir is in the target
    stats = restore_snapshot(view, snap, paths, target, overwrite=True, progress=progress)
    return MirrorResult(stats, plan)
