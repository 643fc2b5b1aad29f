"""The one pack sink, through each command that writes packs: take, copy, gc, repair.

Each test injects a bad write (``SNAP_TEST_FLIP_PACK=N``: one byte of the Nth pack flipped on
disk after it was written and fsynced, before it is read back) and checks that the command
fails with one line and exit 4, that nothing half-written is left (tmp/ empty, no new pack file,
no new pack in the index), and that the old data survives (restores byte-identical,
``verify --read-data`` clean).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from snapstore.errors import ExitCode
from snapstore.format.packfile import FOOTER
from snapstore.repo.repository import Repository
from tests.conftest import Result, cache_of, run_snap, tree_state


def _one_line(res: Result) -> str:
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.err, res.err
    return lines[0]


def _pack_files(repo: Path) -> set[str]:
    return {f for _d, _s, files in os.walk(repo / "packs") for f in files}


def _indexed_packs(repo: Path) -> set[str]:
    with Repository.open(str(repo)) as opened, opened.index.read() as txn:
        return {p.hex() + ".pack" for p, _size, _count in opened.index.iter_packs(txn)}


def _set_pack_size(repo: Path, size: int) -> None:
    cfg = json.loads((repo / "config.json").read_text())
    cfg["pack_size"] = size
    (repo / "config.json").write_text(json.dumps(cfg))


def _indexed_blobs(repo: Path) -> set[bytes]:
    with Repository.open(str(repo)) as opened, opened.index.read() as txn:
        return {blob_id for blob_id, _loc in opened.index.iter_chunks(txn)}


def _state(repo: Path) -> tuple[set[str], set[str], set[bytes]]:
    return _pack_files(repo), _indexed_packs(repo), _indexed_blobs(repo)


def _nothing_half_written(repo: Path, before: tuple[set[str], set[str], set[bytes]]) -> None:
    assert os.listdir(repo / "tmp") == []
    files, indexed, blobs = _state(repo)
    assert files == before[0], "a pack file was added or removed"
    assert indexed == before[1], "the index changed its packs"
    assert blobs == before[2], "the index changed its blobs"


def _restores_identical(repo: Path, snaps: dict[str, dict], out: Path) -> None:
    for snap_id, expected in snaps.items():
        target = out / snap_id[:12]
        res = run_snap("restore", snap_id, "--target", str(target), repo=repo)
        assert res.code == 0, res.err
        assert tree_state(target) == expected
    res = run_snap("verify", "--read-data", repo=repo)
    assert res.code == 0, res.out + res.err


def _take(repo: Path, src: Path) -> str:
    res = run_snap("take", ".", "--json", repo=repo, cwd=src)
    assert res.code == 0, res.err
    return res.json()["id"]  # type: ignore[index]


def _source(tmp_path: Path, name: str = "src") -> Path:
    src = tmp_path / name
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("alpha\n" * 500)
    (src / "one.bin").write_bytes(os.urandom(300 * 1024))
    return src


def test_take_with_a_bad_write_commits_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert run_snap("init", repo=repo).code == 0
    _set_pack_size(repo, 256 * 1024)  # several packs per take: the bad one is not the first
    src = _source(tmp_path)
    first = _take(repo, src)
    kept = {first: tree_state(src)}
    before = _state(repo)
    # six new files of 300 KiB: each is a blob of its own bigger than the pack size, so the take
    # writes at least six packs whatever the chunker's cut points (one 2 MiB file could be two
    # chunks, hence two packs, and the third pack's fault would never be met)
    (src / "new").mkdir()
    for n in range(6):
        (src / "new" / f"{n}.bin").write_bytes(os.urandom(300 * 1024))
    res = run_snap("take", ".", repo=repo, cwd=src, env={"SNAP_TEST_FLIP_PACK": "3"})
    assert res.code == ExitCode.DAMAGED
    assert "reads back different from what was written" in _one_line(res)
    _nothing_half_written(repo, before)  # the two packs stored before the bad one were removed too
    assert [s["id"] for s in run_snap("list", "--json", repo=repo).json()] == [first]  # type: ignore[index]
    shutil.rmtree(src / "new")
    _restores_identical(repo, kept, tmp_path / "out")
    (src / "new.bin").write_bytes(os.urandom(1024 * 1024))
    second = _take(repo, src)  # a take without the fault stores everything again
    kept[second] = tree_state(src)
    _restores_identical(repo, kept, tmp_path / "out2")


def test_copy_with_a_bad_write_commits_nothing_in_the_target(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    assert run_snap("init", repo=source).code == 0
    assert run_snap("init", repo=target).code == 0
    src = _source(tmp_path)
    old = _take(target, src)  # the target's own snapshot, which must survive
    kept = {old: tree_state(src)}
    (src / "more.bin").write_bytes(os.urandom(512 * 1024))
    _take(source, src)
    before = _state(target)
    res = run_snap("copy", "--to", str(target), repo=source, env={"SNAP_TEST_FLIP_PACK": "1"})
    assert res.code == ExitCode.DAMAGED
    assert "reads back different from what was written" in _one_line(res)
    _nothing_half_written(target, before)
    assert [s["id"] for s in run_snap("list", "--json", repo=target).json()] == [old]  # type: ignore[index]
    _restores_identical(target, kept, tmp_path / "out")
    res = run_snap("copy", "--to", str(target), repo=source)
    assert res.code == 0, res.err
    assert len(run_snap("list", "--json", repo=target).json()) == 2  # type: ignore[arg-type]
    assert run_snap("verify", "--read-data", repo=target).code == 0


def test_gc_with_a_bad_write_keeps_the_packs_it_was_rewriting(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert run_snap("init", repo=repo).code == 0
    src = _source(tmp_path)
    (src / "two.bin").write_bytes(os.urandom(300 * 1024))
    first = _take(repo, src)  # one data pack: docs, one.bin and two.bin
    (src / "two.bin").unlink()
    (src / "docs" / "a.txt").write_text("beta\n" * 500)
    second = _take(repo, src)  # shares one.bin; no tree of the first: its tree pack dies whole
    kept = {second: tree_state(src)}
    assert run_snap("forget", first, repo=repo).code == 0
    before = _state(repo)
    res = run_snap("gc", "--dry-run", "--json", repo=repo)
    assert res.json()["packs_rewritten"] == 1  # type: ignore[index]
    res = run_snap("gc", repo=repo, env={"SNAP_TEST_FLIP_PACK": "1"})
    assert res.code == ExitCode.DAMAGED
    assert "reads back different from what was written" in _one_line(res)
    # the first snapshot's tree pack was wholly dead and is freed before any rewrite; the data
    # pack being rewritten is kept whole, and no new pack exists
    files, indexed, _blobs = _state(repo)
    assert os.listdir(repo / "tmp") == []
    assert files == indexed
    assert len(before[0] - files) == 1 and files < before[0]
    _restores_identical(repo, kept, tmp_path / "out")
    res = run_snap("gc", "--json", repo=repo)
    assert res.code == 0, res.err
    assert res.json()["packs_rewritten"] == 1  # type: ignore[index]
    _restores_identical(repo, kept, tmp_path / "out2")


def _break_table(repo: Path, pack_file: str) -> None:
    """Flip one byte in a pack's table (the blobs stay intact, so repair can salvage them)."""
    path = next(Path(d) / f for d, _s, files in os.walk(repo / "packs") for f in files if f == pack_file)
    data = bytearray(path.read_bytes())
    data[-FOOTER.size - 10] ^= 0xFF
    path.write_bytes(bytes(data))


