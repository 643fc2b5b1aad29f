"""After damage (a lost pack, a damaged record or tree) and its repair, nothing a live snapshot
needs is lost and takes store again what is gone. All through the real ``snap`` command, with
the damage done to the repository's files as a disk or a person would."""

from __future__ import annotations

import os
import random
from pathlib import Path

from snapstore.errors import ExitCode
from tests.conftest import tree_state


def _ids(snap) -> list[str]:
    res = snap("list", "--json")
    assert res.code == 0, res.err
    return [s["id"] for s in res.json()]


def _packs(repo: Path) -> list[Path]:
    return sorted((repo / "packs").rglob("*.pack"), key=lambda p: (p.stat().st_mtime_ns, p.name))


def _workspace(root: Path, seed: int) -> Path:
    """A top-level file that will change and an unchanging directory of several files: the
    directory's tree survives a lost data pack, so a later take points at it again."""
    rng = random.Random(seed)
    (root / "stable" / "deep").mkdir(parents=True)
    for i in range(4):
        (root / "stable" / f"s{i}.bin").write_bytes(rng.randbytes(150_000))
    (root / "stable" / "deep" / "notes.md").write_text("kept\n" * 2000)
    (root / "changing.txt").write_text("version 1\n" * 3000)
    return root


def _lose_data_pack(repo: Path) -> None:
    """Delete the biggest pack (the data; trees are small and packed apart)."""
    biggest = max(_packs(repo), key=lambda p: p.stat().st_size)
    biggest.unlink()


def test_gc_after_a_repaired_pack_loss_keeps_the_newest_snapshot(snap, tmp_path: Path) -> None:
    """Finding 1: re-stored blobs started at refcount 0 (the unchanged directory's tree, still
    indexed, was counted once and not walked again), so gc rewrote their pack without them."""
    src = _workspace(tmp_path / "src", 1)
    assert snap("init").code == 0
    assert snap("take", ".", cwd=src).code == 0
    _lose_data_pack(snap.repo)
    res = snap("repair", "index")
    assert res.code == 0, res.err
    (src / "changing.txt").write_text("version 2\n" * 3000)
    assert snap("take", ".", cwd=src).code == 0
    (src / "changing.txt").write_text("version 3\n" * 3000)
    assert snap("take", ".", cwd=src).code == 0
    first, middle, newest = _ids(snap)
    before = tmp_path / "before"
    assert snap("restore", newest, "--target", str(before)).code == 0
    assert tree_state(before) == tree_state(src)
    assert snap("forget", middle).code == 0
    gc = snap("gc")
    assert gc.code == 0, gc.err
    out = tmp_path / "out"
    res = snap("restore", newest, "--target", str(out))
    assert res.code == 0, res.err
    assert tree_state(out) == tree_state(src)
    # the only damage left is the first snapshot's own lost version of changing.txt
    res = snap("verify", "--read-data", "--json")
    problems = res.json()["problems"]
    assert {p["kind"] for p in problems} == {"blob_missing"}, problems
    assert {a["snapshot"] for p in problems for a in p["affected"]} == {first}
    assert {path for p in problems for a in p["affected"] for path in a["paths"]} == {"changing.txt"}
    assert snap("forget", first).code == 0
    assert snap("gc").code == 0
    res = snap("verify", "--read-data")
    assert res.code == 0, res.out + res.err


def _restores_whole(snap, src: Path, out: Path) -> None:
    res = snap("restore", _ids(snap)[-1], "--target", str(out))
    assert res.code == 0, res.err
    assert tree_state(out) == tree_state(src)


