"""Mounting, serving and unmounting a repository with FUSE; stale-mount detection.

This module owns the life cycle of a mount process: checks before mounting (pyfuse3 and trio
importable, the FUSE device present, a usable mountpoint), the foreground server
(``pyfuse3.init`` / ``trio.run(pyfuse3.main)`` / ``pyfuse3.close`` in try/finally, with SIGINT,
SIGTERM and SIGHUP unmounting cleanly), starting a server in the background and waiting until
the mount is ready, and ``umount`` (``fusermount3 -u``, then ``-u -z`` for a busy or stale
mount, then waiting for the server to exit so that its repository lock is released).

A server records ``{pid, mountpoint, repository}`` in a per-user runtime directory
(``$XDG_RUNTIME_DIR/snapstore`` or ``/tmp/snapstore-<uid>``), next to the log of background
mounts, so that ``umount`` can wait for the right process. pyfuse3 and trio are imported
only inside the functions that need them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from snapstore.errors import ExitCode, FuseUnavailable, MountError

log = logging.getLogger("snapstore.mount")

FSNAME = "snapstore"
MOUNT_OPTIONS = frozenset({
    f"fsname={FSNAME}", f"subtype={FSNAME}", "ro", "default_permissions", "nodev", "nosuid",
})
DEFAULT_DEVICE = "/dev/fuse"
INSTALL_HINT = "pip install 'snapstore[fuse]' (or run scripts/bootstrap.sh)"
READY_TIMEOUT = 30.0
EXIT_TIMEOUT = 10.0


class MountFailed(MountError):
    """A background mount process exited before the mount was ready (carries its exit code)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- prerequisites ------------------------------------------------------------------------------
def fuse_device() -> str:
    """The FUSE device checked before mounting (``SNAP_FUSE_DEVICE`` overrides, for tests)."""
    return os.environ.get("SNAP_FUSE_DEVICE") or DEFAULT_DEVICE


def require_fuse() -> tuple[ModuleType, ModuleType]:
    """Import pyfuse3 and trio and check the FUSE device; raise :class:`FuseUnavailable`."""
    try:
        import pyfuse3
        import trio
    except ImportError as exc:
        name = getattr(exc, "name", None) or "pyfuse3"
        raise FuseUnavailable(f"FUSE support is not installed ({name} cannot be imported): {INSTALL_HINT}") from None
    device = fuse_device()
    if not os.path.exists(device):
        raise FuseUnavailable(
            f"FUSE device {device} is missing: load the fuse kernel module (modprobe fuse) or, in a "
            "container, pass the device through (--device /dev/fuse)"
        )
    return pyfuse3, trio


def fusermount() -> str:
    found = shutil.which("fusermount3") or shutil.which("fusermount")
    if found is None:
        raise FuseUnavailable("fusermount3 is not installed: install the fuse3 package (or run scripts/bootstrap.sh)")
    return found


# -- what is mounted where ----------------------------------------------------------------------
@dataclass(frozen=True)
class MountEntry:
    """One line of ``/proc/self/mountinfo``."""

    mountpoint: str
    fstype: str
    source: str

    @property
    def is_snapstore(self) -> bool:
        return self.source == FSNAME or self.fstype == f"fuse.{FSNAME}"


def _unescape(field: str) -> str:
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def find_mount(mountpoint: str, mountinfo: str = "/proc/self/mountinfo") -> MountEntry | None:
    """The mount at ``mountpoint`` (the last one mounted there), without touching the mount itself."""
    target = canonical(mountpoint)
    found = None
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as handle:
            for line in handle:
                left, _, right = line.partition(" - ")
                fields, tail = left.split(), right.split()
                if len(fields) < 5 or len(tail) < 2:
                    continue
                if _unescape(fields[4]) == target:
                    found = MountEntry(target, tail[0], _unescape(tail[1]))
    except OSError:
        return None
    return found


def canonical(path: str) -> str:
    """An absolute path with symlinks resolved in its parent only (never stats a stale mount)."""
    absolute = os.path.abspath(path)
    parent, name = os.path.split(absolute)
    return os.path.join(os.path.realpath(parent), name) if name else absolute


