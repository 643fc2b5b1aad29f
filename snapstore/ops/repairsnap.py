"""``snap repair snapshots``: a snapshot whose data is partly lost becomes one without the lost files.

As restic's ``repair snapshots``: each chosen snapshot's trees are walked; a file with a chunk
that is in no pack (the index's ``lost`` table, or simply not indexed) is left out, and a
directory whose tree cannot be read becomes an empty directory. Where anything was left out,
the trees above it are written again (through the one pack sink) and a new snapshot is
committed with the same time, tier, paths and stats, the tag ``repaired`` and ``original``
naming the first id; the damaged snapshot stays unless ``forget`` (then it is forgotten after
the new one is committed: a kill in between leaves both, never neither). A snapshot with
nothing lost is left alone. Running it again gives the same new snapshot (same content, same
id), so it is safe to repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from snapstore import faults
from snapstore.errors import ChunkUnreadable, FormatError
from snapstore.format.packfile import TYPE_TREE
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import DIR, Entry, encode_tree, tree_children
from snapstore.repo.index import index_errors
from snapstore.repo.packsink import PackSink, encode_blob
from snapstore.repo.repository import Repository

REPAIRED_TAG = "repaired"


@dataclass
class SnapshotRepair:
    old: Snapshot
    new: Snapshot | None  # None: nothing was lost
    removed: list[str] = field(default_factory=list)  # files left out (lost data)
    emptied: list[str] = field(default_factory=list)  # directories whose tree could not be read
    forgotten: bool = False

    def to_json(self) -> dict[str, object]:
        return {"old": self.old.id, "new": self.new.id if self.new else None, "removed": self.removed,
                "emptied": self.emptied, "forgotten": self.forgotten}


class _Rebuilder:
    def __init__(self, repo: Repository, sink: PackSink | None) -> None:
        self.repo = repo
        self.sink = sink  # None: a dry run (nothing is written)
        self.new_trees: dict[bytes, bytes] = {}
        self._done: dict[bytes, tuple[bytes, list[str], list[str]]] = {}  # old tree -> (new, removed, emptied)

    def rebuild(self, tree_id: bytes) -> tuple[bytes, list[str], list[str]]:
        """``(new tree id, files removed, directories emptied)``, paths relative to this tree."""
        found = self._done.get(tree_id)
        if found is not None:
            return found
        try:
            entries = self.repo.read_tree(tree_id)
        except (ChunkUnreadable, FormatError):
            empty: tuple[bytes, list[str], list[str]] = (self._store([]), [], [""])
            self._done[tree_id] = empty
            return empty
        index = self.repo.index
        kept: list[Entry] = []
        removed: list[str] = []
        emptied: list[str] = []
        for entry in entries:
            name = entry.name.decode("utf-8", "surrogateescape")
            if entry.kind == DIR and entry.subtree:
                sub, sub_removed, sub_emptied = self.rebuild(entry.subtree)
                removed += [f"{name}/{p}" for p in sub_removed]
                emptied += [f"{name}/{p}".rstrip("/") for p in sub_emptied]
                if sub != entry.subtree:
                    entry = replace(entry, subtree=sub)
            elif entry.chunks and not all(index.get_chunk(c) is not None for c in entry.chunk_ids()):
                removed.append(name)
                continue
            kept.append(entry)
        new_id = tree_id if not removed and not emptied else self._store(kept)
        result = (new_id, removed, emptied)
        self._done[tree_id] = result
        return result

    def _store(self, entries: list[Entry]) -> bytes:
        data = encode_tree(entries)
        tree_id = self.repo.blob_id(data)
        if tree_id in self.new_trees or self.repo.index.get_chunk(tree_id) is not None:
            return tree_id
        self.new_trees[tree_id] = b"".join(tree_children(data))
        if self.sink is not None:
            blob = encode_blob(tree_id, data, self.repo.config.compression_level, blob_type=TYPE_TREE,
                               crypto=self.repo.crypto)
            self.sink.add(tree_id, TYPE_TREE, blob)
        return tree_id


def repair_snapshots(repo: Repository, snapshots: list[Snapshot], *, forget: bool = False,
                     dry_run: bool = False) -> list[SnapshotRepair]:
    """Repair ``snapshots`` (open in ``write`` mode); returns one result per snapshot."""
    repo.require_full_key("repair snapshots")
    sink = None if dry_run else PackSink(repo.backend, pack_size=repo.config.pack_size,
                                         parallel=repo.backend.parallel_puts, what="writing repaired trees",
                                         crypto=repo.crypto)
    results: list[SnapshotRepair] = []
    rebuilder = _Rebuilder(repo, sink)
    try:
        plans: list[tuple[SnapshotRepair, bytes]] = []
        for snap in snapshots:
            root, removed, emptied = rebuilder.rebuild(bytes.fromhex(snap.root))
            result = SnapshotRepair(snap, None, removed, [p or "/" for p in emptied])
            results.append(result)
            if root.hex() != snap.root:
                plans.append((result, root))
        if sink is None or not plans:
            return results
        stored = sink.flush()
        with index_errors("indexing repaired trees", repo.index):
            for pack in stored:
                repo.index.add_pack(pack.id, pack.size, list(pack.entries), pending=True)
        for result, root in plans:
            snap = result.old
            tags = snap.tags if REPAIRED_TAG in snap.tags else (*snap.tags, REPAIRED_TAG)
            new = repo.snapshot_with_id(replace(snap, root=root.hex(), tags=tags,
                                                original=snap.original or snap.id, id=""))
            with index_errors("committing a repaired snapshot", repo.index):
                repo.commit_snapshot(new, packs=[p.id for p in stored], new_trees=rebuilder.new_trees, files={})
            result.new = new
        sink.mark_committed()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    sink.close()
    faults.crash_point("repair-snapshots-after-commit")
    if forget:
        with index_errors("forgetting the damaged snapshots", repo.index):
            repo.forget([r.old for r in results if r.new is not None and r.new.id != r.old.id])
        for r in results:
            r.forgotten = r.new is not None and r.new.id != r.old.id
    return results
