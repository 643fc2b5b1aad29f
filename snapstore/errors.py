"""The one exception hierarchy of snapstore, and the exit code each error maps to.

Every error a user can cause is a :class:`SnapError` subclass carrying its exit code; the CLI
turns it into one line on stderr (or a JSON object with ``--json``) and exits with that code.
The table of codes is documented in docs/cli.md; keep both in step.
"""

from __future__ import annotations


class ExitCode:
    """Documented process exit codes (see docs/cli.md)."""

    OK = 0
    ERROR = 1  # any other failure
    USAGE = 2  # bad command-line arguments (typer/click)
    PARTIAL = 3  # the command finished, but some files could not be read or restored
    DAMAGED = 4  # verify found damage in the repository
    NOT_FOUND = 5  # snapshot, path or tier that does not exist; ambiguous id prefix
    CONFIG = 6  # bad config file
    TARGET = 7  # restore target not empty or inside a repository, mountpoint not usable
    RECOVERY = 8  # recover: an agent did not come back healthy (escalated) or was not started
    NO_REPO = 10  # repository missing or not a snapshot repository
    LOCKED = 11  # repository locked by another process, or changed under the command (run it again)
    EXISTS = 12  # init on an existing repository
    NO_SPACE = 13  # disk full
    FUSE = 14  # FUSE not available (extra not installed, /dev/fuse missing)
    REMOTE = 15  # object storage unreachable or failing (after retries), or the s3 extra missing
    ACCESS_DENIED = 16  # object storage refused the credentials (wrong key, no permission, none found)
    PASSWORD = 17  # wrong repository password, or none given where one is needed
    WRITE_ONLY = 18  # the repository key is write-only and the command must read what it holds
    INTERRUPTED = 130  # Ctrl-C / SIGTERM


class SnapError(Exception):
    """Base of every error snapstore reports to a user."""

    exit_code: int = ExitCode.ERROR
    kind: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(SnapError):
    exit_code = ExitCode.USAGE
    kind = "usage"


class RepositoryNotFound(SnapError):
    exit_code = ExitCode.NO_REPO
    kind = "no_repository"


class RepositoryExists(SnapError):
    exit_code = ExitCode.EXISTS
    kind = "repository_exists"


class RepositoryLocked(SnapError):
    exit_code = ExitCode.LOCKED
    kind = "locked"


class ConcurrentChange(RepositoryLocked):
    """Another process changed what this command relied on while it ran (run it again)."""

    kind = "concurrent-change"


class RepositoryDamaged(SnapError):
    """Data the repository should hold is missing or does not match its id."""

    exit_code = ExitCode.DAMAGED
    kind = "damaged"


class FormatError(RepositoryDamaged):
    """A repository file (pack, tree, record, config) does not parse."""

    kind = "format"


class ChunkUnreadable(RepositoryDamaged):
    """One chunk cannot be read back; only the files that use it are affected."""

    kind = "chunk_unreadable"

    def __init__(self, message: str, chunk_id: bytes = b"", pack: str = "") -> None:
        super().__init__(message)
        self.chunk_id = chunk_id
        self.pack = pack


class NotFound(SnapError):
    exit_code = ExitCode.NOT_FOUND
    kind = "not_found"


class SnapshotNotFound(NotFound):
    kind = "snapshot_not_found"


class AmbiguousSnapshot(NotFound):
    kind = "ambiguous_snapshot"


class PathNotFound(NotFound):
    kind = "path_not_found"


class SourceNotFound(NotFound):
    kind = "source_not_found"


class IncompleteTake(SnapError):
    """A required source was missing: the rest was taken and committed, marked incomplete."""

    exit_code = ExitCode.PARTIAL
    kind = "incomplete"


class HookFailed(SnapError):
    """A tier's ``before`` command failed or timed out: nothing was taken."""

    kind = "hook_failed"

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output  # the command's last lines, for the history event and the alert


class ConfigError(SnapError):
    exit_code = ExitCode.CONFIG
    kind = "config"


class TargetNotEmpty(SnapError):
    exit_code = ExitCode.TARGET
    kind = "target_not_empty"


class RecoveryFailed(SnapError):
    """``snap recover`` finished, but an agent is not healthy (it was escalated, or not started)."""

    exit_code = ExitCode.RECOVERY
    kind = "recovery_failed"


class TargetProtected(SnapError):
    """A restore target inside a repository or a snapstore cache: nothing is written there."""

    exit_code = ExitCode.TARGET
    kind = "target_protected"


class MountError(SnapError):
    exit_code = ExitCode.TARGET
    kind = "mount"


class FuseUnavailable(SnapError):
    exit_code = ExitCode.FUSE
    kind = "fuse_unavailable"


class NoSpace(SnapError):
    exit_code = ExitCode.NO_SPACE
    kind = "no_space"


class Interrupted(SnapError):
    exit_code = ExitCode.INTERRUPTED
    kind = "interrupted"


class WrongPassword(SnapError):
    """No key file of the repository opens with the password given (the key files are intact)."""

    exit_code = ExitCode.PASSWORD
    kind = "wrong_password"


class PasswordMissing(WrongPassword):
    """The repository is encrypted and no password source was given (nor a terminal to ask on)."""

    kind = "password_missing"


class WriteOnlyKey(SnapError):
    """The command reads content, and the key at hand can only write."""

    exit_code = ExitCode.WRITE_ONLY
    kind = "write_only_key"


class RemoteError(SnapError):
    """The object store could not be reached or kept failing after retries."""

    exit_code = ExitCode.REMOTE
    kind = "remote"


class TransientError(RemoteError):
    """A storage request failed in a way that may pass: a timeout, a dropped connection, a 5xx
    answer, throttling. :mod:`snapstore.storage.retrying` tries again; after the last attempt it
    reaches the user as a :class:`RemoteError`."""


class RemoteAccessDenied(RemoteError):
    """The object store refused the request: wrong or missing credentials, or no permission."""

    exit_code = ExitCode.ACCESS_DENIED
    kind = "access_denied"
