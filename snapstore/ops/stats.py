"""Storage figures of a repository: logical and stored bytes, dedup and compression, per snapshot,
per tier and per path, and what forgetting snapshots would free.

The figures (docs/cli.md defines them for users):

- *logical* bytes: the sizes of the files, counted once per snapshot and per path that holds
  them (what restoring every snapshot would write);
- *raw* bytes: the uncompressed bytes of the distinct data chunks those files are made of;
- *stored* bytes: the compressed bytes of the distinct blobs (data chunks and trees) as they sit
  in packs, whole blobs only (a blob's payload as the index records it: compressed, and
  padded or sealed when the repository does so; pack headers and tables are not counted);
- *dedup* factor = logical / raw, *compression* factor = raw / stored data bytes, *total* =
  logical / stored;
- what a snapshot *added*: the stored bytes of the blobs it references that no older
  snapshot (of any tier) references; the figures of a repository are the sum of these;
- what forgetting a snapshot (or a set) would *free*: the stored bytes of the blobs only it
  references, found by running the hierarchical refcount drop of
  :func:`snapstore.repo.refcount.drop_reference` on a copy-on-write overlay of the index's
  counts (nothing is written). It is what ``gc`` could reclaim, before any repacking of packs
  that stay partly live.

Everything is computed from trees and blob sizes through two callables (``TreeReader``:
tree id -> entries, ``BlobSizes``: blob id -> :class:`BlobSize` or None), so the walks are pure
functions tested against dicts; :func:`repository_stats` and :func:`path_usage_of` bind them to a
:class:`~snapstore.repo.repository.Repository` through its public read methods only (it works
the same on every kind of repository). :func:`usage_by_path` is the one implementation of
"sizes by directory" (``snap stats --by path`` today, a ``snap du`` tomorrow).

Cost: a walk reads each distinct tree once (a subtree id met again is not descended: its
logical size is remembered) and keeps a set of the distinct blob ids it met, about 100 bytes
each (a million chunks: ~100 MB). A forget simulation costs what it would free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from snapstore.clock import format_time
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import DIR, FILE, Entry
from snapstore.repo.refcount import drop_reference

TreeReader = Callable[[bytes], list[Entry]]


@dataclass(frozen=True, slots=True)
class BlobSize:
    """What one blob costs: its uncompressed and its stored length, and whether it is a tree."""

    raw: int
    stored: int
    tree: bool = False


BlobSizes = Callable[[bytes], BlobSize | None]


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


@dataclass
class Usage:
    """Figures of a set of snapshots (or of one path in them); see the module docstring."""

    snapshots: int = 0
    files: int = 0  # file entries, counted once per snapshot that holds them
    logical_bytes: int = 0
    chunks: int = 0  # distinct data chunks
    raw_bytes: int = 0  # their uncompressed bytes
    stored_bytes: int = 0  # distinct blobs (data and trees), as stored
    tree_bytes: int = 0  # the trees' share of stored_bytes
    missing: int = 0  # referenced blobs the index does not know (a damaged repository)

    @property
    def data_bytes(self) -> int:
        return self.stored_bytes - self.tree_bytes

    @property
    def dedup(self) -> float | None:
        return _ratio(self.logical_bytes, self.raw_bytes)

    @property
    def compression(self) -> float | None:
        return _ratio(self.raw_bytes, self.data_bytes)

    @property
    def total(self) -> float | None:
        return _ratio(self.logical_bytes, self.stored_bytes)

    def add(self, other: Usage) -> None:
        for name in ("snapshots", "files", "logical_bytes", "chunks", "raw_bytes", "stored_bytes",
                     "tree_bytes", "missing"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_json(self) -> dict[str, Any]:
        return {"snapshots": self.snapshots, "files": self.files, "logical_bytes": self.logical_bytes,
                "chunks": self.chunks, "raw_bytes": self.raw_bytes, "stored_bytes": self.stored_bytes,
                "data_bytes": self.data_bytes, "tree_bytes": self.tree_bytes, "dedup": self.dedup,
                "compression": self.compression, "total": self.total,
                **({"missing_blobs": self.missing} if self.missing else {})}


class BlobWalker:
    """Walks trees and counts each distinct blob once across every tree it is given.

    ``logical`` (tree id -> (files, logical bytes) below it) may be shared between walkers: it
    depends on the tree alone."""

    def __init__(self, read_tree: TreeReader, sizes: BlobSizes,
                 logical: dict[bytes, tuple[int, int]] | None = None) -> None:
        self.read_tree = read_tree
        self.sizes = sizes
        self.logical = {} if logical is None else logical
        self.seen: set[bytes] = set()  # blob ids (trees and chunks) already counted

    def _count(self, blob_id: bytes, usage: Usage) -> None:
        size = self.sizes(blob_id)
        if size is None:
            usage.missing += 1
            return
        usage.stored_bytes += size.stored
        if size.tree:
            usage.tree_bytes += size.stored
        else:
            usage.chunks += 1
            usage.raw_bytes += size.raw

    def add_entry(self, entry: Entry) -> Usage:
        """The figures ``entry`` (a file or a directory) brings that earlier calls did not:
        stored and raw bytes of the blobs first met here; files and logical bytes in full."""
        usage = Usage()
        if entry.kind == FILE:
            usage.files, usage.logical_bytes = 1, entry.size
            for blob_id in entry.chunk_ids():
                if blob_id not in self.seen:
                    self.seen.add(blob_id)
                    self._count(blob_id, usage)
        elif entry.kind == DIR:
            usage.files, usage.logical_bytes = self._add_tree(entry.subtree, usage)
        return usage

    def _add_tree(self, root: bytes, usage: Usage) -> tuple[int, int]:
        """Count the new blobs below ``root``; returns (files, logical bytes) of the whole tree.
        Post-order over an explicit stack (deep trees do not hit the recursion limit)."""
        stack: list[tuple[bytes, bool]] = [(root, False)]
        while stack:
            tree_id, expanded = stack.pop()
            if expanded:
                files = logical = 0
                for e in self.read_tree(tree_id):
                    if e.kind == FILE:
                        files, logical = files + 1, logical + e.size
                    elif e.kind == DIR:
                        sub = self.logical.get(e.subtree, (0, 0))
                        files, logical = files + sub[0], logical + sub[1]
                self.logical[tree_id] = (files, logical)
                continue
            if tree_id in self.seen:
                # counted, and its logical size known: a tree is finished (post-order) before
                # anything pushed before it is looked at, and it cannot contain itself
                continue
            self.seen.add(tree_id)
            self._count(tree_id, usage)
            entries = self.read_tree(tree_id)
            stack.append((tree_id, True))
            for e in entries:
                if e.kind == DIR:
                    stack.append((e.subtree, False))
                elif e.kind == FILE:
                    for blob_id in e.chunk_ids():
                        if blob_id not in self.seen:
                            self.seen.add(blob_id)
                            self._count(blob_id, usage)
        return self.logical.get(root, (0, 0))

    def add_root(self, root: bytes) -> Usage:
        """:meth:`add_entry` for a snapshot's root tree (counts one snapshot)."""
        usage = Usage(snapshots=1)
        usage.files, usage.logical_bytes = self._add_tree(root, usage)
        return usage


