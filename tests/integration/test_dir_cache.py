"""The directories cache of a take (Index.unchanged_dir): a directory whose non-directory
entries all have the lstat they had at the last take reuses their entries from that take's
tree. It must give the very tree a take without it gives, and miss on every change."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from snapstore.ops.backup import Take, source_for, take_snapshot
from snapstore.ops.restore import restore_snapshot
from snapstore.repo.repository import Repository
from snapstore.view.vfs import SnapshotView
from tests.conftest import tree_state


def _tree(root: Path) -> Path:
    for d in range(3):
        sub = root / f"agent-{d}" / "memory"
        sub.mkdir(parents=True)
        for i in range(4):
            (sub / f"m{i}.md").write_bytes(os.urandom(2000 + i))
        (root / f"agent-{d}" / "SOUL.md").write_text(f"charter {d}\n")
        (root / f"agent-{d}" / "link").symlink_to("SOUL.md")
    os.mkfifo(root / "agent-0" / "fifo")
    return root


def _take(repo_path: str, src: Path) -> str:
    with Repository.open(repo_path, mode="write") as repo:
        return take_snapshot(repo, [source_for(".", str(src))], workers=2).snapshot.root


def _looked_up(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Regular files a take looks at (files cache, else a read), from now on: those the
    directories cache does not answer for."""
    seen: list[bytes] = []
    real = Take._dispatch

    def spy(self: Take, item: Any, txn: Any) -> None:
        if item.st is not None and stat.S_ISREG(item.st.st_mode):
            seen.append(item.path)
        real(self, item, txn)

    monkeypatch.setattr(Take, "_dispatch", spy)
    return seen


def test_an_unchanged_directory_reuses_its_entries_and_gives_the_same_tree(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _tree(tmp_path / "src")
    repo = str(tmp_path / "repo")
    Repository.init(repo)
    first = _take(repo, src)
    seen = _looked_up(monkeypatch)
    assert _take(repo, src) == first
    assert seen == []  # no file of any directory was looked at again
    # a take that never reuses anything gives the same tree, byte for byte
    monkeypatch.setattr(Take, "_reusable", lambda self, path, digest: None)
    assert _take(repo, src) == first
    assert len(seen) == 3 * 5  # the regular files, through the files cache


@pytest.mark.parametrize("change", ["content", "mode", "xattr", "new file", "removed", "subdirectory"])
def test_every_change_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    src = _tree(tmp_path / "src")
    repo = str(tmp_path / "repo")
    Repository.init(repo)
    first = _take(repo, src)
    target = src / "agent-1" / "SOUL.md"
    st = target.stat()
    if change == "content":  # same size, mtime put back: only ctime tells
        target.write_text("charter X\n")
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif change == "mode":
        target.chmod(0o600)
    elif change == "xattr":
        os.setxattr(target, b"user.snap-test", b"v")  # tmp_path is on ext4 here: it keeps user xattrs
    elif change == "new file":
        (src / "agent-1" / "new.json").write_text("{}")
    elif change == "removed":
        (src / "agent-1" / "link").unlink()
    else:
        (src / "agent-1" / "memory" / "m0.md").write_bytes(b"changed")
    second = _take(repo, src)
    assert second != first
    monkeypatch.setattr(Take, "_reusable", lambda self, path, digest: None)
    assert _take(repo, src) == second  # what the cache gave is what a full look gives
    with Repository.open(repo) as opened:
        snap = opened.snapshots()[-1]
        restore_snapshot(SnapshotView(opened), snap, [], str(tmp_path / "out"), workers=2)
    assert tree_state(tmp_path / "out") == tree_state(src)


@pytest.mark.parametrize("collected", [True, False])
def test_a_directory_whose_tree_is_forgotten_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           collected: bool) -> None:
    # collected: the trees it named are gone; forgotten only: still indexed at refcount 0, and
    # a gc may already have taken some of what they name: not trusted either
    from snapstore.ops.gc import collect_garbage

    src = _tree(tmp_path / "src")
    repo = str(tmp_path / "repo")
    Repository.init(repo)
    _take(repo, src)
    with Repository.open(repo, mode="exclusive") as opened:
        if collected:
            collect_garbage(opened, [(s, ("test",)) for s in opened.snapshots()], safety_window_s=0)
        else:
            opened.forget(opened.snapshots())
        assert opened.snapshots() == []
    seen = _looked_up(monkeypatch)
    _take(repo, src)  # every file is looked at (and stored again where it is gone)
    assert len(seen) == 3 * 5
    with Repository.open(repo) as opened:
        restore_snapshot(SnapshotView(opened), opened.snapshots()[-1], [], str(tmp_path / "out"), workers=2)
    assert tree_state(tmp_path / "out") == tree_state(src)
