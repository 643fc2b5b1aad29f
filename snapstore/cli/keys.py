"""``snap key list | add | remove | passwd | export | import``: the keys of an encrypted repository.

The key files are the only thing these commands touch (``keys/`` in the repository and the
unlocked-key cache of this user); they need no lock, since they never change packs, records or
the index.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from snapstore.cli.context import AppContext
from snapstore.cli.output import echo, emit_json, warn
from snapstore.errors import FormatError, RepositoryNotFound, SnapError, UsageError

if TYPE_CHECKING:
    from snapstore.repo.keystore import Unlocked
    from snapstore.repo.passwords import PasswordOptions
    from snapstore.storage.backend import Backend

key_app = typer.Typer(help="Keys of an encrypted repository: list, add, remove, change password, export, import.",
                      no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
NewFileOpt = Annotated[str | None, typer.Option("--new-password-file", help="Read the new password from this "
                                                "file's first line (else $SNAP_NEW_PASSWORD or a prompt).",
                                                show_default=False)]
NewCommandOpt = Annotated[str | None, typer.Option("--new-password-command", help="Run this command (no shell) "
                                                   "for the new password.", show_default=False)]
ProfileOpt = Annotated[str | None, typer.Option("--kdf-profile", help="Argon2id parameter set: default, or test "
                                                "(tiny, for test suites only; recorded in the key file). Else "
                                                "$SNAP_KDF_PROFILE, else default.", show_default=False)]


class _Repo:
    """A repository's key files, reached without opening its index."""

    def __init__(self, backend: Backend, repo_id: str, location: str) -> None:
        self.backend = backend
        self.id = repo_id
        self.location = location

    @property
    def cache_dir(self) -> str:
        from snapstore.repo.index import cache_dir_for

        return cache_dir_for(self.id)

    def unlock(self, passwords: PasswordOptions, *, use_cache: bool = True) -> Unlocked:
        from snapstore.repo.keystore import unlock

        return unlock(self.backend, self.id, passwords.current, cache_dir=self.cache_dir,
                      read_cache=use_cache, check_password=passwords.given(), location=self.location)


@contextmanager
def _open(app: AppContext, *, changes: bool = False) -> Iterator[_Repo]:
    """The repository's key files; with ``changes`` (add, remove, passwd, import) under the
    ``keys`` lock, so that two of them never interleave (two removes could otherwise each
    see the other's key as the full key that remains). flock reaches this host's processes:
    the lock lives in a local repository's ``locks/``, and for S3 in this host's cache."""
    from snapstore.repo.index import cache_dir_for
    from snapstore.storage import locking
    from snapstore.storage.backend import raise_os_error
    from snapstore.storage.locations import open_backend, parse_location

    location = parse_location(app.repo_path())
    if not location.remote and not os.path.isfile(os.path.join(location.path, "config.json")):
        raise RepositoryNotFound(f"no repository at {location.url} (run 'snap init' first)")
    backend = open_backend(location, endpoint=app.s3_endpoint)
    try:
        try:
            raw = backend.get("config.json")
        except FileNotFoundError:
            raise RepositoryNotFound(f"no repository at {location.url} (run 'snap init' first)") from None
        try:
            config = json.loads(raw)
            repo_id = str(config["id"])
            encryption = config.get("encryption", "none")
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"malformed repository config.json: {exc}") from None
        if encryption == "none" or not isinstance(encryption, dict):
            raise UsageError(f"{location.url} is not encrypted: it has no keys (copy it into an encrypted "
                             "repository with 'snap copy --init' to encrypt it)")
        held = None
        if changes:
            lock_dir = os.path.join(cache_dir_for(repo_id) if location.remote else location.path, "locks")
            try:
                held = locking.acquire(lock_dir, "keys", exclusive=True, wait=app.wait, command=app.command)
            except OSError as exc:
                raise raise_os_error(exc, f"locking {lock_dir}") from None
        try:
            yield _Repo(backend, repo_id, location.url)
        finally:
            if held is not None:
                held.release()
    finally:
        backend.close()


def kdf_profile_choice(option: str | None) -> str:
    """The KDF profile for a new key: the option, else $SNAP_KDF_PROFILE, else default."""
    from snapstore.format.keyfile import KDF_PROFILES

    profile = option or os.environ.get("SNAP_KDF_PROFILE") or "default"
    if profile not in KDF_PROFILES:
        raise UsageError(f"unknown KDF profile {profile!r} (known: {', '.join(KDF_PROFILES)})")
    return profile


def warn_kdf_profile(profile: str) -> None:
    """A key made with other than the default parameters is said out loud, each time."""
    if profile != "default":
        warn(f"snap: warning: this key uses the {profile!r} Argon2id parameters (for test suites only; "
             "recorded in the key file)")


def _passwords(app: AppContext, new_file: str | None = None, new_command: str | None = None) -> PasswordOptions:
    from snapstore.repo.passwords import PasswordOptions

    return PasswordOptions(new_file=new_file, new_command=new_command)  # the current one: the environment


@key_app.command("list")
def cmd_key_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """List the repository's keys (no password needed: key files hold no secret in clear)."""
    from snapstore.repo.keystore import list_keys

    with _open(ctx.obj) as repo:
        keys = list_keys(repo.backend, repo.id)
    if json_out:
        emit_json({"repository": repo.location, "keys": [k.to_json() for k in keys]})
        return
    for key in keys:
        if key.file is None:
            echo(f"{key.id}  DAMAGED (every copy)")
            continue
        note = f"  damaged copy: {', '.join(key.damaged)}" if key.damaged else ""
        profile = "" if key.file.kdf.profile == "default" else f"  kdf {key.file.kdf.profile}"
        echo(f"{key.id}  {key.file.kind:<10}  created {key.file.created}{profile}{note}")


