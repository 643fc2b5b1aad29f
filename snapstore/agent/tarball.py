"""tar interop: export a snapshot as a tar stream, import existing tar.gz backups as snapshots.

Export (:func:`export_tar`) streams: tarfile writes in stream mode (``w|gz``, ``w|``, or plain
tar through a zstd stream writer) and each file's content is fed through :class:`ChunkReader`,
a file-like reader over :meth:`SnapshotView.iter_file`, so memory holds one chunk at a time
whatever the size of a file or snapshot. Members keep their mode, mtime (sub-second in a PAX
header), uid/gid and owner names; directories, symlinks, hard links (the second name of a
hard-linked file is a link member), fifos and devices are kept; sockets cannot be in a tar and
are left out. ``prefix`` puts everything under one top directory, like the seeds' archives.

Import (:func:`import_archive`) turns an archive such as ``orchestrator-20261101_070000.tar.gz``
into one snapshot. The archive is extracted into a fixed work directory inside the
repository's local tmp directory (same filesystem, and one fixed path so the files cache does
not grow with every archive: extracted files get new inodes and ctimes, so it never mistakes
them for earlier ones), then taken with the time read from the name. A single top-level
directory (the seeds' ``STAMP/``) is stripped, so snapshots of different days line up and
their unchanged files dedup. Unsafe members (absolute paths, ``..``, paths through a symlink
that leaves the archive, hard links out of it) make the import fail; device files and fifos are
skipped and reported unless running as root. The snapshot is tagged
``imported-from:<archive name>``, and an archive already imported into the tier is skipped.

Times from names (:func:`time_from_name`, read as local time like the ``date`` that made them):
``YYYYMMDD_HHMMSS`` (also ``-``, ``T`` or nothing between), ``YYYY-MM-DD-HHmmss`` /
``YYYY-MM-DDTHH:MM:SS``, ``YYYY-MM-DD``, ``YYYYMMDD``, ``YYYY-Www`` (the Sunday of that ISO
week, when the seeds' weekly backup runs), ``YYYY-MM`` (the first of the month). Without one,
the newest member mtime is used.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import re
import shutil
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import IO, TYPE_CHECKING, Any

from snapstore.agent.schedule import local_zone
from snapstore.errors import SnapError, SourceNotFound
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import BLOCKDEV, CHARDEV, DIR, FIFO, FILE, SYMLINK, Entry
from snapstore.ops.backup import TakeResult, source_for, take_snapshot
from snapstore.ops.restore import select
from snapstore.repo.repository import Repository
from snapstore.view.vfs import SnapshotView

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath

IMPORT_TAG = "imported-from:"
WORK_DIR = "import"
COPY_BUFSIZE = 1 << 20

# -------------------------------------------------------------------------------------------
# Export
# -------------------------------------------------------------------------------------------


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (one chunk in memory at a time)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, out: Any) -> int:
        while not self._buffer:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._buffer = memoryview(nxt)
        n = min(len(out), len(self._buffer))
        out[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def compression_for(output: str, requested: str = "auto") -> str:
    """``gz``, ``zst`` or ``none``: as requested, else from the output name (stdout: gz)."""
    if requested != "auto":
        return requested
    name = output.lower()
    if name.endswith((".tar.zst", ".tzst", ".zst")):
        return "zst"
    if name.endswith(".tar"):
        return "none"
    return "gz"


@dataclass
class ExportStats:
    members: int = 0
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # sockets

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def pax_time(ns: int) -> str:
    """A time in integer nanoseconds as a pax decimal (``1796155305.527300538``), exactly: a float
    has 53 bits, too few for nanoseconds since 1970, and tar --compare sees every lost digit."""
    sign = "-" if ns < 0 else ""
    whole, frac = divmod(abs(ns), 1_000_000_000)
    return f"{sign}{whole}.{frac:09d}".rstrip("0") if frac else f"{sign}{whole}"


def pax_time_ns(text: str) -> int:
    """Integer nanoseconds of a pax decimal time (the inverse of :func:`pax_time`)."""
    value = Decimal(text.strip())
    return int((value * 1_000_000_000).to_integral_value(rounding=ROUND_FLOOR))


def _tarinfo(name: str, entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(entry.mode)
    # the ustar field holds whole seconds; the exact time goes in the pax header as a decimal
    # string (tarfile would format a float, which cannot hold nanoseconds)
    info.mtime = entry.mtime_ns // 1_000_000_000
    if entry.mtime_ns % 1_000_000_000 or entry.mtime_ns < 0:
        info.pax_headers = {"mtime": pax_time(entry.mtime_ns)}
    info.uid, info.gid = entry.uid, entry.gid
    info.uname, info.gname = entry.user, entry.group
    return info


def export_tar(view: SnapshotView, snap: Snapshot, paths: list[str], out: IO[bytes], *,
               compression: str = "gz", prefix: str = "") -> ExportStats:
    """Write ``paths`` of ``snap`` (all of it when empty) to ``out`` as a tar stream."""
    stats = ExportStats()
    sink: Any = out
    zst_writer = None
    if compression == "zst":
        import zstandard

        zst_writer = zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False)
        sink = zst_writer
    mode = "w|gz" if compression == "gz" else "w|"
    prefix = prefix.strip("/")
    links: dict[int, str] = {}  # hard-link group -> first name written
    items = select(view, snap, paths)  # looks every path up before a byte is written
    with tarfile.open(fileobj=sink, mode=mode, format=tarfile.PAX_FORMAT, encoding="utf-8",  # type: ignore[call-overload]
                      errors="surrogateescape") as tar:
        for rel, entry in items:
            relname = rel.decode("utf-8", "surrogateescape")
            if not relname:
                if not prefix:
                    continue  # the snapshot root: tar has no entry for "."
                name = prefix
            else:
                name = f"{prefix}/{relname}" if prefix else relname
            info = _tarinfo(name, entry)
            content: IO[bytes] | None = None
            if entry.kind == DIR:
                info.type = tarfile.DIRTYPE
            elif entry.kind == FILE:
                first = links.get(entry.hardlink) if entry.hardlink else None
                if first is not None:
                    info.type, info.linkname = tarfile.LNKTYPE, first
                else:
                    if entry.hardlink:
                        links[entry.hardlink] = name
                    info.type, info.size = tarfile.REGTYPE, entry.size
                    content = io.BufferedReader(ChunkReader(view.iter_file(entry)), COPY_BUFSIZE)
                    stats.files += 1
                    stats.bytes += entry.size
            elif entry.kind == SYMLINK:
                info.type, info.linkname = tarfile.SYMTYPE, entry.target.decode("utf-8", "surrogateescape")
            elif entry.kind == FIFO:
                info.type = tarfile.FIFOTYPE
            elif entry.kind in (CHARDEV, BLOCKDEV):
                info.type = tarfile.CHRTYPE if entry.kind == CHARDEV else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(entry.rdev), os.minor(entry.rdev)
            else:
                stats.skipped.append(f"{name}: a socket cannot be stored in a tar archive")
                continue
            tar.addfile(info, content)
            stats.members += 1
    if zst_writer is not None:
        zst_writer.flush(zstandard.FLUSH_FRAME)
        zst_writer.close()
    return stats


# -------------------------------------------------------------------------------------------
# Import
# -------------------------------------------------------------------------------------------

_D = r"(?<!\d)"
_E = r"(?!\d)"
_TIME_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(_D + r"(\d{4})(\d{2})(\d{2})[_T-]?(\d{2})(\d{2})(\d{2})" + _E), "ymdHMS"),
    (re.compile(_D + r"(\d{4})-(\d{2})-(\d{2})[T_ -](\d{2}):?-?(\d{2}):?-?(\d{2})" + _E), "ymdHMS"),
    (re.compile(_D + r"(\d{4})-(\d{2})-(\d{2})" + _E), "ymd"),
    (re.compile(_D + r"(\d{4})-?W(\d{2})" + _E), "yW"),
    (re.compile(_D + r"(\d{4})(\d{2})(\d{2})" + _E), "ymd"),
    (re.compile(_D + r"(\d{4})-(\d{2})" + _E), "ym"),
]


def time_from_name(name: str, tz: tzinfo | None = None) -> datetime | None:
    """The time a backup's file name says it was made (aware UTC), or None."""
    zone = tz or local_zone()
    base = os.path.basename(name)
    for pattern, kind in _TIME_PATTERNS:
        for match in pattern.finditer(base):
            parts = [int(p) for p in match.groups()]
            try:
                if kind == "ymdHMS":
                    moment = datetime(parts[0], parts[1], parts[2], parts[3], parts[4], parts[5])
                elif kind == "ymd":
                    moment = datetime(parts[0], parts[1], parts[2])
                elif kind == "yW":
                    moment = datetime.combine(date.fromisocalendar(parts[0], parts[1], 7), datetime.min.time())
                else:
                    moment = datetime(parts[0], parts[1], 1)
            except ValueError:
                continue
            if not 1970 <= moment.year <= 9999:
                continue
            return moment.replace(tzinfo=zone).astimezone(UTC)
    return None


