"""Shared helpers of the benchmark scripts: run and measure, statistics, sizes, tables.

Measuring a command (:func:`run`): wall time is ``time.perf_counter()`` from spawning the child
to reaping it with a blocking ``os.wait4``. Peak RSS is a ``ru_maxrss`` from ``wait4``: on Linux
the largest resident set of the child *and of every descendant it waited for* (the kernel folds
the children's maximum into the parent's when they are reaped), so the peak of the biggest
single process of the tree, not the sum of processes alive at the same time (the tools measured
here do their work in one process).

One trap: Linux carries the parent's RSS high-water mark into a child's ``ru_maxrss`` across
``exec`` (``exec_mmap`` folds the old mm's peak into the signal struct; with ``vfork``, which
subprocess uses, the old mm *is* this script's). Measured directly, every command would report
at least this script's own peak (70 MB and more once it has hashed a data set). So commands run
under GNU time (``/usr/bin/time -f %M -o FILE``): time is a small C program that forks the
command and reports ``wait4``'s ``ru_maxrss`` of it, whose floor is time's ~1 MB. Without GNU
time the scripts fall back to their own ``wait4`` figure and say so (:func:`rss_method`).
``resource.getrusage(RUSAGE_CHILDREN)`` is a running maximum over all children this script has
reaped (including that floor), not attributable to one command; :func:`children_peak_rss`
returns it and the scripts report it once in their JSON output, as a cross-check only.

Other helpers: median/min/max of repeats (:class:`Stat`), apparent size of a tree
(:func:`tree_bytes`, like ``du -sb``), page-cache warm-up (:func:`warm`), manifests for "restored
tree is identical" checks (:func:`manifest`, BLAKE3 per file), the sample data set
(:func:`dataset`) and plain-text / JSON tables (:func:`print_table`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(1, str(REPO_ROOT))

MB = 1_000_000


class NotImplementedBySnap(Exception):
    """The snap command exists not yet (``No such command``): the row shows n/a."""


class CommandFailed(Exception):
    """A measured command exited non-zero."""

    def __init__(self, cmd: Sequence[str], result: Result) -> None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        super().__init__(f"{' '.join(map(str, cmd))} -> exit {result.returncode}: " + " | ".join(tail))
        self.result = result


@dataclass
class Result:
    """One finished command."""

    returncode: int
    seconds: float
    peak_rss: int  # bytes
    stdout: str = ""
    stderr: str = ""

    def json(self) -> Any:
        """The last JSON document on stdout (one object, or the last line of JSON lines)."""
        text = self.stdout.strip()
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            for line in reversed(text.splitlines()):
                line = line.strip()
                if line.startswith(("{", "[")):
                    return json.loads(line)
            raise


def _not_implemented(result: Result) -> bool:
    return result.returncode != 0 and "No such command" in (result.stderr + result.stdout)


class _Child:
    """A started command with its output in temporary files and its peak RSS in a third one."""

    def __init__(
        self,
        cmd: Sequence[str | os.PathLike[str]],
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = [str(c) for c in cmd]
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()
        self.err = tempfile.TemporaryFile()  # noqa: SIM115
        self.rss_file = ""
        argv = self.argv
        wrapper = gnu_time()
        if wrapper:
            fd, self.rss_file = tempfile.mkstemp(prefix="snapbench-rss-")
            os.close(fd)
            argv = [wrapper, "-f", "%M", "-o", self.rss_file, *argv]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=self.out,
            stderr=self.err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: signals reach the whole tree
        )
        self.result: Result | None = None

    def signal(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def poll(self) -> Result | None:
        if self.result is None:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid == self.proc.pid:
                self.finish(status, usage)
        return self.result

    def wait(self, timeout: float | None = None) -> Result:
        """Reap the command (blocking: exact timing); after ``timeout`` s, kill its group."""
        if self.result is not None:
            return self.result
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                pid, status, usage = os.wait4(self.proc.pid, 0 if deadline is None else os.WNOHANG)
                if pid == self.proc.pid:
                    return self.finish(status, usage)
                if deadline is not None and time.monotonic() > deadline:
                    self.signal(signal.SIGKILL)
                    deadline = None
                time.sleep(0.005)
        except BaseException:  # Ctrl-C: take the child down with us
            self.signal(signal.SIGKILL)
            raise

    def finish(self, status: int, usage: Any) -> Result:
        seconds = time.perf_counter() - self.started
        code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = code  # so that Popen does not wait again
        peak = _read_rss_file(self.rss_file) if self.rss_file else None
        if peak is None:  # no GNU time: wait4's figure, floored by our own RSS (module docstring)
            peak = usage.ru_maxrss * 1024 if usage else 0
        self.out.seek(0)
        self.err.seek(0)
        self.result = Result(
            returncode=code,
            seconds=seconds,
            peak_rss=peak,
            stdout=self.out.read().decode(errors="replace"),
            stderr=self.err.read().decode(errors="replace"),
        )
        self.out.close()
        self.err.close()
        if self.rss_file:
            with contextlib.suppress(OSError):
                os.unlink(self.rss_file)
        return self.result


def _read_rss_file(path: str) -> int | None:
    """GNU time's ``%M`` (KiB) from its -o file; it may be preceded by a status line."""
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        return int(lines[-1]) * 1024 if lines else None
    except (OSError, ValueError):
        return None


