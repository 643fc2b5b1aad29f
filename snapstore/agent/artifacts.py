"""Required artifacts: the paths a tier's snapshot must hold (seed 000's monthly check,
"validate required artifacts exist in archive", without ``tar -tzf | grep``).

A tier's ``required`` lists paths inside its snapshots (``orchestrator_config.json``,
``knowledge-packs``) or globs meaning what an ``--exclude`` glob means
(``agents/*/priority_weights.json``: at least one match). :func:`missing_artifacts` says which
are absent from a snapshot; a take checks its new snapshot (a miss fails it after the commit,
with an alert), ``snap verify`` the newest snapshot of every tier that has them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from snapstore.errors import PathNotFound
from snapstore.format.snapshot import Snapshot
from snapstore.ops.find import Finder
from snapstore.view.vfs import SnapshotView


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def missing_artifacts(view: SnapshotView, snap: Snapshot, required: Sequence[str]) -> list[str]:
    """The entries of ``required`` that ``snap`` does not hold, in the order given."""
    missing = []
    for pattern in required:
        if _is_glob(pattern):
            if next(Finder(view, pattern).find([snap]), None) is None:
                missing.append(pattern)
            continue
        try:
            view.lookup(snap, pattern.strip("/"))
        except PathNotFound:
            missing.append(pattern)
    return missing


@dataclass(frozen=True)
class ArtifactProblem:
    """A snapshot that lacks some of its tier's required artifacts."""

    snapshot: Snapshot
    missing: tuple[str, ...]

    @property
    def message(self) -> str:
        snap = self.snapshot
        return (f"snapshot {snap.short_id} ({snap.tier}, {snap.time:%Y-%m-%d %H:%M:%S} UTC) lacks the tier's "
                f"required artifact(s): {', '.join(self.missing)}")

    def to_json(self) -> dict[str, object]:
        return {"kind": "required_missing", "snapshot": self.snapshot.id, "tier": self.snapshot.tier,
                "missing": list(self.missing), "message": self.message}


def check_newest(view: SnapshotView, snaps: Iterable[Snapshot], required: dict[str, Sequence[str]]
                 ) -> list[ArtifactProblem]:
    """The newest complete snapshot of each tier in ``required`` (tier -> its required list),
    checked: one problem per snapshot that lacks any."""
    newest: dict[str, Snapshot] = {}
    for snap in sorted(snaps, key=lambda s: (s.time, s.id)):
        if snap.tier in required and required[snap.tier] and not snap.incomplete:
            newest[snap.tier] = snap
    problems = []
    for tier in sorted(newest):
        missing = missing_artifacts(view, newest[tier], required[tier])
        if missing:
            problems.append(ArtifactProblem(newest[tier], tuple(missing)))
    return problems
