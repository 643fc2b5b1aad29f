"""Property tests for snapstore.view.diff over random trees kept in memory.

Trees are built from nested dicts with a small name alphabet (so two random trees share many
paths) and stored content-addressed like a repository does (encode_tree + BLAKE3). The tree
diff is checked against a brute-force reference that flattens both trees, and its tree reads
are counted to check that it never opens a pair of equal subtrees and never opens one twice.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from snapstore.format.chunker import chunk_id
from snapstore.format.tree import CHUNK_REF, DIR, FILE, SYMLINK, Entry, encode_tree
from snapstore.view.diff import (
    ADDED,
    METADATA,
    MODIFIED,
    REMOVED,
    Change,
    DiffOptions,
    ReadCounter,
    changed_fields,
    diff_entries,
    diff_trees,
    summarize,
)

NAMES = st.sampled_from([b"a", b"b", b"c", b"d.json"])
FILES = st.builds(
    lambda content, mode, mtime: ("f", content, mode, mtime),
    st.sampled_from([b"", b"x", b"y", b"hello world"]), st.sampled_from([0o100644, 0o100600]),
    st.sampled_from([1, 2]),
)
LINKS = st.builds(lambda target, mtime: ("l", target, mtime), st.sampled_from([b"t1", b"t2"]), st.sampled_from([1, 2]))


def _dirs(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(lambda entries, mode, mtime: ("d", entries, mode, mtime),
                     st.dictionaries(NAMES, children, max_size=4), st.sampled_from([0o40755, 0o40700]),
                     st.sampled_from([1, 2]))


NODES = st.recursive(FILES | LINKS, _dirs, max_leaves=14)
ROOTS = st.dictionaries(NAMES, NODES, max_size=4)


class Store:
    """Trees by id, like a repository's read_tree."""

    def __init__(self) -> None:
        self.trees: dict[bytes, list[Entry]] = {}

    def put(self, children: dict[bytes, Any]) -> bytes:
        entries = [self.entry(name, node) for name, node in children.items()]
        data = encode_tree(entries)
        tree_id = chunk_id(data)
        self.trees[tree_id] = sorted(entries, key=lambda e: e.name)
        return tree_id

    def entry(self, name: bytes, node: Any) -> Entry:
        if node[0] == "f":
            _, content, mode, mtime = node
            chunks = CHUNK_REF.pack(chunk_id(content), len(content)) if content else b""
            return Entry(name=name, kind=FILE, mode=mode, mtime_ns=mtime, size=len(content), chunks=chunks)
        if node[0] == "l":
            _, target, mtime = node
            return Entry(name=name, kind=SYMLINK, mode=0o120777, mtime_ns=mtime, size=len(target), target=target)
        _, children, mode, mtime = node
        return Entry(name=name, kind=DIR, mode=mode, mtime_ns=mtime, subtree=self.put(children))

    def read(self, tree_id: bytes) -> list[Entry]:
        return self.trees[tree_id]


def flatten(store: Store, tree_id: bytes, prefix: bytes = b"") -> dict[bytes, Entry]:
    out: dict[bytes, Entry] = {}
    for entry in store.read(tree_id):
        path = prefix + b"/" + entry.name if prefix else entry.name
        out[path] = entry
        if entry.kind == DIR:
            out.update(flatten(store, entry.subtree, path))
    return out


def reference(store: Store, old: bytes, new: bytes, options: DiffOptions = DiffOptions()) -> list[tuple[str, bytes]]:
    """The changes as a sorted list of (kind, path), computed the slow way."""
    a, b = flatten(store, old), flatten(store, new)
    out: list[tuple[str, bytes]] = []
    for path in a.keys() | b.keys():
        x, y = a.get(path), b.get(path)
        if y is None or (x is not None and x.kind != y.kind):
            out.append((REMOVED, path))
        if x is None or (y is not None and x.kind != y.kind):
            out.append((ADDED, path))
        if x is not None and y is not None and x.kind == y.kind:
            fields = changed_fields(x, y, options)
            if fields:
                out.append((MODIFIED if "content" in fields else METADATA, path))
    return sorted(out)


