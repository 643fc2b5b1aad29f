"""Places that no take reads and no restore writes: repositories and their caches.

A take of ``/`` (or of a directory holding the repository) would otherwise store the
repository inside itself, and a restore with ``--overwrite`` into a repository would replace
its ``config.json`` and packs with files of a snapshot, after which no command opens it. Both
sides ask this module: :func:`protected_dirs` names the repository being used, its local cache
and the cache root of every repository (``~/.cache/snapstore``);
:func:`repository_holding` finds any other repository a path lies in.
"""

from __future__ import annotations

import os
from typing import Protocol

from snapstore.repo.index import cache_root

#: What a directory must hold to be treated as a repository (``snap init`` makes all three).
REPOSITORY_MARKS = ("config.json", "packs", "snapshots")


class RepositoryLike(Protocol):
    """What this module needs of :class:`snapstore.repo.repository.Repository`."""

    path: str
    cache_dir: str


def _real(path: str | bytes) -> bytes:
    return os.path.realpath(os.fsencode(path))


def protected_dirs(repo: RepositoryLike) -> list[tuple[bytes, str]]:
    """``(real path, what it is)`` of the repository (when local), its cache and the cache root."""
    out: list[tuple[bytes, str]] = []
    if "://" not in repo.path:
        out.append((_real(repo.path), "the repository"))
    if repo.cache_dir != repo.path:
        out.append((_real(repo.cache_dir), "the repository's local cache"))
    out.append((_real(cache_root()), "the snapstore cache"))
    unique: dict[bytes, str] = {}
    for real, what in out:
        unique.setdefault(real, what)
    return list(unique.items())


def is_inside(path: bytes, directory: bytes) -> bool:
    """Whether ``path`` is ``directory`` or below it (both real, absolute paths)."""
    return path == directory or path.startswith(directory.rstrip(b"/") + b"/")


def repository_holding(path: str | bytes) -> bytes | None:
    """The repository directory that ``path`` is in or is (by its marks), or None."""
    current = _real(path)
    while True:
        if all(os.path.exists(os.path.join(current, mark.encode())) for mark in REPOSITORY_MARKS):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