@dataclass
class ImportResult:
    archive: str
    time: datetime
    time_from: str  # "name" or "mtime"
    stripped: str = ""  # the top-level directory that was stripped
    taken: TakeResult | None = None
    already: Snapshot | None = None  # imported before: skipped
    skipped_members: list[str] = field(default_factory=list)


def archive_order(archives: list[str]) -> list[str]:
    """Oldest first: by the time in the name, else by the file's mtime."""

    def key(path: str) -> tuple[float, str]:
        moment = time_from_name(path)
        if moment is not None:
            return moment.timestamp(), path
        try:
            return os.stat(path).st_mtime, path
        except OSError:
            return 0.0, path

    return sorted(archives, key=key)


class _Filter:
    """tarfile extraction filter: the safety checks of ``data_filter``, but members kept as
    they are (modes, owners, symlinks to anywhere: they are stored, never followed)."""

    def __init__(self) -> None:
        self.skipped: list[str] = []
        self.newest = 0.0
        self.is_root = os.geteuid() == 0

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        if member.ischr() or member.isblk() or member.isfifo():
            if not self.is_root:
                self.skipped.append(f"{member.name}: device or fifo (only root can create it)")
                return None
        else:
            try:
                tarfile.data_filter(member, dest)
            except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError):
                if not member.issym():
                    raise
        self.newest = max(self.newest, float(member.mtime))
        return member


