"""``snap key ...`` on an encrypted repository's key files, through the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from snapstore.format.crypto import KeyMaterial
from snapstore.repo.keystore import add_key, list_keys, unlock
from snapstore.storage.backend import LocalBackend
from tests.conftest import run_snap

REPO_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def keyed(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A repository directory with an encrypted config and one full key (password 'first')."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.json").write_text(json.dumps({
        "format": "snapstore", "version": 2, "id": REPO_ID,
        "encryption": {"scheme": "x25519-sealed-sessions", "cipher": "aes-256-gcm"}}))
    add_key(LocalBackend(str(repo)), KeyMaterial.generate(REPO_ID), b"first", profile="test")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "SNAP_PASSWORD": "first", "SNAP_KDF_PROFILE": "test"}
    return repo, env


def test_list_add_passwd_remove(keyed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = keyed
    listed = run_snap("key", "list", "--json", repo=repo, env=env)
    assert listed.code == 0, listed.err
    (first,) = json.loads(listed.out)["keys"]
    assert first["kind"] == "full" and first["kdf_profile"] == "test"

    added = run_snap("key", "add", "--json", repo=repo, env={**env, "SNAP_NEW_PASSWORD": "second"})
    assert added.code == 0, added.err
    assert "test-only" not in added.out and "test suites only" in added.err  # the weak profile is said
    second = json.loads(added.out)["id"]
    backend = LocalBackend(str(repo))
    assert {k.id for k in list_keys(backend, REPO_ID)} == {first["id"], second}
    assert os.path.exists(repo / "keys" / f"{second}.key.2")  # redundant copy

    # the new password opens the repository; a wrong one is its own exit code
    assert unlock(backend, REPO_ID, lambda _p: b"second").key.id == second
    wrong = run_snap("key", "export", repo=repo, env={**env, "SNAP_PASSWORD": "nope", "SNAP_KEY_CACHE": "off"})
    assert wrong.code == 17 and wrong.err.count("\n") == 1 and "wrong password" in wrong.err

    changed = run_snap("key", "passwd", repo=repo, env={**env, "SNAP_PASSWORD": "second",
                                                          "SNAP_NEW_PASSWORD": "third"})
    assert changed.code == 0, changed.err
    assert unlock(backend, REPO_ID, lambda _p: b"third").key.id == second
    old = run_snap("key", "export", repo=repo, env={**env, "SNAP_PASSWORD": "second", "SNAP_KEY_CACHE": "off"})
    assert old.code == 17

    removed = run_snap("key", "remove", first["id"][:6], repo=repo, env={**env, "SNAP_PASSWORD": "third"})
    assert removed.code == 0, removed.err
    last = run_snap("key", "remove", second, repo=repo, env={**env, "SNAP_PASSWORD": "third"})
    assert last.code == 1 and "last full key" in last.err
    assert [k.id for k in list_keys(backend, REPO_ID)] == [second]


def test_write_only_key_cannot_manage_keys(keyed: tuple[Path, dict[str, str]]) -> None:
    repo, env = keyed
    added = run_snap("key", "add", "--write-only", "--json", repo=repo, env={**env, "SNAP_NEW_PASSWORD": "backup"})
    assert added.code == 0, added.err and json.loads(added.out)["kind"] == "write-only"
    refused = run_snap("key", "add", repo=repo, env={**env, "SNAP_PASSWORD": "backup", "SNAP_NEW_PASSWORD": "x"})
    assert refused.code == 18 and "write-only" in refused.err


def test_damaged_copy_and_export_import(keyed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = keyed
    (key_path,) = sorted((repo / "keys").glob("*.key"))
    key_path.write_bytes(key_path.read_bytes().replace(b'"kind"', b'"kimd"'))
    env = {**env, "SNAP_KEY_CACHE": "off"}
    listed = run_snap("key", "list", repo=repo, env=env)
    assert listed.code == 0 and "damaged copy" in listed.out
    exported = tmp_path / "key.txt"
    done = run_snap("key", "export", "--text", str(exported), repo=repo, env=env)  # opens from the other copy
    assert done.code == 0, done.err
    assert oct(exported.stat().st_mode & 0o777) == "0o600"
    assert exported.read_text().startswith("snapstore key export v1")
    for path in (repo / "keys").iterdir():
        path.write_bytes(b"{}")
    broken = run_snap("key", "export", repo=repo, env=env)
    assert broken.code == 4 and "damaged" in broken.err  # damage, not a wrong password
    back = run_snap("key", "import", str(exported), repo=repo, env=env)
    assert back.code == 0, back.err
    assert run_snap("key", "export", repo=repo, env=env).code == 0


def test_password_sources(keyed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = keyed
    env = {**env, "SNAP_PASSWORD": ""}  # none (the suite sets a default one)
    env["SNAP_KEY_CACHE"] = "off"
    missing = run_snap("key", "export", repo=repo, env=env)
    assert missing.code == 17 and "SNAP_PASSWORD" in missing.err
    pwfile = tmp_path / "pw"
    pwfile.write_text("first\n")
    assert run_snap("key", "export", "--password-file", str(pwfile), repo=repo, env=env).code == 0
    assert run_snap("--password-command", f"cat {pwfile}", "key", "export", repo=repo, env=env).code == 0
    assert run_snap("key", "export", "--password-command", "false", repo=repo, env=env).code == 2


def test_unlocked_key_cache(keyed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = keyed
    assert run_snap("key", "export", repo=repo, env=env).code == 0
    cache = tmp_path / "cache" / "snapstore" / REPO_ID / "unlocked-key"
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    no_password = {**env, "SNAP_PASSWORD": ""}
    assert run_snap("key", "export", repo=repo, env=no_password).code == 0  # from the cache
    os.chmod(cache, 0o644)  # readable by others: never trusted
    assert run_snap("key", "export", repo=repo, env=no_password).code == 17


def test_unencrypted_repository_has_no_keys(snap) -> None:  # type: ignore[no-untyped-def]
    assert snap("init", "--encryption", "none").code == 0
    out = snap("key", "list")
    assert out.code == 2 and "not encrypted" in out.err


def test_given_password_is_served_by_the_cache_only_when_it_filled_it(keyed: tuple[Path, dict[str, str]],
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Cron jobs give SNAP_PASSWORD on every run: Argon2id once, then the cache, but only for
    the password that filled it; any other password goes to the key files (and fails there)."""
    from snapstore.errors import WrongPassword
    from snapstore.format.keyfile import KeyFile

    repo, _env = keyed
    backend = LocalBackend(str(repo))
    cache_dir = str(tmp_path / "unlocked")
    runs: list[bytes] = []
    real_unwrap = KeyFile.unwrap

    def counted(self: KeyFile, secret: bytes) -> KeyMaterial:
        runs.append(secret)
        return real_unwrap(self, secret)

    monkeypatch.setattr(KeyFile, "unwrap", counted)
    first = unlock(backend, REPO_ID, lambda _prompt: b"first", cache_dir=cache_dir, check_password=True)
    assert not first.from_cache and runs == [b"first"]
    again = unlock(backend, REPO_ID, lambda _prompt: b"first", cache_dir=cache_dir, check_password=True)
    assert again.from_cache and again.material == first.material and runs == [b"first"]  # no Argon2id
    with pytest.raises(WrongPassword):
        unlock(backend, REPO_ID, lambda _prompt: b"nope", cache_dir=cache_dir, check_password=True)
    assert runs == [b"first", b"nope"]
    entry = (Path(cache_dir) / "unlocked-key").read_bytes()
    assert b"first" not in entry and b"Zmlyc3" not in entry  # the password is not stored, nor its base64