# -- what forgetting would free -----------------------------------------------------------
class _OverlayCounts:
    """The refcount store of :mod:`snapstore.repo.refcount` over read-only counts: changes stay
    in a dict, so a forget can be simulated without writing anything. An id the index does not
    know counts 0 (nothing to free there)."""

    def __init__(self, count_of: Callable[[bytes], tuple[int, bool] | None]) -> None:
        self.count_of = count_of
        self.changed: dict[bytes, int] = {}
        self._tree: dict[bytes, bool] = {}

    def _load(self, blob_id: bytes) -> int:
        found = self.count_of(blob_id)
        if found is None:
            self.changed[blob_id] = 0
            self._tree[blob_id] = False
            return 0
        self._tree[blob_id] = found[1]
        return found[0]

    def count(self, blob_id: bytes) -> int:
        value = self.changed.get(blob_id)
        return self._load(blob_id) if value is None else value

    def set_count(self, blob_id: bytes, value: int) -> None:
        self.changed[blob_id] = value

    def is_tree(self, blob_id: bytes) -> bool:
        if blob_id not in self._tree:
            self._load(blob_id)
        return self._tree[blob_id]


def forget_frees(roots: Iterable[bytes], count_of: Callable[[bytes], tuple[int, bool] | None],
                 children: Callable[[bytes], list[bytes]]) -> list[bytes]:
    """Ids of the blobs that forgetting the snapshots with these root trees would leave
    unreferenced (``count_of``: id -> (refcount, is tree) or None; ``children``: a tree's
    references with multiplicity). Pure over its callables; nothing is written."""
    overlay = _OverlayCounts(count_of)
    freed: list[bytes] = []
    for root in roots:
        freed.extend(drop_reference(overlay, root, children))
    return freed


