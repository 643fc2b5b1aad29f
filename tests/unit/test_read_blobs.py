"""Repository.read_blobs: neighbouring chunks come in one ranged read, errors stay per chunk."""

from __future__ import annotations

import os
from pathlib import Path

from snapstore.errors import ChunkUnreadable
from snapstore.ops.backup import source_for, take_snapshot
from snapstore.repo.repository import Repository, pack_name
from snapstore.view.vfs import SnapshotView


def test_adjacent_chunks_are_read_in_one_request(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    content = os.urandom(12 * 1024 * 1024)
    (src / "big.bin").write_bytes(content)
    Repository.init(str(tmp_path / "repo"))
    with Repository.open(str(tmp_path / "repo"), mode="write") as repo:
        take_snapshot(repo, [source_for(".", str(src))])
    with Repository.open(str(tmp_path / "repo")) as repo:
        entry = SnapshotView(repo).lookup(repo.snapshots()[-1], "big.bin")
        ids = entry.chunk_ids()
        assert len(ids) >= 4
        calls = _count_ranges(repo)
        got = list(repo.read_blobs(ids))
        assert [blob_id for blob_id, _ in got] == ids
        assert b"".join(data for _, data in got) == content  # type: ignore[misc]
        assert len(calls) < len(ids) and max(calls) <= 8 * 1024 * 1024 + 4 * 1024 * 1024
        # a damaged chunk in the middle of a span is reported alone
        loc = repo.index.get_chunk(ids[1])
        assert loc is not None
        with open(os.path.join(repo.path, pack_name(loc.pack)), "r+b") as f:
            f.seek(loc.offset + 10)
            f.write(b"\xff" * 8)
        results = list(repo.read_blobs(ids))
        assert isinstance(results[1][1], ChunkUnreadable)
        assert all(isinstance(data, bytes) for i, (_, data) in enumerate(results) if i != 1)


def _count_ranges(repo: Repository) -> list[int]:
    calls: list[int] = []
    real = repo.backend.get_range

    def counting(name: str, offset: int, length: int) -> bytes:
        calls.append(length)
        return real(name, offset, length)

    repo.backend.get_range = counting  # type: ignore[method-assign]
    return calls


def _every_other_file(repo: Repository, files: dict[str, bytes]) -> tuple[list[bytes], list[bytes]]:
    """Blob ids of every other small file (so the blobs wanted have gaps between them), in pack
    order, and the contents they must give back in that order."""
    view = SnapshotView(repo)
    snap = repo.snapshots()[-1]
    by_id = {}
    for name in sorted(files)[::2]:
        (blob_id,) = view.lookup(snap, name).chunk_ids()
        by_id[blob_id] = files[name]
    ids = repo.in_pack_order(by_id)
    return ids, [by_id[i] for i in ids]


def test_on_object_storage_blobs_close_together_come_in_one_read(tmp_path: Path, monkeypatch) -> None:
    from snapstore.storage.memory import MemoryBackend, serve

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = tmp_path / "src"
    src.mkdir()
    files = {f"f{i:03d}.bin": os.urandom(3000 + i) for i in range(60)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    local = str(tmp_path / "repo")
    Repository.init(local)
    with serve(f"gaps-{os.getpid()}", MemoryBackend()) as url:
        Repository.init(url)
        for where in (local, url):
            with Repository.open(where, mode="write") as repo:
                take_snapshot(repo, [source_for(".", str(src))])
        with Repository.open(url) as repo:
            ids, want = _every_other_file(repo, files)
            calls = _count_ranges(repo)
            got = list(repo.read_blobs(ids))
            assert [data for _id, data in got] == want
            assert len(calls) <= 2 < len(ids)  # across the gaps: one read per pack
        with Repository.open(local) as repo:
            ids, want = _every_other_file(repo, files)
            calls = _count_ranges(repo)
            assert [data for _id, data in repo.read_blobs(ids)] == want
            assert len(calls) == len(ids)  # a local disk reads only what is wanted


def test_a_fresh_host_reads_little_more_than_each_remote_pack_table(tmp_path: Path, monkeypatch) -> None:
    """Index sync on object storage reads a pack's table from its end: a small pack (an
    on-change take of a few files) is not fetched whole, and a table bigger than the first read
    comes with a second one, every blob indexed."""
    from snapstore.repo.repository import TABLE_TAIL_MIN, table_tail
    from snapstore.storage.memory import MemoryBackend, serve

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "writer-cache"))
    few, many = tmp_path / "few", tmp_path / "many"
    few.mkdir()
    many.mkdir()
    contents = {}
    for i in range(3):
        contents[f"few/f{i}.txt"] = os.urandom(2000 + i)
    for i in range(600):  # tiny files: a table of 600 entries, far past the first read
        contents[f"many/m{i:03d}.txt"] = os.urandom(20 + i % 7)
    for rel, data in contents.items():
        (tmp_path / rel).write_bytes(data)
    reads: list[tuple[str, int, int]] = []
    real = MemoryBackend.get_range

    def counting(self: MemoryBackend, name: str, offset: int, length: int) -> bytes:
        reads.append((name, offset, length))
        return real(self, name, offset, length)

    with serve(f"tails-{os.getpid()}", MemoryBackend()) as url:
        Repository.init(url)
        with Repository.open(url, mode="write") as repo:
            take_snapshot(repo, [source_for(".", str(few))])
            take_snapshot(repo, [source_for(".", str(many))])
            sizes = dict(repo.backend.list("packs"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh-cache"))
        monkeypatch.setattr(MemoryBackend, "get_range", counting)
        with Repository.open(url) as repo:
            first = {}
            for name, offset, length in reads:
                first.setdefault(name, (offset, length))
            for name, size in sizes.items():
                offset, length = first[name]
                assert (offset, length) == (size - table_tail(size), table_tail(size))
            small = [name for name, size in sizes.items() if size > 2 * TABLE_TAIL_MIN and size < 16 * 1024]
            assert small and all(first[name][1] < sizes[name] for name in small)
            again = [name for name in sizes if sum(1 for read in reads if read[0] == name) > 1]
            assert again  # the 600-entry table needed a second read
            view = SnapshotView(repo)
            got = {}
            for snap, folder in zip(sorted(repo.snapshots(), key=lambda s: s.time), ("few", "many"), strict=True):
                for rel in contents:
                    if rel.startswith(folder + "/"):
                        entry = view.lookup(snap, rel.split("/", 1)[1])
                        got[rel] = b"".join(data for _id, data in repo.read_blobs(entry.chunk_ids()))  # type: ignore[misc]
            assert got == contents