def test_key_changes_take_the_keys_lock(keyed: tuple[Path, dict[str, str]]) -> None:
    """Two key changes never interleave (two removes could each keep the other's key as 'the
    full key that remains'): a change waits for the lock or fails in one line; reading does not."""
    from snapstore.storage import locking

    repo, env = keyed
    held = locking.acquire(str(repo / "locks"), "keys", exclusive=True, wait=0, command="test")
    try:
        busy = run_snap("key", "add", repo=repo, env={**env, "SNAP_NEW_PASSWORD": "second"})
        assert busy.code == 11 and len(busy.err.strip().splitlines()) == 1, busy.err
        assert len(list_keys(LocalBackend(str(repo)), REPO_ID)) == 1  # nothing written
        assert run_snap("key", "list", repo=repo, env=env).code == 0
    finally:
        held.release()
    assert run_snap("key", "add", repo=repo, env={**env, "SNAP_NEW_PASSWORD": "second"}).code == 0


def test_init_leaves_the_new_key_in_the_cache(tmp_path: Path) -> None:
    """The first take after init pays no Argon2id: init caches the key it made, tied to its password."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "SNAP_PASSWORD": "first", "SNAP_KDF_PROFILE": "test"}
    repo = tmp_path / "repo"
    assert run_snap("init", str(repo), env=env).code == 0
    repo_id = json.loads((repo / "config.json").read_text())["id"]
    cache = tmp_path / "cache" / "snapstore" / repo_id / "unlocked-key"
    assert oct(cache.stat().st_mode & 0o777) == "0o600"
    assert run_snap("list", repo=repo, env={**env, "SNAP_PASSWORD": ""}).code == 0  # served by it
    assert run_snap("list", repo=repo, env={**env, "SNAP_PASSWORD": "wrong"}).code == 17  # not for another password