def member_mtime_ns(member: tarfile.TarInfo) -> int:
    """A member's mtime in integer nanoseconds: from the pax header's decimal string when there
    is one (tarfile turns it into a float, losing the last digits), else the whole seconds."""
    text = member.pax_headers.get("mtime")
    if text:
        try:
            return pax_time_ns(text)
        except (InvalidOperation, ValueError):
            pass
    return int(member.mtime * 1_000_000_000) if isinstance(member.mtime, float) else int(member.mtime) * 1_000_000_000


class _ExactTarFile(tarfile.TarFile):
    """Extraction that keeps times exactly as the archive has them, symlinks included."""

    def utime(self, tarinfo: tarfile.TarInfo, targetpath: StrOrBytesPath) -> None:
        ns = member_mtime_ns(tarinfo)
        try:
            os.utime(targetpath, ns=(ns, ns), follow_symlinks=False)
        except OSError as exc:
            raise tarfile.ExtractError("could not change modification time") from exc

    def makelink(self, tarinfo: tarfile.TarInfo, targetpath: StrOrBytesPath) -> None:
        super().makelink(tarinfo, targetpath)
        if tarinfo.issym():  # tarfile leaves a symlink's own time at "now"; tar -x sets it
            self.utime(tarinfo, targetpath)


def _extract(archive: str, work: str) -> tuple[str, str, _Filter]:
    """Extract into ``work/x``; returns (root to take, stripped top directory, filter)."""
    unpack = os.path.join(work, "x")
    os.makedirs(unpack)
    check = _Filter()
    try:
        tar = _ExactTarFile.open(archive, "r:*")
    except FileNotFoundError:
        raise SourceNotFound(f"archive not found: {archive}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError):
        # tarfile lists every decompressor it tried, one per line: the user needs one line
        raise SnapError(f"{archive}: not a readable tar archive (not tar, nor tar compressed with gzip, "
                        "bzip2 or xz)") from None
    try:
        with tar:
            tar.extractall(unpack, numeric_owner=True, filter=check)
    except tarfile.FilterError as exc:
        raise SnapError(f"{archive}: unsafe member refused: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise SnapError(f"{archive}: not a readable tar archive ({why})") from None
    names = os.listdir(unpack)
    root = os.path.join(work, "root")
    stripped = ""
    top = os.path.join(unpack, names[0]) if len(names) == 1 else ""
    if top and os.path.isdir(top) and not os.path.islink(top):
        stripped = names[0]
        os.rename(top, root)
        os.rmdir(unpack)
    else:
        os.rename(unpack, root)
    return root, stripped, check


def import_archive(repo: Repository, archive: str, *, tier: str = "imported", tags: tuple[str, ...] = (),
                   when: datetime | None = None, level: int | None = None, verify: str = "quick") -> ImportResult:
    """Import one tar archive (any compression tarfile reads) as a snapshot of ``tier``."""
    name = os.path.basename(archive)
    tag = IMPORT_TAG + re.sub(r"[,\s]", "_", name)
    for snap in repo.snapshots():
        if snap.tier == tier and tag in snap.tags:
            return ImportResult(archive, snap.time, "name", already=snap)
    if not os.path.isfile(archive):
        raise SourceNotFound(f"archive not found: {archive}")
    work = os.path.join(repo.backend.local_tmp_dir(), WORK_DIR)
    shutil.rmtree(work, ignore_errors=True)  # left by a killed import (we hold the write lock)
    os.makedirs(work)
    try:
        root, stripped, check = _extract(archive, work)
        moment = when or time_from_name(name)
        time_from = "given" if when else "name"
        if moment is None:
            time_from = "mtime"
            moment = datetime.fromtimestamp(check.newest or os.stat(archive).st_mtime, UTC)
        taken = take_snapshot(repo, [source_for(".", root)], tier=tier, tags=(*tags, tag), when=moment,
                              level=level, verify=verify)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ImportResult(archive, moment, time_from, stripped, taken, skipped_members=check.skipped)
