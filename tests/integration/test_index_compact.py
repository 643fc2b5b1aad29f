"""The index's size and the take's memory: compaction after a take keeps every record and the
files cache working, is skipped while another process has the index open; the mapped index
pages can be given back; the files cache's encoding is unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest

from snapstore import memory
from snapstore.ops.backup import source_for, take_snapshot
from snapstore.repo import repository
from snapstore.repo.index import CachedFile, Index
from snapstore.repo.repository import Repository
from tests.conftest import SnapRunner, cache_of, tree_state


def _tree(root: Path, files: int = 1500) -> None:
    for i in range(files):
        path = root / f"d{i % 30}" / f"f{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"file {i}\n".encode() * (1 + i % 40))


def _records(index: Index) -> dict[str, list[tuple[bytes, bytes]]]:
    out: dict[str, list[tuple[bytes, bytes]]] = {}
    with index.env.begin() as txn:
        for name in index._names(txn):
            db = index.env.open_db(name, txn=txn, create=False)
            with txn.cursor(db=db) as cur:
                out[name.decode()] = [(bytes(k), bytes(v)) for k, v in cur]
    return out


def _take(repo_path: Path, src: Path) -> None:
    with Repository.open(str(repo_path), mode="write") as repo:
        take_snapshot(repo, [source_for(".", str(src))])


def test_compaction_keeps_every_record_and_the_files_cache_serves_the_next_take(
        snap: SnapRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    _tree(src)
    assert snap("init", "--encryption", "none").code == 0
    # a file changed within 2 s of a take whose timestamp happens to end in 000 ns is "racy"
    # and kept out of the files cache (snapstore.ops.smallfiles.racy): let the tree age first
    time.sleep(2.1)
    _take(snap.repo, src)  # type: ignore[attr-defined]
    monkeypatch.setattr(repository, "COMPACT_MIN", 0)
    with Repository.open(str(snap.repo), mode="write") as repo:  # type: ignore[attr-defined]
        before = _records(repo.index)
        size, used = repo.index.usage()
        assert used <= size
        monkeypatch.setattr(repository, "COMPACT_RATIO", 0.0)  # whatever the ratio: compact
        done = repo.compact_index()
        assert done is not None and done[0] == size and done[1] <= size
        assert _records(repo.index) == before  # the reopened index has every record
        assert repo.index.usage()[0] == done[1]
        monkeypatch.setattr(repository, "COMPACT_RATIO", 1.5)
        assert repo.compact_index() is None  # full pages now: nothing to gain
    assert not (cache_of(snap.repo) / "index.compact").exists()  # type: ignore[attr-defined]
    again = snap("take", ".", "--json", cwd=src)
    assert again.code == 0, again.err
    assert again.json()["read_bytes"] == 0  # every file from the files cache of the compacted index
    assert snap("verify", "--read-data").code == 0
    out = tmp_path / "out"
    assert snap("restore", "latest", "--target", str(out)).code == 0
    assert tree_state(out) == tree_state(src)


def test_no_compaction_while_another_process_has_the_index_open(
        snap: SnapRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    _tree(src, 300)
    assert snap("init", "--encryption", "none").code == 0
    _take(snap.repo, src)  # type: ignore[attr-defined]
    where = cache_of(snap.repo) / "index"  # type: ignore[attr-defined]
    holder = subprocess.Popen(  # another process with the index open (a mount, snap ui)
        [sys.executable, "-c", "import lmdb, sys; env = lmdb.open(sys.argv[1], max_dbs=16); print('open', flush=True); "
         "sys.stdin.read()", str(where)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        monkeypatch.setattr(repository, "COMPACT_MIN", 0)
        monkeypatch.setattr(repository, "COMPACT_RATIO", 0.0)
        with Repository.open(str(snap.repo), mode="write") as repo:  # type: ignore[attr-defined]
            assert repo.index.opened_elsewhere()
            size = repo.index.usage()[0]
            assert repo.compact_index() is None
            assert repo.index.usage()[0] == size
    finally:
        holder.communicate(b"", timeout=30)
    with Repository.open(str(snap.repo), mode="write") as repo:  # type: ignore[attr-defined]
        assert not repo.index.opened_elsewhere()  # only this process now


def test_a_cli_take_of_many_files_leaves_a_compact_index(snap: SnapRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, 12_000)
    assert snap("init", "--encryption", "none").code == 0
    assert snap("take", ".", cwd=src).code == 0
    with Repository.open(str(snap.repo), mode="read") as repo:  # type: ignore[attr-defined]
        size, used = repo.index.usage()
    assert size >= repository.COMPACT_MIN  # big enough to be compacted
    assert used >= 0.8 * size  # compacted: random inserts leave the pages one-half to two-thirds full


def test_the_mapped_index_pages_are_given_back(snap: SnapRunner, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, 300)
    assert snap("init", "--encryption", "none").code == 0
    _take(snap.repo, src)  # type: ignore[attr-defined]
    with Repository.open(str(snap.repo), mode="read") as repo:  # type: ignore[attr-defined]
        with repo.index.read() as txn:
            assert sum(1 for _ in repo.index.iter_chunks(txn)) > 0
        data = os.path.join(repo.index.path, "data.mdb")
        assert memory.release_file_mapping(data) > 0
        with repo.index.read() as txn:  # the pages fault back in from the page cache
            assert sum(1 for _ in repo.index.iter_chunks(txn)) > 0
    assert memory.release_file_mapping(str(tmp_path / "not-mapped")) == 0


def test_allocator_settings_and_trim_on_glibc() -> None:
    # the supported platform is Debian (glibc): there the settings must apply, never be skipped
    assert sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"), "not glibc"
    assert memory.tune_for_take()
    memory.trim()


def test_files_cache_entries_encode_as_before() -> None:
    entry = CachedFile(1234, 1_700_000_000_123_456_789, 1_700_000_001_000_000_000, 987654, b"x" * 36)
    old = msgpack.packb([entry.size, entry.mtime_ns, entry.ctime_ns, entry.inode, entry.chunks], use_bin_type=True)
    assert entry.encode() == old
    assert entry.encode() == old  # the per-thread packer starts afresh for each entry
    assert CachedFile.decode(entry.encode()) == entry
