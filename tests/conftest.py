"""Shared fixtures: a ``snap`` runner that executes the real CLI in a subprocess, and trees.

``snap init`` makes encrypted repositories, so every test process (and every ``snap`` it runs)
has a throwaway ``SNAP_PASSWORD`` and ``SNAP_KDF_PROFILE=test``: the first keys of test
repositories use the test-only Argon2id parameters, recorded in their key files (never the
defaults weakened; docs/security.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Result:
    code: int
    out: str
    err: str
    raw: bytes = b""

    def json(self) -> object:
        return json.loads(self.out)


SnapRunner = Callable[..., Result]

TEST_PASSWORD = "throwaway test password"
os.environ.setdefault("SNAP_PASSWORD", TEST_PASSWORD)
os.environ.setdefault("SNAP_KDF_PROFILE", "test")


def run_snap(*args: str, repo: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] | None = None,
             env: dict[str, str] | None = None, input: bytes | None = None, timeout: float = 300) -> Result:
    cmd = [sys.executable, "-m", "snapstore"]
    if repo is not None:
        cmd += ["--repo", str(repo)]
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.pop("SNAP_REPO", None)
    full_env.pop("SNAP_CONFIG", None)
    full_env.update(env or {})
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, input=input, capture_output=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"),
                  proc.stdout)


def run_threads(target: Callable[[int], None], count: int) -> None:
    """Run ``target(0)`` ... ``target(count - 1)`` on threads at once and wait for them all."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``$XDG_CACHE_HOME`` (where the indexes live) for the run, as a user has one, outside
    the trees the tests take and away from the real one."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    return cache


def cache_of(repo: Path) -> Path:
    """This host's cache directory of the local repository at ``repo`` (its index is in ``index/``)."""
    repo_id = json.loads((repo / "config.json").read_text())["id"]
    return Path(os.environ["XDG_CACHE_HOME"]) / "snapstore" / repo_id


@pytest.fixture
def snap(tmp_path: Path) -> SnapRunner:
    """Run ``snap`` against a repository at tmp_path/repo (not created)."""
    repo = tmp_path / "repo"

    def runner(*args: str, **kw: object) -> Result:
        kw.setdefault("repo", repo)
        return run_snap(*args, **kw)  # type: ignore[arg-type]

    runner.repo = repo  # type: ignore[attr-defined]
    return runner


def tree_state(root: Path, *, with_mtime: bool = True) -> dict[bytes, tuple]:
    """Everything the round trip must keep: type, mode, size, content hash, link target, mtime,
    and which paths share an inode (hard links)."""
    out: dict[bytes, tuple] = {}
    inodes: dict[int, bytes] = {}
    broot = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(broot):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, broot)
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            content: object = None
            if stat.S_ISREG(st.st_mode):
                h = hashlib.blake2b()
                with open(full, "rb") as f:
                    while block := f.read(1 << 20):
                        h.update(block)
                content = h.hexdigest()
                if st.st_nlink > 1:
                    first = inodes.setdefault(st.st_ino, rel)
                    content = (content, "link-group", first)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(full)
            mtime = st.st_mtime_ns if with_mtime and not stat.S_ISDIR(st.st_mode) else None
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                        content, mtime, st.st_uid, st.st_gid)
    return out


def make_agent_z(root: Path, *, soul_lines: int) -> Path:
    """agents/Z under ``root``: SOUL.md, a skill script, a memory file, priority_weights.json."""
    z = root / "agents" / "Z"
    (z / "skills" / "triage").mkdir(parents=True)
    (z / "memory").mkdir()
    (z / "SOUL.md").write_text("# Z\nYou are Z, the orchestrator's planner.\n" * soul_lines)
    (z / "skills" / "triage" / "run.py").write_text("print('triage')\n")
    (z / "memory" / "lessons.md").write_text("- keep backups verified\n" * 100)
    (z / "priority_weights.json").write_text(json.dumps({"weights": {"relevance": 0.42, "urgency": 0.3}}))
    return z


@pytest.fixture
def agent_tree(tmp_path: Path) -> Path:
    """A small agent workspace with every kind of entry the round trip must keep."""
    root = tmp_path / "ws"
    z = make_agent_z(root, soul_lines=20)
    (root / "empty-dir").mkdir()
    (root / "empty-file").write_bytes(b"")
    (root / "name with spaces.txt").write_text("spaces\n")
    (root / "new\nline.txt").write_text("newline\n")
    (Path(os.fsdecode(os.fsencode(str(root)) + b"/bad-\xff\xfe-utf8"))).write_bytes(b"not utf-8 name\n")
    os.symlink("agents/Z/SOUL.md", root / "soul-link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(z / "SOUL.md", root / "SOUL-hardlink.md")
    (root / "exec.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "exec.sh", 0o750)
    with open(root / "sparse.bin", "wb") as f:
        f.seek(20 * 1024 * 1024)
        f.write(b"end of sparse file")
    (root / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    os.mkfifo(root / "a-fifo")
    os.utime(z / "SOUL.md", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    return root
