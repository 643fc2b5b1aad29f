"""Fault injection: damaged packs, lost or stale index, full disk, concurrent processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from snapstore.errors import ExitCode
from snapstore.format.tree import FILE
from snapstore.repo.repository import Repository, pack_name
from snapstore.view.vfs import SnapshotView
from tests.conftest import cache_of, run_snap, tree_state


@pytest.fixture
def filled(snap, tmp_path: Path) -> tuple[Path, list[str]]:
    """A repository with two snapshots of a small agent tree (distinct weight files)."""
    src = tmp_path / "src"
    (src / "agents" / "Z").mkdir(parents=True)
    (src / "agents" / "Jay").mkdir(parents=True)
    (src / "agents" / "Z" / "SOUL.md").write_text("# Z\n" * 500)
    (src / "agents" / "Z" / "weights.bin").write_bytes(os.urandom(600_000))
    (src / "agents" / "Jay" / "SOUL.md").write_text("# Jay\n" * 500)
    assert snap("init").code == 0
    ids = [snap("take", ".", "--json", cwd=src).json()["id"]]
    (src / "agents" / "Jay" / "notes.md").write_text("later\n")
    ids.append(snap("take", ".", "--json", cwd=src).json()["id"])
    return src, ids


def _locate(repo: Path, snap_id: str, path: str) -> tuple[str, int, int, bytes]:
    with Repository.open(str(repo)) as opened:
        view = SnapshotView(opened)
        entry = view.lookup(opened.resolve(snap_id), path)
        assert entry.kind == FILE
        blob = entry.chunk_ids()[0]
        loc = opened.index.get_chunk(blob)
        assert loc is not None
        return str(repo / pack_name(loc.pack)), loc.offset, loc.stored_len, blob


def test_flipped_byte_is_named_and_contained(snap, filled, tmp_path: Path) -> None:
    src, ids = filled
    pack, offset, length, blob = _locate(snap.repo, ids[1], "agents/Z/weights.bin")
    with open(pack, "r+b") as f:
        f.seek(offset + length // 2)
        byte = f.read(1)
        f.seek(offset + length // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert snap("verify").code == 0  # structure is fine: only reading the data shows it
    res = snap("verify", "--read-data", "--json")
    assert res.code == ExitCode.DAMAGED
    problems = [p for p in res.json()["problems"] if p["kind"] == "blob_corrupt"]
    assert len(problems) == 1
    problem = problems[0]
    assert problem["blob"] == blob.hex() and problem["pack"] in pack
    assert {a["snapshot"] for a in problem["affected"]} == set(ids)
    assert all(a["paths"] == ["agents/Z/weights.bin"] for a in problem["affected"])
    human = snap("verify", "--read-data")
    assert human.code == ExitCode.DAMAGED and "agents/Z/weights.bin" in human.err and "corrupt" in human.err
    # every other file restores identical; the damaged one is named and left out
    out = tmp_path / "out"
    res = snap("restore", "latest", "--target", str(out))
    assert res.code == ExitCode.PARTIAL and "agents/Z/weights.bin" in res.err
    assert not (out / "agents" / "Z" / "weights.bin").exists()
    want = {k: v for k, v in tree_state(src).items() if not k.endswith(b"weights.bin")}
    got = {k: v for k, v in tree_state(out).items() if k != b"agents/Z" and k != b"agents"}
    assert got == {k: v for k, v in want.items() if k not in (b"agents/Z", b"agents")}
    # --partial writes the readable part, zeros for the hole, and lists it
    out2 = tmp_path / "partial"
    res = snap("restore", "latest", "agents/Z/weights.bin", "--partial", "--target", str(out2))
    assert res.code == ExitCode.PARTIAL and "zero-filled" in res.err
    data = (out2 / "agents" / "Z" / "weights.bin").read_bytes()
    assert len(data) == 600_000 and data[:4096] == b"\0" * 4096


def test_truncated_and_deleted_pack(snap, filled, tmp_path: Path) -> None:
    src, ids = filled
    pack, offset, length, _blob = _locate(snap.repo, ids[0], "agents/Z/weights.bin")
    os.truncate(pack, offset + length // 2)
    res = snap("verify", "--json")
    assert res.code == ExitCode.DAMAGED
    kinds = {p["kind"] for p in res.json()["problems"]}
    assert "pack_damaged" in kinds and "blob_missing" in kinds
    missing = [p for p in res.json()["problems"] if p["kind"] == "blob_missing"]
    assert any("agents/Z/weights.bin" in a["paths"] for p in missing for a in p["affected"])
    res = snap("repair", "index", "--json")
    assert res.code == 0, res.err
    report = res.json()
    assert any("damaged/packs" in m for m in report["moved_aside"])
    assert report["snapshots"] == 2
    # repaired: SOUL files restore; the lost weights are named by verify
    out = tmp_path / "out"
    res = snap("restore", ids[1], "agents/Jay", "agents/Z/SOUL.md", "--target", str(out))
    assert res.code == 0, res.err
    assert (out / "agents" / "Z" / "SOUL.md").read_text() == "# Z\n" * 500
    res = snap("verify", "--json")
    assert res.code == ExitCode.DAMAGED
    assert {p["kind"] for p in res.json()["problems"]} == {"blob_missing"}
    # a deleted pack
    for dirpath, _d, files in os.walk(snap.repo / "packs"):
        for name in files:
            os.unlink(os.path.join(dirpath, name))
    # the index follows the repository's files at open: the packs' blobs leave it, and the
    # open says so; verify names what can no longer be read
    res = snap("verify", "--json")
    assert res.code == ExitCode.DAMAGED
    assert {p["kind"] for p in res.json()["problems"]} & {"pack_missing", "tree_unreadable"}
    assert "in no pack" in res.err


def test_lost_stale_and_truncated_index_are_rebuilt_by_the_next_command(snap, filled, tmp_path: Path) -> None:
    src, ids = filled
    index = cache_of(snap.repo) / "index"
    shutil.copytree(index, tmp_path / "old-index")
    (src / "agents" / "Rick").mkdir()
    (src / "agents" / "Rick" / "SOUL.md").write_text("# Rick\n")
    ids.append(snap("take", ".", "--json", cwd=src).json()["id"])
    # 1. the whole index deleted: rebuilt from the packs and records, with a one-line note
    shutil.rmtree(index)
    res = snap("list", "--json")
    assert res.code == 0, res.err
    assert [s["id"] for s in res.json()] == ids
    assert "building it from the packs and records" in res.err and len(res.err.strip().splitlines()) == 1
    assert snap("verify", "--read-data").code == 0
    # 2. replaced by an older copy: brought up to date, so gc sees the newer snapshot's packs
    shutil.rmtree(index)
    shutil.copytree(tmp_path / "old-index", index)
    res = snap("gc", "--json")
    assert res.code == 0, res.err
    assert [s["id"] for s in snap("list", "--json").json()] == ids
    assert snap("verify", "--read-data").code == 0
    out = tmp_path / "out"
    assert snap("restore", "latest", "--target", str(out)).code == 0
    assert tree_state(out) == tree_state(src)
    # 3. a truncated data.mdb (LMDB would die of SIGBUS on it): moved aside and rebuilt
    data = index / "data.mdb"
    os.truncate(data, data.stat().st_size // 2)
    res = snap("list", "--json")
    assert res.code == 0, res.err
    assert [s["id"] for s in res.json()] == ids
    assert "is truncated" in res.err and len(res.err.strip().splitlines()) == 1
    assert any(n.startswith("index-") for n in os.listdir(cache_of(snap.repo) / "damaged"))
    assert snap("verify", "--read-data").code == 0
    # 4. an unreadable one (not an LMDB file at all)
    data.write_bytes(b"garbage" * 3000)
    res = snap("restore", "latest", "--target", str(tmp_path / "out2"))
    assert res.code == 0, res.err
    assert tree_state(tmp_path / "out2") == tree_state(src)


def test_read_only_repository_is_read_without_writing(snap, filled, tmp_path: Path) -> None:
    src, ids = filled
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(snap.repo), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        with pytest.raises(OSError):
            (ro / "probe").write_text("x")
        before = sorted(str(p.relative_to(snap.repo)) for p in snap.repo.rglob("*"))
        env = {"XDG_CACHE_HOME": str(tmp_path / "other-cache")}  # another host: no index yet
        res = run_snap("list", "--json", repo=ro, env=env)
        assert res.code == 0, res.err
        assert [s["id"] for s in res.json()] == ids
        assert run_snap("verify", "--read-data", repo=ro, env=env).code == 0
        out = tmp_path / "out"
        res = run_snap("restore", "latest", "--target", str(out), repo=ro, env=env)
        assert res.code == 0, res.err
        assert tree_state(out) == tree_state(src)
        res = run_snap("take", ".", repo=ro, cwd=src, env=env)
        assert res.code != 0 and len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
        assert sorted(str(p.relative_to(snap.repo)) for p in snap.repo.rglob("*")) == before
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def test_disk_full_during_take(snap, tmp_path: Path) -> None:
    small = tmp_path / "small"
    _mount_tmpfs(small, "6m")
    try:
        repo = small / "repo"
        src = tmp_path / "src"
        src.mkdir()
        (src / "first.txt").write_text("fits\n")
        assert run_snap("init", repo=repo).code == 0
        first = run_snap("take", ".", "--json", repo=repo, cwd=src).json()["id"]
        (src / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
        res = run_snap("take", ".", repo=repo, cwd=src)
        assert res.code == ExitCode.NO_SPACE, res.err
        assert "no space left" in res.err and len(res.err.strip().splitlines()) == 1
        assert [s["id"] for s in run_snap("list", "--json", repo=repo).json()] == [first]
        assert os.listdir(repo / "tmp") == []  # the partial pack was removed
        assert run_snap("verify", "--read-data", repo=repo).code == 0
        out = tmp_path / "out"
        assert run_snap("restore", first, "--target", str(out), repo=repo).code == 0
        (src / "big.bin").unlink()
        (src / "second.txt").write_text("after freeing space\n")
        res = run_snap("take", ".", "--json", repo=repo, cwd=src)
        assert res.code == 0, res.err
        assert run_snap("gc", repo=repo).code == 0
        assert run_snap("verify", "--read-data", repo=repo).code == 0
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_injected_enospc_leaves_nothing_referenced(snap, filled, tmp_path: Path) -> None:
    src, ids = filled
    (src / "more.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    res = snap("take", ".", cwd=src, env={"SNAP_TEST_ENOSPC_AFTER": "1000000"})
    assert res.code == ExitCode.NO_SPACE
    assert [s["id"] for s in snap("list", "--json").json()] == ids
    assert snap("verify").code == 0
    assert snap("take", ".", cwd=src).code == 0


def _spawn(repo: Path, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "snapstore", "--repo", str(repo), *args], cwd=cwd,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_holder(repo: Path, pid: int, lock: str) -> None:
    deadline = time.time() + 30
    while not (repo / "locks" / "holders" / f"{pid}-{lock}.json").exists():
        assert time.time() < deadline, "the process never took the lock"
        time.sleep(0.02)


def test_concurrent_processes(snap, filled, tmp_path: Path) -> None:
    src, ids = filled
    for i in range(6):
        (src / f"bulk{i}.bin").write_bytes(os.urandom(1024 * 1024))
    slow = {"SNAP_TEST_SLOW_STORE": "0.5"}
    # two takes at once: the second fails clearly (locked) or, with --wait, runs after the first
    first = _spawn(snap.repo, "take", ".", cwd=src, env=slow)
    _wait_for_holder(snap.repo, first.pid, "write")
    second = _spawn(snap.repo, "take", ".", cwd=src)
    waiting = _spawn(snap.repo, "--wait", "60", "take", ".", cwd=src)
    assert second.wait(60) == ExitCode.LOCKED
    assert b"locked by" in second.stderr.read()  # type: ignore[union-attr]
    assert first.wait(60) == 0 and waiting.wait(60) == 0
    # a take during verify: both succeed
    (src / "another.txt").write_text("x")
    verifier = _spawn(snap.repo, "verify", "--read-data")
    taker = _spawn(snap.repo, "take", ".", cwd=src)
    assert taker.wait(60) == 0, taker.stderr.read()  # type: ignore[union-attr]
    assert verifier.wait(60) in (0,), verifier.stderr.read()  # type: ignore[union-attr]
    # a restore during gc: gc waits for the reader (or fails clearly without --wait)
    reader = _spawn(snap.repo, "restore", "latest", "--target", str(tmp_path / "r1"),
                    env={"SNAP_TEST_SLOW_READ": "0.1"})
    _wait_for_holder(snap.repo, reader.pid, "read")
    gc_now = _spawn(snap.repo, "gc", "--keep", "manual=2")
    assert gc_now.wait(60) == ExitCode.LOCKED
    assert b"locked by snap restore" in gc_now.stderr.read()  # type: ignore[union-attr]
    gc_wait = _spawn(snap.repo, "--wait", "60", "gc", "--keep", "manual=2")
    assert reader.wait(60) == 0
    assert gc_wait.wait(60) == 0, gc_wait.stderr.read()  # type: ignore[union-attr]
    assert snap("verify", "--read-data").code == 0
    out = tmp_path / "final"
    assert snap("restore", "latest", "--target", str(out)).code == 0
    assert tree_state(out) == tree_state(src)


def test_repairs_in_the_same_second_keep_every_old_index(snap, filled) -> None:
    from snapstore.ops.repair import _free_name

    damaged = cache_of(snap.repo) / "damaged"
    damaged.mkdir(parents=True)
    (damaged / "index-20261123T101010").mkdir()
    assert _free_name(str(damaged), "index-20261123T101010") == "index-20261123T101010-2"
    assert snap("repair", "index").code == 0
    assert snap("repair", "index").code == 0
    kept = [n for n in os.listdir(damaged) if n.startswith("index-")]
    assert len(kept) == 3
