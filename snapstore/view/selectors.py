"""Snapshot selectors: the words every command accepts where a snapshot is named.

Grammar (documented in docs/cli.md, "Naming a snapshot")::

    SELECTOR  := BASE [ "@" PATH ]
    BASE      := ID-PREFIX | "latest" | "latest:" TIER { "," TIER }

``ID-PREFIX`` is a hex prefix of a snapshot id (unique, or the command fails). ``latest`` is
the newest snapshot; ``latest:daily,weekly`` the newest of those tiers. ``@PATH`` keeps only
snapshots whose tree holds PATH (a path inside the snapshot, ``agents/Z``): ``latest@agents/Z``
is "the newest snapshot that contains agents/Z", ``latest:daily,weekly@agents/Z/memory`` the
newest daily or weekly one that does. On an id prefix ``@PATH`` is a check: the snapshot must
hold PATH. Tier names cannot contain ``@``, ``,`` or ``:`` (see the config's tier pattern), so
the first ``@`` always starts the path.

The caller may narrow further by host and by time (``before``). :func:`select_snapshots`
gives every match newest first (recovery walks it to try older snapshots);
:func:`resolve_snapshot` the one a command acts on. ``Repository.resolve`` stays the simple
base (id prefix, ``latest``, ``latest:TIER``) that needs no trees.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from snapstore.errors import AmbiguousSnapshot, PathNotFound, SnapshotNotFound
from snapstore.format.snapshot import Snapshot
from snapstore.repo.repository import Repository
from snapstore.view.vfs import SnapshotView, as_bytes_path, show_path

SELECTOR_HELP = "an id prefix, 'latest', 'latest:TIER[,TIER...]', each optionally '@PATH' (holding PATH)"
_TIER = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class Selector:
    """A parsed selector: an id prefix or "latest", tiers (empty: any), a path it must hold."""

    text: str
    id_prefix: str | None = None
    tiers: tuple[str, ...] = ()
    containing: bytes | None = None

    def describe(self) -> str:
        """The selector in words, for "no snapshot ..." messages."""
        parts = []
        if self.id_prefix is not None:
            parts.append(f"with id {self.id_prefix!r}")
        if self.tiers:
            parts.append(("in tier " if len(self.tiers) == 1 else "in tiers ") + " or ".join(self.tiers))
        if self.containing is not None:
            parts.append(f"containing {show_path(self.containing) or '/'}")
        return " ".join(parts)


def parse_selector(spec: str) -> Selector:
    """Parse ``spec``; a malformed one is ``SnapshotNotFound`` saying what is accepted."""
    base, at, path = spec.partition("@")
    containing = as_bytes_path(path) if at else None
    if at and not containing:
        raise SnapshotNotFound(f"no snapshot {spec!r}: '@' wants a path after it ({SELECTOR_HELP})")
    if base == "latest":
        return Selector(spec, containing=containing)
    if base.startswith("latest:"):
        tiers = tuple(base[len("latest:"):].split(","))
        bad = [t for t in tiers if not _TIER.fullmatch(t)]
        if bad:
            raise SnapshotNotFound(f"no snapshot {spec!r}: {bad[0]!r} is not a tier name ({SELECTOR_HELP})")
        return Selector(spec, tiers=tuple(dict.fromkeys(tiers)), containing=containing)
    prefix = base.lower()
    if not prefix or any(c not in "0123456789abcdef" for c in prefix):
        raise SnapshotNotFound(f"no snapshot {spec!r} (use {SELECTOR_HELP})")
    return Selector(spec, id_prefix=prefix, containing=containing)


def contains(view: SnapshotView, snap: Snapshot, path: bytes) -> bool:
    """Whether ``snap``'s tree holds ``path``."""
    try:
        view.lookup(snap, path)
    except PathNotFound:
        return False
    return True


def select_snapshots(view: SnapshotView, snaps: Iterable[Snapshot], selector: Selector, *,
                     host: str | None = None, before: datetime | None = None) -> list[Snapshot]:
    """Every snapshot the selector (and ``host``, ``before``: strictly older) matches, newest first.
    Trees are read only for ``@PATH``, and only of snapshots that pass the other filters."""
    chosen = [s for s in snaps
              if (host is None or s.hostname == host) and (before is None or s.time < before)
              and (not selector.tiers or s.tier in selector.tiers)
              and (selector.id_prefix is None or s.id.startswith(selector.id_prefix))
              and (selector.id_prefix is not None or not s.incomplete)]  # "latest" passes over incomplete ones
    chosen.sort(key=lambda s: (s.time, s.id), reverse=True)
    if selector.containing is None:
        return chosen
    path = selector.containing
    return [s for s in chosen if contains(view, s, path)]


def resolve_snapshot(repo: Repository, spec: str, *, host: str | None = None, before: datetime | None = None,
                     view: SnapshotView | None = None) -> Snapshot:
    """The one snapshot ``spec`` names (see the module docstring)."""
    selector = parse_selector(spec)
    if selector.containing is None and len(selector.tiers) <= 1 and host is None and before is None:
        return repo.resolve(selector.text)  # the simple base, its messages unchanged
    view = view or SnapshotView(repo)
    if selector.id_prefix is not None:
        by_id = [s for s in repo.snapshots() if s.id.startswith(selector.id_prefix)]
        if len(by_id) > 1:
            ids = ", ".join(s.short_id for s in by_id[:5])
            raise AmbiguousSnapshot(f"snapshot id {selector.id_prefix!r} is ambiguous ({len(by_id)} match: {ids}...)")
        if by_id and selector.containing is not None and not contains(view, by_id[0], selector.containing):
            raise PathNotFound(f"snapshot {by_id[0].short_id} does not contain {show_path(selector.containing)}")
    found = select_snapshots(view, repo.snapshots(), selector, host=host, before=before)
    if not found:
        extra = (f" from host {host!r}" if host else "") + (f" before {before:%Y-%m-%d %H:%M:%S} UTC" if before else "")
        raise SnapshotNotFound(f"no snapshot {selector.describe()}{extra} in this repository".replace("  ", " "))
    return found[0]
