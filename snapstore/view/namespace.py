"""The mount-level namespace over a repository: every snapshot as a read-only tree, by inode.

This module owns what a mounted repository looks like and the inode table behind it; the FUSE
adapter (:mod:`snapstore.fuse.adapter`) only translates its answers to pyfuse3 types. Layout::

    /snapshots/<UTC time>_<short id>/...     each snapshot's files (2026-11-22T070000Z_1a2b3c4d)
    /tiers/<tier>/<UTC time>_<short id>      symlink to ../../snapshots/<UTC time>_<short id>
    /tiers/<tier>/latest                     symlink to the tier's newest snapshot
    /tags/<tag>/<UTC time>_<short id>        symlink, the same by tag (and tags/<tag>/latest)
    /latest                                  symlink to the newest snapshot (absent when none)

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
import functools
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
VIRTUAL_CACHE_SECONDS = 1.0  # top-level nodes change when snapshots are taken or forgotten
SNAPSHOT_CACHE_SECONDS = 3600.0  # snapshot contents never change
BLOCK_SIZE = 1 << 20  # st_blksize: tells cp & co. to read in large blocks
DEFAULT_REFRESH_TTL = 1.0
READAHEAD_WORKERS = 2
READAHEAD_CHUNKS = 2  # chunks fetched ahead of a sequential reader

_TYPE_BITS = {FILE: stat.S_IFREG, DIR: stat.S_IFDIR, SYMLINK: stat.S_IFLNK, FIFO: stat.S_IFIFO,
              CHARDEV: stat.S_IFCHR, BLOCKDEV: stat.S_IFBLK, SOCKET: stat.S_IFSOCK}

# roles of nodes
ROOT = "root"
SNAPSHOTS = "snapshots"
TIERS = "tiers"
TAGS = "tags"
GROUP = "group"  # tiers/<tier> or tags/<tag>
LINK = "link"  # a symlink to a snapshot (in a group, or /latest)
SNAPDIR = "snapdir"  # snapshots/<name>: a snapshot's root directory
ENTRY = "entry"  # anything inside a snapshot


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


@dataclass
class Node:
    """One inode: a top-level directory or symlink, a snapshot's root, or an entry inside one."""

    inode: int
    role: str
    kind: str  # tree kind: DIR, FILE, SYMLINK, ...
    path: bytes  # mount-relative path where it was first seen (for messages)
    entry: Entry | None = None  # SNAPDIR and ENTRY nodes
    snapdir: int = 0  # inode of the snapshot's root directory (SNAPDIR and ENTRY nodes)
    snapshot: Snapshot | None = None  # SNAPDIR nodes
    group: tuple[str, str] = ("", "")  # GROUP and LINK nodes: ("tier" | "tag" | "", name)
    link_name: bytes = b""  # LINK nodes: the snapshot name, or b"latest"
    refs: int = 0  # kernel lookup count


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
        root = Node(ROOT_INODE, ROOT, DIR, b"")
        self._nodes[ROOT_INODE] = root
        self._keys[("root",)] = ROOT_INODE
        for role in (SNAPSHOTS, TIERS, TAGS):
            self._node((ROOT_INODE, role.encode()), functools.partial(_role_dir, role=role))
        self._node((ROOT_INODE, LATEST), lambda ino: Node(ino, LINK, SYMLINK, LATEST, link_name=LATEST))
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
            records = self.view.repo.index.snapshot_records()
            if records == self._records:
                return False
            self._records = records
            self._catalog = _Catalog.build(self.view.repo.snapshots())
            return True

    def snapshots(self) -> dict[bytes, Snapshot]:
        """Snapshot directory names -> snapshots, as currently shown."""
        self.refresh()
        return dict(self._catalog.by_name)

    # -- inode table ------------------------------------------------------------------------
    def _node(self, key: tuple[object, ...], make: Callable[[int], Node]) -> Node:
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

    # -- children of each kind of node -------------------------------------------------------
    def _children(self, node: Node) -> list[bytes]:
        """Names in a virtual directory, sorted."""
        self.refresh()
        cat = self._catalog
        if node.role == ROOT:
            names = [SNAPSHOTS.encode(), TAGS.encode(), TIERS.encode()]
            if cat.newest:
                names.append(LATEST)
            return sorted(names)
        if node.role == SNAPSHOTS:
            return list(cat.names)
        if node.role == TIERS:
            return sorted(cat.tiers)
        if node.role == TAGS:
            return sorted(cat.tags)
        if node.role == GROUP:
            members = self._members(node)
            return sorted([*members, LATEST]) if members else []
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", node.path.decode("utf-8", "replace"))

    def _members(self, group_node: Node) -> list[bytes]:
        """Snapshot names in a tier or tag directory, oldest first (empty once it is gone)."""
        kind, label = group_node.group
        table = self._catalog.tiers if kind == "tier" else self._catalog.tags
        return table.get(group_dir_name(label), [])

    def _virtual_child(self, parent: Node, name: bytes) -> Node:
        self.refresh()
        cat = self._catalog
        key = (parent.inode, name)
        if parent.role == ROOT:
            inode = self._keys.get(key)
            if inode is None or (name == LATEST and not cat.newest):
                raise _not_found(parent.path, name)
            return self.node(inode)
        if parent.role == SNAPSHOTS:
            snap = cat.by_name.get(name)
            if snap is None:
                raise _not_found(parent.path, name)
            return self._node(key, lambda ino: Node(
                ino, SNAPDIR, DIR, parent.path + b"/" + name, entry=self.view.root(snap), snapdir=ino, snapshot=snap))
        if parent.role in (TIERS, TAGS):
            table = cat.tiers if parent.role == TIERS else cat.tags
            if name not in table:
                raise _not_found(parent.path, name)
            kind = "tier" if parent.role == TIERS else "tag"
            label = (cat.tier_names if kind == "tier" else cat.tag_names)[name]
            return self._node(key, lambda ino: Node(ino, GROUP, DIR, parent.path + b"/" + name, group=(kind, label)))
        if parent.role == GROUP:
            members = self._members(parent)
            if name != LATEST and name not in members or not members:
                raise _not_found(parent.path, name)
            return self._node(key, lambda ino: Node(
                ino, LINK, SYMLINK, parent.path + b"/" + name, group=parent.group, link_name=name))
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", parent.path.decode("utf-8", "replace"))

    def _entry_child(self, parent: Node, entry: Entry) -> Node:
        if entry.kind == FILE and entry.hardlink:
            key: tuple[object, ...] = (parent.snapdir, "hardlink", entry.hardlink)
        else:
            key = (parent.inode, entry.name)
        return self._node(key, lambda ino: Node(
            ino, ENTRY, entry.kind, parent.path + b"/" + entry.name, entry=entry, snapdir=parent.snapdir))

    # -- the operations -----------------------------------------------------------------------
    def lookup(self, parent_inode: int, name: bytes) -> Node:
        """The child ``name`` of a directory; raises ENOENT / ENOTDIR as :class:`OSError`."""
        parent = self.node(parent_inode)
        if parent.role in (SNAPDIR, ENTRY):
            if parent.kind != DIR:
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", parent.path.decode("utf-8", "replace"))
            assert parent.entry is not None
            found = self.view.child(parent.entry, name)
            if found is None:
                raise _not_found(parent.path, name)
            return self._entry_child(parent, found)
        return self._virtual_child(parent, name)

    def readdir(self, inode: int) -> list[tuple[bytes, Node]]:
        """A directory's entries in name order (without ``.`` and ``..``)."""
        node = self.node(inode)
        if node.role in (SNAPDIR, ENTRY):
            if node.kind != DIR:
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", node.path.decode("utf-8", "replace"))
            assert node.entry is not None
            return [(e.name, self._entry_child(node, e)) for e in self.view.listdir(node.entry)]
        out = []
        for name in self._children(node):
            try:
                out.append((name, self._virtual_child(node, name)))
            except FileNotFoundError:  # vanished between listing and lookup (a refresh)
                continue
        return out

    def readlink(self, inode: int) -> bytes:
        node = self.node(inode)
        if node.kind != SYMLINK:
            raise OSError(errno.EINVAL, "not a symbolic link", node.path.decode("utf-8", "replace"))
        if node.role == ENTRY:
            assert node.entry is not None
            return node.entry.target
        return self._link_target(node)

    def _link_target(self, node: Node) -> bytes:
        self.refresh()
        cat = self._catalog
        if node.group == ("", ""):  # /latest
            if not cat.newest:
                raise _not_found(node.path)
            return b"snapshots/" + cat.newest
        members = self._members(node)
        if not members:
            raise _not_found(node.path)
        name = members[-1] if node.link_name == LATEST else node.link_name
        if name not in cat.by_name:
            raise _not_found(node.path)
        return b"../../snapshots/" + name

    def getattr(self, inode: int) -> Attr:
        return self.attr(self.node(inode))

    def attr(self, node: Node) -> Attr:
        """The attributes of a node."""
        if node.role == ENTRY:
            e = node.entry
            assert e is not None
            nlink = 2 if e.kind == FILE and e.hardlink else 1  # dirs: 1 = "not counted" (as btrfs)
            size = e.size if e.kind in (FILE, SYMLINK) else 0
            if e.kind == SYMLINK and not size:
                size = len(e.target)
            return Attr(node.inode, _TYPE_BITS[e.kind] | stat.S_IMODE(e.mode), nlink, e.uid, e.gid, size,
                        e.mtime_ns, e.rdev, cache_seconds=SNAPSHOT_CACHE_SECONDS)
        if node.role == SNAPDIR:
            snap = node.snapshot
            assert snap is not None
            # a short cache: the name must disappear soon after the snapshot is forgotten
            return Attr(node.inode, stat.S_IFDIR | 0o555, 1, self.uid, self.gid, 0, _ns(snap))
        if node.kind == SYMLINK:
            try:
                target = self._link_target(node)
            except FileNotFoundError:
                target = b""
            when = self._catalog.newest_ns or self.started_ns
            return Attr(node.inode, stat.S_IFLNK | 0o777, 1, self.uid, self.gid, len(target), when)
        if node.role == ROOT:
            subdirs = 3
        elif node.role in (SNAPSHOTS, TIERS, TAGS):
            subdirs = len(self._children(node))
        else:
            subdirs = 0
        nlink = 2 + subdirs
        when = self._catalog.newest_ns or self.started_ns
        return Attr(node.inode, stat.S_IFDIR | 0o555, nlink, self.uid, self.gid, 0, when)

    # -- reading files ----------------------------------------------------------------------
    def file_entry(self, inode: int) -> Entry:
        """The entry of a regular file (EISDIR for a directory, EINVAL for anything else)."""
        node = self.node(inode)
        if node.kind == DIR:
            raise IsADirectoryError(errno.EISDIR, "is a directory", node.path.decode("utf-8", "replace"))
        if node.kind != FILE or node.entry is None:
            raise OSError(errno.EINVAL, "not a regular file", node.path.decode("utf-8", "replace"))
        return node.entry

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


def _role_dir(inode: int, role: str) -> Node:
    """One of the top-level directories (snapshots/, tiers/, tags/)."""
    return Node(inode, role, DIR, role.encode())
