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
        calls: list[int] = []
        real = repo.backend.get_range

        def counting(name: str, offset: int, length: int) -> bytes:
            calls.append(length)
            return real(name, offset, length)

        repo.backend.get_range = counting  # type: ignore[method-assign]
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
