"""On-change snapshots: has a tier changed since its last snapshot, and the inotify watcher.

This module owns two things:

- :func:`find_change`: whether the sources on disk differ from a snapshot, cheaply. The walk
  compares names, types, sizes, mtimes, modes, owners and symlink targets against the
  snapshot's tree entries (read through :class:`~snapstore.view.vfs.SnapshotView`), and for a file
  whose entry matches it also asks the files cache: the cached ``(size, mtime_ns, ctime_ns,
  inode)`` must equal the file's stat and the cached chunk list the entry's, which proves the
  content is the same without reading it (a file rewritten with its old mtime has a new ctime).
  Nothing is read from the source files and no chunk is read from the repository, except for a
  file whose size is unchanged and whose mtime is not (a ``touch``): that one is read and
  chunked, and only different content counts (a new mtime alone is not a change).
  ``snap take --if-changed`` (:func:`snapstore.agent.tiers.take_tier`) takes only when it
  finds a difference from the tier's newest snapshot.
- :class:`Watcher` and :class:`StopSignals`: ``snap watch``. Directory sources are watched
  recursively, file sources through their parent directory (editors replace files by rename).
  A burst of events becomes one snapshot: the take starts once no event came for ``debounce``
  seconds (or ``max_delay`` after the first event of a burst, so a file written continuously
  is still snapshotted). The first SIGTERM/SIGINT stops the watcher after the take in
  progress has committed; a second one during a take aborts it (nothing is committed, which
  the take pipeline guarantees), so there is never half a snapshot.
"""

from __future__ import annotations

import fnmatch
import os
import select
import signal
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

from snapstore.errors import PathNotFound
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import DIR, FILE, SYMLINK, Entry
from snapstore.ops.backup import Source, normalize_sources
from snapstore.ops.excludes import CACHEDIR_TAG, Excludes, WalkRules, is_cache_dir, member_path
from snapstore.ops.protected import protected_dirs
from snapstore.repo.repository import Repository
from snapstore.view.vfs import SnapshotView

# -------------------------------------------------------------------------------------------
# Change detection
# -------------------------------------------------------------------------------------------


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    return None  # fifos, devices, sockets: compared by type only


def _is_glob(part: bytes) -> bool:
    return any(ch in part for ch in b"*?[")


def _show(member: bytes) -> str:
    return os.fsdecode(member) or "/"


