"""snap against restic and borg on the same agent workspace: the performance comparison.

Run from the repository root with the venv active::

    python benchmarks/compare.py                       # 1 GB + 10,000 small files, 3 repeats
    python benchmarks/compare.py --size 100M --repeats 1 --only first-take,restore-full
    python benchmarks/compare.py --peers restic,borg --json > out.json

Every peer gets the same pristine data set (generated once by ``snapfixtures.sampledata`` and
reused), its own fresh repository each repeat, and its own fresh copy of the data wherever a
workload changes it. Peers: snap (defaults: encrypted, the password in ``SNAP_PASSWORD``, default
Argon2id parameters), snap-plain (``--encryption none``), restic (repository v2, compression
auto, a password in ``RESTIC_PASSWORD``), borg (``--encryption repokey-blake2``,
``--compression zstd,3``, a passphrase in ``BORG_PASSPHRASE``): every encrypted peer pays its
key derivation on each command, as cron would. A peer
that is not installed is skipped with a note; a snap command that does not exist yet shows as
``n/a (not implemented)``. See benchmarks/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    MB,
    Background,
    CommandFailed,
    Dataset,
    NotImplementedBySnap,
    Result,
    Stat,
    check_local_disk,
    children_peak_rss,
    compare_manifests,
    copy_tree,
    dataset,
    file_digest,
    find_workspace,
    fs_type,
    human_bytes,
    manifest,
    print_table,
    real_tree,
    remove,
    rss_method,
    run,
    server_peak_rss,
    settle,
    small_tree,
    tree_bytes,
    unmount,
    wait_until,
    warm,
)

GC_SNAPSHOTS = 30
MOUNT_TIMEOUT_S = 180.0

ROWS: dict[str, str] = {
    "first-take": "first take",
    "retake-unchanged": "unchanged re-take",
    "take-after-day": "take after 1 simulated day",
    "restore-full": "full restore",
    "restore-file": "single-file restore",
    "mount-ready": "mount usable",
    "mount-cp-largest": "cp largest file via mount",
    "mount-find": "find over mounted snapshot",
    "gc-half": f"forget {GC_SNAPSHOTS // 2} of {GC_SNAPSHOTS} snapshots + gc/prune",
    "verify-data": "verify all data",
}
BASE_ROWS = ("first-take", "retake-unchanged", "restore-full", "restore-file", "verify-data")
MOUNT_ROWS = ("mount-ready", "mount-cp-largest", "mount-find")
THROUGHPUT_ROWS = {"first-take", "restore-full", "mount-cp-largest", "verify-data"}


# --------------------------------------------------------------------------------------------
# the peers


class Peer:
    """How one tool does each workload. ``state`` is a directory with ``repo/`` and its caches."""

    name = ""
    install_hint = ""
    reference = False  # a limit shown beside the tools, left out of snap/best

    def missing(self) -> str:
        """Why the peer cannot run ('' if it can)."""
        return ""

    def version(self) -> str:
        return ""

    def env(self, state: Path) -> dict[str, str]:
        return {}

    def repo(self, state: Path) -> Path:
        return state / "repo"

    def cache(self, state: Path) -> Path:
        """The tool's local cache of this repository (kept per state, never in ~/.cache)."""
        return state / "cache"

    def run(self, state: Path, args: Sequence[str | os.PathLike[str]], **kwargs: Any) -> Result:
        return run(args, env=self.env(state), **kwargs)

    def init(self, state: Path) -> None:
        raise NotImplementedError

    def take(self, state: Path, data: Path) -> tuple[Result, str]:
        """Snapshot the top-level entries of ``data`` (run from inside it); returns the id."""
        raise NotImplementedError

    def restore(self, state: Path, snapshot: str, target: Path) -> Result:
        raise NotImplementedError

    def restore_file(self, state: Path, snapshot: str, rel: str, target: Path) -> Result:
        raise NotImplementedError

    def mount(self, state: Path, mountpoint: Path) -> Background:
        raise NotImplementedError

    def umount(self, state: Path, mountpoint: Path) -> None:
        unmount(mountpoint)

    def forget_and_gc(self, state: Path, ids: list[str], keep: int) -> list[Result]:
        """Forget all but the newest ``keep`` of ``ids`` (oldest first) and free their space."""
        raise NotImplementedError

    def verify(self, state: Path) -> Result:
        raise NotImplementedError

    def count_snapshots(self, state: Path) -> int:
        raise NotImplementedError


def _entries(data: Path) -> list[str]:
    return sorted(os.listdir(data))