def test_repair_with_a_bad_write_moves_nothing_aside(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert run_snap("init", repo=repo).code == 0
    src = _source(tmp_path)
    first = _take(repo, src)
    kept = {first: tree_state(src)}
    (src / "later.bin").write_bytes(os.urandom(200 * 1024))
    second = _take(repo, src)
    kept[second] = tree_state(src)
    with Repository.open(str(repo)) as opened:
        data_pack = opened.index.get_chunk(_some_data_blob(opened, first))
        assert data_pack is not None
        broken = data_pack.pack.hex() + ".pack"
    _break_table(repo, broken)
    assert run_snap("verify", repo=repo).code == ExitCode.DAMAGED
    before = _state(repo)
    index_files = sorted(os.listdir(cache_of(repo) / "index"))
    res = run_snap("repair", "index", repo=repo, env={"SNAP_TEST_FLIP_PACK": "1"})
    assert res.code == ExitCode.DAMAGED
    assert "reads back different from what was written" in _one_line(res)
    _nothing_half_written(repo, before)
    assert not (repo / "damaged").exists() or list((repo / "damaged").rglob("*.pack")) == []
    assert broken in _pack_files(repo)  # the damaged pack is still there to salvage from
    assert [n for n in os.listdir(cache_of(repo)) if n.startswith("index.rebuild")] == []
    assert sorted(os.listdir(cache_of(repo) / "index")) == index_files
    res = run_snap("repair", "index", "--json", repo=repo)
    assert res.code == 0, res.err
    assert res.json()["salvaged_blobs"] > 0  # type: ignore[index]
    _restores_identical(repo, kept, tmp_path / "out")


def _some_data_blob(repo: Repository, snap_id: str) -> bytes:
    root = bytes.fromhex(repo.resolve(snap_id).root)
    for entry in repo.read_tree(root):
        if entry.chunks:
            return next(iter(entry.chunk_ids()))
    raise AssertionError("no file in the snapshot root")
