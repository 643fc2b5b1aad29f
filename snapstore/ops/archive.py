"""``snap archive``: move old files off the live disk into a snapshot, never losing a byte.

The guarantee: a file is deleted from the live disk only after its bytes were read back from
the repository and matched the live file, and only if its size, mtime and inode are still
those that were matched just before the deletion. The steps, in order:

1. :func:`select_old_files` picks the regular files under each path that are older than the
   cut-off, less the newest ``keep_newest`` of each path (nothing is written);
2. :func:`take_archive` takes them into one snapshot (the one take pipeline, its packs checked
   as they are written) and pins it, so retention never drops it silently;
3. :func:`read_back` reads every archived file back from the repository (each blob checked
   against its id, the view's cache bypassed) and compares it with the live file, byte for
   byte. Damage anywhere (a blob that does not read back) raises :class:`RepositoryDamaged`
   before anything is deleted: then every live file stays;
4. :func:`remove_verified` deletes the matched files, each after a last ``lstat``: a file
   appended or replaced meanwhile is kept and said so.

Nothing here prints; the CLI renders the frozen results.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from snapstore import faults
from snapstore.errors import PathNotFound, RepositoryDamaged, SourceNotFound
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import FILE
from snapstore.ops.backup import Source, source_for, take_snapshot
from snapstore.ops.protected import is_inside, protected_dirs
from snapstore.repo.repository import Repository
from snapstore.view.vfs import SnapshotView

#: The tag every archive snapshot carries (besides the caller's).
ARCHIVE_TAG = "archive"
_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class ArchiveFile:
    """One live file chosen for the archive, as it was when chosen."""

    path: bytes  # absolute, on the live disk
    given: str  # its path as the caller would write it (under the PATH given), for messages
    size: int
    mtime_ns: int

    def source(self, base: str) -> Source:
        return source_for(self.given, base)


@dataclass(frozen=True)
class Selection:
    """What :func:`select_old_files` chose, and what it passed over."""

    files: tuple[ArchiveFile, ...]
    newer: int  # files under the paths newer than the cut-off
    kept_newest: int  # old files kept because they are among the newest N of their path
    cutoff: datetime

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Matched:
    """A file whose live bytes equal the archive's: what the last check before deletion compares."""

    file: ArchiveFile
    size: int
    mtime_ns: int
    inode: int
    device: int


@dataclass(frozen=True)
class Kept:
    """A chosen file that stays on the live disk, and why."""

    given: str
    why: str
    problem: bool = False  # True: it could not be read, found or deleted (not merely changed)


@dataclass(frozen=True)
class ReadBack:
    """The outcome of reading an archive back against the live files."""

    matched: tuple[Matched, ...]
    kept: tuple[Kept, ...]
    bytes_read: int


@dataclass(frozen=True)
class Removal:
    removed: tuple[str, ...]
    kept: tuple[Kept, ...]
    bytes_freed: int  # logical bytes of the files deleted


