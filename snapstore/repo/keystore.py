"""The key files of a repository and the host's unlocked-key cache.

Every key file lives twice in the repository, ``keys/<id>.key`` and ``keys/<id>.key.2`` (written
in that order, read in either), so one damaged object loses no key; the material itself is the
same in every full key, so each full key is also a copy of the others. A password is tried
against each key file in turn (Argon2id once per file).

Argon2id is paid once per host and user, not once per command: the material a password unlocked
is cached in ``$XDG_CACHE_HOME/snapstore/<repository id>/unlocked-key`` (mode 0600, directory
0700), tied to the key file's checksum, so a key that is removed or whose password changes is
never opened from the cache again. The cache serves commands that are given no password, and
commands given one through the environment, a file or a command (cron jobs: ``SNAP_PASSWORD``)
when that password is the one that filled the cache: the entry holds a keyed BLAKE3 of it
under a random salt, which tells nothing the entry's own key material does not (whoever reads
the file holds the key already). Any other password is checked against the key files.
``SNAP_KEY_CACHE=off`` turns the cache off; deleting the file locks the repository for this user
again.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import blake3

from snapstore.errors import PasswordMissing, RepositoryDamaged, SnapError, UsageError, WrongPassword
from snapstore.format.crypto import KeyMaterial
from snapstore.format.keyfile import KeyFile, KeyFileDamaged, WrongKeyPassword, wrap_key
from snapstore.storage.backend import Backend

KEYS_PREFIX = "keys"
CACHE_NAME = "unlocked-key"

#: Asks for a password: ``(prompt) -> password``. Raises PasswordMissing when there is no source.
PasswordSource = Callable[[str], bytes]


def key_names(key_id: str) -> tuple[str, str]:
    return f"{KEYS_PREFIX}/{key_id}.key", f"{KEYS_PREFIX}/{key_id}.key.2"


@dataclass(frozen=True)
class StoredKey:
    """One key as the repository holds it: its parsed file (None when both copies are damaged)
    and what is wrong with its copies."""

    id: str
    file: KeyFile | None
    damaged: tuple[str, ...]  # names of copies that did not parse or failed their checksum

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"id": self.id, "damaged_copies": list(self.damaged)}
        if self.file is not None:
            out.update({"kind": self.file.kind, "created": self.file.created, "kdf_profile": self.file.kdf.profile,
                        "kdf": {"memory_kib": self.file.kdf.memory_kib, "iterations": self.file.kdf.iterations,
                                "lanes": self.file.kdf.lanes}, "cipher": self.file.cipher})
        return out


def list_keys(backend: Backend, repo_id: str) -> list[StoredKey]:
    """Every key of the repository (by id), each read from whichever copy is intact."""
    ids: dict[str, list[str]] = {}
    for name, _size in backend.list(KEYS_PREFIX):
        base = name.rsplit("/", 1)[-1]
        key_id = base[: -len(".key")] if base.endswith(".key") else base[: -len(".key.2")] \
            if base.endswith(".key.2") else ""
        if key_id:
            ids.setdefault(key_id, []).append(name)
    keys = []
    for key_id in sorted(ids):
        parsed: KeyFile | None = None
        damaged: list[str] = []
        for name in sorted(ids[key_id]):
            try:
                candidate = KeyFile.from_bytes(backend.get(name))
            except (KeyFileDamaged, FileNotFoundError):
                damaged.append(name)
                continue
            if candidate.id != key_id or candidate.repo_id != repo_id:
                damaged.append(name)
                continue
            if parsed is None or candidate.checksum() != parsed.checksum():
                # two intact copies that differ: a passwd interrupted between them; the primary wins
                parsed = parsed or candidate
        keys.append(StoredKey(key_id, parsed, tuple(damaged)))
    return keys


def write_key(backend: Backend, keyfile: KeyFile) -> None:
    """Write both copies of a key file (primary first: a crash in between leaves the old copy)."""
    data = keyfile.to_bytes()
    for name in key_names(keyfile.id):
        backend.put_bytes(name, data)


def delete_key(backend: Backend, key_id: str) -> None:
    for name in key_names(key_id):
        try:
            backend.delete(name)
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class Unlocked:
    """The outcome of unlocking: the material and the key file it came from."""

    material: KeyMaterial
    key: KeyFile
    from_cache: bool = False


def _cache_enabled() -> bool:
    return os.environ.get("SNAP_KEY_CACHE", "on").lower() not in ("off", "0", "no", "false")


def _password_mac(salt: bytes, secret: bytes) -> bytes:
    return blake3.blake3(secret, key=salt).digest()


def _read_cache(cache_dir: str, keys: dict[str, KeyFile], secret: bytes | None = None) -> Unlocked | None:
    """The cached key, if it is still valid; with ``secret``, only if that password filled it."""
    path = os.path.join(cache_dir, CACHE_NAME)
    try:
        st = os.lstat(path)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return None  # not ours alone: never trust (nor use) it
        with open(path, "rb") as handle:
            data = json.loads(handle.read(64 * 1024))
        key = keys.get(str(data["key"]))
        if key is None or key.checksum() != data["checksum"]:
            return None  # removed, or its password changed since
        if secret is not None:
            check = data.get("password")
            if not isinstance(check, dict):
                return None
            salt, mac = base64.b64decode(check["salt"]), base64.b64decode(check["mac"])
            if len(salt) != 32 or not hmac.compare_digest(_password_mac(salt, secret), mac):
                return None  # another password: the key files decide
        material = KeyMaterial.from_bytes(base64.b64decode(data["material"]))
    except (OSError, ValueError, KeyError, TypeError, RepositoryDamaged):
        return None
    if material.repo_id != key.repo_id or material.kind != key.kind:
        return None
    return Unlocked(material, key, from_cache=True)


def write_cache(cache_dir: str, unlocked: Unlocked, secret: bytes | None = None) -> None:
    """Remember an unlocked key for this user, and which password opened it (best effort: a
    cache that cannot be written only costs the next command an Argon2id run)."""
    if not _cache_enabled():
        return
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        os.chmod(cache_dir, 0o700)
        path = os.path.join(cache_dir, CACHE_NAME)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        entry: dict[str, object] = {"key": unlocked.key.id, "checksum": unlocked.key.checksum(),
                                    "material": base64.b64encode(unlocked.material.to_bytes()).decode()}
        if secret is not None:
            salt = os.urandom(32)
            entry["password"] = {"salt": base64.b64encode(salt).decode(),
                                 "mac": base64.b64encode(_password_mac(salt, secret)).decode()}
        with os.fdopen(fd, "w") as handle:
            json.dump(entry, handle)
        os.replace(tmp, path)
    except OSError:
        pass


def forget_cache(cache_dir: str) -> None:
    try:
        os.unlink(os.path.join(cache_dir, CACHE_NAME))
    except FileNotFoundError:
        pass


def unlock(backend: Backend, repo_id: str, password: PasswordSource, *, cache_dir: str | None = None,
           read_cache: bool = True, check_password: bool = False, location: str = "") -> Unlocked:
    """The repository's key material: from the cache (with ``read_cache``: the caller passes False
    when a password was handed to it, which then wins; with ``check_password`` the password is
    read first and the cache serves only the password that filled it), else from the first key
    file the password opens; the result is cached in ``cache_dir``. WrongPassword when the key files are
    intact and none opens; KeyFileDamaged (exit 4) when every copy of every key is damaged."""
    stored = list_keys(backend, repo_id)
    intact = {k.id: k.file for k in stored if k.file is not None}
    if not stored:
        raise RepositoryDamaged(f"the encrypted repository {location} has no key files in keys/")
    if not intact:
        raise KeyFileDamaged(f"every key file of {location} is damaged; import an exported key "
                             "('snap key import') to recover")
    cache = cache_dir if read_cache and _cache_enabled() else None
    if cache is not None and not check_password:
        cached = _read_cache(cache, intact)
        if cached is not None:
            return cached
    secret = password(f"password for {location}: ")
    if cache is not None and check_password:
        cached = _read_cache(cache, intact, secret)
        if cached is not None:
            return cached
    for key in sorted(intact.values(), key=lambda k: (k.kind != "full", k.created)):
        try:
            material = key.unwrap(secret)
        except WrongKeyPassword:
            continue
        if material.repo_id != repo_id:
            continue
        unlocked = Unlocked(material, key)
        if cache_dir is not None:
            write_cache(cache_dir, unlocked, secret)
        return unlocked
    raise WrongPassword(f"wrong password for {location}: no key of the repository opens with it")


def add_key(backend: Backend, material: KeyMaterial, password: bytes, *, write_only: bool = False,
            profile: str = "default") -> KeyFile:
    """A new key for ``password``: full (same material) or write-only (no private key)."""
    if write_only:
        material = material.write_only()
    elif not material.full:
        raise UsageError("a write-only key cannot make a full key")
    keyfile = wrap_key(material, password, profile=profile)
    write_key(backend, keyfile)
    return keyfile


def remove_key(backend: Backend, repo_id: str, key_id: str) -> StoredKey:
    """Remove one key; refused when it is the last intact full key."""
    stored = {k.id: k for k in list_keys(backend, repo_id)}
    matches = [k for k in stored.values() if k.id.startswith(key_id)]
    if not key_id or not matches:
        raise UsageError(f"no key {key_id!r} in this repository (see 'snap key list')")
    if len(matches) > 1:
        raise UsageError(f"key id {key_id!r} is ambiguous")
    target = matches[0]
    full = [k for k in stored.values() if k.file is not None and k.file.kind == "full"]
    if target.file is not None and target.file.kind == "full" and len(full) <= 1:
        raise SnapError("refusing to remove the last full key: nothing could read the repository any more")
    delete_key(backend, target.id)
    return target


def change_password(backend: Backend, unlocked: Unlocked, new_password: bytes, *,
                    profile: str | None = None) -> KeyFile:
    """Rewrap the key that ``unlocked`` came from under a new password (same id, new salt)."""
    keyfile = wrap_key(unlocked.material if unlocked.key.kind == "full" else unlocked.material.write_only(),
                       new_password, profile=profile or unlocked.key.kdf.profile, key_id=unlocked.key.id,
                       created=unlocked.key.created)
    write_key(backend, keyfile)
    return keyfile


def import_key(backend: Backend, repo_id: str, raw: bytes, password: bytes) -> KeyFile:
    """Put back an exported key file after checking it belongs here and opens with ``password``."""
    keyfile = KeyFile.from_bytes(raw)
    if keyfile.repo_id != repo_id:
        raise UsageError(f"key {keyfile.id} belongs to repository {keyfile.repo_id[:8]}, not {repo_id[:8]}")
    try:
        keyfile.unwrap(password)
    except WrongKeyPassword:
        raise WrongPassword(f"the password does not open key {keyfile.id}") from None
    write_key(backend, keyfile)
    return keyfile


def missing_password(_prompt: str) -> bytes:
    raise PasswordMissing("this repository is encrypted: give its password through SNAP_PASSWORD, "
                          "--password-file or --password-command")


EXPORT_HEAD = "snapstore key export v1"


def export_text(keyfile: KeyFile) -> str:
    """A key file as printable text (base64 lines between a head and ``end``), for paper or a vault."""
    body = base64.b64encode(keyfile.to_bytes()).decode()
    lines = [EXPORT_HEAD, f"repository {keyfile.repo_id}", f"key {keyfile.id} ({keyfile.kind})"]
    lines += [body[i : i + 64] for i in range(0, len(body), 64)]
    lines.append("end")
    return "\n".join(lines) + "\n"


def parse_export(raw: bytes) -> bytes:
    """The key file inside an export (the JSON itself, or the text of :func:`export_text`)."""
    text = raw.lstrip()
    if not text.startswith(EXPORT_HEAD.encode()):
        return raw
    lines = [line.strip() for line in text.decode(errors="replace").splitlines()]
    try:
        end = lines.index("end")
    except ValueError:
        raise KeyFileDamaged("exported key text has no 'end' line (cut short?)") from None
    body = "".join(line for line in lines[3:end] if line)
    try:
        return base64.b64decode(body.encode(), validate=True)
    except ValueError:
        raise KeyFileDamaged("exported key text is damaged (not base64)") from None