def expected_reads(store: Store, old: bytes, new: bytes) -> int:
    """Each differing pair of subtrees is read once per side, each directory present on one side
    only (added, removed, or the dir side of a type change) once, and nothing else. A path on
    both sides has directories as parents on both sides, so the walk reaches it as a pair."""
    if old == new:
        return 0
    a, b = flatten(store, old), flatten(store, new)
    reads = 2  # the two roots
    for path in a.keys() | b.keys():
        x, y = a.get(path), b.get(path)
        if x is not None and y is not None and x.kind == y.kind == DIR:
            reads += 2 if x.subtree != y.subtree else 0
        else:
            reads += sum(1 for e in (x, y) if e is not None and e.kind == DIR)
    return reads


def kinds_and_paths(changes: list[Change]) -> list[tuple[str, bytes]]:
    return sorted((c.kind, c.path) for c in changes)


def sort_key(path: bytes) -> tuple[bytes, ...]:
    return tuple(path.split(b"/"))


@settings(max_examples=150, deadline=None)
@given(ROOTS)
def test_diff_of_a_tree_with_itself_is_empty_and_reads_nothing(root: dict[bytes, Any]) -> None:
    store = Store()
    tree = store.put(root)
    counter = ReadCounter(store.read)
    assert list(diff_trees(counter, tree, tree)) == []
    assert counter.calls == 0


@settings(max_examples=250, deadline=None)
@given(ROOTS, ROOTS)
def test_diff_matches_the_brute_force_reference(old_root: dict[bytes, Any], new_root: dict[bytes, Any]) -> None:
    store = Store()
    old, new = store.put(old_root), store.put(new_root)
    changes = list(diff_trees(store.read, old, new))
    assert kinds_and_paths(changes) == reference(store, old, new)
    with_mtime = DiffOptions(dir_mtime=True)
    assert kinds_and_paths(list(diff_trees(store.read, old, new, options=with_mtime))) == \
        reference(store, old, new, with_mtime)


@settings(max_examples=150, deadline=None)
@given(ROOTS, ROOTS)
def test_diff_is_antisymmetric(old_root: dict[bytes, Any], new_root: dict[bytes, Any]) -> None:
    store = Store()
    old, new = store.put(old_root), store.put(new_root)
    forward = list(diff_trees(store.read, old, new))
    backward = list(diff_trees(store.read, new, old))
    by_kind = {k: sorted(c.path for c in forward if c.kind == k) for k in (ADDED, REMOVED, MODIFIED, METADATA)}
    back = {k: sorted(c.path for c in backward if c.kind == k) for k in (ADDED, REMOVED, MODIFIED, METADATA)}
    assert by_kind[ADDED] == back[REMOVED]
    assert by_kind[REMOVED] == back[ADDED]
    assert by_kind[MODIFIED] == back[MODIFIED]
    assert by_kind[METADATA] == back[METADATA]
    fwd, bwd = summarize(forward), summarize(backward)
    assert fwd.net_delta == -bwd.net_delta
    assert fwd.added_bytes == bwd.removed_bytes
    for change in forward:
        if change.kind in (MODIFIED, METADATA):
            assert change.old is not None and change.new is not None
            assert change.fields == changed_fields(change.new, change.old)


@settings(max_examples=150, deadline=None)
@given(ROOTS, ROOTS)
def test_changes_come_depth_first_in_name_order(old_root: dict[bytes, Any], new_root: dict[bytes, Any]) -> None:
    store = Store()
    old, new = store.put(old_root), store.put(new_root)
    changes = list(diff_trees(store.read, old, new))
    removed_before: set[bytes] = set()
    for before, after in zip(changes, changes[1:], strict=False):
        if before.kind == REMOVED:
            removed_before.add(before.path)
        if sort_key(before.path) <= sort_key(after.path):
            continue
        # The only step back: a type change lists the old entry (and all below it) as
        # removed, then the new entry at the same path as added.
        assert after.kind == ADDED and after.path in removed_before
        assert before.path.startswith(after.path + b"/")
    for before, after in zip(changes, changes[1:], strict=False):
        if before.path == after.path:  # a type change of a non-directory: removed, then added
            assert (before.kind, after.kind) == (REMOVED, ADDED)


