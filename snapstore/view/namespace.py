"""The mount-level namespace over a repository: every snapshot as a read-only tree, by inode.

This module owns what a mounted repository looks like and the inode table behind it; the FUSE
adapter (:mod:`snapstore.fuse.adapter`) only translates its answers to pyfuse3 types. Layout::

    /snapshots/<UTC time>_<short id>/...     each snapshot's files (2026-11-22T070000Z_1a2b3c4d)
    /tiers/<tier>/<UTC time>_<short id>      symlink to ../../snapshots/<UTC time>_<short id>
    /tiers/<tier>/latest                     symlink to the tier's newest snapshot
    /tags/<tag>/<UTC time>_<short id>        symlink, the same by tag (and tags/<tag>/latest)
    /latest                                  symlink to the newest snapshot (absent when none)

Each kind of node is its own class and answers lookup, readdir, readlink and attr itself:
:class:`RootDir`, :class:`SnapshotsDir`, :class:`TiersDir` / :class:`TagsDir`,
:class:`TierDir` / :class:`TagDir` (one tier or tag), :class:`SnapshotLink` (a link in one),
:class:`LatestLink` (``/latest``), :class:`SnapshotRoot` and :class:`SnapshotItem` (a file,
directory or link inside a snapshot). :class:`Namespace` holds the inode table, the snapshot
list and the read path, and hands each request to the node.

Inodes are allocated on first sight from a counter and keyed by ``(parent inode, name)``, or by
``(snapshot dir inode, hard-link group)`` for hard-linked files, so the same path always gets
the same number during a session, names of one hard-link group share one inode, and a number
is never reused. The key table grows with the distinct paths visited (about 200 bytes each);
the node table holds only what the kernel still references (:meth:`Namespace.ref` /
:meth:`Namespace.forget`) plus the top-level nodes.

The list of snapshots is re-read from the index at most once per ``refresh_ttl`` seconds when
a top-level directory or symlink is looked at, so snapshots taken while mounted appear and
forgotten ones disappear without a remount. Snapshot contents never change, so their
attributes may be cached by the kernel for long (:attr:`Attr.cache_seconds`).

Errors are :class:`OSError` with the errno to report (``ENOENT``, ``ENOTDIR``, ``EINVAL``...);
damage in the repository propagates as :class:`~snapstore.errors.RepositoryDamaged`.
Reads go through :meth:`SnapshotView.read` and its bounded chunk cache; a sequential reader
gets the next chunk fetched ahead on a small thread pool.
"""

from __future__ import annotations

import bisect
import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from snapstore.clock import format_path_time
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SOCKET, SYMLINK, Entry
from snapstore.view.vfs import SnapshotView

ROOT_INODE = 1
LATEST = b"latest"
SNAPSHOTS_DIR, TIERS_DIR, TAGS_DIR = b"snapshots", b"tiers", b"tags"
VIRTUAL_CACHE_SECONDS = 1.0  # top-level nodes change when snapshots are taken or forgotten
SNAPSHOT_CACHE_SECONDS = 3600.0  # snapshot contents never change
BLOCK_SIZE = 1 << 20  # st_blksize: tells cp & co. to read in large blocks
DEFAULT_REFRESH_TTL = 1.0
READAHEAD_WORKERS = 2
READAHEAD_CHUNKS = 2  # chunks fetched ahead of a sequential reader

_TYPE_BITS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, FIFO: stat.S_IFIFO,
              CHARDEV: stat.S_IFCHR, BLOCKDEV: stat.S_IFBLK, SOCKET: stat.S_IFSOCK}

@dataclass(frozen=True)
class Attr:
    """What ``stat`` shows for a node, and how long the kernel may cache it."""

    inode: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    rdev: int = 0
    blksize: int = BLOCK_SIZE
    cache_seconds: float = VIRTUAL_CACHE_SECONDS

    @property
    def blocks(self) -> int:
        """Size in 512-byte blocks, as ``st_blocks`` counts."""
        return (self.size + 511) // 512


def snapshot_name(snap: Snapshot) -> bytes:
    """The directory name of a snapshot in the mount: ``<UTC time>_<short id>``."""
    return f"{format_path_time(snap.time)}_{snap.short_id}".encode()


