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

A host that is behind need not list either. The marker also holds a sequence number, and an
announcement made by a conditional replace first writes what it changed to
``changes/<number>.json`` (records stored and forgotten, packs stored with their sizes and,
within :data:`TAILS_BUDGET`, their tables: a host behind indexes those packs without a GET), with
its token and the token it replaced: a host whose index was up to date under number ``k`` reads
the announcements ``k+1 .. n`` (one GET each: what it lacks, not the repository) and applies
them, when they chain from its token to the marker's. A broken chain, a missing announcement, a
process whose changes cannot be written as one (it deleted packs: gc, repair), a gc lease, or
being more than :data:`MAX_BEHIND` behind: the listing, as before.

A local repository is listed at every open (a directory scan), and has no marker.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from dataclasses import dataclass, field

from snapstore.errors import FormatError
from snapstore.format.packfile import FOOTER, tail_length
from snapstore.storage.backend import Backend, ForwardingBackend

MARKER = "generation"
CHANGES = "changes"
MAX_BEHIND = 200  # announcements a host reads instead of listing (more: the listing is cheaper)
KEEP_CHANGES = 1000  # announcements kept; an announcement deletes the one this many before it
_TOKEN_HEX = 32
# the packs' tables an announcement carries (bytes before base64): a host behind then indexes a
# pack without a GET of its tail; packs past the budget are read from their tails as before.
# The last KEEP_CHANGES announcements are kept: at most ~87 MB of tails in base64 in all
TAILS_BUDGET = 64 * 1024


@dataclass(frozen=True)
class Generation:
    """The marker as read: its token, its sequence number (None: no chain to follow) and the
    backend's tag for a conditional replace."""

    token: str
    tag: str
    seq: int | None = None

    @property
    def stored(self) -> str:
        """How an index records it: ``token`` or ``token seq``."""
        return self.token if self.seq is None else f"{self.token} {self.seq}"


def _is_token(text: str) -> bool:
    return len(text) == _TOKEN_HEX and all(c in "0123456789abcdef" for c in text)


def parse_stored(text: str | None) -> tuple[str, int | None] | None:
    """An index's recorded ``token [seq]`` (None when absent or malformed)."""
    parts = (text or "").split()
    if not parts or not _is_token(parts[0]) or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        return None
    return parts[0], int(parts[1]) if len(parts) == 2 else None


def read_marker(backend: Backend) -> Generation | None:
    """The repository's marker (None when there is none, or it does not parse: a full sync)."""
    return _marker_of(backend.get_tagged(MARKER))


def _marker_of(found: tuple[bytes, str] | None) -> Generation | None:
    if found is None:
        return None
    raw, tag = found
    parsed = parse_stored(raw.decode("ascii", "replace"))
    if parsed is None:
        return None
    return Generation(parsed[0], tag, parsed[1])


def change_name(seq: int) -> str:
    return f"{CHANGES}/{seq:012d}.json"


@dataclass
class ChangeSet:
    """What one process changed, as other hosts need it: records stored and forgotten, packs
    stored (name -> size); ``whole``: something that cannot be written as a change (a pack
    deleted, an object renamed), so a host behind lists."""

    records: set[str] = field(default_factory=set)
    forgotten: set[str] = field(default_factory=set)
    packs: dict[str, int] = field(default_factory=dict)
    whole: bool = False
    # pack name -> its last bytes (table and footer, exactly as in the pack), up to TAILS_BUDGET
    tails: dict[str, bytes] = field(default_factory=dict)

    def to_json(self, token: str, prev: str) -> bytes:
        tails = {name: base64.b64encode(tail).decode() for name, tail in sorted(self.tails.items())
                 if name in self.packs}
        return json.dumps({"token": token, "prev": prev, "records": sorted(self.records),
                           "forgotten": sorted(self.forgotten), "packs": sorted(self.packs.items()),
                           "whole": self.whole, "tails": tails}).encode()


@dataclass(frozen=True)
class Change:
    """One announcement as read back."""

    token: str
    prev: str
    records: frozenset[str]
    forgotten: frozenset[str]
    packs: tuple[tuple[str, int], ...]
    whole: bool
    tails: dict[str, bytes] = field(default_factory=dict)  # may be empty (older writers; the budget)

    @classmethod
    def parse(cls, raw: bytes) -> Change | None:
        try:
            doc = json.loads(raw)
            change = cls(str(doc["token"]), str(doc["prev"]), frozenset(map(str, doc["records"])),
                         frozenset(map(str, doc["forgotten"])),
                         tuple((str(name), int(size)) for name, size in doc["packs"]), bool(doc["whole"]),
                         _tails(doc.get("tails")))
        except (ValueError, KeyError, TypeError):
            return None
        return change if _is_token(change.token) and _is_token(change.prev) else None


def _tails(value: object) -> dict[str, bytes]:
    """The tails of an announcement; a damaged field is as good as none (each pack's own tail
    is read instead, and a tail that does not parse as its pack's is too)."""
    if not isinstance(value, dict):
        return {}
    try:
        return {str(name): base64.b64decode(tail, validate=True) for name, tail in value.items()}
    except (ValueError, TypeError):
        return {}