@functools.cache
def gnu_time() -> str:
    """The path of GNU time (``/usr/bin/time``) if it works with -f/-o, else ''."""
    candidate = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else "")
    if not candidate:
        return ""
    try:
        probe = subprocess.run([candidate, "-f", "%M", "-o", "/dev/null", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return candidate if probe.returncode == 0 else ""


def rss_method() -> str:
    if gnu_time():
        return "GNU time %M (wait4 of the command, forked from a small process)"
    return "os.wait4 ru_maxrss (floored by this script's own peak RSS: install GNU time)"


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> Result:
    """Run ``cmd`` to completion; measure wall seconds and peak RSS (see the module docstring).

    stdout/stderr go to temporary files (no pipe can fill up), then are read back. With
    ``check``, a non-zero exit raises :class:`CommandFailed`, or :class:`NotImplementedBySnap`
    when the output says ``No such command``.
    """
    child = _Child(cmd, cwd, env)
    result = child.wait(timeout)
    if check and result.returncode != 0:
        if _not_implemented(result):
            raise NotImplementedBySnap(" ".join(child.argv))
        raise CommandFailed(child.argv, result)
    return result


class Background(_Child):
    """A long-running command (a FUSE mount) started now and reaped later with its peak RSS."""

    def __init__(self, cmd: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str] | None = None) -> None:
        super().__init__(cmd, None, env)

    def stop(self, timeout: float = 20.0) -> Result:
        """Interrupt (SIGINT to its process group) and reap; SIGKILL after ``timeout`` s."""
        if self.poll() is None:
            self.signal(signal.SIGINT)
        return self.wait(timeout)


def server_peak_rss(needle: str) -> int:
    """Peak RSS (VmHWM, bytes) of running processes whose command line contains ``needle``.

    For a mount that daemonized (its server is no child of ours, so wait4 cannot see it):
    read before unmounting.
    """
    peak = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if needle.encode() not in handle.read():
                    continue
            with open(f"/proc/{entry}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
        except (OSError, ValueError):
            continue
    return peak


def children_peak_rss() -> int:
    """Largest peak RSS (bytes) among all children reaped so far (RUSAGE_CHILDREN)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


# --------------------------------------------------------------------------------------------
# statistics and sizes


@dataclass
class Stat:
    """Median and range of repeated measurements."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    def __bool__(self) -> bool:
        return bool(self.values)

    def fmt(self, digits: int = 2) -> str:
        """``1.23 (1.10-1.40)``, or just the value for a single measurement."""
        if not self.values:
            return "-"
        if len(self.values) == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}-{self.high:.{digits}f})"

    def to_json(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "values": self.values}


