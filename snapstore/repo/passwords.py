"""Where a repository password comes from; never the command line.

First match wins: a file (its first line), a command (its standard output's first line; run
without a shell, split like a POSIX shell would), ``SNAP_PASSWORD``, ``SNAP_PASSWORD_FILE``,
``SNAP_PASSWORD_COMMAND``, then a prompt on the terminal when there is one. The CLI's
``--password-file`` / ``--password-command`` reach this through the environment, so that every
open of a repository (and a background mount's child) sees them. A new password (``init``,
``key add``, ``key passwd``) comes from ``--new-password-file`` / ``--new-password-command`` /
``SNAP_NEW_PASSWORD`` or is asked twice on the terminal; ``init`` also takes the ordinary
sources, since there is no old one.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

from snapstore.errors import PasswordMissing, UsageError

_TIMEOUT = 60.0


def _first_line(data: bytes, where: str) -> bytes:
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        raise UsageError(f"{where} gave an empty password")
    return line


def _from_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return _first_line(handle.read(64 * 1024), f"password file {path}")
    except OSError as exc:
        raise UsageError(f"cannot read password file {path}: {exc.strerror or exc}") from None


def _from_command(command: str) -> bytes:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"cannot parse password command: {exc}") from None
    if not argv:
        raise UsageError("empty password command")
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"password command {argv[0]!r} failed: {exc}") from None
    if done.returncode != 0:
        raise UsageError(f"password command {argv[0]!r} exited with {done.returncode}")
    return _first_line(done.stdout, f"password command {argv[0]!r}")


def _prompt(prompt: str, *, confirm: bool = False) -> bytes:
    import getpass

    try:
        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != first:
            raise UsageError("the two passwords differ")
    except EOFError:
        raise PasswordMissing("no password given") from None
    if not first:
        raise UsageError("empty password")
    return first.encode()


def _tty() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError):
        return False


@dataclass
class PasswordOptions:
    """The password sources given on the command line (the environment is read when asked)."""

    file: str | None = None
    command: str | None = None
    new_file: str | None = None
    new_command: str | None = None
    literal: bytes | None = None  # from a variable read by the constructor (for_target)

    @classmethod
    def for_target(cls, file: str | None = None, command: str | None = None) -> PasswordOptions:
        """The password of a second repository (``copy --to``): its options, else
        ``SNAP_TO_PASSWORD`` / ``SNAP_TO_PASSWORD_FILE`` / ``SNAP_TO_PASSWORD_COMMAND``, else the
        ordinary sources (the same password)."""
        if not file and not command:
            if os.environ.get("SNAP_TO_PASSWORD"):
                return cls(literal=os.environ["SNAP_TO_PASSWORD"].encode())
            file = os.environ.get("SNAP_TO_PASSWORD_FILE") or None
            command = os.environ.get("SNAP_TO_PASSWORD_COMMAND") or None
        return cls(file=file, command=command)

    def given(self) -> bool:
        """Whether a password source is set (then it wins over the unlocked-key cache)."""
        return bool(self.literal or self.file or self.command or os.environ.get("SNAP_PASSWORD")
                    or os.environ.get("SNAP_PASSWORD_FILE") or os.environ.get("SNAP_PASSWORD_COMMAND"))

    def current(self, prompt: str) -> bytes:
        """The repository password (a :data:`snapstore.repo.keystore.PasswordSource`)."""
        if self.literal:
            return self.literal
        if self.file:
            return _from_file(self.file)
        if self.command:
            return _from_command(self.command)
        env = os.environ.get("SNAP_PASSWORD")
        if env:
            return env.encode()
        if os.environ.get("SNAP_PASSWORD_FILE"):
            return _from_file(os.environ["SNAP_PASSWORD_FILE"])
        if os.environ.get("SNAP_PASSWORD_COMMAND"):
            return _from_command(os.environ["SNAP_PASSWORD_COMMAND"])
        if _tty():
            return _prompt(prompt)
        raise PasswordMissing("this repository is encrypted: give its password through SNAP_PASSWORD, "
                              "--password-file or --password-command (no terminal to ask on)")

    def new(self, prompt: str, *, fall_back_to_current: bool = False) -> bytes:
        """A new password: the ``new`` sources, else (``init``) the ordinary ones, else asked twice."""
        if self.new_file:
            return _from_file(self.new_file)
        if self.new_command:
            return _from_command(self.new_command)
        env = os.environ.get("SNAP_NEW_PASSWORD")
        if env:
            return env.encode()
        if fall_back_to_current and self.given():
            return self.current(prompt)
        if _tty():
            return _prompt(prompt, confirm=True)
        raise PasswordMissing("no new password given: use SNAP_NEW_PASSWORD, --new-password-file or "
                              "--new-password-command (no terminal to ask on)")