def announce(backend: Backend, changes: ChangeSet | None = None, *, attempts: int = 3
             ) -> tuple[Generation, Generation | None]:
    """Write a new token: this process changed the repository. Returns the new marker and the
    one it replaced conditionally (None: it could not, and wrote a token without a number,
    which every host behind meets with a listing). A host whose index was up to date under the
    replaced marker, and whose own changes are these, is up to date under the new one. With
    ``changes`` the announcement is first written under ``changes/`` for hosts behind."""
    token = secrets.token_hex(_TOKEN_HEX // 2)
    for _attempt in range(attempts):
        found = backend.get_tagged(MARKER)
        seen = _marker_of(found)
        if seen is None:
            if found is None and backend.create_exclusive(MARKER, f"{token} 0\n".encode()):
                return Generation(token, "", 0), None  # the first marker: the chain starts here
            break  # one that does not parse: replaced below
        seq = (seen.seq or 0) + 1
        if changes is not None and not changes.whole:
            backend.put_bytes(change_name(seq), changes.to_json(token, seen.token))
        tag = backend.replace_if(MARKER, f"{token} {seq}\n".encode(), seen.tag)
        if tag is not None:
            if seq > KEEP_CHANGES:
                try:
                    backend.delete(change_name(seq - KEEP_CHANGES))
                except (OSError, FileNotFoundError):
                    pass
            return Generation(token, tag, seq), seen
        # another process announced between our read and our write: chain after its marker
    backend.put_bytes(MARKER, (token + "\n").encode())
    return Generation(token, ""), None


def read_changes(backend: Backend, stored: str | None, current: Generation | None) -> list[Change] | None:
    """The announcements that bring an index up to date under ``stored`` to ``current``, when
    they chain from one to the other (None: list instead)."""
    parsed = parse_stored(stored)
    if parsed is None or current is None or current.seq is None:
        return None
    token, seq = parsed
    if seq is None or not 0 < current.seq - seq <= MAX_BEHIND:
        return None
    out: list[Change] = []
    prev = token
    for n in range(seq + 1, current.seq + 1):
        try:
            change = Change.parse(backend.get(change_name(n)))
        except FileNotFoundError:
            return None
        if change is None or change.prev != prev or change.whole:
            return None
        out.append(change)
        prev = change.token
    return out if prev == current.token else None


def may_skip_sync(*, stored: str | None, current: Generation | None, gc_lease: bool, in_flight: bool) -> bool:
    """Whether a host's index is up to date without listing (see the module docstring):
    its recorded token is the repository's, no gc lease object exists, and no writer of this
    host is between its first change and its announcement."""
    parsed = parse_stored(stored)
    return (current is not None and parsed is not None and parsed[0] == current.token and not gc_lease
            and not in_flight)


def changes_repository(name: str) -> bool:
    """Whether writing or deleting ``name`` is a change other hosts must hear of (leases, the
    marker and the announcements themselves are not)."""
    return not name.startswith(("locks/", CHANGES + "/")) and name != MARKER


# what a host reads at every sync anyway, so a change to it needs no announcement of its own
_READ_AT_EVERY_SYNC = ("pins.json", "intents/", "keys/", "config.json")


class ChangeNoting(ForwardingBackend):
    """A remote backend that remembers what this process changed in the repository."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.changed = False
        self.changes = ChangeSet()
        self._tails_lock = threading.Lock()  # packs are put by several finisher threads
        self._tails_left = TAILS_BUDGET

    def _note_tail(self, name: str, local_path: str) -> None:
        """Keep a stored pack's table and footer for the announcement, while the budget lasts."""
        try:
            with open(local_path, "rb") as handle:
                handle.seek(-FOOTER.size, os.SEEK_END)
                need = tail_length(handle.read(FOOTER.size))
                with self._tails_lock:
                    if need > self._tails_left:
                        return
                    self._tails_left -= need
                handle.seek(-need, os.SEEK_END)
                tail = handle.read(need)
        except (OSError, FormatError):  # not a pack as it should be: its own tail will be read
            return
        if len(tail) == need:
            self.changes.tails[name] = tail

    def _put(self, name: str, size: int) -> None:
        if not changes_repository(name):
            return
        self.changed = True
        if name.startswith("packs/"):
            self.changes.packs[name] = size
        elif name.startswith("snapshots/") and name.endswith(".json"):
            snap_id = name[len("snapshots/") : -len(".json")]
            self.changes.records.add(snap_id)
            self.changes.forgotten.discard(snap_id)
        elif not name.startswith(_READ_AT_EVERY_SYNC):
            self.changes.whole = True

    def _delete(self, name: str) -> None:
        if not changes_repository(name):
            return
        self.changed = True
        if name.startswith("snapshots/") and name.endswith(".json"):
            snap_id = name[len("snapshots/") : -len(".json")]
            self.changes.forgotten.add(snap_id)
            self.changes.records.discard(snap_id)
        elif not name.startswith(_READ_AT_EVERY_SYNC):
            self.changes.whole = True  # a pack deleted: a host behind must list to see it

    # noted before the operation: one that fails may still have happened (a lost reply), and
    # an announcement of something that is not there costs a host behind only a listing
    def put_file(self, name: str, local_path: str) -> None:
        self._put(name, os.path.getsize(local_path))
        if name.startswith("packs/"):
            self._note_tail(name, local_path)  # before the put: a put consumes the local file
        self.inner.put_file(name, local_path)

    def put_bytes(self, name: str, data: bytes) -> None:
        self._put(name, len(data))
        self.inner.put_bytes(name, data)

    def create_exclusive(self, name: str, data: bytes) -> str | None:
        self._put(name, len(data))
        return self.inner.create_exclusive(name, data)

    def replace_if(self, name: str, data: bytes, tag: str) -> str | None:
        self._put(name, len(data))
        return self.inner.replace_if(name, data, tag)

    def delete_if(self, name: str, tag: str) -> None:
        self._delete(name)
        self.inner.delete_if(name, tag)

    def delete(self, name: str) -> None:
        self._delete(name)
        self.inner.delete(name)

    def rename(self, name: str, new_name: str) -> None:
        self._delete(name)
        self.changes.whole = True
        self.inner.rename(name, new_name)