@settings(max_examples=150, deadline=None)
@given(ROOTS, ROOTS)
def test_equal_subtrees_are_never_read(old_root: dict[bytes, Any], new_root: dict[bytes, Any]) -> None:
    store = Store()
    old, new = store.put(old_root), store.put(new_root)
    counter = ReadCounter(store.read)
    list(diff_trees(counter, old, new))
    assert counter.calls == expected_reads(store, old, new)


@settings(max_examples=200, deadline=None)
@given(ROOTS, st.lists(NAMES, min_size=1, max_size=6), st.sampled_from([b"x", b"y", b"zz"]))
def test_one_deep_change_reads_only_its_path(root: dict[bytes, Any], dirs: list[bytes], content: bytes) -> None:
    """Changing one file below ``len(dirs)`` directories opens 2 trees per level, nothing else."""
    store = Store()
    old_root = dict(root)
    new_root = dict(root)
    old_node: Any = ("f", b"original", 0o100644, 1)
    new_node: Any = ("f", content, 0o100644, 1)
    for name in reversed(dirs[1:]):
        old_node = ("d", {name: old_node, b"sibling": ("d", dict(root), 0o40755, 1)}, 0o40755, 1)
        new_node = ("d", {name: new_node, b"sibling": ("d", dict(root), 0o40755, 1)}, 0o40755, 1)
    old_root[dirs[0]] = old_node
    new_root[dirs[0]] = new_node
    old, new = store.put(old_root), store.put(new_root)
    counter = ReadCounter(store.read)
    changes = list(diff_trees(counter, old, new))
    assert [(c.kind, c.path) for c in changes] == [(MODIFIED, b"/".join(dirs))]
    assert counter.calls == 2 * len(dirs)


@settings(max_examples=200, deadline=None)
@given(ROOTS, ROOTS, NAMES)
def test_diff_entries_on_a_subdirectory_equals_the_filtered_full_diff(
    old_root: dict[bytes, Any], new_root: dict[bytes, Any], name: bytes
) -> None:
    store = Store()
    old, new = store.put(old_root), store.put(new_root)
    full = [(c.kind, c.path) for c in diff_trees(store.read, old, new)]
    a = next((e for e in store.read(old) if e.name == name), None)
    b = next((e for e in store.read(new) if e.name == name), None)
    part = [(c.kind, c.path) for c in diff_entries(store.read, name, a, b)]
    assert part == [(k, p) for k, p in full if p == name or p.startswith(name + b"/")]


def test_changed_fields_examples() -> None:
    base = Entry(name=b"f", kind=FILE, mode=0o100644, uid=1, gid=1, mtime_ns=5, size=1,
                 chunks=CHUNK_REF.pack(chunk_id(b"x"), 1))
    chmod = Entry(**{**_fields(base), "mode": 0o100755})
    chown = Entry(**{**_fields(base), "user": "bob"})
    touched = Entry(**{**_fields(base), "mtime_ns": 6})
    edited = Entry(**{**_fields(base), "chunks": CHUNK_REF.pack(chunk_id(b"y"), 1), "mtime_ns": 6})
    assert changed_fields(base, base) == ()
    assert changed_fields(base, chmod) == ("mode",)
    assert changed_fields(base, chown) == ("owner",)
    assert changed_fields(base, touched) == ("mtime",)
    assert changed_fields(base, edited) == ("content", "mtime")
    link_a = Entry(name=b"l", kind=SYMLINK, target=b"a")
    link_b = Entry(name=b"l", kind=SYMLINK, target=b"b")
    assert changed_fields(link_a, link_b) == ("target",)
    dir_a = Entry(name=b"d", kind=DIR, mode=0o40755, mtime_ns=1, subtree=b"1" * 32)
    dir_b = Entry(name=b"d", kind=DIR, mode=0o40755, mtime_ns=2, subtree=b"2" * 32)
    assert changed_fields(dir_a, dir_b) == ()
    assert changed_fields(dir_a, dir_b, DiffOptions(dir_mtime=True)) == ("mtime",)


def _fields(entry: Entry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in Entry.__slots__}  # type: ignore[attr-defined]
