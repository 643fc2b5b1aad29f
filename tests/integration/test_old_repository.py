"""A repository written by the previous code (commit ca29dd1) works with this one."""

from __future__ import annotations

import tarfile
from pathlib import Path

from tests.conftest import cache_of, run_snap, tree_state

FIXTURE = Path(__file__).parent.parent / "fixtures" / "repo-ca29dd1.tar.gz"
OLD_IDS = ["66869af01ae0d5d628e196a9a21ca3363107db3b43fd0d3fd67164abbaf77ae8",
           "78c961fbd559adad232b8b4bbb61ac8765a2b95d2d5b0de6601b4540043ccbb0"]


def _unpack(tmp_path: Path) -> tuple[Path, Path]:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="fully_trusted")
    return tmp_path / "repo", tmp_path / "src"


def test_previous_repository_opens_verifies_restores_and_takes_again(tmp_path: Path) -> None:
    repo, src = _unpack(tmp_path)
    assert (repo / "index" / "data.mdb").exists()  # the old place and layout of the index
    listed = run_snap("list", "--json", repo=repo)
    assert listed.code == 0, listed.err
    assert [s["id"] for s in listed.json()] == OLD_IDS  # type: ignore[union-attr]
    assert "moved the index" in listed.err and len(listed.err.strip().splitlines()) == 1
    assert not (repo / "index").exists() and (cache_of(repo) / "index" / "data.mdb").exists()
    res = run_snap("verify", "--read-data", repo=repo)
    assert res.code == 0, res.out + res.err
    out = tmp_path / "out"
    res = run_snap("restore", OLD_IDS[1], "--target", str(out), repo=repo)
    assert res.code == 0, res.err
    # the archive keeps whole-second mtimes only: compare everything else, and the bytes
    assert tree_state(out, with_mtime=False) == tree_state(src, with_mtime=False)
    first = tmp_path / "first"
    assert run_snap("restore", OLD_IDS[0], "--target", str(first), repo=repo).code == 0
    assert (first / "docs" / "notes.txt").read_bytes() + b"changed\\n\n" == (src / "docs" / "notes.txt").read_bytes()

    (src / "new.txt").write_text("taken by the new code\n")
    res = run_snap("take", ".", "--json", repo=repo, cwd=src)
    assert res.code == 0, res.err
    new_id = res.json()["id"]  # type: ignore[index]
    again = run_snap("take", ".", "--json", repo=repo, cwd=src)
    assert again.code == 0 and again.json()["read_bytes"] == 0  # type: ignore[index]
    assert [s["id"] for s in run_snap("list", "--json", repo=repo).json()][:3] == [*OLD_IDS, new_id]  # type: ignore[union-attr]
    assert run_snap("verify", "--read-data", repo=repo).code == 0
    latest = tmp_path / "latest"
    assert run_snap("restore", new_id, "--target", str(latest), repo=repo).code == 0
    assert tree_state(latest, with_mtime=False) == tree_state(src, with_mtime=False)