class _Compare:
    def __init__(self, repo: Repository, view: SnapshotView, excludes: list[str], txn: Any,
                 rules: WalkRules = WalkRules()) -> None:
        self.repo = repo
        self.view = view
        self.excludes = Excludes(excludes)
        self.rules = rules
        self.txn = txn
        self.repo_dirs = {real for real, _what in protected_dirs(repo)}

    def entry(self, path: bytes, member: bytes, st: os.stat_result, entry: Entry) -> str | None:
        """The first difference between the item at ``path`` and ``entry``, or None."""
        kind = _kind(st.st_mode)
        if kind is not None and kind != entry.kind:
            return f"{_show(member)}: type changed"
        if stat.S_IMODE(st.st_mode) != stat.S_IMODE(entry.mode) or (st.st_uid, st.st_gid) != (entry.uid, entry.gid):
            return f"{_show(member)}: mode or owner changed"
        if kind == SYMLINK:
            return None if os.readlink(path) == entry.target else f"{_show(member)}: link target changed"
        if kind == FILE:
            if st.st_size != entry.size:
                return f"{_show(member)}: modified"
            if st.st_mtime_ns != entry.mtime_ns:
                # a new mtime alone (touch) is no change: the content decides, read and chunked
                # here as a take would (the files cache cannot tell: its entry has the old mtime)
                return None if self.same_content(path, entry) else f"{_show(member)}: modified"
            # the files cache, by the rule take uses to skip reading: an entry that no longer
            # proves the content (or proves other content) means a change; no entry at all
            # (a hard link's second name, a file too new to cache) leaves size and mtime to decide
            chunks = self.repo.index.unchanged_chunks(self.txn, path, st)
            if chunks is None and self.repo.index.get_file(self.txn, path) is None:
                return None
            if chunks != entry.chunks:
                return f"{_show(member)}: modified (same size and mtime)"
            return None
        return None

    def same_content(self, path: bytes, entry: Entry) -> bool:
        """Whether the file at ``path`` chunks to exactly ``entry``'s chunk list (ids and sizes)."""
        from snapstore.format.chunker import Chunker
        from snapstore.format.tree import CHUNK_REF

        refs = []
        try:
            with open(path, "rb") as handle:
                for piece in Chunker(self.repo.config.chunker).cut(handle):
                    refs.append(CHUNK_REF.pack(self.repo.blob_id(piece), len(piece)))
        except OSError:
            return False
        return b"".join(refs) == entry.chunks

    def tree(self, path: bytes, member: bytes, entry: Entry) -> str | None:
        """Compare the directory at ``path`` with the directory entry ``entry``, depth first."""
        stack: list[tuple[bytes, bytes, Entry]] = [(path, member, entry)]
        while stack:
            dir_path, dir_member, dir_entry = stack.pop()
            try:
                with os.scandir(dir_path) as it:
                    on_disk = {e.name: e for e in it}
            except OSError as exc:
                return f"{_show(dir_member)}: cannot list ({exc.strerror})"
            names: dict[bytes, os.DirEntry[bytes]] = {}
            if self.rules.exclude_caches and is_cache_dir(dir_path):  # as a take stores it: the tag only
                on_disk = {n: e for n, e in on_disk.items() if n == CACHEDIR_TAG}
            dir_dev = os.lstat(dir_path).st_dev if self.rules.one_file_system else None
            for name, item in on_disk.items():
                child_member = dir_member + b"/" + name if dir_member else name
                if self.excludes.match(child_member, name):
                    continue
                if item.is_dir(follow_symlinks=False) and os.path.realpath(item.path) in self.repo_dirs:
                    continue
                names[name] = item
            stored = {e.name: e for e in self.view.listdir(dir_entry)}
            if names.keys() != stored.keys():
                extra = sorted(names.keys() - stored.keys())
                gone = sorted(stored.keys() - names.keys())
                which = (extra or gone)[0]
                what = "added" if extra else "removed"
                return f"{_show(dir_member + b'/' + which if dir_member else which)}: {what}"
            for name in sorted(names):
                item = names[name]
                child_member = dir_member + b"/" + name if dir_member else name
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    return f"{_show(child_member)}: removed"
                child = stored[name]
                problem = self.entry(item.path, child_member, st, child)
                if problem:
                    return problem
                if child.kind == DIR and (dir_dev is None or st.st_dev == dir_dev):  # a mount point is stored empty
                    stack.append((item.path, child_member, child))
        return None


def find_change(repo: Repository, snap: Snapshot | None, sources: list[Source],
                excludes: list[str] | None = None, rules: WalkRules = WalkRules()) -> str | None:
    """The first difference between ``sources`` on disk and ``snap`` (None: nothing changed).

    Also a change: no snapshot at all, or a snapshot of other source paths (the config changed).
    """
    if snap is None:
        return "no earlier snapshot of the tier"
    sources = normalize_sources(sources)
    if sorted(snap.paths) != sorted(os.fsdecode(s.path) for s in sources):
        return "the tier's source paths differ from its last snapshot"
    view = SnapshotView(repo, cache_bytes=0)
    with repo.index.read() as txn:
        compare = _Compare(repo, view, excludes or [], txn, rules)
        for src in sources:
            try:
                st = os.lstat(src.path)
            except OSError:
                return f"{os.fsdecode(src.path)}: removed"
            try:
                entry = view.lookup(snap, src.member)
            except PathNotFound:
                return f"{_show(src.member)}: added"
            if src.member:
                problem = compare.entry(src.path, src.member, st, entry)
                if problem:
                    return problem
            if entry.kind == DIR and stat.S_ISDIR(st.st_mode):
                problem = compare.tree(src.path, src.member, entry)
                if problem:
                    return problem
    return None


# -------------------------------------------------------------------------------------------
# Stopping cleanly
# -------------------------------------------------------------------------------------------


class StopSignals:
    """SIGTERM/SIGINT handling for a long-running loop (use as a context manager).

    The first signal sets :attr:`requested` and wakes :attr:`wakeup_fd`; a signal that arrives
    while :attr:`busy` is set and a stop was already requested raises KeyboardInterrupt, so a
    second Ctrl-C aborts the work in progress (a take then commits nothing)."""

    def __init__(self) -> None:
        self.requested: str = ""
        self.busy = False
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._previous: dict[int, Any] = {}

    @property
    def wakeup_fd(self) -> int:
        return self._read

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested and self.busy:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        try:
            os.write(self._write, b"x")
        except OSError:
            pass

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.close(self._read)
        os.close(self._write)


