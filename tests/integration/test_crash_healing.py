"""Crash windows heal without a person: a command killed at a crash mark (``SNAP_TEST_CRASH_AT``)
is rolled forward or finished by the next command of any kind, which says so on stderr; and
damaged snapshots can still be forgotten. All through the real ``snap`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _tree(root: Path, seed: int) -> Path:
    import random

    rng = random.Random(seed)
    for i in range(3):
        path = root / f"d{i}" / f"f{seed}-{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(200 * 1024))
    return root


def _killed(repo: Path, point: str, *args: str, cwd: Path | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SNAP_REPO", "SNAP_CONFIG")}
    env["SNAP_TEST_CRASH_AT"] = point
    proc = subprocess.run([sys.executable, "-m", "snapstore", "--repo", str(repo), *args], cwd=cwd, env=env,
                          capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()


def _ids(snap) -> list[str]:
    res = snap("list", "--json")
    assert res.code == 0, res.err
    return sorted(s["id"] for s in res.json())


def _records(repo: Path) -> set[str]:
    return {p.name[: -len(".json")] for p in (repo / "snapshots").rglob("*.json")}


def test_take_killed_after_its_record_is_rolled_forward_by_a_read(snap, tmp_path: Path) -> None:
    assert snap("init").code == 0
    src = _tree(tmp_path / "src", 1)
    _killed(snap.repo, "take-after-record", "take", str(src))
    assert len(_records(snap.repo)) == 1
    res = snap("list", "--json")  # a read, not a writer: it used to demand 'snap repair index'
    assert res.code == 0, res.err
    assert [s["id"] for s in res.json()] == sorted(_records(snap.repo))
    assert "whose commit was interrupted" in res.err
    out = tmp_path / "out"
    restored = snap("restore", res.json()[0]["id"], "--target", str(out))
    assert restored.code == 0, restored.err
    got = sorted(p.read_bytes() for p in out.rglob("*.bin"))
    assert got == sorted(p.read_bytes() for p in src.rglob("*.bin"))
    verify = snap("verify", "--read-data")
    assert verify.code == 0, verify.out + verify.err


def _three(snap, tmp_path: Path) -> list[str]:
    assert snap("init").code == 0
    src = tmp_path / "src"
    for seed in range(3):
        _tree(src, seed)
        assert snap("take", str(src)).code == 0
    return _ids(snap)


def test_forget_killed_after_its_intent_is_finished_by_the_next_command(snap, tmp_path: Path) -> None:
    ids = _three(snap, tmp_path)
    _killed(snap.repo, "forget-after-intent", "forget", ids[0], ids[1])
    assert _records(snap.repo) == set(ids)  # nothing deleted yet
    res = snap("list", "--json")
    assert res.code == 0, res.err
    assert [s["id"] for s in res.json()] == [ids[2]]  # finished, not undone
    assert "finished an interrupted forget of 2 snapshot(s)" in res.err
    assert _records(snap.repo) == {ids[2]}
    assert not list((snap.repo / "intents").iterdir())
    verify = snap("verify", "--read-data")
    assert verify.code == 0, verify.out + verify.err
    gc = snap("gc")
    assert gc.code == 0, gc.err
    assert snap("restore", ids[2], "--target", str(tmp_path / "out")).code == 0


def test_forget_killed_mid_delete_is_finished_and_running_it_again_works(snap, tmp_path: Path) -> None:
    ids = _three(snap, tmp_path)
    _killed(snap.repo, "forget-mid-delete", "forget", ids[0], ids[1])
    assert len(_records(snap.repo)) == 2  # one record deleted, one left
    again = snap("forget", ids[0], ids[1])  # the user runs it again: it used to fail (exit 5)
    assert again.code == 0, again.err
    assert _ids(snap) == [ids[2]]
    assert _records(snap.repo) == {ids[2]}
    verify = snap("verify", "--read-data")
    assert verify.code == 0, verify.out + verify.err


def test_forget_of_a_snapshot_whose_blobs_are_missing(snap, tmp_path: Path) -> None:
    assert snap("init").code == 0
    src = _tree(tmp_path / "src", 7)
    assert snap("take", str(src)).code == 0
    (src / "d0" / "own.bin").write_bytes(os.urandom(300 * 1024))
    assert snap("take", str(src)).code == 0
    ids = _ids(snap)
    packs = sorted((snap.repo / "packs").rglob("*.pack"), key=lambda p: p.stat().st_mtime)
    packs[-1].unlink()  # the second snapshot's own data and trees are gone
    res = snap("forget", *ids)
    assert res.code == 0, res.err  # it died with KeyError in drop_reference
    assert "Traceback" not in res.err
    assert _ids(snap) == []
    assert _records(snap.repo) == set()


def test_holder_notes_of_killed_processes_are_cleaned_by_the_next_command(snap, tmp_path: Path) -> None:
    """Finding 14: every kill -9 left ``locks/holders/<pid>-*.json`` behind, and they piled up."""
    import json

    assert snap("init").code == 0
    src = _tree(tmp_path / "src", 3)
    for _ in range(3):
        _killed(snap.repo, "take-after-record", "take", str(src))
    holders = snap.repo / "locks" / "holders"
    # each take cleaned the notes of the one killed before it: only the last one's are left
    assert len(list(holders.iterdir())) == 2
    # a note of another host sharing the directory: its pid means nothing here, it stays
    other = holders / "999999-read.json"
    other.write_text(json.dumps({"pid": 999999, "command": "snap mount", "host": "elsewhere", "since": 0}))
    assert snap("list").code == 0
    assert sorted(p.name for p in holders.iterdir()) == [other.name]


def test_repair_killed_mid_build_leaves_the_old_index_working(snap, tmp_path: Path) -> None:
    """Finding 11: an interrupted 'repair index' left index.rebuild-<pid>; the old index stays in
    use (takes work), and the next repair removes the half-built one."""
    from tests.conftest import cache_of

    ids = _three(snap, tmp_path)
    _killed(snap.repo, "repair-mid-build", "repair", "index")
    cache = cache_of(snap.repo)
    assert [n for n in os.listdir(cache) if n.startswith("index.rebuild-")]
    src = _tree(tmp_path / "src", 9)
    res = snap("take", str(src))
    assert res.code == 0, res.err
    assert _ids(snap) == sorted([*ids, *(set(_records(snap.repo)) - set(ids))])
    res = snap("repair", "index")
    assert res.code == 0, res.err
    assert not [n for n in os.listdir(cache) if n.startswith("index.rebuild-")]
    verify = snap("verify", "--read-data")
    assert verify.code == 0, verify.out + verify.err


def test_verify_meets_a_record_stored_after_its_sync(snap, tmp_path: Path) -> None:
    """A take on another client stores its record after verify's open (and is killed before its
    commit, or commits a moment later): verify syncs again and finds nothing wrong, where it
    reported "has a record but is not in the index: run 'snap repair index'" (the soak's race)."""
    from snapstore.ops.verify import verify_repository
    from snapstore.repo.repository import Repository

    assert snap("init").code == 0
    assert snap("take", str(_tree(tmp_path / "a", 1))).code == 0
    with Repository.open(str(snap.repo), mode="read") as repo:
        _killed(snap.repo, "take-after-record", "take", str(_tree(tmp_path / "b", 2)))
        report = verify_repository(repo, read_data=True)
        assert not report.damaged, [p.message for p in report.problems]
        assert report.snapshots == 2