def sum_stored(blob_ids: Iterable[bytes], sizes: BlobSizes) -> int:
    total = 0
    for blob_id in blob_ids:
        size = sizes(blob_id)
        if size is not None:
            total += size.stored
    return total


# -- growth ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotFigures:
    """One snapshot: its logical size, what it added when it came (given the older snapshots
    now in the repository) and what forgetting it alone would free."""

    snapshot: Snapshot
    files: int
    logical_bytes: int
    added_stored: int
    added_raw: int
    frees: int | None  # None when not computed
    pinned: bool = False

    def to_json(self) -> dict[str, Any]:
        s = self.snapshot
        return {"id": s.id, "short_id": s.short_id, "time": format_time(s.time), "tier": s.tier,
                "tags": list(s.tags), "hostname": s.hostname, "pinned": self.pinned, "files": self.files,
                "logical_bytes": self.logical_bytes, "added_stored_bytes": self.added_stored,
                "added_raw_bytes": self.added_raw, "forget_frees_bytes": self.frees}


def growth(snapshots: Sequence[Snapshot], walker: BlobWalker) -> list[tuple[Snapshot, Usage]]:
    """Oldest first: each snapshot with the figures it added to those before it (``walker``
    carries what was met; give it a fresh one to start from an empty repository)."""
    ordered = sorted(snapshots, key=lambda s: (s.time, s.id))
    return [(snap, walker.add_root(bytes.fromhex(snap.root))) for snap in ordered]


@dataclass(frozen=True)
class TierFigures:
    """One tier: the figures of its snapshots together, what forgetting all of them would free,
    and how fast it grows (per day, between its first and its last snapshot)."""

    tier: str
    usage: Usage
    frees: int
    first: datetime
    last: datetime
    added_per_day: float | None  # stored bytes its snapshots after the first added, per day
    logical_per_day: float | None  # change of the logical size of its snapshots, per day

    def to_json(self) -> dict[str, Any]:
        return {"tier": self.tier, **self.usage.to_json(), "forget_frees_bytes": self.frees,
                "first": format_time(self.first), "last": format_time(self.last),
                "added_stored_per_day": None if self.added_per_day is None else round(self.added_per_day),
                "logical_per_day": None if self.logical_per_day is None else round(self.logical_per_day)}


def tier_growth(points: Sequence[tuple[Snapshot, int, int]]) -> tuple[float | None, float | None]:
    """(added stored bytes per day, logical bytes per day) of a tier from its snapshots, oldest
    first, as (snapshot, added stored bytes, logical bytes); None for a single snapshot or
    snapshots all taken at one moment. The first snapshot's own addition is the tier's start, not growth."""
    if len(points) < 2:
        return None, None
    days = (points[-1][0].time - points[0][0].time).total_seconds() / 86400
    if days <= 0:
        return None, None
    added = sum(p[1] for p in points[1:])
    return added / days, (points[-1][2] - points[0][2]) / days


# -- by path -------------------------------------------------------------------------------
@dataclass
class PathUsage:
    """The figures of one path (a directory, or a file standing at or above the depth asked),
    over the snapshots that hold it. Blobs are counted once per path: a chunk two paths share
    counts in both, so each path's dedup is its own."""

    path: bytes
    kind: str
    usage: Usage = field(default_factory=Usage)
    unique_bytes: int | None = None  # stored bytes under it that no other snapshot holds (when asked)

    def to_json(self) -> dict[str, Any]:
        out = {"path": self.path.decode("utf-8", "surrogateescape"), "type": "dir" if self.kind == DIR else "file",
               **self.usage.to_json()}
        if self.unique_bytes is not None:
            out["unique_bytes"] = self.unique_bytes
        return out


