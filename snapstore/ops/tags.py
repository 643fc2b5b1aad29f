"""``snap tag``: change a snapshot's tags, which means replacing its record.

A record names itself (its id is the hash of its body, tags included), so new tags make a new
record with a new id, as restic's ``tag`` does; the new record keeps everything else (time,
tier, root tree, stats, approval) and names the id it was first taken under in ``original``.

Order, so that a kill at any point loses no snapshot and leaves the counts right:

1. the new record is committed like a take's (record file, then one index transaction that
   adds one reference to the same root tree: nothing else is counted or stored);
2. a pin moves to the new id;
3. the old snapshot is forgotten (its intent first, see ``Repository.forget``), which drops
   the old reference: the root's count is back to what it was.

Killed after 1 or 2, both records exist (the same tree, counted twice, correctly); running the
same ``snap tag`` again makes the same new record (same body, same id: nothing to add) and
forgets the old one. Killed in 3, the next command finishes the forget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from snapstore import faults
from snapstore.format.snapshot import Snapshot
from snapstore.repo.repository import Repository


@dataclass(frozen=True)
class Retag:
    """What ``snap tag`` did to one snapshot (``new`` is ``old`` when its tags did not change)."""

    old: Snapshot
    new: Snapshot
    pinned: bool

    @property
    def changed(self) -> bool:
        return self.new.id != self.old.id


def new_tags(tags: Sequence[str], *, add: Sequence[str] = (), remove: Sequence[str] = (),
             set_to: Sequence[str] | None = None) -> tuple[str, ...]:
    """``tags`` with ``set_to`` replacing them (when given), then ``remove`` dropped and ``add``
    appended (each once, in order)."""
    out = list(dict.fromkeys(set_to if set_to is not None else tags))
    out = [t for t in out if t not in set(remove)]
    out += [t for t in dict.fromkeys(add) if t not in out]
    return tuple(out)


def retag(repo: Repository, snap: Snapshot, tags: tuple[str, ...]) -> Retag:
    """Give ``snap`` the tags ``tags`` (see the module docstring for the order of the writes)."""
    pinned = snap.id in repo.index.pinned()
    if tuple(tags) == tuple(snap.tags):
        return Retag(snap, snap, pinned)
    new = repo.snapshot_with_id(replace(snap, tags=tuple(tags), original=snap.original or snap.id, id=""))
    repo.commit_snapshot(new, packs=(), new_trees={}, files={})
    faults.crash_point("tag-after-new")
    if pinned:
        repo.set_pin(new, True)
    repo.forget([snap])
    if pinned:
        repo.set_pin(snap, False)  # the old id out of pins.json too
    return Retag(snap, new, pinned)
