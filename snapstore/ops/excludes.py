"""Exclude patterns: what ``--exclude`` means, for a take and for the watcher alike.

A pattern is a shell glob (:func:`fnmatch.fnmatchcase` on bytes: case-sensitive, ``*``
crosses ``/``) matched against an item's name and against its path in the snapshot (its
member path, ``agents/Z/cache``), never against its absolute path on disk: the same pattern
excludes the same items wherever the sources are. A directory that matches is left out with
everything below it. Directories named :data:`ASIDE_DIR_NAME` (where recovery keeps the copies
it moved aside) are always left out.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

#: Recovery keeps pre-recovery copies in directories of this name; a take never backs them up.
ASIDE_DIR_NAME = b".snap-aside"
#: The Cache Directory Tagging Specification (https://bford.info/cachedir/): a directory holding
#: a file of this name that starts with this signature is a cache (tar, borg and restic agree).
CACHEDIR_TAG = b"CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


@dataclass(frozen=True)
class WalkRules:
    """What a take leaves out besides patterns: ``one_file_system`` does not descend into a
    directory on another device than its parent (a mount point is stored as an empty
    directory, as tar does; sources given explicitly are always taken); ``exclude_caches``
    stores a tagged cache directory with only its ``CACHEDIR.TAG`` (as tar's
    ``--exclude-caches``)."""

    one_file_system: bool = False
    exclude_caches: bool = False


def is_cache_dir(path: bytes) -> bool:
    """Whether the directory ``path`` holds a ``CACHEDIR.TAG`` with the standard signature."""
    try:
        with open(os.path.join(path, CACHEDIR_TAG), "rb") as tag:
            return tag.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False


class Excludes:
    """A set of exclude patterns, ready to match."""

    def __init__(self, patterns: Iterable[str | bytes] = ()) -> None:
        self.patterns = [os.fsencode(p) for p in patterns]
        # one expression for all of them (a take asks twice for every item it walks), built
        # as fnmatch builds one for a bytes pattern
        self._any = re.compile("|".join(fnmatch.translate(p.decode("latin-1")) for p in self.patterns)
                               .encode("latin-1")).match if self.patterns else None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, member: bytes, name: bytes | None = None) -> bool:
        """Whether the item at snapshot path ``member`` (its last component: ``name``) is excluded."""
        leaf = os.path.basename(member) if name is None else name
        if leaf == ASIDE_DIR_NAME:
            return True
        return self._any is not None and (self._any(leaf) is not None or self._any(member) is not None)

    def match_name(self, name: bytes) -> bool:
        """Whether an item called ``name`` outside every source would be excluded (by name only)."""
        return name == ASIDE_DIR_NAME or (self._any is not None and self._any(name) is not None)


def member_path(path: bytes, source_path: bytes, source_member: bytes) -> bytes | None:
    """The snapshot path of ``path`` on disk, found under the source taken from ``source_path``
    to ``source_member``; None when ``path`` is not at or below ``source_path``."""
    if path == source_path:
        return source_member
    prefix = source_path.rstrip(b"/") + b"/"
    if not path.startswith(prefix):
        return None
    rest = path[len(prefix):]
    return source_member + b"/" + rest if source_member else rest