@key_app.command("add")
def cmd_key_add(
    ctx: typer.Context,
    write_only: Annotated[bool, typer.Option("--write-only", help="A key that can take snapshots but never "
                                             "read, restore, forget or gc.")] = False,
    new_password_file: NewFileOpt = None,
    new_password_command: NewCommandOpt = None,
    kdf: ProfileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a key: another password for this repository (full, or --write-only for backup hosts)."""
    from snapstore.errors import WriteOnlyKey
    from snapstore.repo.keystore import add_key

    app: AppContext = ctx.obj
    passwords = _passwords(app, new_password_file, new_password_command)
    profile = kdf_profile_choice(kdf)
    with _open(app, changes=True) as repo:
        unlocked = repo.unlock(passwords)
        if not unlocked.material.full:
            raise WriteOnlyKey("this key is write-only: adding keys needs a full key")
        secret = passwords.new("password for the new key: ")
        keyfile = add_key(repo.backend, unlocked.material, secret, write_only=write_only, profile=profile)
    warn_kdf_profile(profile)
    if json_out:
        emit_json({"id": keyfile.id, "kind": keyfile.kind, "kdf_profile": keyfile.kdf.profile})
    else:
        echo(f"added {keyfile.kind} key {keyfile.id}")


@key_app.command("remove")
def cmd_key_remove(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="Id (or unique prefix) of the key to remove.")],
    json_out: JsonOpt = False,
) -> None:
    """Remove a key (never the last full one). Needs a full key's password."""
    from snapstore.errors import WriteOnlyKey
    from snapstore.repo.keystore import forget_cache, remove_key

    app: AppContext = ctx.obj
    with _open(app, changes=True) as repo:
        unlocked = repo.unlock(_passwords(app))
        if not unlocked.material.full:
            raise WriteOnlyKey("this key is write-only: removing keys needs a full key")
        removed = remove_key(repo.backend, repo.id, key_id)
        if removed.id == unlocked.key.id:
            forget_cache(repo.cache_dir)
    if json_out:
        emit_json({"removed": removed.id})
    else:
        echo(f"removed key {removed.id}")


@key_app.command("passwd")
def cmd_key_passwd(
    ctx: typer.Context,
    new_password_file: NewFileOpt = None,
    new_password_command: NewCommandOpt = None,
    kdf: ProfileOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Change the password of the key that the current password opens."""
    from snapstore.repo.keystore import Unlocked, change_password, write_cache

    app: AppContext = ctx.obj
    passwords = _passwords(app, new_password_file, new_password_command)
    profile = kdf_profile_choice(kdf) if kdf or os.environ.get("SNAP_KDF_PROFILE") else None
    with _open(app, changes=True) as repo:
        unlocked = repo.unlock(passwords, use_cache=False)  # proving the old password is the point
        secret = passwords.new("new password: ")
        keyfile = change_password(repo.backend, unlocked, secret, profile=profile)
        write_cache(repo.cache_dir, Unlocked(unlocked.material, keyfile), secret)
    warn_kdf_profile(keyfile.kdf.profile)
    if json_out:
        emit_json({"id": keyfile.id, "kind": keyfile.kind})
    else:
        echo(f"changed the password of key {keyfile.id}")


@key_app.command("export")
def cmd_key_export(
    ctx: typer.Context,
    path: Annotated[str | None, typer.Argument(help="File to write (mode 0600; must not exist). Default: "
                                               "standard output.", show_default=False)] = None,
    text: Annotated[bool, typer.Option("--text", help="Printable text (base64 lines) instead of JSON.")] = False,
) -> None:
    """Write the key that the password opens (still protected by that password) for a safe place."""
    from snapstore.repo.keystore import export_text

    app: AppContext = ctx.obj
    with _open(app) as repo:
        keyfile = repo.unlock(_passwords(app)).key
    data = export_text(keyfile).encode() if text else keyfile.to_bytes()
    if path is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except FileExistsError:
        raise UsageError(f"{path} exists; choose a new file") from None
    except OSError as exc:
        raise SnapError(f"cannot write {path}: {exc.strerror or exc}") from None
    echo(f"exported key {keyfile.id} to {path}")


@key_app.command("import")
def cmd_key_import(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="An exported key (JSON or --text form); '-' reads standard input.")],
    json_out: JsonOpt = False,
) -> None:
    """Put an exported key back into the repository (its password is the current password)."""
    from snapstore.repo.keystore import import_key, parse_export

    app: AppContext = ctx.obj
    try:
        if path == "-":
            raw = sys.stdin.buffer.read(1 << 20)
        else:
            with open(path, "rb") as handle:
                raw = handle.read(1 << 20)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    with _open(app, changes=True) as repo:
        keyfile = import_key(repo.backend, repo.id, parse_export(raw),
                             _passwords(app).current(f"password of the key in {path}: "))
    if json_out:
        emit_json({"id": keyfile.id, "kind": keyfile.kind})
    else:
        echo(f"imported {keyfile.kind} key {keyfile.id}")


def register(app: typer.Typer) -> None:
    app.add_typer(key_app, name="key")