def group_dir_name(name: str) -> bytes:
    """A tier or tag as one path component: ``/`` and ``%`` percent-escaped, ``.``/``..`` kept safe."""
    escaped = name.replace("%", "%25").replace("/", "%2F").replace("\0", "%00")
    if escaped in ("", ".", ".."):
        escaped = escaped.replace(".", "%2E") or "%00"
    return escaped.encode("utf-8", "surrogateescape")


@dataclass
class _Catalog:
    """The snapshots as the mount shows them, rebuilt on refresh."""

    by_name: dict[bytes, Snapshot] = field(default_factory=dict)
    names: list[bytes] = field(default_factory=list)  # sorted
    newest: bytes = b""
    tiers: dict[bytes, list[bytes]] = field(default_factory=dict)  # dir name -> snapshot names, oldest first
    tags: dict[bytes, list[bytes]] = field(default_factory=dict)
    tier_names: dict[bytes, str] = field(default_factory=dict)
    tag_names: dict[bytes, str] = field(default_factory=dict)
    newest_ns: int = 0

    @classmethod
    def build(cls, snaps: list[Snapshot]) -> _Catalog:
        cat = cls()
        for snap in snaps:  # oldest first
            name = snapshot_name(snap)
            if name in cat.by_name:  # same second and same 8-hex prefix: show the full id
                name = f"{format_path_time(snap.time)}_{snap.id}".encode()
            cat.by_name[name] = snap
            cat.newest = name
            cat.newest_ns = max(cat.newest_ns, _ns(snap))
            tier = group_dir_name(snap.tier)
            cat.tier_names[tier] = snap.tier
            cat.tiers.setdefault(tier, []).append(name)
            for tag in snap.tags:
                key = group_dir_name(tag)
                cat.tag_names[key] = tag
                members = cat.tags.setdefault(key, [])
                if not members or members[-1] != name:
                    members.append(name)
        cat.names = sorted(cat.by_name)
        return cat


def _ns(snap: Snapshot) -> int:
    return int(snap.time.timestamp()) * 1_000_000_000 + snap.time.microsecond * 1000


def _not_found(path: bytes, name: bytes = b"") -> OSError:
    shown = (path + b"/" + name if path and name else path or name).decode("utf-8", "surrogateescape")
    return FileNotFoundError(errno.ENOENT, "no such entry", shown or "/")


def _not_dir(path: bytes) -> OSError:
    return NotADirectoryError(errno.ENOTDIR, "not a directory", path.decode("utf-8", "replace"))


# -- the kinds of node -----------------------------------------------------------------------
# One class per kind of node (as bup's vfs and restic's fuse have): each answers lookup,
# readdir, readlink and attr for itself, given the namespace (catalog, inode table, view).
# The defaults are the answers for "none of that": ENOTDIR, EINVAL.


@dataclass(eq=False)
class Node:
    """One inode. ``path`` is the mount-relative path where it was first seen (for messages);
    ``refs`` the kernel's lookup count."""

    inode: int
    path: bytes
    refs: int = field(default=0, kw_only=True)

    @property
    def kind(self) -> str:
        """The tree kind (DIR, FILE, SYMLINK, ...)."""
        return DIR

    def lookup(self, ns: Namespace, name: bytes) -> Node:
        raise _not_dir(self.path)

    def readdir(self, ns: Namespace) -> list[tuple[bytes, Node]]:
        raise _not_dir(self.path)

    def readlink(self, ns: Namespace) -> bytes:
        raise OSError(errno.EINVAL, "not a symbolic link", self.path.decode("utf-8", "replace"))

    def attr(self, ns: Namespace) -> Attr:
        raise NotImplementedError

    def file_entry(self) -> Entry:
        """The entry of a regular file (EISDIR for a directory, EINVAL for anything else)."""
        if self.kind == DIR:
            raise IsADirectoryError(errno.EISDIR, "is a directory", self.path.decode("utf-8", "replace"))
        raise OSError(errno.EINVAL, "not a regular file", self.path.decode("utf-8", "replace"))


