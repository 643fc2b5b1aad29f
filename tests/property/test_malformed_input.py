"""Malformed pack files and index records end in a clear error: never a crash, hang or huge allocation."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapstore.errors import FormatError
from snapstore.format.packfile import FOOTER, NeedMore, PackWriter, parse_table, scan_blobs
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import decode_tree
from snapstore.ops.backup import source_for, take_snapshot
from snapstore.ops.repair import repair_index
from snapstore.ops.verify import verify_repository
from snapstore.repo.index import ChunkLocation
from snapstore.repo.repository import Repository

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _sample_pack(tmp: str) -> bytes:
    writer = PackWriter(os.path.join(tmp, "p.pack"))
    for i in range(5):
        data = os.urandom(100) + bytes(i)
        from snapstore.format.chunker import chunk_id

        writer.add(chunk_id(data), 0, 0, data, len(data))
    writer.finish()
    with open(os.path.join(tmp, "p.pack"), "rb") as f:
        return f.read()


PACK = _sample_pack(tempfile.mkdtemp())


@FAST
@given(st.binary(max_size=4096))
def test_parse_table_on_random_bytes(data: bytes) -> None:
    try:
        parse_table(data, len(data))
    except (FormatError, NeedMore):
        pass


@FAST
@given(st.integers(0, len(PACK)), st.lists(st.tuples(st.integers(0, len(PACK) - 1), st.integers(0, 255)),
                                           max_size=8))
def test_mutated_pack_table_and_scan(cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(PACK[:cut] if cut else PACK)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    blob = bytes(data)
    try:
        entries = parse_table(blob, len(blob))
        for e in entries:
            assert e.offset + e.stored_len <= len(blob)
    except (FormatError, NeedMore):
        pass
    try:
        for entry in scan_blobs(lambda off, n: blob[off : off + n], len(blob)):
            assert entry.offset + entry.stored_len <= len(blob)
    except FormatError:
        pass


def test_footer_claiming_huge_table_is_refused() -> None:
    fake = b"SNAPPACK" + b"\0" * 8 + FOOTER.pack(2**31, 0, b"\0" * 32, b"SNAPEND1")
    with pytest.raises(FormatError):
        parse_table(fake, len(fake))


@FAST
@given(st.binary(max_size=2048))
def test_decode_tree_and_records_on_random_bytes(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_tree(data)
    with pytest.raises(FormatError):
        Snapshot.from_bytes(data)
    if len(data) != 38:
        with pytest.raises(FormatError):
            ChunkLocation.unpack(data)


@pytest.fixture(scope="module")
def pristine_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("fuzzrepo")
    src = base / "src"
    (src / "a").mkdir(parents=True)
    for i in range(6):
        (src / "a" / f"f{i}.txt").write_bytes(os.urandom(2000) * (i + 1))
    repo = base / "repo"
    Repository.init(str(repo), pack_size=8 * 1024)
    with Repository.open(str(repo), mode="write") as opened:
        take_snapshot(opened, [source_for(".", str(src))])
    return repo


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_verify_and_repair_survive_damaged_packs(pristine_repo: Path, data: st.DataObject) -> None:
    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        repo = work / "repo"
        shutil.copytree(pristine_repo, repo)
        packs = sorted(str(p) for p in repo.rglob("*.pack"))
        victim = data.draw(st.sampled_from(packs))
        size = os.path.getsize(victim)
        action = data.draw(st.sampled_from(["truncate", "flip", "garbage"]))
        if action == "truncate":
            os.truncate(victim, data.draw(st.integers(0, size - 1)))
        elif action == "flip":
            with open(victim, "r+b") as f:
                for _ in range(data.draw(st.integers(1, 5))):
                    f.seek(data.draw(st.integers(0, size - 1)))
                    f.write(bytes([data.draw(st.integers(0, 255))]))
        else:
            Path(victim).write_bytes(os.urandom(data.draw(st.integers(0, 300))))
        with Repository.open(str(repo), check_index=False) as opened:
            verify_repository(opened, read_data=True)
        with Repository.open(str(repo), mode="exclusive", check_index=False) as opened:
            repair_index(opened)
        with Repository.open(str(repo)) as opened:
            report = verify_repository(opened, read_data=True)
            kinds = {p.kind for p in report.problems if p.severity == "error"}
            assert kinds <= {"blob_missing", "tree_unreadable", "blob_corrupt"}, report.to_json()
    finally:
        shutil.rmtree(work, ignore_errors=True)