def _walk_files(top: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """Regular files at or under ``top`` (symlinks are not followed, nor archived)."""
    st = os.lstat(top)
    if stat.S_ISREG(st.st_mode):
        yield top, st
        return
    if not stat.S_ISDIR(st.st_mode):
        return
    for dirpath, _dirs, names in os.walk(top):
        for name in sorted(names):
            full = os.path.join(dirpath, name)
            try:
                fst = os.lstat(full)
            except OSError:
                continue  # gone since the listing: nothing to archive
            if stat.S_ISREG(fst.st_mode):
                yield full, fst


def select_old_files(paths: Sequence[str], *, base: str, now: datetime, older_than: timedelta,
                     keep_newest: int = 0, skip: Sequence[bytes] = ()) -> Selection:
    """The regular files under each of ``paths`` (relative to ``base``) last modified before
    ``now - older_than``, less the ``keep_newest`` newest files of each path (whatever their
    age: ``--keep-newest 5`` keeps a directory's last five packs even when all are old).
    Files inside ``skip`` (the repository, its caches) are never chosen. A path that does not
    exist is a :class:`SourceNotFound`."""
    cutoff = now - older_than
    cutoff_ns = int(cutoff.timestamp() * 1_000_000_000)
    chosen: dict[bytes, ArchiveFile] = {}
    newer = kept = 0
    for given in paths:
        top = os.path.normpath(os.path.join(os.fsencode(os.path.abspath(base)), os.fsencode(given)))
        if not os.path.lexists(top):
            raise SourceNotFound(f"archive path does not exist: {given}")
        found = [(p, st) for p, st in _walk_files(top)
                 if not any(is_inside(os.path.realpath(p), place) for place in skip)]
        found.sort(key=lambda item: (item[1].st_mtime_ns, item[0]), reverse=True)
        for rank, (path, st) in enumerate(found):
            if st.st_mtime_ns >= cutoff_ns:
                newer += 1
                continue
            if rank < keep_newest:
                kept += 1
                continue
            inside = os.path.relpath(path, top)
            shown = given if inside == b"." else os.path.join(given, os.fsdecode(inside))
            chosen.setdefault(path, ArchiveFile(path, shown, st.st_size, st.st_mtime_ns))
    files = tuple(sorted(chosen.values(), key=lambda f: f.path))
    return Selection(files, newer, kept, cutoff)


def take_archive(repo: Repository, selection: Selection, *, base: str, tier: str, tags: tuple[str, ...] = (),
                 progress: Callable[[dict[str, object]], None] | None = None) -> Snapshot:
    """Take the chosen files into one snapshot of ``tier`` tagged ``archive``, and pin it."""
    all_tags = (ARCHIVE_TAG, *(t for t in tags if t != ARCHIVE_TAG))
    taken = take_snapshot(repo, [f.source(base) for f in selection.files], tier=tier, tags=all_tags,
                          verify="quick", progress=progress)
    repo.set_pin(taken.snapshot, True)  # retention never drops an archive silently: 'snap unpin' first
    return taken.snapshot


def _same_bytes(view: SnapshotView, entry: Any, path: bytes) -> tuple[bool, int]:
    """Whether the live file at ``path`` holds exactly the archived bytes of ``entry``, and how
    many bytes were read from the repository. A blob that does not read back raises
    :class:`RepositoryDamaged` (never caught here)."""
    read = 0
    with open(path, "rb") as live:
        for data in view.iter_file(entry):  # from the packs, each blob checked against its id
            read += len(data)
            if live.read(len(data)) != data:
                return False, read
        return live.read(1) == b"", read


def read_back(repo: Repository, snap: Snapshot, selection: Selection, *, base: str) -> ReadBack:
    """Read every chosen file back from ``snap`` and compare it with the live file.

    A file the snapshot lacks (it could not be read at take time) or whose live copy differs
    (changed since it was archived) is kept. Any repository damage raises
    :class:`RepositoryDamaged`: the caller must then delete nothing."""
    view = SnapshotView(repo)
    matched: list[Matched] = []
    kept: list[Kept] = []
    total = 0
    faults.pause_point("archive-before-read-back")
    for chosen in selection.files:
        member = chosen.source(base).member
        try:
            entry = view.lookup(snap, member)
        except PathNotFound:
            kept.append(Kept(chosen.given, "not in the archive (it could not be read)", problem=True))
            continue
        except RepositoryDamaged as exc:
            raise RepositoryDamaged(f"archive {snap.short_id} does not read back ({exc.message}); "
                                    "nothing was removed from the live disk") from None
        if entry.kind != FILE:
            kept.append(Kept(chosen.given, "not a regular file in the archive", problem=True))
            continue
        try:
            before = os.lstat(chosen.path)
        except OSError as exc:
            kept.append(Kept(chosen.given, f"cannot stat it: {exc.strerror or exc}", problem=True))
            continue
        if (before.st_size, before.st_mtime_ns) != (entry.size, entry.mtime_ns):
            kept.append(Kept(chosen.given, "changed since it was archived (size or mtime)"))
            continue
        try:
            same, read = _same_bytes(view, entry, chosen.path)
        except RepositoryDamaged as exc:
            raise RepositoryDamaged(f"archive {snap.short_id} does not read back: {chosen.given}: {exc.message}; "
                                    "nothing was removed from the live disk") from None
        except OSError as exc:
            kept.append(Kept(chosen.given, f"cannot read it: {exc.strerror or exc}", problem=True))
            continue
        total += read
        if not same:
            kept.append(Kept(chosen.given, "its bytes differ from the archive's"))
            continue
        matched.append(Matched(chosen, before.st_size, before.st_mtime_ns, before.st_ino, before.st_dev))
    return ReadBack(tuple(matched), tuple(kept), total)


def remove_verified(matched: Sequence[Matched]) -> Removal:
    """Delete each matched file whose size, mtime and inode are still those that matched (an
    ``lstat`` just before each ``unlink``); any other is kept, with the reason."""
    removed: list[str] = []
    kept: list[Kept] = []
    freed = 0
    faults.pause_point("archive-before-remove")
    for item in matched:
        try:
            now = os.lstat(item.file.path)
        except FileNotFoundError:
            kept.append(Kept(item.file.given, "already gone from the live disk"))
            continue
        except OSError as exc:
            kept.append(Kept(item.file.given, f"cannot stat it: {exc.strerror or exc}", problem=True))
            continue
        if (now.st_size, now.st_mtime_ns, now.st_ino, now.st_dev) != (item.size, item.mtime_ns, item.inode,
                                                                      item.device):
            kept.append(Kept(item.file.given, "changed after it was read back (size, mtime or inode); kept"))
            continue
        try:
            os.unlink(item.file.path)
        except OSError as exc:
            kept.append(Kept(item.file.given, f"cannot delete it: {exc.strerror or exc}", problem=True))
            continue
        removed.append(item.file.given)
        freed += item.size
    return Removal(tuple(removed), tuple(kept), freed)


@dataclass(frozen=True)
class ArchiveRun:
    """Everything one ``snap archive`` did, for rendering and the history."""

    selection: Selection
    snapshot: Snapshot | None = None
    read_back: ReadBack | None = None
    removal: Removal | None = None
    skipped_dirs: tuple[str, ...] = field(default=())

    @property
    def kept(self) -> list[Kept]:
        return [*(self.read_back.kept if self.read_back else ()), *(self.removal.kept if self.removal else ())]

    def to_json(self) -> dict[str, Any]:
        sel = self.selection
        out: dict[str, Any] = {
            "dry_run": self.snapshot is None, "cutoff": sel.cutoff.isoformat().replace("+00:00", "Z"),
            "selected": [f.given for f in sel.files], "selected_bytes": sel.bytes,
            "newer": sel.newer, "kept_newest": sel.kept_newest,
        }
        if self.snapshot is not None:
            out.update(snapshot=self.snapshot.id, tier=self.snapshot.tier, pinned=True)
        if self.read_back is not None:
            out.update(read_back_files=len(self.read_back.matched), read_back_bytes=self.read_back.bytes_read)
        if self.removal is not None:
            out.update(removed=list(self.removal.removed), bytes_freed=self.removal.bytes_freed)
        out["kept"] = [{"path": k.given, "why": k.why} for k in self.kept]
        return out


def run_archive(repo: Repository, selection: Selection, *, base: str, tier: str, tags: tuple[str, ...] = (),
                progress: Callable[[dict[str, object]], None] | None = None) -> ArchiveRun:
    """Steps 2-4 of the module docstring: take, read back (raising on damage), remove."""
    snap = take_archive(repo, selection, base=base, tier=tier, tags=tags, progress=progress)
    back = read_back(repo, snap, selection, base=base)
    removal = remove_verified(back.matched)
    return ArchiveRun(selection, snap, back, removal)


def repository_places(repo: Repository) -> list[bytes]:
    """The directories no archive takes from (the repository and the snapstore caches)."""
    return [place for place, _what in protected_dirs(repo)]