class VirtualDir(Node):
    """A directory made from the snapshot list, not stored in the repository."""

    def names(self, ns: Namespace) -> list[bytes]:
        """The names in this directory, sorted."""
        raise NotImplementedError

    def child(self, ns: Namespace, name: bytes) -> Node:
        """The node ``name`` (ENOENT when the snapshot list has none)."""
        raise NotImplementedError

    def subdirs(self, ns: Namespace) -> int:
        return 0

    def lookup(self, ns: Namespace, name: bytes) -> Node:
        ns.refresh()
        return self.child(ns, name)

    def readdir(self, ns: Namespace) -> list[tuple[bytes, Node]]:
        ns.refresh()
        out = []
        for name in self.names(ns):
            try:
                out.append((name, self.lookup(ns, name)))
            except FileNotFoundError:  # vanished between listing and lookup (a refresh)
                continue
        return out

    def attr(self, ns: Namespace) -> Attr:
        nlink = 2 + self.subdirs(ns)
        when = ns.catalog.newest_ns or ns.started_ns
        return Attr(self.inode, stat.S_IFDIR | 0o555, nlink, ns.uid, ns.gid, 0, when)


class RootDir(VirtualDir):
    """``/``: snapshots/, tiers/, tags/ and the latest link."""

    def names(self, ns: Namespace) -> list[bytes]:
        found = [SNAPSHOTS_DIR, TAGS_DIR, TIERS_DIR]
        if ns.catalog.newest:
            found.append(LATEST)
        return sorted(found)

    def child(self, ns: Namespace, name: bytes) -> Node:
        inode = ns.inode_of((self.inode, name))
        if inode is None or (name == LATEST and not ns.catalog.newest):
            raise _not_found(self.path, name)
        return ns.node(inode)

    def subdirs(self, ns: Namespace) -> int:
        return 3


class SnapshotsDir(VirtualDir):
    """``/snapshots``: one directory per snapshot."""

    def names(self, ns: Namespace) -> list[bytes]:
        return list(ns.catalog.names)

    def child(self, ns: Namespace, name: bytes) -> Node:
        snap = ns.catalog.by_name.get(name)
        if snap is None:
            raise _not_found(self.path, name)
        path = self.path + b"/" + name
        return ns.make((self.inode, name), lambda ino: SnapshotRoot(ino, path, ns.view.root(snap), snap))

    def subdirs(self, ns: Namespace) -> int:
        ns.refresh()
        return len(self.names(ns))


class GroupsDir(VirtualDir):
    """``/tiers`` or ``/tags``: one directory per tier or tag."""

    def groups(self, ns: Namespace) -> dict[bytes, list[bytes]]:
        raise NotImplementedError

    def make_group(self, inode: int, path: bytes, label: str) -> GroupDir:
        raise NotImplementedError

    def label(self, ns: Namespace, name: bytes) -> str:
        raise NotImplementedError

    def names(self, ns: Namespace) -> list[bytes]:
        return sorted(self.groups(ns))

    def child(self, ns: Namespace, name: bytes) -> Node:
        if name not in self.groups(ns):
            raise _not_found(self.path, name)
        label = self.label(ns, name)
        path = self.path + b"/" + name
        return ns.make((self.inode, name), lambda ino: self.make_group(ino, path, label))

    def subdirs(self, ns: Namespace) -> int:
        ns.refresh()
        return len(self.names(ns))


class TiersDir(GroupsDir):
    def groups(self, ns: Namespace) -> dict[bytes, list[bytes]]:
        return ns.catalog.tiers

    def label(self, ns: Namespace, name: bytes) -> str:
        return ns.catalog.tier_names[name]

    def make_group(self, inode: int, path: bytes, label: str) -> GroupDir:
        return TierDir(inode, path, label)


class TagsDir(GroupsDir):
    def groups(self, ns: Namespace) -> dict[bytes, list[bytes]]:
        return ns.catalog.tags

    def label(self, ns: Namespace, name: bytes) -> str:
        return ns.catalog.tag_names[name]

    def make_group(self, inode: int, path: bytes, label: str) -> GroupDir:
        return TagDir(inode, path, label)


@dataclass(eq=False)
class GroupDir(VirtualDir):
    """``/tiers/<tier>`` or ``/tags/<tag>``: a link per snapshot, and ``latest``."""

    label: str

    def groups(self, ns: Namespace) -> dict[bytes, list[bytes]]:
        raise NotImplementedError

    def members(self, ns: Namespace) -> list[bytes]:
        """Snapshot names in this group, oldest first (empty once it is gone)."""
        return self.groups(ns).get(group_dir_name(self.label), [])

    def names(self, ns: Namespace) -> list[bytes]:
        members = self.members(ns)
        return sorted([*members, LATEST]) if members else []

    def child(self, ns: Namespace, name: bytes) -> Node:
        members = self.members(ns)
        if name != LATEST and name not in members or not members:
            raise _not_found(self.path, name)
        path = self.path + b"/" + name
        return ns.make((self.inode, name), lambda ino: SnapshotLink(ino, path, self, name))


