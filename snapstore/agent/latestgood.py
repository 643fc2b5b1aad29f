"""Latest-good restore: put back the newest copy of one file that passes a check.

This is the seeds' "state file corruption" runbook as one operation (``snap restore
--latest-good PATH --check json [--check-cmd CMD] --target DIR``):

1. If the live file ``DIR/PATH`` passes the checks it is left alone (unless ``overwrite``).
2. Snapshots are tried newest first. A snapshot without PATH, or whose copy has the same
   content as a copy that already failed, is skipped without reading anything; otherwise the
   copy is written to a temporary file beside the destination and the checks run on it:
   ``json`` (it parses as JSON) and/or a shell command (exit 0 passes; ``{}`` in the command
   is replaced by the temp file's path, else the path is appended as the last argument).
3. The first copy that passes replaces the live file atomically (rename over it), after the
   live file was kept as ``PATH.corrupt-<UTC time>`` beside it (a hard link, so the live name
   never disappears; a copy where links are not possible).

Every skipped snapshot is reported with its reason. Nothing is changed when no copy passes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from snapstore import clock
from snapstore.errors import ChunkUnreadable, PathNotFound, TargetNotEmpty
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import FILE, Entry
from snapstore.ops.restore import check_not_protected
from snapstore.storage.backend import fsync_dir
from snapstore.view.vfs import SnapshotView, as_bytes_path, show_path

CHECK_TIMEOUT_S = 300.0
TMP_MARK = ".snap-latest-good-"
NOT_IN_SNAPSHOT = "not in this snapshot"

#: A check looks at a file and returns None when it passes, else why it failed (one line).
Check = Callable[[str], str | None]


def check_json(path: str) -> str | None:
    """Passes when the file is valid JSON (UTF-8, a BOM allowed)."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            json.load(handle)
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return f"invalid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
    return None


def check_command(command: str, timeout: float = CHECK_TIMEOUT_S) -> Check:
    """A check running ``command`` in a shell on the file ({} = the file, else appended)."""

    def run(path: str) -> str | None:
        quoted = shlex.quote(path)
        line = command.replace("{}", quoted) if "{}" in command else f"{command} {quoted}"
        try:
            proc = subprocess.run(["/bin/sh", "-c", line], capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return f"check command timed out after {timeout:.0f} s"
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
            return f"check command exited {proc.returncode}" + (f": {said[0][:200]}" if said else "")
        return None

    return run


@dataclass
class LatestGood:
    """What a latest-good restore did."""

    path: str  # inside the snapshots
    destination: str
    used: Snapshot | None = None
    skipped: list[tuple[Snapshot, str]] = field(default_factory=list)
    kept_aside: str = ""  # where the live file was kept
    live_ok: bool = False  # the live file passed the checks (nothing restored without overwrite)
    live_problem: str = ""  # why the live file failed ("missing" when there is none)

    @property
    def restored(self) -> bool:
        return self.used is not None

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path, "destination": self.destination, "restored": self.restored,
            "used": self.used.id if self.used else None,
            "used_time": clock.format_time(self.used.time) if self.used else None,
            "skipped": [{"snapshot": s.id, "time": clock.format_time(s.time), "tier": s.tier, "reason": why}
                        for s, why in self.skipped],
            "kept_aside": self.kept_aside or None, "live_ok": self.live_ok,
            "live_problem": self.live_problem or None,
        }


def _run_checks(checks: list[Check], path: str) -> str | None:
    for check in checks:
        problem = check(path)
        if problem:
            return problem
    return None


def _temp_name(directory: str, base: str) -> str:
    return os.path.join(directory, TMP_MARK + os.urandom(4).hex() + "-" + base[:100])


def _write_copy(view: SnapshotView, entry: Entry, tmp: str) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb", closefd=False) as out:
            for data in view.iter_file(entry):
                out.write(data)
            out.flush()
            os.fsync(fd)
    finally:
        os.close(fd)


def _apply_meta(path: str, entry: Entry) -> None:
    if os.geteuid() == 0:
        os.chown(path, entry.uid, entry.gid)
    os.chmod(path, stat.S_IMODE(entry.mode))
    os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))


def _aside_name(dest: str, now: datetime) -> str:
    base = f"{dest}.corrupt-{now.strftime('%Y%m%dT%H%M%SZ')}"
    name, n = base, 1
    while os.path.lexists(name):
        name, n = f"{base}-{n}", n + 1
    return name


def _keep_aside(dest: str, now: datetime) -> str:
    aside = _aside_name(dest, now)
    try:
        os.link(dest, aside)
    except OSError:
        shutil.copy2(dest, aside)
    return aside


def _check_live(dest: str, checks: list[Check]) -> str:
    """Why the live file fails the checks ("" when it passes); checked on a temp copy."""
    if not os.path.lexists(dest):
        return "missing"
    tmp = _temp_name(os.path.dirname(dest), os.path.basename(dest))
    try:
        shutil.copyfile(dest, tmp)
        return _run_checks(checks, tmp) or ""
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def restore_latest_good(view: SnapshotView, snapshots: Iterable[Snapshot], path: str, target: str,
                        checks: list[Check], *, overwrite: bool = False) -> LatestGood:
    """Restore the newest copy of ``path`` among ``snapshots`` that passes ``checks`` to
    ``target/path`` (see the module docstring). Raises only for a destination that cannot be
    a file; "no good copy" is a result with ``used`` None."""
    rel = as_bytes_path(path)
    if not rel:
        raise PathNotFound("--latest-good wants a file path inside the snapshots")
    dest = os.path.join(os.path.abspath(target), os.fsdecode(rel))
    result = LatestGood(path=show_path(rel), destination=dest)
    check_not_protected(dest, view.repo)
    if os.path.isdir(dest) and not os.path.islink(dest):
        raise TargetNotEmpty(f"{dest} is a directory; --latest-good restores one file")
    directory = os.path.dirname(dest)
    os.makedirs(directory, exist_ok=True)
    result.live_problem = _check_live(dest, checks)
    if not result.live_problem:
        result.live_ok = True
        if not overwrite:
            return result
    failed: dict[bytes, tuple[Snapshot, str]] = {}  # content (chunk list) -> first failure
    for snap in sorted(snapshots, key=lambda s: (s.time, s.id), reverse=True):
        try:
            entry = view.lookup(snap, rel)
        except PathNotFound:
            result.skipped.append((snap, NOT_IN_SNAPSHOT))
            continue
        if entry.kind != FILE:
            result.skipped.append((snap, "not a regular file in this snapshot"))
            continue
        if entry.chunks in failed:
            first, why = failed[entry.chunks]
            result.skipped.append((snap, f"same content as {first.short_id}: {why}"))
            continue
        tmp = _temp_name(directory, os.path.basename(dest))
        try:
            try:
                _write_copy(view, entry, tmp)
            except ChunkUnreadable as exc:
                result.skipped.append((snap, f"unreadable: {exc.message}"))
                continue
            problem = _run_checks(checks, tmp)
            if problem:
                failed[entry.chunks] = (snap, problem)
                result.skipped.append((snap, problem))
                continue
            _apply_meta(tmp, entry)
            if os.path.lexists(dest):
                result.kept_aside = _keep_aside(dest, clock.now())
            os.replace(tmp, dest)
            fsync_dir(directory)
            result.used = snap
            return result
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
    return result
