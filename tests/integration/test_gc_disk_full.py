"""gc on a full disk: it frees wholly dead packs before it rewrites anything, and a disk that is
too full for the rewrites (or for the index) is one line with exit 13, never a traceback."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapstore.errors import ExitCode
from snapstore.repo.repository import Repository
from tests.conftest import Result, run_snap, tree_state


def _one_line(res: Result) -> str:
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.err, res.err
    return lines[0]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Write a filler file until the disk says ENOSPC."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def _take(repo: Path, src: Path) -> str:
    res = run_snap("take", ".", "--json", repo=repo, cwd=src)
    assert res.code == 0, res.err
    return res.json()["id"]  # type: ignore[index]


def _history(repo: Path, src: Path) -> tuple[list[str], dict]:
    """Three snapshots: forgetting the first two leaves three wholly dead packs (a data pack and
    two tree packs) and one data pack with half of it dead (a rewrite)."""
    src.mkdir()
    (src / "dead.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    ids = [_take(repo, src)]
    (src / "dead.bin").unlink()
    (src / "keep.bin").write_bytes(os.urandom(1024 * 1024))
    (src / "two.bin").write_bytes(os.urandom(1024 * 1024))
    ids.append(_take(repo, src))
    (src / "two.bin").unlink()
    ids.append(_take(repo, src))
    return ids, tree_state(src)


def _pack_files(repo: Path) -> set[str]:
    return {f for _d, _s, files in os.walk(repo / "packs") for f in files}


def _indexed_packs(repo: Path) -> set[str]:
    with Repository.open(str(repo)) as opened, opened.index.read() as txn:
        return {p.hex() + ".pack" for p, _size, _count in opened.index.iter_packs(txn)}


def _restores(repo: Path, snap_id: str, expected: dict, out: Path) -> None:
    res = run_snap("restore", snap_id, "--target", str(out), repo=repo)
    assert res.code == 0, res.err
    assert tree_state(out) == expected
    res = run_snap("verify", "--read-data", repo=repo)
    assert res.code == 0, res.out + res.err


def test_gc_frees_space_on_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    repo = small_disk / "repo"
    assert run_snap("init", repo=repo).code == 0
    ids, expected = _history(repo, tmp_path / "src")
    _fill(small_disk)
    res = run_snap("gc", "--keep", "manual=1", "--json", repo=repo)
    assert res.code == 0, res.err  # the dead packs are freed first: then the rewrite has room
    data = res.json()
    assert (data["packs_deleted"], data["packs_rewritten"]) == (3, 1)  # type: ignore[index]
    assert os.listdir(repo / "tmp") == []
    assert _pack_files(repo) == _indexed_packs(repo)
    assert [s["id"] for s in run_snap("list", "--json", repo=repo).json()] == ids[2:]  # type: ignore[index]
    _restores(repo, ids[2], expected, tmp_path / "out")


def test_gc_rewrite_out_of_space_frees_the_dead_packs_first(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert run_snap("init", repo=repo).code == 0
    ids, expected = _history(repo, tmp_path / "src")
    assert run_snap("forget", ids[0], ids[1], repo=repo).code == 0
    before = _pack_files(repo)
    res = run_snap("gc", repo=repo, env={"SNAP_TEST_ENOSPC_AFTER": "1000"})  # the first rewrite fails
    assert res.code == ExitCode.NO_SPACE
    line = _one_line(res)
    assert "no space left on device while rewriting pack" in line and "freed 3 unused pack(s)" in line
    after = _pack_files(repo)
    assert len(before - after) == 3 and after < before  # the wholly dead ones are gone, nothing new
    assert after == _indexed_packs(repo)
    assert os.listdir(repo / "tmp") == []
    _restores(repo, ids[2], expected, tmp_path / "out")
    res = run_snap("gc", "--json", repo=repo)
    assert res.code == 0, res.err
    assert res.json()["packs_rewritten"] == 1  # type: ignore[index]
    _restores(repo, ids[2], expected, tmp_path / "out2")


def test_gc_keep_when_the_index_cannot_grow_is_one_line(small_disk: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(small_disk / "cache"))  # the index on the full disk too
    repo = small_disk / "repo"
    assert run_snap("init", repo=repo).code == 0
    src = tmp_path / "src"
    (src / "many").mkdir(parents=True)
    for i in range(4000):  # forgetting these touches more index pages than LMDB has free
        (src / "many" / f"f{i}").write_bytes(os.urandom(100))
    first = _take(repo, src)
    for child in (src / "many").iterdir():
        child.unlink()
    (src / "many").rmdir()
    (src / "one.txt").write_text("one\n")
    second = _take(repo, src)
    expected = tree_state(src)
    filler = _fill(small_disk)
    res = run_snap("gc", "--keep", "manual=1", repo=repo)
    assert res.code == ExitCode.NO_SPACE
    assert "no space left on device while forgetting snapshots" in _one_line(res)
    assert [s["id"] for s in run_snap("list", "--json", repo=repo).json()] == [first, second]  # type: ignore[index]
    filler.unlink()
    res = run_snap("gc", "--keep", "manual=1", repo=repo)
    assert res.code == 0, res.err
    _restores(repo, second, expected, tmp_path / "out")