def test_take_after_a_lost_or_truncated_pack_stores_the_data_again(snap, tmp_path: Path) -> None:
    """Finding 2: after a pack was cut short or vanished, the files cache and dedup must not
    trust blobs that are in no pack: the next take stores them again, its snapshot restores
    whole, and so the older snapshots are whole again too."""
    src = _workspace(tmp_path / "src", 2)
    assert snap("init").code == 0
    assert snap("take", ".", cwd=src).code == 0
    # a pack cut short (a disk fault): its table and last blobs are gone
    biggest = max(_packs(snap.repo), key=lambda p: p.stat().st_size)
    os.truncate(biggest, biggest.stat().st_size // 3)
    res = snap("take", ".", cwd=src)  # nothing changed: the files cache would say "unchanged"
    assert res.code == 0, res.err
    assert "is truncated" in res.err
    _restores_whole(snap, src, tmp_path / "out1")
    # a pack deleted
    _lose_data_pack(snap.repo)
    assert snap("take", ".", cwd=src).code == 0
    _restores_whole(snap, src, tmp_path / "out2")
    # the same after a repair of the index (the files cache survives it)
    _lose_data_pack(snap.repo)
    assert snap("repair", "index").code == 0
    assert snap("take", ".", cwd=src).code == 0
    _restores_whole(snap, src, tmp_path / "out3")
    res = snap("verify", "--read-data")  # every snapshot's blobs were stored again
    assert res.code == 0, res.out + res.err
    assert snap("gc").code == 0
    _restores_whole(snap, src, tmp_path / "out4")


def _flip_tree_of(repo: Path, snap_id: str, name: bytes) -> None:
    """Flip a byte in the middle of the tree blob of directory ``name`` (the pack's table stays sound)."""
    from snapstore.repo.repository import Repository, pack_name

    with Repository.open(str(repo)) as opened:
        root = opened.read_tree(bytes.fromhex(opened.resolve(snap_id).root))
        subtree = next(e.subtree for e in root if e.name == name)
        loc = opened.index.get_chunk(subtree)
        assert loc is not None
        path = repo / pack_name(loc.pack)
    with open(path, "r+b") as handle:
        handle.seek(loc.offset + loc.stored_len // 2)
        byte = handle.read(1)
        handle.seek(loc.offset + loc.stored_len // 2)
        handle.write(bytes([byte[0] ^ 0x55]))


def test_gc_refuses_an_index_it_cannot_recount_until_a_repair(snap, tmp_path: Path) -> None:
    """A pack loss flags the index for a recount; when the recount cannot read a tree the
    index holds, gc refuses in one line (exit 4) naming 'snap repair index', which recounts."""
    src = _workspace(tmp_path / "src", 3)
    assert snap("init").code == 0
    assert snap("take", ".", cwd=src).code == 0
    first = _ids(snap)[0]
    _flip_tree_of(snap.repo, first, b"stable")
    _lose_data_pack(snap.repo)
    gc = snap("gc")
    assert gc.code == ExitCode.DAMAGED, gc.err
    errors = [line for line in gc.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "snap repair index" in errors[0] and "recount" in errors[0], gc.err
    assert "Traceback" not in gc.err
    assert snap("gc").code == ExitCode.DAMAGED  # still refused: nothing changed
    res = snap("repair", "index")
    assert res.code == 0, res.err
    assert "is damaged: it left the index" in res.out + res.err
    gc = snap("gc")
    assert gc.code == 0, gc.err
    (src / "changing.txt").write_text("version 2\n" * 3000)
    assert snap("take", ".", cwd=src).code == 0  # stores the damaged tree and the lost data again
    assert snap("gc").code == 0
    _restores_whole(snap, src, tmp_path / "out")
    assert snap("forget", first).code == 0
    assert snap("gc").code == 0
    res = snap("verify", "--read-data")
    assert res.code == 0, res.out + res.err
    _restores_whole(snap, src, tmp_path / "out2")


def test_a_damaged_record_is_found_by_verify_and_written_back_by_repair(snap, tmp_path: Path) -> None:
    """Finding 3: a corrupt (encrypted: failing AEAD) record was invisible to verify, and repair
    dropped the snapshot, after which gc freed its data. Now verify names it, every command keeps
    the index's copy, and repair writes the record back from that copy."""
    src = _workspace(tmp_path / "src", 4)
    assert snap("init").code == 0
    assert snap("take", ".", cwd=src).code == 0
    keep = tree_state(src)
    (src / "changing.txt").write_text("version 2\n" * 3000)
    assert snap("take", ".", cwd=src).code == 0
    first, second = _ids(snap)
    record = next((snap.repo / "snapshots").rglob(f"{first}.json"))
    raw = bytearray(record.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    record.write_bytes(bytes(raw))
    res = snap("verify", "--read-data", "--json")
    assert res.code == ExitCode.DAMAGED
    kinds = [p["kind"] for p in res.json()["problems"]]
    assert kinds == ["snapshot_record_damaged"], kinds
    assert first[:8] in res.json()["problems"][0]["message"]
    assert _ids(snap) == [first, second]  # the index's copy is kept, never dropped
    res = snap("repair", "index", "--json")
    assert res.code == 0, res.err
    assert res.json()["restored_records"] == [first]
    assert res.json()["snapshots"] == 2
    assert any(m.startswith("snapshots/") and first in m for m in res.json()["moved_aside"])
    assert _ids(snap) == [first, second]
    res = snap("verify", "--read-data")
    assert res.code == 0, res.out + res.err
    assert snap("gc").code == 0
    out = tmp_path / "out"
    assert snap("restore", first, "--target", str(out)).code == 0
    assert tree_state(out) == keep


def test_one_damaged_tree_names_its_directory_and_the_rest_is_restored(snap, tmp_path: Path) -> None:
    """Finding 7: one damaged tree blob aborted the whole restore (exit 4, no path named),
    --partial included."""
    src = tmp_path / "src"
    rng = random.Random(7)
    for name in ("alpha", "broken", "gamma"):
        (src / name / "sub").mkdir(parents=True)
        for i in range(3):
            (src / name / f"{name}{i}.bin").write_bytes(rng.randbytes(40_000))
        (src / name / "sub" / "leaf.txt").write_text(f"{name}\n" * 100)
    (src / "top.txt").write_text("top\n")
    assert snap("init").code == 0
    assert snap("take", ".", cwd=src).code == 0
    snap_id = _ids(snap)[0]
    _flip_tree_of(snap.repo, snap_id, b"broken")
    want = {k: v for k, v in tree_state(src).items() if not k.startswith(b"broken/")}
    for flags in ([], ["--partial"]):
        out = tmp_path / f"out{len(flags)}"
        res = snap("restore", snap_id, "--target", str(out), *flags)
        assert res.code == ExitCode.PARTIAL, res.err
        assert "Traceback" not in res.err
        named = [line for line in res.err.splitlines() if "directory unreadable" in line]
        assert len(named) == 1 and "broken" in named[0], res.err
        got = {k: v for k, v in tree_state(out).items() if not k.startswith(b"broken/")}
        assert {k: v for k, v in got.items() if k != b"broken"} == {k: v for k, v in want.items() if k != b"broken"}
        assert not list((out / "broken").iterdir())


def test_repair_snapshots_leaves_out_what_is_lost(snap, tmp_path: Path) -> None:
    """'snap repair snapshots' (as restic's): a snapshot whose data is partly lost becomes one
    without the lost files, tagged repaired; the damaged one goes only with --forget."""
    src = _workspace(tmp_path / "src", 5)
    assert snap("init").code == 0
    assert snap("take", ".", cwd=src).code == 0
    (src / "own.bin").write_bytes(random.Random(9).randbytes(300_000))
    assert snap("take", ".", cwd=src).code == 0
    first, damaged = _ids(snap)
    newest_data = max(_packs(snap.repo)[-2:], key=lambda p: p.stat().st_size)  # the second take's data
    newest_data.unlink()
    res = snap("repair", "snapshots", "--dry-run", "--json")
    assert res.code == 0, res.err
    by_old = {r["old"]: r for r in res.json()}
    assert by_old[first]["removed"] == [] and by_old[damaged]["removed"] == ["own.bin"]
    assert _ids(snap) == [first, damaged]  # a dry run writes nothing
    res = snap("repair", "snapshots", "--json")
    assert res.code == 0, res.err
    repaired = {r["old"]: r for r in res.json()}[damaged]["new"]
    assert repaired and repaired != damaged
    listed = {s["id"]: s for s in snap("list", "--json").json()}
    assert set(listed) == {first, damaged, repaired}  # the damaged one is kept without --forget
    assert "repaired" in listed[repaired]["tags"]
    out = tmp_path / "out"
    res = snap("restore", repaired, "--target", str(out))
    assert res.code == 0, res.err
    assert tree_state(out) == {k: v for k, v in tree_state(src).items() if k != b"own.bin"}
    assert snap("verify").code == ExitCode.DAMAGED  # the damaged original still lacks own.bin
    res = snap("repair", "snapshots", "--forget", "--json")  # again: the same repaired snapshot
    assert res.code == 0, res.err
    assert {r["old"]: r for r in res.json()}[damaged]["new"] == repaired
    assert set(_ids(snap)) == {first, repaired}
    assert snap("gc").code == 0
    res = snap("verify", "--read-data")
    assert res.code == 0, res.out + res.err


def test_a_tree_unreadable_while_another_host_syncs_does_not_undercount(snap, tmp_path: Path) -> None:
    """Host B first syncs a snapshot while one of its trees cannot be read (a bit flip, a pack
    on a failing disk): the tree's children could not be counted, so B's index is flagged for a
    recount. Once the tree reads again, B's gc recounts first and frees nothing the snapshot
    needs; verify on B never reports a stored count below the fresh one. (The 30-minute soak
    met it: "stored refcount 1, fresh count 2" after a flip.) Before, B's gc freed the tree's
    data, which no count held."""
    src = _workspace(tmp_path / "src", 5)
    assert snap("init").code == 0
    assert snap("take", ".", cwd=src).code == 0
    first = _ids(snap)[0]
    host_b = {"XDG_CACHE_HOME": str(tmp_path / "host-b-cache")}
    _flip_tree_of(snap.repo, first, b"stable")
    listed = snap("list", "--json", env=host_b)
    assert listed.code == 0, listed.err
    _flip_tree_of(snap.repo, first, b"stable")  # the same flip again: the tree reads again
    verify = snap("verify", env=host_b)
    assert "stored refcount" not in verify.out + verify.err, verify.out + verify.err
    gc = snap("gc", env=host_b)
    assert gc.code == 0, gc.err
    res = snap("verify", "--read-data", env=host_b)
    assert res.code == 0, res.out + res.err
    _restores_whole(snap, src, tmp_path / "out")
