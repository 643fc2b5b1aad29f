"""The pure walks of snapstore.ops.stats over trees held in dicts, checked against brute force."""

from __future__ import annotations

import random

import blake3

from snapstore.format.tree import CHUNK_REF, DIR, FILE, Entry, encode_tree, tree_children
from snapstore.ops.stats import BlobSize, BlobWalker, forget_frees, usage_by_path
from snapstore.repo.refcount import add_reference


class Store:
    """Trees and chunks in dicts: ``tree(...)`` and ``chunk(...)`` return ids."""

    def __init__(self) -> None:
        self.trees: dict[bytes, list[Entry]] = {}
        self.raw: dict[bytes, bytes] = {}
        self.sizes: dict[bytes, BlobSize] = {}

    def chunk(self, data: bytes, stored: int | None = None) -> tuple[bytes, int]:
        blob_id = blake3.blake3(data).digest()
        self.sizes[blob_id] = BlobSize(len(data), len(data) if stored is None else stored)
        return blob_id, len(data)

    def file(self, name: str, *chunks: tuple[bytes, int]) -> Entry:
        return Entry(name=name.encode(), kind=FILE, size=sum(n for _, n in chunks),
                     chunks=b"".join(CHUNK_REF.pack(i, n) for i, n in chunks))

    def tree(self, *entries: Entry) -> bytes:
        data = encode_tree(list(entries))
        tree_id = blake3.blake3(data).digest()
        self.trees[tree_id] = sorted(entries, key=lambda e: e.name)
        self.raw[tree_id] = data
        self.sizes[tree_id] = BlobSize(len(data), 7, tree=True)  # every tree "stores" 7 bytes
        return tree_id

    def dir(self, name: str, tree_id: bytes) -> Entry:
        return Entry(name=name.encode(), kind=DIR, subtree=tree_id)


def test_a_shared_subtree_and_chunk_count_once() -> None:
    s = Store()
    x, y = s.chunk(b"x" * 100, stored=10), s.chunk(b"y" * 50, stored=5)
    shared = s.tree(s.file("f", x, y), s.file("g", x))
    root1 = s.tree(s.dir("a", shared), s.dir("b", shared))
    root2 = s.tree(s.dir("a", shared), s.file("h", y))
    walker = BlobWalker(s.trees.__getitem__, s.sizes.get)
    one = walker.add_root(root1)
    assert (one.files, one.logical_bytes) == (4, 2 * 250)
    assert (one.chunks, one.raw_bytes, one.stored_bytes, one.tree_bytes) == (2, 150, 15 + 14, 14)
    two = walker.add_root(root2)
    assert (two.files, two.logical_bytes) == (3, 250 + 50)
    assert (two.chunks, two.raw_bytes, two.stored_bytes) == (0, 0, 7)  # only its root tree is new
    assert (one.dedup, one.compression) == (round(500 / 150, 3), 10.0)


def test_missing_blobs_are_counted_not_fatal() -> None:
    s = Store()
    x = s.chunk(b"x")
    root = s.tree(s.file("f", x))
    del s.sizes[x[0]]
    usage = BlobWalker(s.trees.__getitem__, s.sizes.get).add_root(root)
    assert (usage.missing, usage.logical_bytes, usage.chunks) == (1, 1, 0)


def _reachable(s: Store, root: bytes) -> set[bytes]:
    out, stack = set(), [root]
    while stack:
        tree_id = stack.pop()
        if tree_id in out:
            continue
        out.add(tree_id)
        for e in s.trees[tree_id]:
            if e.kind == DIR:
                stack.append(e.subtree)
            else:
                out.update(e.chunk_ids())
    return out


def test_forget_frees_what_only_those_snapshots_reach() -> None:
    rng = random.Random(7)
    for _case in range(40):
        _forget_case(rng)


def _forget_case(rng: random.Random) -> None:
    s = Store()
    chunks = [s.chunk(bytes([i]) * (i + 1)) for i in range(8)]
    subtrees = [s.tree(*(s.file(f"f{j}", *rng.sample(chunks, rng.randint(1, 3))) for j in range(rng.randint(1, 3))))
                for _ in range(4)]
    roots = []
    for _snap in range(rng.randint(1, 5)):
        picks = rng.sample(subtrees, rng.randint(1, 3))
        roots.append(s.tree(*(s.dir(f"d{k}", t) for k, t in enumerate(picks)),
                            s.file("top", rng.choice(chunks))))
    counts = {blob_id: 0 for blob_id in s.sizes}

    class Counts:
        def count(self, blob_id: bytes) -> int:
            return counts[blob_id]

        def set_count(self, blob_id: bytes, value: int) -> None:
            counts[blob_id] = value

        def is_tree(self, blob_id: bytes) -> bool:
            return blob_id in s.trees

    def children(tree_id: bytes) -> list[bytes]:
        return tree_children(s.raw[tree_id])

    for root in roots:
        add_reference(Counts(), root, children)
    before = dict(counts)
    gone = rng.sample(range(len(roots)), rng.randint(1, len(roots)))
    freed = forget_frees([roots[i] for i in gone], lambda b: (counts[b], b in s.trees) if b in counts else None,
                         children)
    assert counts == before  # nothing written
    kept = set().union(*(_reachable(s, roots[i]) for i in range(len(roots)) if i not in gone))
    lost = set().union(*(_reachable(s, roots[i]) for i in gone))
    assert sorted(freed) == sorted(lost - kept)


def test_usage_by_path_groups_at_the_depth() -> None:
    s = Store()
    log = s.chunk(b"l" * 1000, stored=100)
    w1, w2 = s.chunk(b"w" * 400), s.chunk(b"v" * 400)
    logs = s.tree(s.file("app.log", log))
    snap1 = s.tree(s.dir("logs", logs), s.dir("agents", s.tree(s.file("weights.bin", w1))), s.file("cfg", log))
    snap2 = s.tree(s.dir("logs", logs), s.dir("agents", s.tree(s.file("weights.bin", w2))))
    tops = [Entry(name=b"", kind=DIR, subtree=r) for r in (snap1, snap2)]
    rows = {p.path: p for p in usage_by_path(s.trees.__getitem__, s.sizes.get, tops, depth=1)}
    assert set(rows) == {b"logs", b"agents", b"cfg"}
    assert (rows[b"logs"].usage.snapshots, rows[b"logs"].usage.logical_bytes, rows[b"logs"].usage.raw_bytes) \
        == (2, 2000, 1000)
    assert rows[b"logs"].usage.dedup == 2.0 and rows[b"agents"].usage.dedup == 1.0
    assert rows[b"cfg"].usage.raw_bytes == 1000  # shares its chunk with logs/: counted in both
    deeper = {p.path for p in usage_by_path(s.trees.__getitem__, s.sizes.get, tops, depth=2, prefix=b"")}
    assert deeper == {b"logs/app.log", b"agents/weights.bin", b"cfg"}