def tree_bytes(path: str | os.PathLike[str], allocated: bool = False) -> int:
    """Total size of the regular files under ``path`` (``du -sb``; ``allocated``: ``du -s``)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            total += st.st_blocks * 512 if allocated else st.st_size
    return total


def tree_files(path: str | os.PathLike[str]) -> int:
    return sum(len(files) for _d, _s, files in os.walk(path))


def settle() -> None:
    """Flush dirty pages (``sync``) so that writeback of earlier work does not land in a timing."""
    os.sync()


def warm(path: str | os.PathLike[str]) -> int:
    """Read every file under ``path`` once so that it is in the page cache, then :func:`settle`.

    Returns the bytes read.
    """
    total = 0
    buf = bytearray(1 << 20)
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                continue
            with open(full, "rb", buffering=0) as handle:
                while n := handle.readinto(buf):
                    total += n
    settle()
    return total


def _hasher() -> Callable[[], Any]:
    try:
        import blake3

        return blake3.blake3
    except ImportError:  # outside the venv: any strong hash does for an equality check
        import hashlib

        return hashlib.blake2b


def file_digest(path: str | os.PathLike[str]) -> str:
    make = _hasher()
    digest = make()
    with open(path, "rb", buffering=0) as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def manifest(root: str | os.PathLike[str]) -> dict[str, tuple[int, str]]:
    """``{relative path: (size, BLAKE3)}`` of every regular file (symlinks: their target)."""
    root = Path(root)
    paths: list[Path] = []
    out: dict[str, tuple[int, str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = Path(dirpath, name)
            if full.is_symlink():
                out[full.relative_to(root).as_posix()] = (-1, os.readlink(full))
            else:
                paths.append(full)
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        digests = pool.map(file_digest, paths)
        for full, digest in zip(paths, digests, strict=True):
            out[full.relative_to(root).as_posix()] = (full.stat().st_size, digest)
    return out


def compare_manifests(expected: dict[str, tuple[int, str]], actual: dict[str, tuple[int, str]]) -> str:
    """Empty if identical, else a one-line description of the first differences."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p])
    if not (missing or extra or differ):
        return ""
    parts = []
    for label, items in (("missing", missing), ("extra", extra), ("different", differ)):
        if items:
            parts.append(f"{len(items)} {label} (e.g. {items[0]})")
    return "; ".join(parts)