def is_stale(path: str) -> bool:
    """True when ``path`` is a FUSE mount whose server is gone (statfs fails with ENOTCONN;
    plain stat may still answer from the kernel's attribute cache)."""
    try:
        os.stat(path)
        os.statvfs(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def check_mountpoint(path: str) -> str:
    """The canonical mountpoint if it can be mounted on; :class:`MountError` otherwise."""
    mp = canonical(path)
    try:
        st = os.stat(mp)
        os.statvfs(mp)
    except FileNotFoundError:
        raise MountError(f"mountpoint does not exist: {mp} (create it with mkdir)") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise MountError(f"stale mount at {mp}: run snap umount {mp}") from None
        raise MountError(f"cannot use mountpoint {mp}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise MountError(f"mountpoint is not a directory: {mp}")
    current = find_mount(mp)
    if current is not None or os.path.ismount(mp):
        what = "a snapstore repository is" if current is not None and current.is_snapstore else "something is"
        raise MountError(f"{mp} is already a mount point ({what} mounted there; snap umount {mp} first)")
    try:
        if os.listdir(mp):
            raise MountError(f"mountpoint is not empty: {mp}")
    except OSError as exc:
        raise MountError(f"cannot use mountpoint {mp}: {exc.strerror}") from None
    return mp


# -- the runtime directory: server state and background logs ------------------------------------
def runtime_dir() -> str:
    """A private per-user directory for mount state files and logs (created 0700)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(base, "snapstore") if base else os.path.join(tempfile.gettempdir(), f"snapstore-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise MountError(f"cannot create runtime directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise MountError(f"runtime directory {path} is not a directory owned by you")
    return path


def _slug(mountpoint: str) -> str:
    digest = hashlib.blake2b(mountpoint.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.basename(mountpoint))[:40]
    return f"{name or 'root'}-{digest}"


def log_path(mountpoint: str) -> str:
    """Where a background mount at ``mountpoint`` writes its log."""
    return os.path.join(runtime_dir(), _slug(canonical(mountpoint)) + ".log")


def _state_path(mountpoint: str) -> str:
    return os.path.join(runtime_dir(), _slug(canonical(mountpoint)) + ".json")


def _write_state(mountpoint: str, repository: str) -> str:
    path = _state_path(mountpoint)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"pid": os.getpid(), "mountpoint": mountpoint, "repository": repository}, handle)
    os.replace(tmp, path)
    return path


def _read_state(mountpoint: str) -> dict[str, Any] | None:
    try:
        with open(_state_path(mountpoint), encoding="utf-8") as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError, MountError):
        return None


def _remove_state(mountpoint: str, pid: int | None = None) -> None:
    try:
        path = _state_path(mountpoint)
        if pid is not None:
            state = _read_state(mountpoint)
            if state is None or state.get("pid") != pid:
                return
        os.unlink(path)
    except (OSError, MountError):
        pass


def server_pid(mountpoint: str) -> int | None:
    """The pid of the live process serving ``mountpoint``, from its state file."""
    state = _read_state(mountpoint)
    if not state or not isinstance(state.get("pid"), int):
        return None
    pid = state["pid"]
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return None
    if b"mount" not in cmdline:  # the pid was reused by something else
        return None
    return pid


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[-1].split()
        return fields[0] != b"Z"
    except OSError:
        return False


# -- serving in the foreground ------------------------------------------------------------------
def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def serve(repo_path: str, mountpoint: str, *, wait: float = 0.0, endpoint: str | None = None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Mount the repository at ``mountpoint`` and serve until unmounted or signalled.

    The repository stays open with a shared read lock for the whole time, so ``gc`` waits.
    """
    pyfuse3, trio = require_fuse()
    mp = check_mountpoint(mountpoint)
    # Until trio's signal receiver takes over, SIGTERM/SIGHUP unwind like Ctrl-C, so that the
    # finally clauses below still unmount.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    from snapstore.fuse.adapter import SnapshotOperations
    from snapstore.repo.repository import Repository
    from snapstore.view.namespace import Namespace
    from snapstore.view.vfs import SnapshotView

    repo = Repository.open(repo_path, mode="read", wait=wait, command="snap mount", endpoint=endpoint)
    namespace = None
    try:
        namespace = Namespace(SnapshotView(repo))
        operations = SnapshotOperations(namespace)
        try:
            pyfuse3.init(operations, mp, set(MOUNT_OPTIONS))
        except RuntimeError as exc:
            raise MountError(f"cannot mount at {mp}: {exc}") from None
        try:
            _write_state(mp, repo.path)
            log.info("mounted %s at %s (pid %d)", repo.path, mp, os.getpid())
            if on_ready is not None:
                on_ready(mp)
            trio.run(_main_loop, pyfuse3, trio)
        finally:
            pyfuse3.close(unmount=True)
            _remove_state(mp, os.getpid())
            log.info("unmounted %s", mp)
    finally:
        if namespace is not None:
            namespace.close()
        repo.close()


async def _main_loop(pyfuse3: Any, trio: Any) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, pyfuse3, trio)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


async def _stop_on_signal(pyfuse3: Any, trio: Any) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            pyfuse3.terminate()
            return


# -- starting in the background ---------------------------------------------------------------
def _last_error(path: str, offset: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            lines = [ln.strip() for ln in handle.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith("snap: error: "):
            return line[len("snap: error: "):]
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else ""


def start_background(argv: list[str], mountpoint: str, *, timeout: float | None = None) -> tuple[int, str]:
    """Run ``argv`` (a foreground mount of ``mountpoint``) detached, logging to the runtime
    directory; return ``(pid, log path)`` once the mount answers, or raise :class:`MountFailed`."""
    mp = canonical(mountpoint)
    logfile = log_path(mp)
    if timeout is None:
        timeout = float(os.environ.get("SNAP_MOUNT_TIMEOUT") or READY_TIMEOUT)
    with open(logfile, "wb") as out:  # one log per mount session
        start = 0
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/",
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            message = _last_error(logfile, start) or f"the mount process exited with status {code}"
            known = code in {ExitCode.TARGET, ExitCode.NO_REPO, ExitCode.LOCKED, ExitCode.FUSE, ExitCode.DAMAGED}
            raise MountFailed(message, code if known else ExitCode.TARGET)
        entry = find_mount(mp)
        if entry is not None and entry.is_snapstore:
            try:
                os.stat(mp)  # answered by the server once its main loop runs
                return proc.pid, logfile
            except OSError:
                pass
        if time.monotonic() > deadline:
            proc.terminate()
            raise MountError(f"the mount at {mp} was not ready after {timeout:.0f} s; see {logfile}")
        time.sleep(0.01)


# -- unmounting -----------------------------------------------------------------------------------
def unmount(mountpoint: str, *, timeout: float = EXIT_TIMEOUT) -> str:
    """Unmount a snapstore mount (stale ones too) and wait for its server to exit.
    Returns what was done, for the message."""
    mp = canonical(mountpoint)
    entry = find_mount(mp)
    stale = is_stale(mp)
    if entry is None and not stale:
        if not os.path.lexists(mp):
            raise MountError(f"mountpoint does not exist: {mp}")
        raise MountError(f"{mp} is not mounted")
    if entry is not None and not entry.is_snapstore:
        raise MountError(f"{mp} is not a snapstore mount ({entry.fstype} from {entry.source}); not unmounting it")
    pid = server_pid(mp)
    tool = fusermount()
    done = "cleaned up stale mount" if stale else "unmounted"
    first = subprocess.run([tool, "-u", mp], capture_output=True, text=True)
    if first.returncode != 0:
        lazy = subprocess.run([tool, "-u", "-z", mp], capture_output=True, text=True)
        if lazy.returncode != 0:
            reason = (lazy.stderr or first.stderr).strip().splitlines()
            raise MountError(f"cannot unmount {mp}: {reason[-1] if reason else 'fusermount3 failed'}")
        done = "cleaned up stale mount" if stale else "lazily unmounted (busy; detached until no longer in use)"
    if pid is not None:
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _alive(pid):
            raise MountError(f"unmounted {mp}, but its server (pid {pid}) has not exited after {timeout:.0f} s")
    _remove_state(mp)
    return done
