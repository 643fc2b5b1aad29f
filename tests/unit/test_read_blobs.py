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
