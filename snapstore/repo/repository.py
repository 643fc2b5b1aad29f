"""The repository facade: init/open, locks, blob reads and writes, snapshot commit and forget.

A repository is at a *location*: a local directory, or ``s3://BUCKET/PREFIX`` (see
:func:`snapstore.storage.locations.parse_location`). Its files go through ``self.backend``; the LMDB index,
the flock files and packs being written live in ``self.cache_dir``: the repository directory
itself when local (nothing moves on disk), ``$XDG_CACHE_HOME/snapstore/<id>`` when remote. A
remote repository is the truth shared by several hosts: at every open the index is brought up to
date from it (:func:`snapstore.repo.indexsync.sync_index`) and the process holds a lease in its
``locks/`` (:mod:`snapstore.storage.lease`), since flock does not reach other hosts.

On-disk layout of a local repository (docs/format.md is the reference)::

    config.json               format version, repository id, chunker and compression settings
    packs/<xx>/<packid>.pack  pack files (snapstore.format.packfile)
    snapshots/<id>.json       snapshot records: the truth about which snapshots exist
    index/                    the LMDB index (snapstore.repo.index): a rebuildable cache
    locks/                    flock files and holder notes (snapstore.storage.locking)
    tmp/                      packs being written

Everything above the repository (take, restore, gc, vfs) goes through this class; nothing else
knows the layout.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from snapstore import faults
from snapstore.errors import (
    AmbiguousSnapshot,
    ChunkUnreadable,
    FormatError,
    RemoteAccessDenied,
    RepositoryDamaged,
    RepositoryExists,
    RepositoryNotFound,
    SnapshotNotFound,
)
from snapstore.format.chunker import ID_SIZE, ChunkerParams, chunk_id
from snapstore.format.compress import decompress
from snapstore.format.layout import pack_id_of, pack_name, snapshot_name
from snapstore.format.packfile import BLOB_HEADER, BlobEntry, NeedMore, parse_table
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import Entry, decode_tree, tree_children
from snapstore.repo.index import CachedFile, ChunkLocation, Index, TxnCounts, cache_dir_for, open_index
from snapstore.repo.indexsync import SyncReport, sync_index
from snapstore.repo.refcount import add_reference, drop_reference
from snapstore.storage import locking
from snapstore.storage.backend import Backend, LocalBackend, raise_os_error
from snapstore.storage.lease import Lease, read_gc_lease
from snapstore.storage.locations import Location, open_backend, parse_location

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_PACK_SIZE = 32 * 1024 * 1024


@dataclass(frozen=True)
class RepoConfig:
    """The contents of ``config.json``."""

    id: str
    chunker: ChunkerParams
    compression_level: int = 3
    pack_size: int = DEFAULT_PACK_SIZE
    version: int = FORMAT_VERSION
    encryption: str = "none"

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": "snapstore",
                "version": self.version,
                "id": self.id,
                "chunker": self.chunker.to_json(),
                "compression": {"algorithm": "zstd", "level": self.compression_level},
                "pack_size": self.pack_size,
                "encryption": self.encryption,
            },
            indent=2,
        ).encode() + b"\n"

    @classmethod
    def from_bytes(cls, raw: bytes) -> RepoConfig:
        try:
            data = json.loads(raw)
            if data.get("format") != "snapstore":
                raise FormatError("config.json is not a snapstore repository config")
            if int(data["version"]) != FORMAT_VERSION:
                raise FormatError(f"unsupported repository format version {data['version']}")
            if data.get("encryption", "none") != "none":
                raise FormatError(f"unsupported encryption {data['encryption']!r}")
            return cls(
                id=str(data["id"]),
                chunker=ChunkerParams.from_json(data["chunker"]),
                compression_level=int(data["compression"]["level"]),
                pack_size=int(data.get("pack_size", DEFAULT_PACK_SIZE)),
                version=int(data["version"]),
            )
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"malformed repository config.json: {exc}") from None




def _read_config(backend: Backend, location: Location) -> RepoConfig:
    if location.remote:
        try:
            raw = backend.get("config.json")
        except FileNotFoundError:
            backend.check()  # a missing bucket says so
            raise RepositoryNotFound(f"no repository at {location.url} (run 'snap init' there first)") from None
        return RepoConfig.from_bytes(raw)
    path = location.path
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        if not os.path.exists(path):
            raise RepositoryNotFound(f"no repository at {path} (run 'snap init' first)")
        raise RepositoryNotFound(f"{path} is not a snapstore repository (no config.json)")
    try:
        with open(config_path, "rb") as handle:
            return RepoConfig.from_bytes(handle.read())
    except OSError as exc:
        raise raise_os_error(exc, f"reading {config_path}") from None


def _write_note(cache_dir: str, url: str, repo_id: str) -> None:
    """Say in the cache which repository it belongs to (for a person cleaning up ~/.cache)."""
    note = os.path.join(cache_dir, "remote.json")
    if not os.path.exists(note):
        with open(note, "w") as handle:
            json.dump({"repository": url, "id": repo_id}, handle)


def _acquire(lock_dir: str, mode: str, *, wait: float, command: str) -> list[locking.HeldLock]:
    """The open mode's locks. A reader of a repository it cannot write to (a read-only
    filesystem, another user's directory) reads without a lock: it could not create the
    lock file, and it changes nothing in the repository."""
    try:
        return locking.acquire_for(lock_dir, mode, wait=wait, command=command)
    except OSError as exc:
        if mode == "read" and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return []
        raise raise_os_error(exc, f"locking {lock_dir}") from None


class Repository:
    """An open repository. Use :meth:`open` / :meth:`init`; close with :meth:`close`."""

    def __init__(self, path: str, backend: Backend, config: RepoConfig, index: Index, *,
                 cache_dir: str | None = None) -> None:
        self.path = path  # local: the directory; remote: the s3:// URL
        self.backend = backend
        self.config = config
        self.index = index
        self.cache_dir = cache_dir or path  # index/, locks/, tmp/
        self.lease: Lease | None = None
        self.sync_report: SyncReport | None = None  # the last sync_index report
        self._locks: list[locking.HeldLock] = []
        self._tree_cache: dict[bytes, list[Entry]] = {}
        self._tree_lock = threading.Lock()

    @property
    def remote(self) -> bool:
        return self.backend.remote

    def own_dirs(self) -> set[bytes]:
        """The directories a take must never back up: the repository's own (when local) and
        its cache on this host (real paths)."""
        dirs = {os.fsencode(os.path.realpath(self.cache_dir))}
        if not self.remote:
            dirs.add(os.fsencode(os.path.realpath(self.path)))
        return dirs

    # -- life cycle -----------------------------------------------------------------------
    @classmethod
    def init(cls, path: str, *, chunker: ChunkerParams | None = None, compression_level: int = 3,
             pack_size: int = DEFAULT_PACK_SIZE, endpoint: str | None = None) -> RepoConfig:
        """Create a repository at ``path`` (a directory or an ``s3://`` URL); returns its config."""
        location = parse_location(path)
        config = RepoConfig(
            id=secrets.token_hex(16), chunker=chunker or ChunkerParams(),
            compression_level=compression_level, pack_size=pack_size,
        )
        if location.remote:
            cls._init_remote(location, config, endpoint)
            return config
        path = location.path
        if os.path.exists(os.path.join(path, "config.json")):
            raise RepositoryExists(f"a repository already exists at {path}")
        if os.path.isdir(path) and os.listdir(path):
            raise RepositoryExists(f"{path} exists and is not empty; choose an empty or new directory")
        if os.path.exists(path) and not os.path.isdir(path):
            raise RepositoryExists(f"{path} exists and is not a directory")
        try:
            for sub in ("packs", "snapshots", "locks", "tmp"):
                os.makedirs(os.path.join(path, sub), exist_ok=True)
            LocalBackend(path).put_bytes("config.json", config.to_bytes())
        except OSError as exc:
            raise raise_os_error(exc, f"creating repository at {path}") from None
        return config

    @classmethod
    def _init_remote(cls, location: Location, config: RepoConfig, endpoint: str | None) -> None:
        backend = open_backend(location, endpoint=endpoint)
        try:
            backend.check()
            if backend.size("config.json") is not None:
                raise RepositoryExists(f"a repository already exists at {location.url}")
            if not backend.is_empty():
                raise RepositoryExists(f"{location.url} is not empty; choose an empty or new prefix")
            if backend.create_exclusive("config.json", config.to_bytes()) is None:
                raise RepositoryExists(f"a repository already exists at {location.url}")
        finally:
            backend.close()

    @classmethod
    def open(cls, path: str, *, mode: str = "read", wait: float = 0.0, command: str = "",
             check_index: bool = True, endpoint: str | None = None) -> Repository:
        """Open with locks: ``read`` (shared), ``write`` (one writer; readers go on),
        ``exclusive`` (nobody else: gc, repair). ``path`` is a directory or an ``s3://`` URL
        (``endpoint``: the S3 endpoint, else ``$SNAP_S3_ENDPOINT`` or AWS's own).

        One path for every kind of location: read the config, find this host's cache
        (:func:`~snapstore.repo.index.cache_dir_for`), take the locks, open the index there
        (moving one from where older versions kept it, rebuilding one that is missing or
        cannot be mapped: a one-line note, never an error), announce a lease where flock does
        not reach (remote), and bring the index up to date with the repository's files
        (:meth:`sync`). With ``check_index`` a record that still cannot be indexed (its trees
        are in no readable pack) is refused: gc on such an index would take its data for garbage."""
        location = parse_location(path)
        backend = open_backend(location, endpoint=endpoint)
        try:
            config = _read_config(backend, location)
            cache_dir = cache_dir_for(config.id)
            try:
                os.makedirs(os.path.join(cache_dir, "locks"), exist_ok=True)
                if location.remote:
                    os.makedirs(os.path.join(cache_dir, "tmp"), exist_ok=True)
                    _write_note(cache_dir, location.url, config.id)
            except OSError as exc:
                raise raise_os_error(exc, f"creating the local cache {cache_dir}") from None
        except BaseException:
            backend.close()
            raise
        if location.remote:
            backend.set_local_tmp_dir(os.path.join(cache_dir, "tmp"))
        # flock reaches every process of this host: for a local repository the locks live in it,
        # so that every user of the repository sees them
        lock_dir = os.path.join(cache_dir if location.remote else location.path, "locks")
        try:
            held = _acquire(lock_dir, mode, wait=wait, command=command)
        except BaseException:
            backend.close()
            raise
        try:
            sync_lock = locking.acquire(os.path.join(cache_dir, "locks"), "sync", exclusive=True,
                                        wait=max(wait, 600.0), command=command)
            try:
                legacy = None if location.remote else os.path.join(location.path, "index")
                index, note = open_index(cache_dir, legacy=legacy)
            finally:
                sync_lock.release()
        except BaseException:
            locking.release_all(held)
            backend.close()
            raise
        repo = cls(location.url if location.remote else location.path, backend, config, index,
                   cache_dir=cache_dir)
        repo._locks = held
        try:
            if location.remote:
                kind = {"read": "read", "write": "take", "exclusive": "gc"}[mode]
                repo.lease = Lease(backend, kind, command)
                try:
                    repo.lease.acquire(wait=wait)
                except RemoteAccessDenied:
                    if kind != "read":
                        raise
                    repo.lease = None  # read-only credentials: read without announcing it (gc cannot see us)
            building = note.startswith("no index")
            if note and not building:
                log.warning("snap: %s", note)
            report = repo.sync(wait=wait, command=command)
            if building and report.changed:  # nothing to say about the empty index of a new repository
                log.warning("snap: %s", note)
            if report.blobs_lost:
                log.warning("snap: %d referenced blob(s) are in no pack (packs were lost): 'snap verify' names "
                            "what they belong to", report.blobs_lost)
            if check_index:
                stale = repo.unindexed_records()
                if stale:
                    raise RepositoryDamaged(
                        f"{len(stale)} snapshot record(s) in {backend.describe()} cannot be indexed "
                        f"(e.g. {stale[0][:8]}): their trees are in no readable pack; run 'snap verify'")
        except BaseException:
            repo.close()
            raise
        return repo

    def sync(self, *, wait: float = 0.0, command: str = "") -> SyncReport:
        """Bring the index up to date with the repository's files (one process of this host
        at a time): other processes, users and hosts change them, and this host's index is a
        cache (:func:`snapstore.repo.indexsync.sync_index`)."""
        gone: set[bytes] = set()
        gc_lease = read_gc_lease(self.backend)
        if gc_lease is not None and gc_lease.alive() and (self.lease is None or gc_lease.owner != self.lease.owner):
            gone = {p for p in (pack_id_of(n) for n in gc_lease.deleting) if p is not None}
        lock = locking.acquire(os.path.join(self.cache_dir, "locks"), "sync", exclusive=True,
                               wait=max(wait, 600.0), command=command)
        try:
            self.sync_report = sync_index(self, gone=gone)
        finally:
            lock.release()
        return self.sync_report

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None
        self.index.close()
        self.backend.close()
        locking.release_all(self._locks)
        self._locks = []

    def fetched_bytes(self) -> int | None:
        """Bytes read from a remote backend so far (None for a local repository)."""
        return self.backend.stats().fetched_bytes if self.remote else None

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- blobs ----------------------------------------------------------------------------
    def read_blob(self, blob_id: bytes) -> bytes:
        """The raw bytes of a blob, checked against its id."""
        loc = self.index.get_chunk(blob_id)
        if loc is None:
            raise ChunkUnreadable(f"chunk {blob_id.hex()[:16]} is not in the index", blob_id)
        name = pack_name(loc.pack)
        faults.slow_read()
        try:
            payload = self.backend.get_range(name, loc.offset, loc.stored_len)
        except FileNotFoundError:
            raise ChunkUnreadable(
                f"chunk {blob_id.hex()[:16]}: pack {loc.pack.hex()} is missing", blob_id, loc.pack.hex()
            ) from None
        except OSError as exc:
            raise ChunkUnreadable(
                f"chunk {blob_id.hex()[:16]}: cannot read pack {loc.pack.hex()}: {exc.strerror}",
                blob_id, loc.pack.hex(),
            ) from None
        if len(payload) != loc.stored_len:
            raise ChunkUnreadable(
                f"chunk {blob_id.hex()[:16]}: pack {loc.pack.hex()} is truncated", blob_id, loc.pack.hex()
            )
        return self._decode(blob_id, loc, payload)

    @staticmethod
    def _decode(blob_id: bytes, loc: ChunkLocation, payload: bytes) -> bytes:
        """Decompress a blob's payload and check it against its id."""
        try:
            data = decompress(loc.compression, payload, loc.raw_len)
        except ValueError as exc:
            raise ChunkUnreadable(
                f"chunk {blob_id.hex()[:16]} in pack {loc.pack.hex()} is corrupt ({exc})", blob_id, loc.pack.hex()
            ) from None
        if chunk_id(data) != blob_id:
            raise ChunkUnreadable(
                f"chunk {blob_id.hex()[:16]} in pack {loc.pack.hex()} is corrupt (hash mismatch)",
                blob_id, loc.pack.hex(),
            )
        return data

    def read_blobs(self, blob_ids: list[bytes], max_span: int = 8 * 1024 * 1024
                   ) -> Iterator[tuple[bytes, bytes | ChunkUnreadable]]:
        """``(id, data or the error)`` for each id, in order. Blobs that lie next to each other
        in one pack (as a file's chunks usually do) are fetched with one ranged read of up to
        ``max_span`` bytes: one request instead of one per chunk on object storage."""
        i = 0
        while i < len(blob_ids):
            first = self.index.get_chunk(blob_ids[i])
            if first is None:
                yield blob_ids[i], self._read_one(blob_ids[i])
                i += 1
                continue
            span = [(blob_ids[i], first)]
            end = first.offset + first.stored_len
            while i + len(span) < len(blob_ids):
                nxt = self.index.get_chunk(blob_ids[i + len(span)])
                if nxt is None or nxt.pack != first.pack or nxt.offset != end + BLOB_HEADER.size \
                        or nxt.offset + nxt.stored_len - first.offset > max_span:
                    break
                span.append((blob_ids[i + len(span)], nxt))
                end = nxt.offset + nxt.stored_len
            i += len(span)
            if len(span) == 1:
                yield span[0][0], self._read_one(span[0][0])
                continue
            faults.slow_read()
            try:
                raw = self.backend.get_range(pack_name(first.pack), first.offset, end - first.offset)
            except OSError:
                raw = b""
            if len(raw) != end - first.offset:  # let the one-by-one path say precisely what is wrong
                for blob_id, _loc in span:
                    yield blob_id, self._read_one(blob_id)
                continue
            for blob_id, loc in span:
                at = loc.offset - first.offset
                try:
                    yield blob_id, self._decode(blob_id, loc, raw[at : at + loc.stored_len])
                except ChunkUnreadable as exc:
                    yield blob_id, exc

    def _read_one(self, blob_id: bytes) -> bytes | ChunkUnreadable:
        try:
            return self.read_blob(blob_id)
        except ChunkUnreadable as exc:
            return exc

    def read_tree(self, tree_id: bytes) -> list[Entry]:
        with self._tree_lock:
            cached = self._tree_cache.get(tree_id)
        if cached is not None:
            return cached
        entries = decode_tree(self.read_blob(tree_id))
        with self._tree_lock:
            if len(self._tree_cache) > 4096:
                self._tree_cache.clear()
            self._tree_cache[tree_id] = entries
        return entries

    def tree_children(self, tree_id: bytes) -> list[bytes]:
        return tree_children(self.read_blob(tree_id))

    # -- snapshots ------------------------------------------------------------------------
    def snapshots(self) -> list[Snapshot]:
        """Every snapshot, oldest first (ties by id)."""
        records = [Snapshot.from_bytes(raw) for raw in self.index.snapshot_records()]
        return sorted(records, key=lambda s: (s.time, s.id))

    def resolve(self, spec: str) -> Snapshot:
        """A snapshot from an id prefix, ``latest`` or ``latest:TIER``."""
        snaps = self.snapshots()
        if spec == "latest" or spec.startswith("latest:"):
            tier = spec.partition(":")[2]
            chosen = [s for s in snaps if not tier or s.tier == tier]
            if not chosen:
                where = f" in tier {tier!r}" if tier else ""
                raise SnapshotNotFound(f"no snapshot{where} in this repository")
            return chosen[-1]
        spec_l = spec.lower()
        if not spec_l or any(c not in "0123456789abcdef" for c in spec_l):
            raise SnapshotNotFound(f"no snapshot {spec!r} (use an id prefix, 'latest' or 'latest:TIER')")
        matches = [s for s in snaps if s.id.startswith(spec_l)]
        if not matches:
            raise SnapshotNotFound(f"no snapshot with id {spec!r}")
        if len(matches) > 1:
            ids = ", ".join(s.short_id for s in matches[:5])
            raise AmbiguousSnapshot(f"snapshot id {spec!r} is ambiguous ({len(matches)} match: {ids}...)")
        return matches[0]

    def commit_snapshot(self, snapshot: Snapshot, *, packs: Iterable[bytes],
                        new_trees: dict[bytes, bytes], files: dict[bytes, CachedFile]) -> None:
        """Make a snapshot exist: write its record, then one LMDB transaction that adds it,
        counts its references and clears its packs' pending marks."""
        if self.lease is not None:
            self.lease.check()  # a lapsed lease: a gc elsewhere may have freed what we deduplicated against
        self.backend.put_bytes(snapshot_name(snapshot.id), snapshot.to_bytes())
        children = self._children_with(new_trees)
        index = self.index
        with index.write() as txn:
            # a sync by another process of this host may have rolled the record forward already
            if not index.has_snapshot(txn, snapshot.id):
                counts = TxnCounts(index, txn)
                add_reference(counts, bytes.fromhex(snapshot.root), children)
                index.put_snapshot(txn, snapshot.id, snapshot.to_bytes())
            for pack in packs:
                index.clear_pending(txn, pack)
            index.put_files(files, txn)

    def _children_with(self, known: dict[bytes, bytes]) -> Callable[[bytes], list[bytes]]:
        """Children of trees: from ``known`` (tree id -> concatenated child ids) or read back."""

        def children(tree_id: bytes) -> list[bytes]:
            found = known.get(tree_id)
            if found is None:
                return self.tree_children(tree_id)
            return [found[i : i + ID_SIZE] for i in range(0, len(found), ID_SIZE)]

        return children

    def forget(self, snapshots: Iterable[Snapshot]) -> int:
        """Drop snapshots: the index in one transaction, then the record files.
        Returns how many blobs became unreferenced. (Killed in between, the next writer finds
        records the index lacks and adds them back: a forget may have to be repeated, but
        nothing is lost.)"""
        chosen = list(snapshots)
        freed = 0
        index = self.index
        with index.write() as txn:
            counts = TxnCounts(index, txn)
            for snap in chosen:
                if not index.has_snapshot(txn, snap.id):
                    continue
                freed += len(drop_reference(counts, bytes.fromhex(snap.root), self.tree_children))
                index.delete_snapshot(txn, snap.id)
        for snap in chosen:
            self.backend.delete(snapshot_name(snap.id))
        return freed

    def follow_records(self) -> bool:
        """For a long-lived reader (the mount): sync the index when the repository's snapshot
        records are no longer those it holds (another process, user or host took or forgot
        one). True when it synced."""
        if self.record_ids() == self.index.snapshot_ids():
            return False
        self.sync()
        return True

    def record_ids(self) -> set[str]:
        """Ids of the snapshot records in ``snapshots/`` (the truth)."""
        return {name.rsplit("/", 1)[-1][: -len(".json")] for name, _ in self.backend.list("snapshots")
                if name.endswith(".json")}

    def unindexed_records(self) -> list[str]:
        """Snapshot records the index does not know and cannot roll forward."""
        return sorted(self.record_ids() - self.index.snapshot_ids())

    def set_pin(self, snap: Snapshot, pinned: bool) -> None:
        with self.index.write() as txn:
            self.index.set_pin(txn, snap.id, pinned)
        pins = set(self.index.pinned())
        if self.remote:  # other hosts pin too: change only this snapshot in the shared file
            try:
                pins = {str(p) for p in json.loads(self.backend.get("pins.json"))}
            except (FileNotFoundError, ValueError):
                pass
            (pins.add if pinned else pins.discard)(snap.id)
        self.backend.put_bytes("pins.json", json.dumps(sorted(pins)).encode())

    def read_pack_table(self, pack: bytes, size: int | None = None) -> list[BlobEntry]:
        """The blob table of a pack, read from its end (FormatError when it does not parse).
        ``size``, when the caller knows it from a listing, saves asking the backend."""
        name = pack_name(pack)
        if size is None:
            size = self.backend.size(name)
        if size is None:
            raise FileNotFoundError(name)
        want = min(size, (16 if self.remote else 64) * 1024)  # remote: most tables fit; else a second GET
        tail = self.backend.get_range(name, size - want, want)
        try:
            return parse_table(tail, size)
        except NeedMore as more:
            need = int(more.args[0])
            return parse_table(self.backend.get_range(name, size - need, need), size)

    def hold_deletions(self, names: list[str]) -> str:
        """Called by gc just before it deletes ``names``: why it must not delete them now
        ("" when it may). Locally the exclusive flock already keeps everyone else out. On a
        remote repository the names are first announced in the gc lease, then any live take or
        read lease of another process, or a snapshot committed since the sync, defers them."""
        if self.lease is None or not names:
            return ""
        self.lease.update(deleting=names)
        others = [info for info in self.lease.others() if info.kind != "gc"]
        if others:
            who = ", ".join(info.describe() for info in others[:3])
            return f"{len(others)} other process(es) use the repository ({who})"
        if self.record_ids() - self.index.snapshot_ids():
            return "a snapshot was committed by another host while gc ran"
        return ""

    def pack_bytes(self) -> int:
        """Bytes in pack files (what the repository costs on disk, less index and records)."""
        return sum(size for _name, size in self.backend.list("packs"))