class TierDir(GroupDir):
    def groups(self, ns: Namespace) -> dict[bytes, list[bytes]]:
        return ns.catalog.tiers


class TagDir(GroupDir):
    def groups(self, ns: Namespace) -> dict[bytes, list[bytes]]:
        return ns.catalog.tags


class VirtualLink(Node):
    """A symlink made from the snapshot list; its target follows the list."""

    @property
    def kind(self) -> str:
        return SYMLINK

    def target(self, ns: Namespace) -> bytes:
        raise NotImplementedError

    def readlink(self, ns: Namespace) -> bytes:
        ns.refresh()
        return self.target(ns)

    def attr(self, ns: Namespace) -> Attr:
        try:
            target = self.readlink(ns)
        except FileNotFoundError:
            target = b""
        when = ns.catalog.newest_ns or ns.started_ns
        return Attr(self.inode, stat.S_IFLNK | 0o777, 1, ns.uid, ns.gid, len(target), when)


class LatestLink(VirtualLink):
    """``/latest``: the newest snapshot."""

    def target(self, ns: Namespace) -> bytes:
        if not ns.catalog.newest:
            raise _not_found(self.path)
        return b"snapshots/" + ns.catalog.newest


@dataclass(eq=False)
class SnapshotLink(VirtualLink):
    """A link in a tier or tag directory: to one snapshot, or (``latest``) the group's newest."""

    group: GroupDir
    name: bytes  # a snapshot directory name, or b"latest"

    def target(self, ns: Namespace) -> bytes:
        members = self.group.members(ns)
        if not members:
            raise _not_found(self.path)
        name = members[-1] if self.name == LATEST else self.name
        if name not in ns.catalog.by_name:
            raise _not_found(self.path)
        return b"../../snapshots/" + name


@dataclass(eq=False)
class InSnapshot(Node):
    """A node backed by a tree entry of a snapshot; ``snapdir`` is the snapshot root's inode."""

    entry: Entry

    @property
    def snapdir(self) -> int:
        raise NotImplementedError

    @property
    def kind(self) -> str:
        return self.entry.kind

    def _child(self, ns: Namespace, entry: Entry) -> Node:
        # names of one hard-link group share one inode within a snapshot
        key: tuple[object, ...] = (self.snapdir, "hardlink", entry.hardlink) if entry.kind == FILE and entry.hardlink \
            else (self.inode, entry.name)
        path = self.path + b"/" + entry.name
        return ns.make(key, lambda ino: SnapshotItem(ino, path, entry, self.snapdir))

    def lookup(self, ns: Namespace, name: bytes) -> Node:
        if self.kind != DIR:
            raise _not_dir(self.path)
        found = ns.view.child(self.entry, name)
        if found is None:
            raise _not_found(self.path, name)
        return self._child(ns, found)

    def readdir(self, ns: Namespace) -> list[tuple[bytes, Node]]:
        if self.kind != DIR:
            raise _not_dir(self.path)
        return [(e.name, self._child(ns, e)) for e in ns.view.listdir(self.entry)]


@dataclass(eq=False)
class SnapshotRoot(InSnapshot):
    """``/snapshots/<name>``: a snapshot's root directory."""

    snapshot: Snapshot

    @property
    def snapdir(self) -> int:
        return self.inode

    def attr(self, ns: Namespace) -> Attr:
        # a short cache: the name must disappear soon after the snapshot is forgotten
        return Attr(self.inode, stat.S_IFDIR | 0o555, 1, ns.uid, ns.gid, 0, _ns(self.snapshot))


@dataclass(eq=False)
class SnapshotItem(InSnapshot):
    """A file, directory, symlink or special file inside a snapshot."""

    root: int  # the snapshot root's inode

    @property
    def snapdir(self) -> int:
        return self.root

    def readlink(self, ns: Namespace) -> bytes:
        if self.kind != SYMLINK:
            return super().readlink(ns)
        return self.entry.target

    def attr(self, ns: Namespace) -> Attr:
        e = self.entry
        nlink = 2 if e.kind == FILE and e.hardlink else 1  # dirs: 1 = "not counted" (as btrfs)
        size = e.size if e.kind in (FILE, SYMLINK) else 0
        if e.kind == SYMLINK and not size:
            size = len(e.target)
        return Attr(self.inode, _TYPE_BITS[e.kind] | stat.S_IMODE(e.mode), nlink, e.uid, e.gid, size,
                    e.mtime_ns, e.rdev, cache_seconds=SNAPSHOT_CACHE_SECONDS)

    def file_entry(self) -> Entry:
        if self.kind == FILE:
            return self.entry
        return super().file_entry()