# -------------------------------------------------------------------------------------------
# The watcher
# -------------------------------------------------------------------------------------------


def _flags() -> Any:
    try:
        from inotify_simple import flags
    except ImportError as exc:  # pragma: no cover - a dependency
        from snapstore.errors import SnapError

        raise SnapError(f"snap watch needs the inotify_simple package ({exc})") from None
    return flags


class Watcher:
    """inotify watches over a tier's sources, yielding one burst of changes at a time.
    ``excludes`` mean what they mean to a take: globs on names and snapshot paths."""

    def __init__(self, sources: Sequence[Source], excludes: Sequence[str] | None = None, repo_dir: str = "",
                 ignore: set[bytes] | None = None, patterns: Sequence[str] = ()) -> None:
        from inotify_simple import INotify

        flags = _flags()
        self.flags = flags
        self.mask = (flags.CREATE | flags.DELETE | flags.MODIFY | flags.CLOSE_WRITE | flags.MOVED_FROM
                     | flags.MOVED_TO | flags.ATTRIB | flags.DELETE_SELF | flags.MOVE_SELF)
        self.inotify = INotify(nonblocking=True)
        self.excludes = Excludes(excludes or ())
        self.sources = list(sources)
        self.repo_dir = os.fsencode(os.path.realpath(repo_dir)) if repo_dir else b""
        self.ignore = ignore or set()  # e.g. the history log, which each take appends to
        self.dirs: dict[int, bytes] = {}  # watch descriptor -> directory
        self.only: dict[bytes, set[bytes]] = {}  # directory watched for some of its names only
        self.recursive: set[bytes] = set()  # directories whose whole subtree is watched
        #: directory -> (pattern components, level): names there matching that level's component
        #: may become sources (new matches of a glob, a source that does not exist yet)
        self.pattern_dirs: dict[bytes, set[tuple[tuple[bytes, ...], int]]] = {}
        for path in (s.path for s in self.sources):
            if os.path.isdir(path) and not os.path.islink(path):
                self._add_tree(path)
            else:
                parent, name = os.path.split(path)
                self.only.setdefault(parent, set()).add(name)
                self._add(parent)
        for pattern in patterns:
            self._add_pattern(os.fsencode(pattern))

    @property
    def fd(self) -> int:
        return int(self.inotify.fileno())

    @property
    def watch_count(self) -> int:
        return len(self.dirs)

    def _add(self, path: bytes) -> None:
        try:
            wd = self.inotify.add_watch(path, self.mask | self.flags.ONLYDIR | self.flags.DONT_FOLLOW)
        except OSError:
            return  # vanished, or not a directory: the change itself is seen by the parent
        self.dirs[wd] = path

    def _excluded(self, path: bytes) -> bool:
        """Whether ``path`` on disk is excluded: by its path in the snapshot, as a take decides."""
        for src in self.sources:
            member = member_path(path, src.path, src.member)
            if member is not None:
                return self.excludes.match(member, os.path.basename(path))
        return self.excludes.match_name(os.path.basename(path))

    def _add_tree(self, root: bytes) -> None:
        for dirpath, dirnames, _files in os.walk(root):
            if self.repo_dir and os.path.realpath(dirpath) == self.repo_dir:
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if not self._excluded(os.path.join(dirpath, d))]
            self.recursive.add(dirpath)
            self._add(dirpath)

    def _add_pattern(self, pattern: bytes) -> None:
        """Watch where new matches of the absolute ``pattern`` can appear: its deepest existing
        directory without wildcards, and below it each directory matching the pattern so far."""
        parts = tuple(p for p in pattern.split(b"/") if p)
        base, level = b"/", 0
        while level < len(parts) and not _is_glob(parts[level]):
            step = os.path.join(base, parts[level])
            if not os.path.isdir(step) or os.path.islink(step):
                break
            base, level = step, level + 1
        if level == len(parts):
            return  # it exists: a source, watched as one
        if b"**" in parts[level:]:
            self._add_tree(base)  # any depth may match: the whole tree (a check decides what changed)
            return
        self._watch_level(base, parts, level)

    def _watch_level(self, directory: bytes, parts: tuple[bytes, ...], level: int) -> None:
        if self.repo_dir and os.path.realpath(directory) == self.repo_dir:
            return
        self.pattern_dirs.setdefault(directory, set()).add((parts, level))
        self._add(directory)
        if level + 1 < len(parts):
            try:
                names = os.listdir(directory)
            except OSError:
                return
            for name in names:
                child = os.path.join(directory, name)
                if fnmatch.fnmatchcase(name, parts[level]) and os.path.isdir(child) and not os.path.islink(child):
                    self._watch_level(child, parts, level + 1)

    def _pattern_event(self, directory: bytes, name: bytes, path: bytes, event: Any) -> bool:
        """Whether ``name`` in ``directory`` matches a pattern level there (a new or changed
        match, or a directory that may come to hold one: then watched too)."""
        hit = False
        made_dir = event.mask & (self.flags.CREATE | self.flags.MOVED_TO) and event.mask & self.flags.ISDIR
        for parts, level in list(self.pattern_dirs.get(directory, ())):
            if not fnmatch.fnmatchcase(name, parts[level]):
                continue
            hit = True
            if made_dir and level + 1 < len(parts):
                self._watch_level(path, parts, level + 1)
            elif made_dir:
                self._add_tree(path)  # a new source directory: all of it
        return hit

    def _relevant(self, event: Any) -> bool:
        if event.mask & self.flags.Q_OVERFLOW:
            return True
        directory = self.dirs.get(event.wd)
        if directory is None:
            return False
        name = os.fsencode(event.name) if isinstance(event.name, str) else event.name
        if event.mask & self.flags.IGNORED:
            self.dirs.pop(event.wd, None)
            return False
        path = os.path.join(directory, name) if name else directory
        if name and (path in self.ignore or self._excluded(path)):
            return False
        if name and self._pattern_event(directory, name, path, event):
            return True
        wanted = self.only.get(directory)
        in_tree = directory in self.recursive
        if not in_tree and (wanted is None or name not in wanted):
            return False
        if in_tree and name and event.mask & (self.flags.CREATE | self.flags.MOVED_TO) \
                and event.mask & self.flags.ISDIR:
            self._add_tree(path)
        return True

    def read_relevant(self) -> int:
        """Drain pending events; how many concern the sources."""
        return sum(1 for event in self.inotify.read(timeout=0) if self._relevant(event))

    def bursts(self, stop: StopSignals, debounce: float, max_delay: float) -> Iterator[int]:
        """Yield the number of events of each burst once it has settled; return on a stop."""
        pending = 0
        first = last = 0.0
        while not stop.requested:
            timeout: float | None = None
            if pending:
                now = time.monotonic()
                timeout = max(0.0, min(last + debounce, first + max_delay) - now)
            ready, _, _ = select.select([self.fd, stop.wakeup_fd], [], [], timeout)
            if stop.requested:
                return
            if self.fd in ready:
                count = self.read_relevant()
                if count:
                    last = time.monotonic()
                    if not pending:
                        first = last
                    pending += count
                continue
            if pending and not ready:
                yield pending
                pending = 0

    def close(self) -> None:
        self.inotify.close()


def watch_sources(sources: Sequence[Source], *, debounce: float, action: Callable[[int], None],
                  on_ready: Callable[[Watcher], None] | None = None, excludes: Sequence[str] | None = None,
                  repo_dir: str = "", ignore: set[bytes] | None = None, max_delay: float | None = None,
                  patterns: Sequence[str] = ()) -> str:
    """Watch ``sources`` and call ``action(events)`` once per settled burst, until SIGTERM/SIGINT.

    Returns the name of the signal that stopped it. ``action`` runs with the stop handling in
    its "busy" state: a first signal lets it finish, a second raises KeyboardInterrupt in it."""
    limit = max_delay if max_delay is not None else max(10 * debounce, 60.0)
    with StopSignals() as stop:
        watcher = Watcher(sources, excludes, repo_dir, ignore, patterns)
        try:
            if on_ready is not None:
                stop.busy = True
                try:
                    on_ready(watcher)
                finally:
                    stop.busy = False
            for events in watcher.bursts(stop, debounce, limit):
                stop.busy = True
                try:
                    action(events)
                finally:
                    stop.busy = False
        finally:
            watcher.close()
        return stop.requested
