"""Comparing snapshots: the tree diff, and the comparison of one file's two contents.

Tree diff (the model is dulwich's ``diff_tree``): two trees are walked side by side in name
order and a pair of subtrees whose ids are equal is skipped without being read, so a diff costs
what changed, not what exists. :func:`diff_trees` and :func:`diff_entries` take the tree reader
as a callable (``tree id -> entries``), so they run against a repository, a cache or a dict.

What a change is (:class:`Change`, ``kind``):

- ``added`` / ``removed``: the path exists on one side only. Below an added or removed
  directory every entry is reported too (parents before children). An entry whose type
  changed (a file that became a symlink or a directory) is a ``removed`` then an ``added``.
- ``modified``: a file's content differs (its chunk lists differ: equal chunk lists mean equal
  content), or a device's number. ``fields`` holds ``content`` and any metadata that changed.
- ``metadata``: same content, other metadata: ``mode``, ``mtime``, ``owner`` (uid, gid or
  their names) or ``target`` (a symlink's target).

A directory's mtime changes whenever a name is added to it or removed from it, which the
changes inside it already say; so directory mtimes are ignored unless ``dir_mtime=True``.
The root of a snapshot has no metadata of its own and is never reported. Hard-link group ids
and unknown extra keys are not compared.

File contents (:func:`compare_content`, pure: bytes in, :class:`ContentDiff` out): a unified
diff for text, a key-level diff (:mod:`snapstore.view.jsondiff`) for ``.json``, ``.jsonl`` and
``.ndjson`` files, and a one-line note for binary files and files over the size cap. A JSON
file that does not parse falls back to a text diff and says so.

The walk keeps an explicit stack (no recursion), so the depth of a tree is not limited by
Python's recursion limit; memory is bounded by the directories on the current path.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from snapstore.format.tree import BLOCKDEV, CHARDEV, DIR, FILE, SYMLINK, Entry
from snapstore.view.jsondiff import JsonChange, diff_json, parse_json_lines

TreeReader = Callable[[bytes], list[Entry]]

ADDED = "added"
REMOVED = "removed"
MODIFIED = "modified"
METADATA = "metadata"
CHANGE_KINDS = (ADDED, REMOVED, MODIFIED, METADATA)

DEFAULT_CONTENT_CAP = 1024 * 1024  # bytes per side for --content
JSON_SUFFIXES = (".json",)
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Change:
    """One difference between two snapshots at ``path`` (``/``-separated bytes)."""

    kind: str  # added, removed, modified, metadata
    path: bytes
    old: Entry | None
    new: Entry | None
    fields: tuple[str, ...] = ()  # content, mode, mtime, owner, target (modified/metadata)

    @property
    def entry(self) -> Entry:
        """The entry that describes the change (the new one unless it was removed)."""
        found = self.new if self.new is not None else self.old
        assert found is not None
        return found

    @property
    def old_size(self) -> int:
        return _content_size(self.old)

    @property
    def new_size(self) -> int:
        return _content_size(self.new)

    @property
    def size_delta(self) -> int:
        return self.new_size - self.old_size


def _content_size(entry: Entry | None) -> int:
    return entry.size if entry is not None and entry.kind == FILE else 0


@dataclass(frozen=True)
class DiffOptions:
    """What counts as a change."""

    dir_mtime: bool = False  # report directories whose only change is their mtime


def changed_fields(old: Entry, new: Entry, options: DiffOptions = DiffOptions()) -> tuple[str, ...]:
    """What differs between two entries of the same kind (``content`` first)."""
    out: list[str] = []
    if old.kind == FILE and (old.chunks != new.chunks or old.size != new.size):
        out.append("content")
    if old.kind in (CHARDEV, BLOCKDEV) and old.rdev != new.rdev:
        out.append("content")
    if old.mode != new.mode:
        out.append("mode")
    if old.mtime_ns != new.mtime_ns and (old.kind != DIR or options.dir_mtime):
        out.append("mtime")
    if (old.uid, old.gid, old.user, old.group) != (new.uid, new.gid, new.user, new.group):
        out.append("owner")
    if old.kind == SYMLINK and old.target != new.target:
        out.append("target")
    return tuple(out)


def join_path(prefix: bytes, name: bytes) -> bytes:
    return prefix + b"/" + name if prefix else name


# The walk's work items: a change to yield, or a pair of trees / one tree still to open.
@dataclass(frozen=True)
class _Pair:
    path: bytes
    old_tree: bytes
    new_tree: bytes


@dataclass(frozen=True)
class _Side:
    path: bytes
    tree: bytes
    kind: str  # ADDED or REMOVED


_Work = Change | _Pair | _Side


def _one_side(path: bytes, entry: Entry, kind: str) -> list[_Work]:
    old, new = (None, entry) if kind == ADDED else (entry, None)
    out: list[_Work] = [Change(kind, path, old, new)]
    if entry.kind == DIR and entry.subtree:
        out.append(_Side(path, entry.subtree, kind))
    return out


def _compare(path: bytes, old: Entry, new: Entry, options: DiffOptions, is_root: bool = False) -> list[_Work]:
    """Work items for one name present on both sides."""
    if old.kind != new.kind:
        return _one_side(path, old, REMOVED) + _one_side(path, new, ADDED)
    out: list[_Work] = []
    if not is_root:
        fields = changed_fields(old, new, options)
        if fields:
            out.append(Change(MODIFIED if "content" in fields else METADATA, path, old, new, fields))
    if old.kind == DIR and old.subtree != new.subtree:
        out.append(_Pair(path, old.subtree, new.subtree))
    return out


def _merge(path: bytes, old_entries: list[Entry], new_entries: list[Entry], options: DiffOptions) -> list[_Work]:
    """Work items for two directory listings, in name order (both listings are sorted)."""
    out: list[_Work] = []
    i = j = 0
    while i < len(old_entries) or j < len(new_entries):
        old = old_entries[i] if i < len(old_entries) else None
        new = new_entries[j] if j < len(new_entries) else None
        if new is None or (old is not None and old.name < new.name):
            assert old is not None
            out.extend(_one_side(join_path(path, old.name), old, REMOVED))
            i += 1
        elif old is None or new.name < old.name:
            out.extend(_one_side(join_path(path, new.name), new, ADDED))
            j += 1
        else:
            out.extend(_compare(join_path(path, old.name), old, new, options))
            i += 1
            j += 1
    return out


def _run(read_tree: TreeReader, start: list[_Work], options: DiffOptions) -> Iterator[Change]:
    stack = list(reversed(start))
    while stack:
        item = stack.pop()
        if isinstance(item, Change):
            yield item
            continue
        if isinstance(item, _Pair):
            if item.old_tree == item.new_tree:  # never descend where the ids are equal
                continue
            work = _merge(item.path, read_tree(item.old_tree), read_tree(item.new_tree), options)
        else:
            work = []
            for child in read_tree(item.tree):
                work.extend(_one_side(join_path(item.path, child.name), child, item.kind))
        stack.extend(reversed(work))


def diff_trees(read_tree: TreeReader, old_tree: bytes, new_tree: bytes, *, prefix: bytes = b"",
               options: DiffOptions = DiffOptions()) -> Iterator[Change]:
    """Changes from the tree ``old_tree`` to ``new_tree``, depth first in name order.

    Paths are ``prefix`` joined with the names below the trees. Equal subtree ids (and equal
    root ids) are skipped without calling ``read_tree``.
    """
    return _run(read_tree, [_Pair(prefix, old_tree, new_tree)], options)


def diff_entries(read_tree: TreeReader, path: bytes, old: Entry | None, new: Entry | None, *,
                 options: DiffOptions = DiffOptions(), is_root: bool = False) -> Iterator[Change]:
    """Changes from entry ``old`` to entry ``new`` at ``path`` (either may be None: absent).

    ``is_root``: the entries are snapshot roots (or other synthetic directories) whose own
    metadata means nothing; only what is below them is compared.
    """
    if old is None and new is None:
        return iter(())
    if old is None:
        assert new is not None
        start = _one_side(path, new, ADDED)
    elif new is None:
        start = _one_side(path, old, REMOVED)
    else:
        start = _compare(path, old, new, options, is_root=is_root)
    return _run(read_tree, start, options)


def prune_nested(paths: Iterable[bytes]) -> list[bytes]:
    """Sorted paths without duplicates and without those inside another one (``b""`` is all)."""
    out: list[bytes] = []
    for path in sorted(set(paths)):
        if any(p == b"" or path == p or path.startswith(p + b"/") for p in out):
            continue
        out.append(path)
    return out


@dataclass(frozen=True)
class DiffSummary:
    """Counts and byte totals of a list of changes (file sizes; directories count 0 bytes)."""

    added: int = 0
    removed: int = 0
    modified: int = 0
    metadata: int = 0
    added_bytes: int = 0
    removed_bytes: int = 0
    modified_delta: int = 0

    @property
    def total(self) -> int:
        return self.added + self.removed + self.modified + self.metadata

    @property
    def net_delta(self) -> int:
        return self.added_bytes - self.removed_bytes + self.modified_delta

    def to_json(self) -> dict[str, int]:
        return {"added": self.added, "removed": self.removed, "modified": self.modified,
                "metadata": self.metadata, "total": self.total, "added_bytes": self.added_bytes,
                "removed_bytes": self.removed_bytes, "modified_delta": self.modified_delta,
                "net_delta": self.net_delta}


class Tally:
    """Counts changes as they stream by (bounded memory, whatever the size of the diff)."""

    def __init__(self) -> None:
        self.counts = {kind: 0 for kind in CHANGE_KINDS}
        self.added_bytes = self.removed_bytes = self.modified_delta = 0

    def add(self, change: Change) -> None:
        self.counts[change.kind] += 1
        if change.kind == ADDED:
            self.added_bytes += change.new_size
        elif change.kind == REMOVED:
            self.removed_bytes += change.old_size
        elif change.kind == MODIFIED:
            self.modified_delta += change.size_delta

    def summary(self) -> DiffSummary:
        c = self.counts
        return DiffSummary(c[ADDED], c[REMOVED], c[MODIFIED], c[METADATA], self.added_bytes,
                           self.removed_bytes, self.modified_delta)


def summarize(changes: Iterable[Change]) -> DiffSummary:
    tally = Tally()
    for change in changes:
        tally.add(change)
    return tally.summary()


# -- file contents ------------------------------------------------------------------------
TEXT = "text"
JSON = "json"
BINARY = "binary"
TOO_LARGE = "too_large"
SAME = "same"


@dataclass(frozen=True)
class ContentDiff:
    """How two contents of one file differ.

    ``kind``: ``text`` (``lines`` holds a unified diff), ``json`` (``json_changes``), ``binary``
    or ``too_large`` (no detail; ``note`` says why) or ``same`` (the bytes are equal).
    ``note`` also says when a JSON file did not parse and a text diff is shown instead.
    """

    kind: str
    note: str = ""
    lines: tuple[str, ...] = ()
    json_changes: tuple[JsonChange, ...] = ()
    fallback: bool = False  # a JSON file that did not parse: shown as text

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.note:
            out["note"] = self.note
        if self.fallback:
            out["json_fallback"] = True
        if self.kind == TEXT:
            out["unified_diff"] = list(self.lines)
        if self.kind == JSON:
            out["changes"] = [c.to_json() for c in self.json_changes]
        return out


def is_json_name(path: bytes) -> bool:
    return path.lower().endswith(tuple(s.encode() for s in JSON_SUFFIXES + JSON_LINES_SUFFIXES))


def _is_json_lines(path: bytes) -> bool:
    return path.lower().endswith(tuple(s.encode() for s in JSON_LINES_SUFFIXES))


def looks_binary(data: bytes) -> bool:
    """NUL bytes in the first 8 KiB, or not UTF-8: not text we can show as lines."""
    if b"\0" in data[:8192]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def too_large(old_size: int, new_size: int, cap: int = DEFAULT_CONTENT_CAP) -> ContentDiff | None:
    """The ``too_large`` result when either side is over ``cap`` bytes (decided before reading)."""
    if max(old_size, new_size) <= cap:
        return None
    return ContentDiff(TOO_LARGE, note=f"too large for a content diff: {old_size} -> {new_size} bytes, "
                                        f"the limit is {cap} bytes per side (--max-size)")


def unified_lines(path: str, old_text: str, new_text: str, context: int = 3) -> tuple[str, ...]:
    """A unified diff as lines without line ends (``\\ No newline at end of file`` kept)."""
    out: list[str] = []
    diff = difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                fromfile=f"a/{path}", tofile=f"b/{path}", n=context)
    for line in diff:
        if line.endswith("\n"):
            out.append(line[:-1])
        else:
            out.append(line)
            out.append("\\ No newline at end of file")
    return tuple(out)


def compare_content(path: bytes, old: bytes, new: bytes) -> ContentDiff:
    """Compare two whole contents of the file at ``path`` (the caller enforces the size cap)."""
    shown = path.decode("utf-8", "surrogateescape")
    if old == new:
        return ContentDiff(SAME, note="contents are equal")
    if looks_binary(old) or looks_binary(new):
        return ContentDiff(BINARY, note=f"binary files differ: {len(old)} -> {len(new)} bytes")
    old_text, new_text = old.decode("utf-8"), new.decode("utf-8")
    note = ""
    if is_json_name(path):
        parse = parse_json_lines if _is_json_lines(path) else json.loads
        problems: list[tuple[str, str]] = []
        values = []
        for side, text in (("old", old_text), ("new", new_text)):
            try:
                values.append(parse(text))
            except (ValueError, RecursionError) as exc:
                problems.append((side, json_error(exc)))
        if not problems:
            changes = tuple(diff_json(values[0], values[1]))
            if changes:
                return ContentDiff(JSON, json_changes=changes)
            note = "JSON values are equal; only formatting or key order differ"
            return ContentDiff(TEXT, note=note, lines=unified_lines(shown, old_text, new_text))
        if len(problems) == 1:
            side, why = problems[0]
            note = f"{side} version is not valid JSON ({why}); showing a text diff"
        else:
            note = f"neither version is valid JSON (old: {problems[0][1]}; new: {problems[1][1]}); showing a text diff"
        return ContentDiff(TEXT, note=note, lines=unified_lines(shown, old_text, new_text), fallback=True)
    return ContentDiff(TEXT, lines=unified_lines(shown, old_text, new_text))


def json_error(exc: BaseException) -> str:
    """Why a JSON text did not parse, on one line and without the character offset."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


@dataclass
class ReadCounter:
    """Wraps a tree reader and counts calls (for benchmarks and tests of the skip rule)."""

    read_tree: TreeReader
    calls: int = 0
    ids: list[bytes] = field(default_factory=list)

    def __call__(self, tree_id: bytes) -> list[Entry]:
        self.calls += 1
        self.ids.append(tree_id)
        return self.read_tree(tree_id)