class Namespace:
    """The inode-addressed, read-only tree a mount shows. Thread-safe."""

    def __init__(self, view: SnapshotView, *, refresh_ttl: float = DEFAULT_REFRESH_TTL,
                 clock: Callable[[], float] = time.monotonic, uid: int | None = None,
                 gid: int | None = None, readahead: bool = True) -> None:
        self.view = view
        self.refresh_ttl = refresh_ttl
        self._clock = clock
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.started_ns = time.time_ns()
        self._lock = threading.RLock()
        self._keys: dict[tuple[object, ...], int] = {}
        self._nodes: dict[int, Node] = {}
        self._next = ROOT_INODE + 1
        self._catalog = _Catalog()
        self._checked = float("-inf")
        self._records: list[bytes] | None = None
        # read-ahead: chunks being fetched, and where each file's last read ended
        self._readahead = ThreadPoolExecutor(READAHEAD_WORKERS, thread_name_prefix="snap-readahead") \
            if readahead else None
        self._inflight: dict[bytes, Future[bytes]] = {}
        self._last_end: dict[int, int] = {}
        root = RootDir(ROOT_INODE, b"")
        self._nodes[ROOT_INODE] = root
        self._keys[("root",)] = ROOT_INODE
        self.make((ROOT_INODE, SNAPSHOTS_DIR), lambda ino: SnapshotsDir(ino, SNAPSHOTS_DIR))
        self.make((ROOT_INODE, TIERS_DIR), lambda ino: TiersDir(ino, TIERS_DIR))
        self.make((ROOT_INODE, TAGS_DIR), lambda ino: TagsDir(ino, TAGS_DIR))
        self.make((ROOT_INODE, LATEST), lambda ino: LatestLink(ino, LATEST))
        self._permanent = set(self._nodes)
        self.refresh(force=True)

    def close(self) -> None:
        if self._readahead is not None:
            self._readahead.shutdown(wait=True, cancel_futures=True)

    # -- the snapshot list ------------------------------------------------------------------
    def refresh(self, force: bool = False) -> bool:
        """Re-read the snapshot list if ``refresh_ttl`` has passed; True when it changed."""
        now = self._clock()
        with self._lock:
            if not force and now - self._checked < self.refresh_ttl:
                return False
            self._checked = now
            self.view.repo.follow_records()
            records = self.view.repo.index.snapshot_records()
            if records == self._records:
                return False
            self._records = records
            self._catalog = _Catalog.build(self.view.repo.snapshots())
            return True

    @property
    def catalog(self) -> _Catalog:
        """The snapshot list as last read (call :meth:`refresh` first for a fresh one)."""
        return self._catalog

    def snapshots(self) -> dict[bytes, Snapshot]:
        """Snapshot directory names -> snapshots, as currently shown."""
        self.refresh()
        return dict(self._catalog.by_name)

    # -- inode table ------------------------------------------------------------------------
    def inode_of(self, key: tuple[object, ...]) -> int | None:
        """The inode given to ``key`` so far, if any."""
        return self._keys.get(key)

    def make(self, key: tuple[object, ...], make: Callable[[int], Node]) -> Node:
        """The node for ``key``: its inode is allocated on first sight and never changes; the
        node is made again (by ``make(inode)``) when the kernel had forgotten it."""
        with self._lock:
            inode = self._keys.get(key)
            if inode is None:
                inode = self._next
                self._next += 1
                self._keys[key] = inode
            node = self._nodes.get(inode)
            if node is None:
                node = make(inode)
                self._nodes[inode] = node
            return node

    def node(self, inode: int) -> Node:
        node = self._nodes.get(inode)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, f"unknown inode {inode}")
        return node

    def ref(self, node: Node, count: int = 1) -> None:
        """The kernel now holds ``count`` more references to ``node`` (a lookup, a readdir entry).
        A node forgotten since it was handed out (a listing kept by an open directory) is put
        back: its number never changed."""
        with self._lock:
            current = self._nodes.setdefault(node.inode, node)
            current.refs += count

    def forget(self, inode: int, count: int) -> None:
        """The kernel dropped ``count`` references; a node nobody holds leaves the node table
        (its number stays reserved for its key)."""
        with self._lock:
            node = self._nodes.get(inode)
            if node is None:
                return
            node.refs -= count
            if node.refs <= 0 and inode not in self._permanent:
                del self._nodes[inode]
                self._last_end.pop(inode, None)

    def live_nodes(self) -> int:
        return len(self._nodes)

    # -- the operations: each kind of node answers for itself ---------------------------------
    def lookup(self, parent_inode: int, name: bytes) -> Node:
        """The child ``name`` of a directory; raises ENOENT / ENOTDIR as :class:`OSError`."""
        return self.node(parent_inode).lookup(self, name)

    def readdir(self, inode: int) -> list[tuple[bytes, Node]]:
        """A directory's entries in name order (without ``.`` and ``..``)."""
        return self.node(inode).readdir(self)

    def readlink(self, inode: int) -> bytes:
        return self.node(inode).readlink(self)

    def getattr(self, inode: int) -> Attr:
        return self.attr(self.node(inode))

    def attr(self, node: Node) -> Attr:
        """The attributes of a node."""
        return node.attr(self)

    # -- reading files ----------------------------------------------------------------------
    def file_entry(self, inode: int) -> Entry:
        """The entry of a regular file (EISDIR for a directory, EINVAL for anything else)."""
        return self.node(inode).file_entry()

    def _chunk_span(self, entry: Entry, offset: int, size: int) -> tuple[int, int]:
        """Indexes ``[first, last]`` of the chunks that hold ``[offset, offset+size)``;
        ``(0, -1)`` for an empty range."""
        if offset >= entry.size or size <= 0:
            return 0, -1
        starts = self.view.layout(entry).starts
        first = bisect.bisect_right(starts, offset) - 1
        last = bisect.bisect_left(starts, min(offset + size, entry.size)) - 1
        return first, last

    def fetch_bytes(self, inode: int, offset: int, size: int) -> int:
        """How many bytes of chunks a read of this range must fetch from storage (0: all cached).
        Lets the adapter serve cheap reads inline and send expensive ones to a thread."""
        try:
            entry = self.file_entry(inode)
        except OSError:
            return 0  # the read fails at once
        first, last = self._chunk_span(entry, offset, size)
        if last < first:
            return 0
        lay = self.view.layout(entry)
        get = self.view.cache.get
        return sum(lay.lengths[i] for i in range(first, last + 1) if get(lay.ids[i]) is None)

    def read(self, inode: int, offset: int, size: int) -> bytes:
        """Bytes ``[offset, offset+size)`` of a file; chunk errors raise
        :class:`~snapstore.errors.ChunkUnreadable`. A read that continues the previous one
        starts fetching the chunk after the last one it used."""
        entry = self.file_entry(inode)
        first, last = self._chunk_span(entry, offset, size)
        if last < first:
            return b""
        ids = self.view.layout(entry).ids
        for i in range(first, last + 1):  # chunks being fetched ahead: wait rather than fetch twice
            pending = self._inflight.get(ids[i])
            if pending is not None:
                try:
                    pending.result()
                except Exception:
                    pass  # the read below fetches again and reports the error
        data = self.view.read(entry, offset, size)
        sequential = offset == 0 or self._last_end.get(inode) == offset
        self._last_end[inode] = offset + len(data)
        if sequential:
            for i in range(last + 1, min(last + 1 + READAHEAD_CHUNKS, len(ids))):
                self._fetch_ahead(ids[i])
        return data

    def _fetch_ahead(self, blob_id: bytes) -> None:
        if self.view.cache.get(blob_id) is not None:
            return
        with self._lock:
            if blob_id in self._inflight or self._readahead is None:
                return
            try:
                future = self._readahead.submit(self.view.chunk, blob_id)
            except RuntimeError:  # shut down
                return
            self._inflight[blob_id] = future
        future.add_done_callback(lambda _f: self._inflight.pop(blob_id, None))

    # -- helpers for tests and tools ----------------------------------------------------------
    def resolve(self, path: str | bytes) -> Node:
        """The node at a mount-relative path, without following symlinks."""
        raw = path if isinstance(path, bytes) else path.encode("utf-8", "surrogateescape")
        node = self.node(ROOT_INODE)
        for part in raw.split(b"/"):
            if part and part != b".":
                node = self.lookup(node.inode, part)
        return node