def _join(prefix: bytes, name: bytes) -> bytes:
    return prefix + b"/" + name if prefix else name


def usage_by_path(read_tree: TreeReader, sizes: BlobSizes, tops: Iterable[Entry | None], *,
                  depth: int = 1, prefix: bytes = b"", freed: set[bytes] | None = None) -> list[PathUsage]:
    """Figures per path ``depth`` levels below ``prefix`` over several snapshots.

    ``tops`` are the entries found at ``prefix`` in each snapshot (None where it is absent).
    Paths are named relative to the snapshot root; a file above the depth is its own path.
    With ``freed`` (the blobs that forgetting those snapshots would free: :func:`forget_frees`)
    each path also gets the stored bytes of the freed blobs below it, what it alone holds.
    Sorted by stored bytes, largest first."""
    logical: dict[bytes, tuple[int, int]] = {}
    walkers: dict[bytes, BlobWalker] = {}
    out: dict[bytes, PathUsage] = {}
    for top in tops:
        if top is None:
            continue
        level: list[tuple[bytes, Entry, int]] = [(prefix, top, 0)]
        while level:
            path, entry, d = level.pop()
            if entry.kind == DIR and d < depth:
                level.extend((_join(path, e.name), e, d + 1) for e in read_tree(entry.subtree)
                             if e.kind in (DIR, FILE))
                continue
            walker = walkers.get(path)
            if walker is None:
                walker = walkers[path] = BlobWalker(read_tree, sizes, logical)
            row = out.get(path)
            if row is None:
                row = out[path] = PathUsage(path, entry.kind)
            got = walker.add_entry(entry)
            got.snapshots = 1
            row.usage.add(got)
    if freed is not None:
        for path, walker in walkers.items():
            out[path].unique_bytes = sum_stored(walker.seen & freed, sizes)
    return sorted(out.values(), key=lambda p: (-p.usage.stored_bytes, p.path))


# -- the report of a repository ---------------------------------------------------------------
@dataclass(frozen=True)
class StatsReport:
    """What ``snap stats`` shows: totals of the chosen snapshots, and the breakdown asked for."""

    totals: Usage
    frees: int  # forgetting all the chosen snapshots
    pack_bytes: int  # every pack file, live or not (what the repository costs in packs)
    all_snapshots: int
    snapshots: list[SnapshotFigures]
    tiers: list[TierFigures]
    paths: list[PathUsage]
    chosen: list[Snapshot]

    def to_json(self, by: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"snapshots_in_repository": self.all_snapshots, "pack_bytes": self.pack_bytes,
                               "totals": {**self.totals.to_json(), "forget_frees_bytes": self.frees}}
        if by in (None, "tier"):
            out["tiers"] = [t.to_json() for t in self.tiers]
        if by == "snapshot":
            out["snapshots"] = [s.to_json() for s in self.snapshots]
        if by == "path":
            out["paths"] = [p.to_json() for p in self.paths]
        return out


class RepoSizes:
    """:data:`BlobSizes` and the count lookup of :func:`forget_frees` over a repository's index."""

    def __init__(self, repo: Any, txn: Any = None) -> None:
        from snapstore.format.packfile import TYPE_TREE

        self.repo = repo
        self.txn = txn  # one read transaction for a whole walk (a lookup each is 10,000 begins)
        self._tree_type = TYPE_TREE

    def __call__(self, blob_id: bytes) -> BlobSize | None:
        loc = self.repo.index.get_chunk(blob_id, self.txn)
        if loc is None:
            return None
        return BlobSize(loc.raw_len, loc.stored_len, loc.type == self._tree_type)

    def count_of(self, blob_id: bytes) -> tuple[int, bool] | None:
        loc = self.repo.index.get_chunk(blob_id)
        return None if loc is None else (loc.refcount, loc.type == self._tree_type)


def snapshot_growth(repo: Any, snapshots: Sequence[Snapshot] | None = None) -> list[tuple[Snapshot, Usage]]:
    """:func:`growth` over a repository (every snapshot when none are given)."""
    with repo.index.read() as txn:
        sizes = RepoSizes(repo, txn)
        return growth(repo.snapshots() if snapshots is None else snapshots, BlobWalker(repo.read_tree, sizes))


