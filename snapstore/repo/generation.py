"""The change marker of a remote repository: how a host knows it is up to date without listing.

Listing ``packs/`` costs one request per 1,000 packs (3,100 pages at 100 TB of 32 MiB packs),
and an index sync needs it only when something changed. So a remote repository holds one small
object, ``generation``, with a random token, and:

- every process that changed the repository (any write that is not a lease under ``locks/``)
  writes a new token before it releases its lease (:func:`announce`);
- a host whose full sync ran under token T, with no gc lease object present, records T in its
  index; at its next open it reads the token and the gc lease (two GETs): the same token and no
  gc lease mean nothing was changed since, and the listing is skipped (:func:`may_skip_sync`).

Why skipping cannot lose data: the changes a host must not miss are pack deletions (a take
that deduplicates against a deleted blob would reference nothing), and on a remote repository
packs are deleted only under the gc lease (gc, repair, ``forget --prune``; a failed take leaves
its packs for gc: ``delete_on_abort`` is off there). The gc lease object exists from before the
first deletion until after its holder's new token, and a gc killed half way leaves its object
behind (dead, until the next gc takes it over), so a host that sees no gc lease object has
seen every deletion. What else a host can miss (a record, pins) is announced by its writer at
its end; a writer killed before that leaves a flag in its own host's index
(:meth:`~snapstore.repo.index.Index.set_writer_in_flight`), so that host lists again and its
next writer announces. Until then other hosts lag behind (they do not see that record), which
is what a take that did not finish looks like anyway.

A local repository is listed at every open (a directory scan), and has no marker.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from snapstore.storage.backend import Backend, ForwardingBackend

MARKER = "generation"
_TOKEN_HEX = 32


@dataclass(frozen=True)
class Generation:
    """The marker as read: its token and the backend's tag for a conditional replace."""

    token: str
    tag: str


def read_marker(backend: Backend) -> Generation | None:
    """The repository's marker (None when there is none, or it does not parse: a full sync)."""
    found = backend.get_tagged(MARKER)
    if found is None:
        return None
    raw, tag = found
    token = raw.decode("ascii", "replace").strip()
    if len(token) != _TOKEN_HEX or any(c not in "0123456789abcdef" for c in token):
        return None
    return Generation(token, tag)


def announce(backend: Backend, seen: Generation | None) -> tuple[str, bool]:
    """Write a new token: this process changed the repository. Returns ``(token, alone)``:
    ``alone`` when the token replaced ``seen`` conditionally, so that no other process
    announced anything since ``seen`` was read (then a host whose index was up to date under
    ``seen`` is up to date under the new token, its own changes included)."""
    token = secrets.token_hex(_TOKEN_HEX // 2)
    data = (token + "\n").encode()
    if seen is None:
        if backend.create_exclusive(MARKER, data) is not None:
            return token, False  # no marker before: nothing says what the index was synced under
    elif backend.replace_if(MARKER, data, seen.tag) is not None:
        return token, True
    backend.put_bytes(MARKER, data)  # someone else announced too: a new token all the same
    return token, False


def may_skip_sync(*, stored: str | None, current: Generation | None, gc_lease: bool, in_flight: bool) -> bool:
    """Whether a host's index is up to date without listing (see the module docstring):
    its recorded token is the repository's, no gc lease object exists, and no writer of this
    host is between its first change and its announcement."""
    return current is not None and stored == current.token and not gc_lease and not in_flight


def changes_repository(name: str) -> bool:
    """Whether writing or deleting ``name`` is a change other hosts must hear of (leases and
    the marker itself are not)."""
    return not name.startswith("locks/") and name != MARKER


class ChangeNoting(ForwardingBackend):
    """A remote backend that remembers whether this process changed the repository."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.changed = False

    def _note(self, name: str) -> None:
        if changes_repository(name):
            self.changed = True

    def put_file(self, name: str, local_path: str) -> None:
        self._note(name)
        self.inner.put_file(name, local_path)

    def put_bytes(self, name: str, data: bytes) -> None:
        self._note(name)
        self.inner.put_bytes(name, data)

    def create_exclusive(self, name: str, data: bytes) -> str | None:
        self._note(name)
        return self.inner.create_exclusive(name, data)

    def replace_if(self, name: str, data: bytes, tag: str) -> str | None:
        self._note(name)
        return self.inner.replace_if(name, data, tag)

    def delete_if(self, name: str, tag: str) -> None:
        self._note(name)
        self.inner.delete_if(name, tag)

    def delete(self, name: str) -> None:
        self._note(name)
        self.inner.delete(name)

    def rename(self, name: str, new_name: str) -> None:
        self._note(name)
        self.inner.rename(name, new_name)