def find_snap_binary(explicit: str | None = None) -> str | None:
    """The snapstore ``snap``: the venv's (next to this Python) first, then PATH (not snapd's)."""
    candidates = [explicit] if explicit else [str(Path(sys.executable).parent / "snap"), shutil.which("snap")]
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        try:
            probe = subprocess.run([candidate, "--help"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "--repo" in probe.stdout + probe.stderr:
            return candidate
    return None


class SnapPeer(Peer):
    name = "snap"
    install_hint = "pip install -e . (from the repository root, in the venv)"

    def __init__(self, binary: str | None = None) -> None:
        self.binary = find_snap_binary(binary)
        # the password as a cron job gives it (it wins over the unlocked-key cache: Argon2id runs
        # on every command); the default KDF parameters, as a user gets them
        os.environ.setdefault("SNAP_PASSWORD", "snapbench")
        os.environ.pop("SNAP_KDF_PROFILE", None)

    def missing(self) -> str:
        return "" if self.binary else "snap (snapstore) not installed"

    def version(self) -> str:
        try:
            from importlib.metadata import version

            return f"snapstore {version('snapstore')}"
        except Exception:  # informational only
            return "snapstore ?"

    def cmd(self, state: Path, *args: str | os.PathLike[str]) -> list[str]:
        assert self.binary
        return [self.binary, "--repo", str(self.repo(state)), *map(str, args)]

    def env(self, state: Path) -> dict[str, str]:
        # the index and the unlocked-key cache live under $XDG_CACHE_HOME/snapstore/<id>
        return {"XDG_CACHE_HOME": str(self.cache(state))}

    def init(self, state: Path) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.run(state, self.cmd(state, "init"))

    def take(self, state: Path, data: Path) -> tuple[Result, str]:
        result = self.run(state, self.cmd(state, "take", *_entries(data), "--json"), cwd=data)
        return result, str(result.json()["id"])

    def restore(self, state: Path, snapshot: str, target: Path) -> Result:
        return self.run(state, self.cmd(state, "restore", snapshot, "--target", target))

    def restore_file(self, state: Path, snapshot: str, rel: str, target: Path) -> Result:
        return self.run(state, self.cmd(state, "restore", snapshot, rel, "--target", target))

    def mount(self, state: Path, mountpoint: Path) -> Background:
        # in the foreground, like `restic mount` and `borg mount -f`, so that wait4 sees its RSS
        help_text = subprocess.run(self.cmd(state, "mount", "--help"), capture_output=True, text=True).stdout
        foreground = ["--foreground"] if "--foreground" in help_text else []
        return Background(self.cmd(state, "mount", *foreground, mountpoint), env=self.env(state))

    def umount(self, state: Path, mountpoint: Path) -> None:
        if os.path.ismount(mountpoint):
            self.run(state, self.cmd(state, "umount", mountpoint), check=False)
        unmount(mountpoint)

    def forget_and_gc(self, state: Path, ids: list[str], keep: int) -> list[Result]:
        drop = ids[: len(ids) - keep]
        return [self.run(state, self.cmd(state, "forget", *drop)), self.run(state, self.cmd(state, "gc"))]

    def verify(self, state: Path) -> Result:
        return self.run(state, self.cmd(state, "verify", "--read-data"))

    def count_snapshots(self, state: Path) -> int:
        listing = self.run(state, self.cmd(state, "list", "--json")).json()
        return len(listing["snapshots"] if isinstance(listing, dict) else listing)


class ResticPeer(Peer):
    name = "restic"
    install_hint = "apt-get install restic"

    def missing(self) -> str:
        return "" if shutil.which("restic") else "restic not installed"

    def version(self) -> str:
        return subprocess.run(["restic", "version"], capture_output=True, text=True).stdout.strip()

    def env(self, state: Path) -> dict[str, str]:
        return {"RESTIC_PASSWORD": "snapbench", "RESTIC_CACHE_DIR": str(state / "cache")}

    def cmd(self, state: Path, *args: str | os.PathLike[str]) -> list[str]:
        return ["restic", "-r", str(self.repo(state)), *map(str, args)]

    def init(self, state: Path) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.run(state, self.cmd(state, "init", "--repository-version", "2"))

    def take(self, state: Path, data: Path) -> tuple[Result, str]:
        result = self.run(
            state, self.cmd(state, "backup", "--json", "--quiet", "--host", "snapbench", *_entries(data)), cwd=data
        )
        return result, str(result.json()["snapshot_id"])

    def restore(self, state: Path, snapshot: str, target: Path) -> Result:
        return self.run(state, self.cmd(state, "restore", snapshot, "--target", target))

    def restore_file(self, state: Path, snapshot: str, rel: str, target: Path) -> Result:
        # several paths under one parent are stored relative to it: /agents/Z/SOUL.md
        return self.run(state, self.cmd(state, "restore", snapshot, "--target", target, "--include", "/" + rel))

    def mount(self, state: Path, mountpoint: Path) -> Background:
        return Background(self.cmd(state, "mount", mountpoint), env=self.env(state))

    def forget_and_gc(self, state: Path, ids: list[str], keep: int) -> list[Result]:
        forget = self.run(state, self.cmd(state, "forget", "--keep-last", str(keep)))
        return [forget, self.run(state, self.cmd(state, "prune"))]

    def verify(self, state: Path) -> Result:
        return self.run(state, self.cmd(state, "check", "--read-data"))

    def count_snapshots(self, state: Path) -> int:
        return len(self.run(state, self.cmd(state, "snapshots", "--json")).json())


class BorgPeer(Peer):
    name = "borg"
    install_hint = "apt-get install borgbackup"

    def missing(self) -> str:
        return "" if shutil.which("borg") else "borg not installed"

    def version(self) -> str:
        return subprocess.run(["borg", "--version"], capture_output=True, text=True).stdout.strip()

    def env(self, state: Path) -> dict[str, str]:
        return {
            "BORG_BASE_DIR": str(state / "base"),  # config, cache and security dirs per state
            "BORG_PASSPHRASE": "snapbench",
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        }

    def cache(self, state: Path) -> Path:
        return state / "base" / ".cache" / "borg"

    def init(self, state: Path) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.run(state, ["borg", "init", "--encryption", "repokey-blake2", self.repo(state)])

    def take(self, state: Path, data: Path) -> tuple[Result, str]:
        name = f"a{time.time_ns()}"
        result = self.run(
            state,
            ["borg", "create", "--compression", "zstd,3", f"{self.repo(state)}::{name}", *_entries(data)],
            cwd=data,
        )
        return result, name

    def restore(self, state: Path, snapshot: str, target: Path) -> Result:
        target.mkdir(parents=True, exist_ok=True)
        return run(["borg", "extract", f"{self.repo(state)}::{snapshot}"], cwd=target, env=self.env(state))

    def restore_file(self, state: Path, snapshot: str, rel: str, target: Path) -> Result:
        target.mkdir(parents=True, exist_ok=True)
        return run(["borg", "extract", f"{self.repo(state)}::{snapshot}", rel], cwd=target, env=self.env(state))

    def mount(self, state: Path, mountpoint: Path) -> Background:
        # the whole repository, like restic and snap: archives appear as directories
        return Background(["borg", "mount", "-f", self.repo(state), mountpoint], env=self.env(state))

    def umount(self, state: Path, mountpoint: Path) -> None:
        if os.path.ismount(mountpoint):
            self.run(state, ["borg", "umount", mountpoint], check=False)
        unmount(mountpoint)

    def forget_and_gc(self, state: Path, ids: list[str], keep: int) -> list[Result]:
        prune = self.run(state, ["borg", "prune", "--keep-last", str(keep), self.repo(state)])
        return [prune, self.run(state, ["borg", "compact", self.repo(state)])]

    def verify(self, state: Path) -> Result:
        return self.run(state, ["borg", "check", "--verify-data", self.repo(state)])

    def count_snapshots(self, state: Path) -> int:
        return len(self.run(state, ["borg", "list", "--json", self.repo(state)]).json()["archives"])


class SnapPlainPeer(SnapPeer):
    """snap on a repository made with ``--encryption none``: what encryption costs is the difference."""

    name = "snap-plain"

    def init(self, state: Path) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.run(state, self.cmd(state, "init", "--encryption", "none"))


class TarPeer(Peer):
    """GNU tar piped through ``zstd -3 -T2``: the cron job snap replaces, and this machine's limit.

    Not a peer in the ratios (snap/best leaves it out): it keeps no index, dedups nothing and
    checks nothing, so its take is the cost of walking, reading and compressing every file, and
    its restore (``zstd -dc | tar -x``) the cost of creating and writing every file on this file
    system, measured in the same run as the tools. Rows it has no equivalent for show n/a.
    """

    name = "tar"
    install_hint = "apt-get install tar zstd"
    reference = True

    def missing(self) -> str:
        return "" if shutil.which("tar") and shutil.which("zstd") else "tar or zstd not installed"

    def version(self) -> str:
        first = subprocess.run(["tar", "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
        return (first[0] if first else "tar") + " + zstd -3 -T2"

    def archive(self, state: Path) -> Path:
        return self.repo(state) / "archive.tar.zst"

    def init(self, state: Path) -> None:
        self.repo(state).mkdir(parents=True, exist_ok=True)

    def take(self, state: Path, data: Path) -> tuple[Result, str]:
        if self.archive(state).exists():
            raise NotImplementedBySnap("tar has no incremental take here")
        script = 'tar -cf - "$@" | zstd -3 -T2 -q -o "$0"'
        return self.run(state, ["sh", "-c", script, self.archive(state), *_entries(data)], cwd=data), "archive"

    def restore(self, state: Path, snapshot: str, target: Path) -> Result:
        target.mkdir(parents=True, exist_ok=True)
        return self.run(state, ["sh", "-c", 'zstd -dcq "$0" | tar -xf - -C "$1"', self.archive(state), target])

    def restore_file(self, state: Path, snapshot: str, rel: str, target: Path) -> Result:
        target.mkdir(parents=True, exist_ok=True)
        script = 'zstd -dcq "$0" | tar -xf - -C "$1" "$2"'
        return self.run(state, ["sh", "-c", script, self.archive(state), target, rel])

    def verify(self, state: Path) -> Result:
        return self.run(state, ["zstd", "-tq", self.archive(state)])

    def mount(self, state: Path, mountpoint: Path) -> Background:
        raise NotImplementedBySnap("tar cannot mount an archive")

    def forget_and_gc(self, state: Path, ids: list[str], keep: int) -> list[Result]:
        raise NotImplementedBySnap("one tar archive per snapshot: nothing to collect")


PEERS: dict[str, Callable[[], Peer]] = {"snap": SnapPeer, "snap-plain": SnapPlainPeer, "restic": ResticPeer,
                                        "borg": BorgPeer, "tar": TarPeer}
REFERENCES = {name for name, make in PEERS.items() if getattr(make, "reference", False)}


# --------------------------------------------------------------------------------------------
# measurements


@dataclass
class Cell:
    """The measurements of one (row, peer) over the repeats."""

    seconds: Stat = field(default_factory=Stat)
    mbps: Stat = field(default_factory=Stat)
    repo_bytes: Stat = field(default_factory=Stat)
    cache_bytes: Stat = field(default_factory=Stat)  # the tool's local cache, beside the repository
    growth: Stat = field(default_factory=Stat)
    rss: Stat = field(default_factory=Stat)
    status: str = ""  # "", "n/a (not implemented)", "error: ...", "skipped: ..."
    notes: list[str] = field(default_factory=list)
    parts: dict[str, Stat] = field(default_factory=dict)  # seconds of the steps of a row

    def note(self, text: str) -> None:
        if text and text not in self.notes:
            self.notes.append(text)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status or "ok", "notes": self.notes}
        for name in ("seconds", "mbps", "repo_bytes", "cache_bytes", "growth", "rss"):
            stat: Stat = getattr(self, name)
            if stat:
                out[name] = stat.to_json()
        if self.parts:
            out["parts"] = {step: stat.to_json() for step, stat in self.parts.items()}
        return out


class Results:
    def __init__(self) -> None:
        self.cells: dict[tuple[str, str], Cell] = {}

    def cell(self, row: str, peer: str) -> Cell:
        return self.cells.setdefault((row, peer), Cell())

    def record(
        self,
        row: str,
        peer: str,
        seconds: float,
        *,
        nbytes: int | None = None,
        repo: int | None = None,
        cache: int | None = None,
        growth: int | None = None,
        rss: int | None = None,
    ) -> None:
        cell = self.cell(row, peer)
        cell.seconds.add(seconds)
        if nbytes is not None and seconds > 0:
            cell.mbps.add(nbytes / MB / seconds)
        if repo is not None:
            cell.repo_bytes.add(repo)
        if cache is not None:
            cell.cache_bytes.add(cache)
        if growth is not None:
            cell.growth.add(growth)
        if rss:
            cell.rss.add(rss)

    def fail(self, row: str, peer: str, status: str) -> None:
        cell = self.cell(row, peer)
        if not cell.status:
            cell.status = status


class Bench:
    """Runs the selected rows for a set of peers; shared by compare.py and bench_snap.py."""

    def __init__(
        self,
        peers: list[Peer],
        rows: list[str],
        ds: Dataset,
        workdir: Path,
        *,
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        self.peers = peers
        self.rows = rows
        self.ds = ds
        self.workdir = workdir
        self.seed = seed
        self.verbose = verbose
        self.results = Results()
        self._manifest: dict[str, tuple[int, str]] | None = None
        self._gc_ids: dict[str, list[str]] = {}
        self.mounts: list[tuple[Peer, Path, Path]] = []

    def log(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr, flush=True)

    @property
    def expected(self) -> dict[str, tuple[int, str]]:
        if self._manifest is None:
            self.log("  hashing the data set (for restore checks) ...")
            self._manifest = manifest(self.ds.root)
        return self._manifest

    def guard(self, rows: Sequence[str], peer: Peer, body: Callable[[], None]) -> bool:
        """Run ``body``; on failure mark ``rows`` of ``peer`` and return False."""
        try:
            body()
            return True
        except NotImplementedBySnap as exc:
            status = "n/a (not implemented)"
            self.log(f"  {peer.name}: {exc}: not implemented")
        except CommandFailed as exc:
            status = f"error: {exc}"
            self.log(f"  {peer.name}: {status}")
        except (AssertionError, OSError, KeyError, ValueError, TimeoutError) as exc:
            status = f"error: {type(exc).__name__}: {exc}"
            self.log(f"  {peer.name}: {status}")
        for row in rows:
            self.results.fail(row, peer.name, status)
        return False

    # ---- the workloads

    def run_all(self, repeats: int) -> Results:
        try:
            if "gc-half" in self.rows:
                self.prepare_gc()
            for repeat in range(repeats):
                # rotate the order of the peers so that none always runs first
                order = self.peers[repeat % len(self.peers) :] + self.peers[: repeat % len(self.peers)]
                for peer in order:
                    self.log(f"repeat {repeat + 1}/{repeats}: {peer.name}")
                    self.repeat(peer)
        finally:
            self.cleanup_mounts()
            for scratch in ("run", "gc-template", "gc-data"):
                remove(self.workdir / scratch)
        return self.results

    def state_dir(self, peer: Peer, what: str) -> Path:
        path = self.workdir / "run" / peer.name / what
        remove(path)
        path.mkdir(parents=True)
        return path

    def repeat(self, peer: Peer) -> None:
        rows = set(self.rows)
        if rows & {*BASE_ROWS, *MOUNT_ROWS}:
            self.base_rows(peer)
        if "take-after-day" in rows:
            self.day_row(peer)
        if "gc-half" in rows:
            self.gc_row(peer)
        remove(self.workdir / "run" / peer.name)

    def base_rows(self, peer: Peer) -> None:
        ds, res = self.ds, self.results
        state = self.state_dir(peer, "base")
        snapshot = ""

        def first() -> None:
            nonlocal snapshot
            peer.init(state)
            warm(ds.root)
            result, snapshot = peer.take(state, ds.root)
            self.log(f"  first take {result.seconds:.2f} s")
            if "first-take" in self.rows:
                repo = tree_bytes(peer.repo(state))
                res.record("first-take", peer.name, result.seconds, nbytes=ds.bytes, repo=repo,
                           cache=tree_bytes(peer.cache(state)), rss=result.peak_rss)

        dependants = [r for r in self.rows if r in BASE_ROWS or r in MOUNT_ROWS]
        if not self.guard(dependants, peer, first):
            return

        def retake() -> None:
            warm(ds.root)
            result, _ = peer.take(state, ds.root)
            res.record(
                "retake-unchanged",
                peer.name,
                result.seconds,
                repo=tree_bytes(peer.repo(state)),
                cache=tree_bytes(peer.cache(state)),
                rss=result.peak_rss,
            )

        if "retake-unchanged" in self.rows:
            self.guard(["retake-unchanged"], peer, retake)

        def restore_full() -> None:
            target = self.workdir / "run" / peer.name / "restore"
            remove(target)
            settle()
            result = peer.restore(state, snapshot, target)
            where = find_workspace(target, marker=ds.marker)
            assert where is not None, f"no workspace in the restore target {target}"
            diff = compare_manifests(self.expected, manifest(where))
            assert not diff, f"restored tree differs: {diff}"
            res.record("restore-full", peer.name, result.seconds, nbytes=ds.bytes, rss=result.peak_rss)
            res.cell("restore-full", peer.name).note("identical")
            remove(target)

        if "restore-full" in self.rows:
            self.guard(["restore-full"], peer, restore_full)

        def restore_file() -> None:
            target = self.workdir / "run" / peer.name / "restore-one"
            remove(target)
            settle()
            single = ds.single_file
            result = peer.restore_file(state, snapshot, single, target)
            found = [p for p in target.rglob(Path(single).name) if p.as_posix().endswith(single)]
            assert len(found) == 1, f"{single} not restored (found {found})"
            assert file_digest(found[0]) == self.expected[single][1], "restored file differs"
            others = sum(1 for p in target.rglob("*") if p.is_file())
            assert others == 1, f"{others} files restored instead of 1"
            res.record("restore-file", peer.name, result.seconds, rss=result.peak_rss)
            res.cell("restore-file", peer.name).note(single)
            remove(target)

        if "restore-file" in self.rows:
            self.guard(["restore-file"], peer, restore_file)

        mount_rows = [r for r in self.rows if r in MOUNT_ROWS]
        if mount_rows:
            self.guard(mount_rows, peer, lambda: self.mount_rows(peer, state, mount_rows))

        def verify() -> None:
            settle()
            result = peer.verify(state)
            res.record("verify-data", peer.name, result.seconds, nbytes=ds.bytes, rss=result.peak_rss)

        if "verify-data" in self.rows:
            self.guard(["verify-data"], peer, verify)
        remove(state)

    def mount_rows(self, peer: Peer, state: Path, rows: list[str]) -> None:
        ds, res = self.ds, self.results
        mountpoint = self.workdir / "mnt" / peer.name
        unmount(mountpoint)
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.mounts.append((peer, state, mountpoint))
        settle()
        background = peer.mount(state, mountpoint)
        where: list[Path] = []

        def usable() -> bool:
            if background.poll() is not None and not os.path.ismount(mountpoint):
                result = background.result
                assert result is not None
                if "No such command" in result.stderr + result.stdout:
                    raise NotImplementedBySnap(" ".join(background.argv))
                tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
                raise AssertionError(f"mount exited with {result.returncode}: {' | '.join(tail)}")
            if not os.path.ismount(mountpoint):
                return False
            found = find_workspace(mountpoint, marker=self.ds.marker)
            if found is None:
                return False
            where.append(found)
            return True

        measured: dict[str, tuple[float, int | None]] = {}
        try:
            if not wait_until(usable, MOUNT_TIMEOUT_S, interval=0.005):
                raise TimeoutError(f"mount not usable after {MOUNT_TIMEOUT_S:.0f} s")
            measured["mount-ready"] = (time.perf_counter() - background.started, None)
            inside = where[0]
            self.log(f"  mount usable after {measured['mount-ready'][0]:.2f} s at {inside}")

            def cp() -> None:
                copy = self.workdir / "run" / peer.name / "largest.copy"
                remove(copy)
                settle()
                result = run(["cp", inside / ds.largest, copy])
                assert file_digest(copy) == self.expected[ds.largest][1], "copied file differs"
                remove(copy)
                measured["mount-cp-largest"] = (result.seconds, self.expected[ds.largest][0])

            def find() -> None:
                listing = self.workdir / "run" / peer.name / "find.txt"
                script = 'find -H "$1" -type f -printf "%s %p\\n" > "$2"'  # -H: the top may be a symlink
                settle()
                result = run(["sh", "-c", script, "find", inside, listing])
                with open(listing) as handle:
                    count = sum(1 for _ in handle)
                remove(listing)
                assert count == ds.files, f"find saw {count} files, expected {ds.files}"
                measured["mount-find"] = (result.seconds, None)

            if "mount-cp-largest" in rows:
                self.guard(["mount-cp-largest"], peer, cp)
            if "mount-find" in rows:
                self.guard(["mount-find"], peer, find)
        finally:
            daemonized = background.poll() is not None and background.proc.returncode == 0
            daemon_rss = server_peak_rss(str(mountpoint)) if daemonized else 0
            peer.umount(state, mountpoint)
            if background.poll() is None:
                wait_until(lambda: background.poll() is not None, 20)
            mount_result = background.stop()
            self.mounts = [m for m in self.mounts if m[2] != mountpoint]
        rss = daemon_rss if daemonized else mount_result.peak_rss
        for row, (seconds, nbytes) in measured.items():
            if row in rows:
                res.record(row, peer.name, seconds, nbytes=nbytes, rss=rss)
                if daemonized:
                    res.cell(row, peer.name).note("mount daemonized: RSS is the server's VmHWM")
        if "mount-find" in measured:
            res.cell("mount-find", peer.name).note(f"{ds.files} files")
        if mount_result.returncode not in (0, -2, 130) and not daemonized:
            tail = (mount_result.stderr or mount_result.stdout).strip().splitlines()[-1:]
            res.cell(rows[0], peer.name).note(f"mount exited {mount_result.returncode} {' '.join(tail)}")

    def day_row(self, peer: Peer) -> None:
        ds, res = self.ds, self.results
        from snapfixtures.sampledata import simulate_day

        def body() -> None:
            data = self.workdir / "run" / peer.name / "data-day"
            copy_tree(ds.root, data)
            state = self.state_dir(peer, "day")
            peer.init(state)
            peer.take(state, data)
            before = tree_bytes(peer.repo(state))
            change = simulate_day(data, 1, seed=self.seed)
            warm(data)
            result, _ = peer.take(state, data)
            after = tree_bytes(peer.repo(state))
            res.record(
                "take-after-day",
                peer.name,
                result.seconds,
                repo=after,
                cache=tree_bytes(peer.cache(state)),
                growth=after - before,
                rss=result.peak_rss,
            )
            cell = res.cell("take-after-day", peer.name)
            cell.note(f"day: {human_bytes(change.bytes_appended)} appended, 1 log rotated, +3 -2 files")
            remove(data)
            remove(state)

        self.guard(["take-after-day"], peer, body)

    def prepare_gc(self) -> None:
        """Once: a repository per peer with 30 snapshots of 30 simulated days (a template)."""
        from snapfixtures.sampledata import simulate_day

        data = self.workdir / "gc-data"
        copy_tree(self.ds.root, data)
        alive: list[Peer] = []
        for peer in self.peers:
            template = self.workdir / "gc-template" / peer.name
            remove(template)

            def init(peer: Peer = peer, template: Path = template) -> None:
                peer.init(template)
                self._gc_ids[peer.name] = []

            if self.guard(["gc-half"], peer, init):
                alive.append(peer)
        self.log(f"preparing {GC_SNAPSHOTS} snapshots per peer for gc-half ...")
        for day in range(GC_SNAPSHOTS):
            if day:
                simulate_day(data, day, seed=self.seed)
            for peer in list(alive):
                template = self.workdir / "gc-template" / peer.name

                def take(peer: Peer = peer, template: Path = template) -> None:
                    _, snapshot = peer.take(template, data)
                    self._gc_ids[peer.name].append(snapshot)

                if not self.guard(["gc-half"], peer, take):
                    alive.remove(peer)
        remove(data)

    def gc_row(self, peer: Peer) -> None:
        template = self.workdir / "gc-template" / peer.name
        if len(self._gc_ids.get(peer.name, ())) != GC_SNAPSHOTS:
            return  # preparation failed, already reported

        def body() -> None:
            state = self.workdir / "run" / peer.name / "gc"
            copy_tree(template, state)
            before = tree_bytes(peer.repo(state))
            settle()
            results = peer.forget_and_gc(state, self._gc_ids[peer.name], GC_SNAPSHOTS // 2)
            after = tree_bytes(peer.repo(state))
            left = peer.count_snapshots(state)
            assert left == GC_SNAPSHOTS // 2, f"{left} snapshots left, expected {GC_SNAPSHOTS // 2}"
            seconds = sum(r.seconds for r in results)
            rss = max(r.peak_rss for r in results)
            self.results.record("gc-half", peer.name, seconds, repo=after, growth=after - before, rss=rss)
            cell = self.results.cell("gc-half", peer.name)
            for step, result in zip(("forget", "gc"), results, strict=True):
                cell.parts.setdefault(step, Stat()).add(result.seconds)
            remove(state)

        self.guard(["gc-half"], peer, body)

    def cleanup_mounts(self) -> None:
        for peer, state, mountpoint in self.mounts:
            try:
                peer.umount(state, mountpoint)
            except Exception as exc:  # best effort in finally
                print(f"warning: could not unmount {mountpoint}: {exc}", file=sys.stderr)
        self.mounts = []
        mnt = self.workdir / "mnt"
        if mnt.is_dir():
            for child in mnt.iterdir():
                unmount(child)


# --------------------------------------------------------------------------------------------
# output


def table_rows(results: Results, rows: list[str], peers: list[str]) -> list[list[str]]:
    out = []
    for row in rows:
        best_peer = min(
            (
                results.cells[(row, p)].seconds.median
                for p in peers
                if not p.startswith("snap") and p not in REFERENCES and (row, p) in results.cells
                and results.cells[(row, p)].seconds
            ),
            default=None,
        )
        # the references measured on this row (tar): snap's time over theirs goes in the notes
        limits = [(r, results.cells[(row, r)]) for r in peers
                  if r in REFERENCES and (row, r) in results.cells and results.cells[(row, r)].seconds]
        for peer in peers:
            cell = results.cells.get((row, peer))
            if cell is None:
                continue
            if cell.status and not cell.seconds:
                short = "n/a" if cell.status.startswith("n/a") else cell.status.split(":")[0]
                out.append([ROWS.get(row, row), peer, short, "", "", "", "", "", cell.status[:160]])
                continue
            mbps = cell.mbps.fmt(0) if cell.mbps else ""
            repo = ""
            if cell.growth:
                sign = "+" if cell.growth.median >= 0 else "-"
                repo = f"{sign}{human_bytes(abs(cell.growth.median))} -> {human_bytes(cell.repo_bytes.median)}"
            elif cell.repo_bytes:
                repo = human_bytes(cell.repo_bytes.median)
            rss = human_bytes(cell.rss.median) if cell.rss else ""
            cache = human_bytes(cell.cache_bytes.median) if cell.cache_bytes else ""
            ratio = ""
            if peer.startswith("snap") and best_peer and cell.seconds:
                ratio = f"{cell.seconds.median / best_peer:.2f}x"
            limit_notes = [f"{cell.seconds.median / lim.seconds.median:.2f}x {name}'s time"
                           for name, lim in limits if peer.startswith("snap") and cell.seconds]
            steps = [" + ".join(f"{step} {stat.median:.2f}" for step, stat in cell.parts.items()) + " s"]
            notes = "; ".join(([cell.status] if cell.status else []) + (steps if cell.parts else []) + limit_notes
                              + cell.notes)
            out.append([ROWS.get(row, row), peer, cell.seconds.fmt(2), mbps, repo, cache, rss, ratio, notes])
    return out


HEADERS = [
    "workload",
    "tool",
    "seconds med (min-max)",
    "MB/s",
    "repository",
    "cache",
    "peak RSS",
    "snap/best",
    "notes",
]


def parse_list(text: str, valid: Sequence[str], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in valid]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (valid: {', '.join(valid)})")
    return [x for x in valid if x in items]


def main(argv: list[str] | None = None) -> int:
    from snapfixtures.sampledata import parse_size

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--size", default="1G", help="data set size (default 1G)")
    parser.add_argument("--small-files", type=int, default=10_000, help="extra small files (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="use this existing sample workspace instead of generating one")
    parser.add_argument("--real-tree", action="store_true",
                        help="instead: the real source tree of the Debian package linux-source-6.1 (fetched with "
                             "apt-get download and unpacked once into the work directory; ~78,600 files, 1.3 GB)")
    parser.add_argument("--small-tree", type=int, metavar="N",
                        help="instead: N generated text files of 1-30 KB (the per-file cost)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per workload (default 3)")
    parser.add_argument("--only", help="comma-separated rows: " + ",".join(ROWS))
    parser.add_argument("--peers", default="snap,snap-plain,restic,borg,tar",
                        help="comma-separated (default snap,snap-plain,restic,borg,tar; tar is GNU tar | zstd "
                             "-3 -T2, this machine's limit, left out of snap/best)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/snapbench"), help="local-disk scratch dir")
    parser.add_argument("--snap-bin", help="the snap executable (default: next to this Python, then PATH)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--json-out", type=Path, help="also write the JSON results to this file")
    parser.add_argument("--render", type=Path, metavar="JSON", help="print the table of saved --json results")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.render:
        render(json.loads(args.render.read_text()))
        return 0

    rows = parse_list(args.only, list(ROWS), "row") if args.only else list(ROWS)
    wanted = parse_list(args.peers, list(PEERS), "peer")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    warning = check_local_disk(workdir)
    if warning:
        print(warning, file=sys.stderr)

    peers: list[Peer] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        peer = PEERS[name]() if name not in ("snap", "snap-plain") else (
            SnapPeer(args.snap_bin) if name == "snap" else SnapPlainPeer(args.snap_bin))
        reason = peer.missing()
        if reason:
            skipped[name] = f"{reason} ({peer.install_hint})"
            print(f"skipping {name}: {skipped[name]}", file=sys.stderr)
        else:
            peers.append(peer)
    if not peers:
        print("no peer to run", file=sys.stderr)
        return 1

    if args.real_tree:
        ds = real_tree(workdir)
    elif args.small_tree:
        ds = small_tree(workdir, args.small_tree, args.seed)
    else:
        ds = dataset(workdir, parse_size(args.size), args.small_files, args.seed, args.data)
    if ds.marker != "orchestrator_config.json":
        dropped = [r for r in rows if r in ("take-after-day", "gc-half")]
        if dropped:
            print(f"leaving out {', '.join(dropped)}: a simulated day changes the agent workspace only",
                  file=sys.stderr)
            rows = [r for r in rows if r not in dropped]
    bench = Bench(peers, rows, ds, workdir, seed=args.seed, verbose=not args.quiet)
    started = time.time()
    results = bench.run_all(max(1, args.repeats))

    meta = {
        "dataset": {"root": str(ds.root), "name": ds.name, "files": ds.files, "bytes": ds.bytes,
                    "largest": ds.largest, "single_file": ds.single_file},
        "repeats": args.repeats,
        "rows": rows,
        "peers": [p.name for p in peers],
        "versions": {p.name: p.version() for p in peers},
        "skipped": skipped,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "workdir_fs": fs_type(workdir)},
        "wall_s": round(time.time() - started, 1),
        "children_peak_rss": children_peak_rss(),
        "rss_method": rss_method(),
    }
    document = {"meta": meta, "results": [{"row": r, "peer": p, **c.to_json()} for (r, p), c in results.cells.items()]}
    if args.json_out:
        args.json_out.write_text(json.dumps(document, indent=2) + "\n")
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        render(document)
    return 0


def load_results(document: dict[str, Any]) -> Results:
    """The :class:`Results` of a JSON document written by ``--json``."""
    results = Results()
    for item in document["results"]:
        cell = results.cell(item["row"], item["peer"])
        cell.status = "" if item.get("status") == "ok" else item.get("status", "")
        cell.notes = list(item.get("notes", []))
        for name in ("seconds", "mbps", "repo_bytes", "cache_bytes", "growth", "rss"):
            if name in item:
                setattr(cell, name, Stat(list(item[name]["values"])))
        cell.parts = {step: Stat(list(stat["values"])) for step, stat in item.get("parts", {}).items()}
    return results


def render(document: dict[str, Any], file: Any = None) -> None:
    """Print the table of a results document (as written by ``--json``)."""
    out = file or sys.stdout
    meta = document["meta"]
    ds = meta["dataset"]
    results = load_results(document)
    rows = meta.get("rows") or list(dict.fromkeys(item["row"] for item in document["results"]))
    peers = meta.get("peers") or list(dict.fromkeys(item["peer"] for item in document["results"]))
    print(
        f"\ndata set: {ds.get('name', 'agent workspace')}: {ds['files']} files, {human_bytes(ds['bytes'])} "
        f"(largest {ds['largest']}); "
        f"{meta['repeats']} repeat(s); {', '.join(meta['versions'].values())}",
        file=out,
    )
    for name, reason in meta.get("skipped", {}).items():
        print(f"{name}: skipped, {reason}", file=out)
    print(file=out)
    print_table(HEADERS, table_rows(results, rows, peers), file=out)
    print(
        "\nsnap/best: snap's median time over the fastest other tool's (below 1 = snap faster; tar, the "
        "limit, is left out). MB/s over the logical data size.",
        file=out,
    )


if __name__ == "__main__":
    raise SystemExit(main())
