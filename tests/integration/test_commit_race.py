"""A take whose index commit finds a blob it deduplicated against gone (another process's sync
dropped a pack that a gc elsewhere deleted) fails in one line, commits nothing and leaves no
record behind; the next take stores the data again. The race itself needs two hosts and a gc at
the wrong moment (the S3 soak met it once); here the commit meets the missing blob directly."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapstore.errors import ConcurrentChange, ExitCode
from snapstore.ops.backup import source_for, take_snapshot
from snapstore.repo.repository import Repository
from tests.conftest import run_snap


def test_a_blob_gone_at_commit_fails_the_take_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"x" * 300_000)
    repo_path = tmp_path / "repo"
    Repository.init(str(repo_path))
    real = Repository._commit_index
    calls = []

    def vanished(self: Repository, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError(b"\x07" * 32)
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Repository, "_commit_index", vanished)
    with Repository.open(str(repo_path), mode="write") as repo:
        with pytest.raises(ConcurrentChange) as raised:
            take_snapshot(repo, [source_for("src", str(tmp_path))])
        assert raised.value.exit_code == ExitCode.LOCKED and "run the take again" in raised.value.message
        assert repo.record_ids() == set() and repo.snapshots() == []  # no record, nothing committed
        again = take_snapshot(repo, [source_for("src", str(tmp_path))])
        assert [s.id for s in repo.snapshots()] == [again.snapshot.id]
    verify = run_snap("verify", "--read-data", repo=repo_path)
    assert verify.code == 0, verify.err
