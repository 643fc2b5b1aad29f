"""Encrypted repositories through the real CLI: nothing readable at rest, tampering found and never
returned, wrong passwords, write-only keys, copy re-encryption.

(The rest of the suite runs on encrypted repositories too: ``snap init`` encrypts by default.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from snapstore.errors import ExitCode
from snapstore.format.packfile import BLOB_HEADER, FOOTER, HEADER, TYPE_DATA, TYPE_TREE
from tests.conftest import make_agent_z, run_snap, tree_state

SOUL_LINE = "You are Z, the orchestrator's planner."
HOST = "backup-host-7f3a"
TIER = "fortnightly"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), "SNAP_HOSTNAME": HOST, "SNAP_PASSWORD": "correct horse"}


@pytest.fixture
def taken(tmp_path: Path, env: dict[str, str]) -> tuple[Path, Path, str]:
    """An encrypted repository with one snapshot of agents/Z (and a 300 KB file of random bytes)."""
    src = tmp_path / "ws"
    make_agent_z(src, soul_lines=50)
    (src / "agents" / "Z" / "weights.bin").write_bytes(os.urandom(300_000))
    repo = tmp_path / "repo"
    res = run_snap("init", str(repo), "--json", env=env)
    assert res.code == 0, res.err
    assert res.json()["encryption"] == "repokey"
    res = run_snap("take", ".", "--tier", TIER, "--tag", "nightly-cron", "--json", repo=repo, cwd=src, env=env)
    assert res.code == 0, res.err
    return repo, src, res.json()["id"]


def _repository_files(repo: Path) -> list[Path]:
    # every file: the plaintext index is the host's cache, outside the repository (docs/security.md)
    assert not (repo / "index").exists()
    return [p for p in repo.rglob("*") if p.is_file()]


def test_nothing_readable_at_rest(taken: tuple[Path, Path, str], env: dict[str, str], tmp_path: Path) -> None:
    repo, src, _snap_id = taken
    config = json.loads((repo / "config.json").read_text())
    assert config["version"] == 2 and config["encryption"]["cipher"] == "aes-256-gcm"
    assert "seed" not in config["chunker"]
    needles = [SOUL_LINE.encode(), b"SOUL.md", b"lessons.md", HOST.encode(), TIER.encode(), b"nightly-cron",
               b"priority_weights", b"relevance"]
    files = _repository_files(repo)
    assert any("packs" in str(p) for p in files) and any("snapshots" in str(p) for p in files)
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{needle!r} readable in {path}"
    # ... and everything reads back for the key holder
    out = tmp_path / "out"
    res = run_snap("restore", "latest", "--target", str(out), repo=repo, env=env)
    assert res.code == 0, res.err
    assert tree_state(out) == tree_state(src)
    assert run_snap("verify", "--read-data", repo=repo, env=env).code == 0


def test_wrong_and_missing_password(taken: tuple[Path, Path, str], env: dict[str, str]) -> None:
    repo, _src, _snap_id = taken
    wrong = run_snap("list", repo=repo, env={**env, "SNAP_PASSWORD": "not it"})
    assert wrong.code == ExitCode.PASSWORD
    assert wrong.err.strip().count("\n") == 0 and "wrong password" in wrong.err
    no_env = {**env, "SNAP_PASSWORD": ""}  # none (the suite sets a default one)
    cached = run_snap("list", repo=repo, env=no_env)  # this user's unlocked-key cache
    assert cached.code == 0, cached.err
    locked = run_snap("list", repo=repo, env={**no_env, "SNAP_KEY_CACHE": "off"})
    assert locked.code == ExitCode.PASSWORD and "SNAP_PASSWORD" in locked.err


def _packs(repo: Path) -> dict[int, Path]:
    """The pack of each blob type (the first blob header's type byte)."""
    out = {}
    for pack in sorted((repo / "packs").rglob("*.pack")):
        with open(pack, "rb") as handle:
            handle.seek(HEADER.size)
            out[handle.read(BLOB_HEADER.size)[2]] = pack
    return out


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("what", ["data", "tree", "table", "record", "pins"])
def test_a_flipped_bit_is_found_and_never_returned(taken: tuple[Path, Path, str], env: dict[str, str],
                                                   tmp_path: Path, what: str) -> None:
    repo, src, snap_id = taken
    assert run_snap("pin", snap_id, repo=repo, env=env).code == 0
    packs = _packs(repo)
    if what == "data":
        _flip(packs[TYPE_DATA], HEADER.size + BLOB_HEADER.size + 100)
    elif what == "tree":
        _flip(packs[TYPE_TREE], HEADER.size + BLOB_HEADER.size + 60)
    elif what == "table":
        _flip(packs[TYPE_DATA], packs[TYPE_DATA].stat().st_size - FOOTER.size - 20)
    elif what == "record":
        (record,) = (repo / "snapshots").iterdir()
        _flip(record, 70)
    else:
        _flip(repo / "pins.json", 40)
    res = run_snap("verify", "--read-data", "--json", repo=repo, env=env)
    assert res.code == ExitCode.DAMAGED, res.out + res.err
    kinds = {p["kind"] for p in res.json()["problems"]}
    expected = {"data": "blob_corrupt", "tree": "tree_unreadable", "table": "pack_damaged",
                "record": "snapshot_record_damaged", "pins": "pins_damaged"}[what]
    assert expected in kinds, kinds
    if what in ("data", "tree"):
        # never returned as data: restore fails on what it cannot authenticate, and every file it
        # does write is exactly the original
        out = tmp_path / "out"
        res = run_snap("restore", "latest", "--target", str(out), repo=repo, env=env)
        assert res.code in (ExitCode.PARTIAL, ExitCode.DAMAGED), res.err
        for path in out.rglob("*"):
            if path.is_file():
                assert path.read_bytes() == (src / path.relative_to(out)).read_bytes()
        for name in ("agents/Z/SOUL.md", "agents/Z/weights.bin", "agents/Z/memory/lessons.md"):
            cat = run_snap("cat", "latest", name, repo=repo, env=env)
            assert cat.code != 0 or cat.raw == (src / name).read_bytes()


def test_write_only_key(taken: tuple[Path, Path, str], env: dict[str, str], tmp_path: Path) -> None:
    repo, src, snap_id = taken
    res = run_snap("key", "add", "--write-only", "--json", repo=repo, env={**env, "SNAP_NEW_PASSWORD": "backup"})
    assert res.code == 0, res.err
    # a backup host: its own cache, only the write-only password
    host = {**env, "SNAP_PASSWORD": "backup", "XDG_CACHE_HOME": str(tmp_path / "host-cache")}
    (src / "agents" / "Z" / "new.md").write_text("written by the backup host\n")
    first = run_snap("take", ".", "--tier", "daily", "--json", repo=repo, cwd=src, env=host)
    assert first.code == 0, first.err
    again = run_snap("take", ".", "--tier", "daily", "--json", repo=repo, cwd=src, env=host)
    assert again.code == 0, again.err
    assert first.json()["new_bytes"] < 300_000  # dedups against what the full key wrote
    assert again.json()["new_bytes"] < 4096  # the same data again: almost nothing stored
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for args in (["restore", "latest", "--target", str(tmp_path / "out")], ["cat", "latest", "agents/Z/SOUL.md"],
                 ["ls", "latest"], ["forget", snap_id], ["gc"], ["verify"], ["mount", str(mnt)]):
        refused = run_snap(*args, repo=repo, env=host)
        assert refused.code == ExitCode.WRITE_ONLY, (args, refused.code, refused.err)
        assert refused.err.strip().count("\n") == 0 and "write-only" in refused.err
    # a full key reads everything, including what the write-only host wrote
    listed = run_snap("list", "--json", repo=repo, env=env)
    assert len(listed.json()) == 3
    cat = run_snap("cat", "latest:daily", "agents/Z/new.md", repo=repo, env=env)
    assert cat.code == 0 and cat.out == "written by the backup host\n"
    assert run_snap("verify", "--read-data", repo=repo, env=env).code == 0


def test_copy_re_encrypts_with_new_ids(taken: tuple[Path, Path, str], env: dict[str, str], tmp_path: Path) -> None:
    repo, src, snap_id = taken
    plain = tmp_path / "plain"
    assert run_snap("init", str(plain), "--encryption", "none", env=env).code == 0
    assert json.loads((plain / "config.json").read_text())["encryption"] == "none"
    res = run_snap("copy", "--to", str(plain), "--json", repo=repo, env=env)  # encrypted -> plaintext
    assert res.code == 0, res.err
    (copied,) = res.json()["copied"]
    assert copied["id"] != snap_id  # ids recomputed: unkeyed in the target
    other = tmp_path / "other"
    res = run_snap("copy", "--to", str(other), "--init", "--json", repo=plain,  # plaintext -> new encrypted
                   env={**env, "SNAP_PASSWORD": "second repo"})
    assert res.code == 0, res.err
    (again,) = res.json()["copied"]
    assert again["id"] not in (snap_id, copied["id"])
    other_env = {**env, "SNAP_PASSWORD": "second repo"}
    assert run_snap("verify", "--read-data", repo=other, env=other_env).code == 0
    out = tmp_path / "out"
    assert run_snap("restore", "latest", "--target", str(out), repo=other, env=other_env).code == 0
    assert tree_state(out) == tree_state(src)
    for path in _repository_files(other):
        assert SOUL_LINE.encode() not in path.read_bytes()
    # a second copy sends nothing
    res = run_snap("copy", "--to", str(other), "--json", repo=plain, env=other_env)
    assert res.code == 0, res.err
    assert res.json()["copied"] == [] and res.json()["bytes_sent"] == 0


def test_key_add_then_open_with_either_password(taken: tuple[Path, Path, str], env: dict[str, str]) -> None:
    repo, _src, _snap_id = taken
    assert run_snap("key", "add", repo=repo, env={**env, "SNAP_NEW_PASSWORD": "second"}).code == 0
    for password in ("correct horse", "second"):
        res = run_snap("list", repo=repo, env={**env, "SNAP_PASSWORD": password, "SNAP_KEY_CACHE": "off"})
        assert res.code == 0, res.err
    res = run_snap("key", "passwd", repo=repo, env={**env, "SNAP_PASSWORD": "second", "SNAP_NEW_PASSWORD": "third"})
    assert res.code == 0, res.err
    assert run_snap("list", repo=repo, env={**env, "SNAP_PASSWORD": "second", "SNAP_KEY_CACHE": "off"}).code == 17
    assert run_snap("list", repo=repo, env={**env, "SNAP_PASSWORD": "third", "SNAP_KEY_CACHE": "off"}).code == 0