def find_workspace(
    top: str | os.PathLike[str], max_depth: int = 8, marker: str = "orchestrator_config.json"
) -> Path | None:
    """The first directory (breadth first) under ``top`` holding ``marker`` (the data set's
    top directory inside a restore target or a mount)."""
    level = [Path(top)]
    for _ in range(max_depth + 1):
        following: list[Path] = []
        for directory in level:
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                continue
            if any(e.name == marker for e in entries):
                return directory
            following.extend(Path(e.path) for e in entries if e.is_dir(follow_symlinks=True))
        level = following
    return None


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def copy_tree(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """``cp -a`` (fast, keeps times), replacing ``dst``."""
    remove(dst)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def remove(path: str | os.PathLike[str]) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.exists(path):
        shutil.rmtree(path)


def unmount(path: str | os.PathLike[str]) -> None:
    """Unmount a FUSE mount if mounted (lazily as a last resort)."""
    if not os.path.ismount(path):
        return
    for cmd in (["fusermount3", "-u", str(path)], ["fusermount", "-u", str(path)], ["umount", str(path)]):
        if (
            shutil.which(cmd[0])
            and subprocess.run(cmd, capture_output=True).returncode == 0
            and wait_until(lambda: not os.path.ismount(path), 5)
        ):
            return
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fs_type(path: str | os.PathLike[str]) -> str:
    """The file-system type of the mount holding ``path`` (from /proc/mounts), or ''."""
    best, kind = "", ""
    target = os.path.realpath(path)
    try:
        with open("/proc/mounts") as handle:
            for line in handle:
                fields = line.split()
                mount = fields[1].replace("\\040", " ")
                if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


def check_local_disk(path: str | os.PathLike[str]) -> str:
    """A warning if ``path`` is not on a local disk file system, else ''."""
    kind = fs_type(path)
    if kind in {"tmpfs", "ramfs"}:
        return f"warning: {path} is on {kind} (memory), figures will not reflect a disk"
    if kind.startswith(("nfs", "cifs", "smb", "fuse", "9p", "sshfs", "virtiofs")):
        return f"warning: {path} is on {kind}, not a local disk; figures will be distorted"
    return ""


# --------------------------------------------------------------------------------------------
# the data set


@dataclass(frozen=True)
class Dataset:
    root: Path
    files: int
    bytes: int
    largest: str  # relative path
    small_files: int
    seed: int
    # what the rows look for: the file that marks the data set's top directory in a restore
    # target or a mount, and the file the single-file restore takes out
    marker: str = "orchestrator_config.json"
    single_file: str = "agents/Z/SOUL.md"
    name: str = "agent workspace"


def _scan(root: Path) -> tuple[int, int, str]:
    """Regular files, their bytes and the largest one (relative path) under ``root``."""
    largest, largest_size, files, total = "", -1, 0, 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if not stat.S_ISREG(st.st_mode):
                continue
            files += 1
            total += st.st_size
            if st.st_size > largest_size:
                largest, largest_size = os.path.relpath(os.path.join(dirpath, name), root), st.st_size
    return files, total, largest


REAL_TREE_PACKAGE = "linux-source-6.1"  # Debian 12's kernel source: ~78,600 files, 1.3 GB
REAL_TREE_MARKER = "MAINTAINERS"
REAL_TREE_FILE = "kernel/fork.c"


def real_tree(workdir: Path) -> Dataset:
    """A real source tree of small files, from a Debian package (installed once, then reused).

    ``apt-get download linux-source-6.1`` (any user; needs the Debian archive in apt's sources),
    ``dpkg-deb -x``, then the kernel tarball it ships is unpacked: about 78,600 files of
    17 KB on average (C sources and headers, documentation, scripts), 1.3 GB, no hard links.
    A ``<dir>.json`` beside it records the package version and that the unpacking finished.
    """
    root_parent = workdir / f"real-{REAL_TREE_PACKAGE}"
    marker = workdir / f"real-{REAL_TREE_PACKAGE}.json"
    if marker.is_file() and root_parent.is_dir():
        info = json.loads(marker.read_text())
        return Dataset(Path(info["root"]), info["files"], info["bytes"], info["largest"], 0, 0,
                       marker=REAL_TREE_MARKER, single_file=REAL_TREE_FILE, name=info["name"])
    for tool in ("apt-get", "dpkg-deb", "tar", "xz"):
        if shutil.which(tool) is None:
            raise SystemExit(f"--real-tree needs {tool} (a Debian or Ubuntu machine with xz-utils)")
    remove(root_parent)
    remove(marker)
    scratch = workdir / f"real-{REAL_TREE_PACKAGE}.download"
    remove(scratch)
    scratch.mkdir(parents=True)
    print(f"fetching the real tree: apt-get download {REAL_TREE_PACKAGE} ...", file=sys.stderr)
    subprocess.run(["apt-get", "download", REAL_TREE_PACKAGE], cwd=scratch, check=True,
                   stdout=subprocess.DEVNULL)
    (deb,) = scratch.glob(f"{REAL_TREE_PACKAGE}_*.deb")
    version = deb.name.split("_")[1]
    subprocess.run(["dpkg-deb", "-x", str(deb), str(scratch / "x")], check=True)
    (tarball,) = (scratch / "x" / "usr" / "src").glob(f"{REAL_TREE_PACKAGE}.tar.*")
    root_parent.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(root_parent)], check=True)
    remove(scratch)
    (root,) = [p for p in root_parent.iterdir() if p.is_dir()]
    files, total, largest = _scan(root)
    name = f"{REAL_TREE_PACKAGE} {version} (Debian)"
    marker.write_text(json.dumps({"root": str(root), "files": files, "bytes": total, "largest": largest,
                                  "name": name}))
    print(f"  {files} files, {total / MB:.0f} MB in {root}", file=sys.stderr)
    return Dataset(root, files, total, largest, 0, 0, marker=REAL_TREE_MARKER, single_file=REAL_TREE_FILE,
                   name=name)


SMALL_TREE_MARKER = "MANIFEST"