def frees_of(repo: Any, snapshots: Iterable[Snapshot]) -> int:
    """Stored bytes that forgetting ``snapshots`` (together) would free."""
    sizes = RepoSizes(repo)
    freed = forget_frees((bytes.fromhex(s.root) for s in snapshots), sizes.count_of, repo.tree_children)
    return sum_stored(freed, sizes)


def path_usage_of(repo: Any, snapshots: Sequence[Snapshot], *, depth: int = 1, prefix: bytes = b"",
                  unique: bool = False) -> list[PathUsage]:
    """:func:`usage_by_path` over snapshots of a repository (``prefix``: a path in them); with
    ``unique``, what each path holds that forgetting these snapshots would free."""
    from snapstore.errors import PathNotFound
    from snapstore.view.vfs import SnapshotView

    view = SnapshotView(repo)

    def top(snap: Snapshot) -> Entry | None:
        try:
            return view.lookup(snap, prefix)
        except PathNotFound:
            return None

    tops = [top(s) for s in snapshots]
    if prefix and snapshots and all(t is None for t in tops):
        raise PathNotFound(f"path not in any of {len(tops)} snapshot(s): {prefix.decode('utf-8', 'replace')}")
    sizes = RepoSizes(repo)
    freed = set(forget_frees((bytes.fromhex(s.root) for s in snapshots), sizes.count_of, repo.tree_children)) \
        if unique else None
    return usage_by_path(repo.read_tree, sizes, tops, depth=depth, prefix=prefix, freed=freed)


def repository_stats(repo: Any, chosen: Sequence[Snapshot] | None = None, *, by: str | None = None,
                     depth: int = 1, prefix: bytes = b"") -> StatsReport:
    """The figures of ``chosen`` (default: every snapshot) in ``repo``, with the breakdown ``by``
    (None: totals and tiers; ``tier``, ``snapshot`` or ``path``)."""
    everything = repo.snapshots()
    picked = everything if chosen is None else sorted({s.id: s for s in chosen}.values(),
                                                      key=lambda s: (s.time, s.id))
    sizes = RepoSizes(repo)
    pinned = repo.index.pinned()
    added: dict[str, Usage] = {}
    if by == "snapshot" or by in (None, "tier"):
        # what each added is relative to every older snapshot: walk them all up to the newest chosen
        newest = (picked[-1].time, picked[-1].id) if picked else None
        history = [s for s in everything if newest is not None and (s.time, s.id) <= newest]
        added = {snap.id: usage for snap, usage in snapshot_growth(repo, history)}
    if chosen is None:
        totals = Usage()
        for usage in added.values():
            totals.add(usage)
        if not added:
            walker = BlobWalker(repo.read_tree, sizes)
            for snap in picked:
                totals.add(walker.add_root(bytes.fromhex(snap.root)))
    else:
        walker = BlobWalker(repo.read_tree, sizes)
        totals = Usage()
        for snap in picked:
            totals.add(walker.add_root(bytes.fromhex(snap.root)))
    report_snaps: list[SnapshotFigures] = []
    if by == "snapshot":
        for snap in picked:
            usage = added[snap.id]
            report_snaps.append(SnapshotFigures(snap, usage.files, usage.logical_bytes, usage.stored_bytes,
                                                usage.raw_bytes, frees_of(repo, [snap]), snap.id in pinned))
    tiers: list[TierFigures] = []
    if by in (None, "tier"):
        names = sorted({s.tier for s in picked})
        for name in names:
            members = [s for s in picked if s.tier == name]
            walker = BlobWalker(repo.read_tree, sizes)
            usage = Usage()
            for snap in members:
                usage.add(walker.add_root(bytes.fromhex(snap.root)))
            per_day = tier_growth([(s, added[s.id].stored_bytes, added[s.id].logical_bytes) for s in members])
            tiers.append(TierFigures(name, usage, frees_of(repo, members), members[0].time, members[-1].time,
                                     *per_day))
    paths = path_usage_of(repo, picked, depth=depth, prefix=prefix) if by == "path" else []
    return StatsReport(totals, frees_of(repo, picked), repo.pack_bytes(), len(everything), report_snaps, tiers,
                       paths, list(picked))
