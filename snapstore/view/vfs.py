"""The read-only view of snapshots as trees: lookup, listdir, walk and random-access reads.

One view serves ``snap ls``, ``snap cat``, ``snap restore``, ``snap diff`` and the FUSE mount,
so they agree on what a path means. Paths inside a snapshot are ``/``-separated bytes relative
to its root (a leading ``/`` is ignored). Reads fetch only the chunks that cover the requested
range, through a bounded LRU cache of decompressed chunks kept on the instance.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from snapstore.errors import ChunkUnreadable, PathNotFound
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import DIR, Entry
from snapstore.repo.repository import Repository

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
PREFETCH_TREES = 256  # subdirectory trees read ahead per directory a walk enters


def as_bytes_path(path: str | bytes) -> bytes:
    raw = path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")
    parts = [p for p in raw.split(b"/") if p and p != b"."]
    if b".." in parts:
        raise PathNotFound(f"'..' is not allowed in a snapshot path: {raw.decode('utf-8', 'replace')}")
    return b"/".join(parts)


def show_path(path: bytes) -> str:
    """A path for messages and listings (non-UTF-8 bytes kept as surrogate escapes)."""
    return path.decode("utf-8", "surrogateescape")


@dataclass(frozen=True)
class FileLayout:
    """Where each chunk of a file starts: for bisecting a read offset to chunks."""

    ids: tuple[bytes, ...]
    starts: tuple[int, ...]
    lengths: tuple[int, ...]


class ChunkCache:
    """A thread-safe LRU of decompressed chunks bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[bytes, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: bytes, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            if key in self._data:
                return
            self._data[key] = value
            self._size += len(value)
            while self._size > self.max_bytes:
                _, old = self._data.popitem(last=False)
                self._size -= len(old)


class SnapshotView:
    """Read-only access to the trees and files of a repository's snapshots."""

    def __init__(self, repo: Repository, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        repo.require_full_key("read its snapshots (restore, cat, ls, diff, mount, export)")
        self.repo = repo
        self.cache = ChunkCache(cache_bytes)
        self._layouts: OrderedDict[bytes, FileLayout] = OrderedDict()
        self._names: OrderedDict[bytes, dict[bytes, Entry]] = OrderedDict()
        self._layout_lock = threading.Lock()

    # -- trees ----------------------------------------------------------------------------
    def root(self, snap: Snapshot) -> Entry:
        """The snapshot's root directory as an entry (its recorded metadata when there is some)."""
        meta = snap.root_meta
        return Entry(name=b"", kind=DIR, mode=meta.get("mode", 0o40755), uid=meta.get("uid", 0),
                     gid=meta.get("gid", 0), subtree=bytes.fromhex(snap.root),
                     mtime_ns=meta.get("mtime_ns", int(snap.time.timestamp() * 1e9)))

    def listdir(self, entry: Entry) -> list[Entry]:
        """Entries of a directory, in name order."""
        if entry.kind != DIR:
            raise PathNotFound(f"not a directory: {show_path(entry.name)}")
        return self.repo.read_tree(entry.subtree)

    def child(self, entry: Entry, name: bytes) -> Entry | None:
        """One entry of a directory by name (a dict per tree, kept in a small LRU)."""
        if entry.kind != DIR:
            raise PathNotFound(f"not a directory: {show_path(entry.name)}")
        with self._layout_lock:
            by_name = self._names.get(entry.subtree)
            if by_name is not None:
                self._names.move_to_end(entry.subtree)
        if by_name is None:
            by_name = {e.name: e for e in self.listdir(entry)}
            with self._layout_lock:
                self._names[entry.subtree] = by_name
                if len(self._names) > 256:
                    self._names.popitem(last=False)
        return by_name.get(name)

    def lookup(self, snap: Snapshot, path: str | bytes) -> Entry:
        """The entry at ``path`` in ``snap``; raises :class:`PathNotFound`."""
        rel = as_bytes_path(path)
        entry = self.root(snap)
        if not rel:
            return entry
        for part in rel.split(b"/"):
            found = self.child(entry, part) if entry.kind == DIR else None
            if found is None:
                raise PathNotFound(f"path not in snapshot {snap.short_id}: {show_path(rel)}")
            entry = found
        return entry

    def walk(self, entry: Entry, prefix: bytes = b"", *,
             on_unreadable: Callable[[bytes, ChunkUnreadable], None] | None = None) -> Iterator[tuple[bytes, Entry]]:
        """``(path, entry)`` for ``entry`` and everything below it, depth first in name order.
        ``on_unreadable``: called with a directory whose tree cannot be read (then skipped, and
        the walk goes on); without it the error is raised."""
        yield prefix, entry
        if entry.kind == DIR:
            try:
                children = self.listdir(entry)
            except ChunkUnreadable as exc:
                if on_unreadable is None:
                    raise
                on_unreadable(prefix, exc)
                return
            # the subdirectories' trees in as few reads as possible (bounded: a directory of
            # many subdirectories must not flush the tree cache it fills)
            self.repo.prefetch_trees([c.subtree for c in children if c.kind == DIR][:PREFETCH_TREES])
            for child in children:
                path = prefix + b"/" + child.name if prefix else child.name
                yield from self.walk(child, path, on_unreadable=on_unreadable)

    # -- file contents --------------------------------------------------------------------
    def layout(self, entry: Entry) -> FileLayout:
        key = entry.chunks
        with self._layout_lock:
            found = self._layouts.get(key)
            if found is not None:
                self._layouts.move_to_end(key)
                return found
        ids, starts, lengths = [], [], []
        pos = 0
        for blob_id, length in entry.chunk_refs():
            ids.append(blob_id)
            starts.append(pos)
            lengths.append(length)
            pos += length
        found = FileLayout(tuple(ids), tuple(starts), tuple(lengths))
        with self._layout_lock:
            self._layouts[key] = found
            if len(self._layouts) > 1024:
                self._layouts.popitem(last=False)
        return found

    def chunk(self, blob_id: bytes) -> bytes:
        data = self.cache.get(blob_id)
        if data is None:
            data = self.repo.read_blob(blob_id)
            self.cache.put(blob_id, data)
        return data

    def read(self, entry: Entry, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset+size)`` of a file, fetching only the chunks that cover them."""
        if offset >= entry.size or size <= 0:
            return b""
        lay = self.layout(entry)
        end = min(offset + size, entry.size)
        i = bisect.bisect_right(lay.starts, offset) - 1
        out: list[bytes] = []
        while i < len(lay.ids) and lay.starts[i] < end:
            data = self.chunk(lay.ids[i])
            lo = max(offset - lay.starts[i], 0)
            hi = min(end - lay.starts[i], lay.lengths[i])
            out.append(data[lo:hi] if (lo, hi) != (0, len(data)) else data)
            i += 1
        return b"".join(out)

    def iter_file(self, entry: Entry) -> Iterator[bytes]:
        """A file's chunks in order, bypassing the cache (for streaming a whole file)."""
        for blob_id, _length in entry.chunk_refs():
            yield self.repo.read_blob(blob_id)