def small_tree(workdir: Path, count: int, seed: int = 0) -> Dataset:
    """``count`` text files of 1-30 KB (uniform), 100 to a directory, each distinct (no two
    share a chunk: a header line names the file), compressing about 2x with zstd -3: the
    per-file cost of a take, with nothing for a files cache or dedup to skip.
    Written once under ``workdir`` and reused (a ``<dir>.json`` beside it marks it complete)."""
    import random

    name = f"small-{count}-s{seed}"
    root = workdir / name
    done = workdir / f"{name}.json"
    if done.is_file() and root.is_dir():
        info = json.loads(done.read_text())
        return Dataset(root, info["files"], info["bytes"], info["largest"], count, seed,
                       marker=SMALL_TREE_MARKER, single_file="d0000/f00000.txt", name=f"{count} files of 1-30 KB")
    remove(root)
    remove(done)
    print(f"generating {count} files of 1-30 KB in {root} ...", file=sys.stderr)
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10))) for _ in range(4000)]
    lines = [b" ".join(rng.choices(words, k=rng.randint(4, 14))) + b"\n" for _ in range(20000)]
    corpus = b"".join(lines) * 2
    half = len(corpus) // 2
    root.mkdir(parents=True)
    total = 0
    for i in range(count):
        directory = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            directory.mkdir()
        size = rng.randint(1000, 30_000)
        header = f"file {i} seed {seed} {rng.getrandbits(64):016x}\n".encode()
        start = rng.randrange(half)
        body = header + corpus[start : start + size - len(header)]
        (directory / f"f{i:05d}.txt").write_bytes(body)
        total += len(body)
    (root / SMALL_TREE_MARKER).write_text(f"{count} files\n")
    files, total, largest = _scan(root)
    done.write_text(json.dumps({"files": files, "bytes": total, "largest": largest}))
    return Dataset(root, files, total, largest, count, seed, marker=SMALL_TREE_MARKER,
                   single_file="d0000/f00000.txt", name=f"{count} files of 1-30 KB")


def dataset(workdir: Path, size: int, small_files: int = 0, seed: int = 0, data: Path | None = None) -> Dataset:
    """The pristine data set: ``data`` if given, else generated once under ``workdir`` and reused.

    A ``<dir>.json`` next to a generated data set records that it is complete, so an
    interrupted generation is redone. Benchmarks never modify the pristine data set.
    """
    if data is not None:
        root = data.resolve()
        if not (root / "orchestrator_config.json").is_file():
            raise SystemExit(f"--data {root}: not a sample workspace (no orchestrator_config.json)")
        files, total, largest = _scan(root)
        return Dataset(root, files, total, largest, small_files, seed)
    from snapfixtures import sampledata

    name = f"data-{size}-{small_files}-s{seed}"
    root = workdir / name
    marker = workdir / f"{name}.json"
    if marker.is_file() and root.is_dir():
        info = json.loads(marker.read_text())
        return Dataset(root, info["files"], info["bytes"], info["largest"], small_files, seed)
    remove(root)
    remove(marker)
    print(
        f"generating the data set: {size / MB:.0f} MB + {small_files} small files in {root} ...",
        file=sys.stderr,
    )
    info = sampledata.generate_workspace(root, size, small_files=small_files, seed=seed)
    record = {"files": info.files, "bytes": info.total_bytes, "largest": info.largest_file.as_posix()}
    marker.write_text(json.dumps(record))
    print(f"  {info.files} files, {info.total_bytes / MB:.0f} MB in {info.seconds:.1f} s", file=sys.stderr)
    return Dataset(root, info.files, info.total_bytes, record["largest"], small_files, seed)


# --------------------------------------------------------------------------------------------
# output


def human_bytes(n: float | None) -> str:
    if n is None or n < 0:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return "-"


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, file: Any = None) -> None:
    """A plain aligned text table (numbers right-aligned)."""
    text_rows = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def numeric(cell: str) -> bool:
        return bool(cell) and (cell[0].isdigit() or cell[0] in "-+.") and cell not in {"-"}

    out = file or sys.stdout
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in text_rows:
        cells = [
            cell.rjust(widths[i]) if i > 0 and numeric(cell) else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip(), file=out)
