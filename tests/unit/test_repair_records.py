"""repair index moves aside exactly the snapshot records that cannot be used."""

from __future__ import annotations

from pathlib import Path

from snapstore.ops.backup import source_for, take_snapshot
from snapstore.ops.repair import repair_index
from snapstore.repo.repository import Repository, snapshot_name


def test_unreadable_and_misnamed_records_are_moved_aside(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("data\n")
    repo_path = tmp_path / "repo"
    Repository.init(str(repo_path))
    with Repository.open(str(repo_path), mode="write") as repo:
        good = take_snapshot(repo, [source_for(".", str(src))], verify="none").snapshot
    garbage = snapshot_name("ab" * 32)
    misnamed = snapshot_name("cd" * 32)
    (repo_path / garbage).write_bytes(b"{not json: at all")
    (repo_path / misnamed).write_bytes((repo_path / snapshot_name(good.id)).read_bytes())
    with Repository.open(str(repo_path), mode="exclusive", check_index=False) as repo:
        report = repair_index(repo)
        assert [s.id for s in repo.snapshots()] == [good.id]
    records = [m for m in report.moved_aside if m.startswith("snapshots/")]  # the old index is also kept
    assert sorted(records) == sorted(f"{n} -> damaged/{n}" for n in (garbage, misnamed))
    assert any(note.startswith(misnamed) and "does not match" in note for note in report.notes)
    assert (repo_path / "damaged" / garbage).exists() and (repo_path / "damaged" / misnamed).exists()
    assert not (repo_path / garbage).exists() and (repo_path / snapshot_name(good.id)).exists()
