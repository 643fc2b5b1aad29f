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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from snapstore import faults
from snapstore.errors import (
    AmbiguousSnapshot,
    ChunkUnreadable,
    ConcurrentChange,
    FormatError,
    NoSpace,
    RemoteAccessDenied,
    RepositoryDamaged,
    RepositoryExists,
    RepositoryLocked,
    RepositoryNotFound,
    SnapError,
    SnapshotNotFound,
    UsageError,
    WriteOnlyKey,
)
from snapstore.format.chunker import ID_SIZE, ChunkerParams, chunk_id
from snapstore.format.compress import decompress
from snapstore.format.layout import pack_id_of, pack_name, snapshot_name
from snapstore.format.packfile import BLOB_HEADER, ENCRYPTED, BlobEntry, NeedMore, parse_table, tiles_pack
from snapstore.format.snapshot import Snapshot
from snapstore.format.tree import Entry, decode_tree, tree_children
from snapstore.repo.generation import (
    Change,
    ChangeNoting,
    ChangeSet,
    Generation,
    announce,
    may_skip_sync,
    read_changes,
    read_marker,
)
from snapstore.repo.index import (
    CachedFile,
    ChunkLocation,
    Index,
    TxnCounts,
    cache_dir_for,
    index_errors,
    open_index,
)
from snapstore.repo.indexsync import SyncReport, sync_index
from snapstore.repo.refcount import add_reference, drop_reference
from snapstore.storage import locking
from snapstore.storage.backend import Backend, LocalBackend, raise_os_error
from snapstore.storage.lease import Lease, LeaseCodec, read_gc_lease_object
from snapstore.storage.locations import Location, open_backend, parse_location

if TYPE_CHECKING:
    from snapstore.format.crypto import RepoCrypto
    from snapstore.repo.keystore import PasswordSource

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FORMAT_VERSION_ENCRYPTED = 2
ENCRYPTION_SCHEME = "sealed-sessions-v1"  # docs/security.md, docs/format.md
DEFAULT_PACK_SIZE = 32 * 1024 * 1024
# on object storage a request costs what a few hundred KiB of transfer does: blobs this close
# together in one pack come in one ranged read, the bytes between them read and dropped
REMOTE_READ_GAP = 256 * 1024
# the first read of a remote pack's table (table_tail): 1/32 of the pack, within these bounds
TABLE_TAIL_MIN = 1024
TABLE_TAIL_MAX = 16 * 1024
# compact the index after a take when its file is this big and this many times its pages in use
COMPACT_MIN = 1024 * 1024
COMPACT_RATIO = 1.5


@dataclass(frozen=True)
class RepoConfig:
    """The contents of ``config.json``."""

    id: str
    chunker: ChunkerParams
    compression_level: int = 3
    pack_size: int = DEFAULT_PACK_SIZE
    version: int = FORMAT_VERSION
    encryption: str = "none"  # or ENCRYPTION_SCHEME
    cipher: str = ""

    @property
    def encrypted(self) -> bool:
        return self.encryption != "none"

    def to_bytes(self) -> bytes:
        chunker = self.chunker.to_json()
        encryption: object = "none"
        if self.encrypted:
            chunker.pop("seed", None)  # a secret of the key material, never in clear
            encryption = {"scheme": self.encryption, "cipher": self.cipher, "ids": "blake3-keyed",
                          "padding": "128 buckets per power of two", "keys": "keys/"}
        return json.dumps(
            {
                "format": "snapstore",
                "version": FORMAT_VERSION_ENCRYPTED if self.encrypted else FORMAT_VERSION,
                "id": self.id,
                "chunker": chunker,
                "compression": {"algorithm": "zstd", "level": self.compression_level},
                "pack_size": self.pack_size,
                "encryption": encryption,
            },
            indent=2,
        ).encode() + b"\n"

    @classmethod
    def from_bytes(cls, raw: bytes) -> RepoConfig:
        try:
            data = json.loads(raw)
            if data.get("format") != "snapstore":
                raise FormatError("config.json is not a snapstore repository config")
            version = int(data["version"])
            encryption = data.get("encryption", "none")
            scheme, cipher = "none", ""
            if version == FORMAT_VERSION_ENCRYPTED and isinstance(encryption, dict):
                from snapstore.format.crypto import CIPHERS

                scheme, cipher = str(encryption.get("scheme")), str(encryption.get("cipher"))
                if scheme != ENCRYPTION_SCHEME or cipher not in CIPHERS:
                    raise FormatError(f"unsupported encryption {scheme!r} / {cipher!r} (a newer snap?)")
            elif version != FORMAT_VERSION:
                raise FormatError(f"unsupported repository format version {data['version']}")
            elif encryption != "none":
                raise FormatError(f"unsupported encryption {encryption!r}")
            return cls(
                encryption=scheme, cipher=cipher,
                id=str(data["id"]),
                chunker=ChunkerParams.from_json(data["chunker"]),
                compression_level=int(data["compression"]["level"]),
                pack_size=int(data.get("pack_size", DEFAULT_PACK_SIZE)),
                version=version,
            )
        except FormatError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise FormatError(f"malformed repository config.json: {exc}") from None


INTENTS = "intents"  # forget intents: see Repository.forget


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


def _sealed_failure(exc: Exception, blob_id: bytes, where: str, pack_hex: str) -> SnapError | None:
    """What a sealed blob that does not open means to the user: a write-only key (exit 18) or a
    corrupt chunk; None for anything else (a bug: raised as it is)."""
    from snapstore.format.crypto import DecryptError, NeedsFullKey

    if isinstance(exc, NeedsFullKey):
        return WriteOnlyKey("this repository's key is write-only: it cannot read what the repository holds")
    if isinstance(exc, DecryptError):
        return ChunkUnreadable(f"chunk {blob_id.hex()[:16]}{where} is corrupt ({exc})", blob_id, pack_hex)
    return None


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


def table_tail(size: int) -> int:
    """How many bytes of a remote pack's end to ask for first: enough for the table and footer
    of most packs, not much more. A table entry is 50 bytes and a blob at least ~120 (header and
    sealed frame), so a table is a few per cent of its pack unless its blobs are tiny; one that
    does not fit costs a second GET. A flat 16 KiB fetched every small pack whole: a fresh host
    of a repository of on-change takes (packs of a few KiB) downloaded all of it."""
    return min(size, max(TABLE_TAIL_MIN, min(TABLE_TAIL_MAX, size // 32)))


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
        self.writer = False  # opened to write (a remote writer announces its changes at close)
        self._announce_owed = False  # a writer of this host died before announcing its changes
        # pack -> its table and footer as an announcement carried them (read_pack_table takes them)
        self._announced_tails: dict[bytes, bytes] = {}
        self._synced_under: Generation | None = None  # the marker this index is up to date under
        self.finished_forgets: set[str] = set()  # snapshots whose killed forget this open finished
        self.healed: list[str] = []  # what this open repaired by itself (after a crash), for the log
        self._locks: list[locking.HeldLock] = []
        self._tree_cache: dict[bytes, list[Entry]] = {}
        self._tree_lock = threading.Lock()
        self.crypto: RepoCrypto | None = None  # set by open for an encrypted repository
        self.key_id = ""  # the key that unlocked it

    @property
    def remote(self) -> bool:
        return self.backend.remote

    # -- life cycle -----------------------------------------------------------------------
    @classmethod
    def init(cls, path: str, *, chunker: ChunkerParams | None = None, compression_level: int = 3,
             pack_size: int = DEFAULT_PACK_SIZE, endpoint: str | None = None, encryption: str = "none",
             password: bytes | None = None, kdf_profile: str = "default") -> RepoConfig:
        """Create a repository at ``path`` (a directory or an ``s3://`` URL); returns its config.
        ``encryption``: "none" or :data:`ENCRYPTION_SCHEME` (then ``password`` protects its first
        key; the key files are written before ``config.json``, whose existence makes a repository)."""
        location = parse_location(path)
        config = RepoConfig(
            id=secrets.token_hex(16), chunker=chunker or ChunkerParams(),
            compression_level=compression_level, pack_size=pack_size,
        )
        keyfile = None
        material = None
        if encryption != "none":
            from snapstore.format.crypto import DEFAULT_CIPHER, KeyMaterial
            from snapstore.format.keyfile import wrap_key

            if encryption != ENCRYPTION_SCHEME:
                raise UsageError(f"unknown encryption {encryption!r} (known: {ENCRYPTION_SCHEME}, none)")
            if not password:
                raise UsageError("an encrypted repository needs a password")
            material = KeyMaterial.generate(config.id, DEFAULT_CIPHER)
            config = replace(config, encryption=ENCRYPTION_SCHEME, cipher=material.cipher,
                             chunker=replace(config.chunker, seed=0), version=FORMAT_VERSION_ENCRYPTED)
            keyfile = wrap_key(material, password, profile=kdf_profile)
        if location.remote:
            cls._init_remote(location, config, endpoint, keyfile)
            cls._remember_key(config, material, keyfile, password)
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
            if keyfile is not None:
                from snapstore.repo.keystore import write_key

                write_key(LocalBackend(path), keyfile)
            LocalBackend(path).put_bytes("config.json", config.to_bytes())
        except OSError as exc:
            raise raise_os_error(exc, f"creating repository at {path}") from None
        cls._remember_key(config, material, keyfile, password)
        return config

    @staticmethod
    def _remember_key(config: RepoConfig, material: object, keyfile: object, password: bytes | None) -> None:
        """The new repository's key in this user's unlocked-key cache, tied to its password:
        the first take after init pays no Argon2id (a second, the first already did)."""
        if keyfile is None or password is None:
            return
        from snapstore.format.crypto import KeyMaterial
        from snapstore.format.keyfile import KeyFile
        from snapstore.repo.keystore import Unlocked, write_cache

        assert isinstance(material, KeyMaterial) and isinstance(keyfile, KeyFile)
        write_cache(cache_dir_for(config.id), Unlocked(material, keyfile), password)

    @classmethod
    def _init_remote(cls, location: Location, config: RepoConfig, endpoint: str | None,
                     keyfile: object = None) -> None:
        backend = open_backend(location, endpoint=endpoint)
        try:
            backend.check()
            if backend.size("config.json") is not None:
                raise RepositoryExists(f"a repository already exists at {location.url}")
            if not backend.is_empty():
                raise RepositoryExists(f"{location.url} is not empty; choose an empty or new prefix")
            if keyfile is not None:
                from snapstore.format.keyfile import KeyFile
                from snapstore.repo.keystore import write_key

                assert isinstance(keyfile, KeyFile)
                write_key(backend, keyfile)
            if backend.create_exclusive("config.json", config.to_bytes()) is None:
                raise RepositoryExists(f"a repository already exists at {location.url}")
        finally:
            backend.close()

    @classmethod
    def open(cls, path: str, *, mode: str = "read", wait: float = 0.0, command: str = "",
             check_index: bool = True, endpoint: str | None = None,
             password: PasswordSource | None = None) -> Repository:
        """Open with locks: ``read`` (shared), ``write`` (one writer; readers go on),
        ``exclusive`` (nobody else: gc, repair). ``path`` is a directory or an ``s3://`` URL
        (``endpoint``: the S3 endpoint, else ``$SNAP_S3_ENDPOINT`` or AWS's own). An encrypted
        repository is unlocked with ``password`` (else the environment's sources, else a prompt:
        :mod:`snapstore.repo.passwords`) or this user's unlocked-key cache.

        One path for every kind of location: read the config, find this host's cache
        (:func:`~snapstore.repo.index.cache_dir_for`), take the locks, open the index there
        (moving one from where older versions kept it, rebuilding one that is missing or
        cannot be mapped: a one-line note, never an error), unlock the keys, announce a lease
        where flock does not reach (remote), bring the index up to date with the repository's
        files (:meth:`sync`: takes killed after their record are rolled forward there) and
        finish forgets killed after their intent. With ``check_index`` a record that still
        cannot be indexed (its trees are in no readable pack) is refused: gc on such an index
        would take its data for garbage."""
        location = parse_location(path)
        backend = open_backend(location, endpoint=endpoint)
        if location.remote:
            backend = ChangeNoting(backend)  # a writer announces its changes (snapstore.repo.generation)
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
                index, note, building = open_index(cache_dir, legacy=legacy)
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
            repo._unlock(password)
            if location.remote:
                kind = {"read": "read", "write": "take", "exclusive": "gc"}[mode]
                repo.lease = Lease(backend, kind, command, codec=repo.lease_codec())
                try:
                    repo.lease.acquire(wait=wait)
                except RemoteAccessDenied:
                    if kind != "read":
                        raise
                    repo.lease = None  # read-only credentials: read without announcing it (gc cannot see us)
                if mode != "read":
                    # set before the first change, cleared after its announcement (close)
                    repo.writer = True
                    repo._announce_owed = index.writer_in_flight()
                    index.set_writer_in_flight(True)
            if note and not note.startswith("no index"):
                repo.healed.append(note)
            report = repo.sync(wait=wait, command=command, recount=mode != "read",
                               full=mode == "exclusive" or not check_index)  # gc, repair, verify list
            if note.startswith("no index") and report.changed:  # nothing to say of a new repository's
                repo.healed.append(note)
            if not building:  # a new index adds every record: none of them was interrupted
                repo.healed.extend(report.interrupted)
            repo.healed.extend(report.truncated)
            if report.blobs_lost:
                repo.healed.append(f"{report.blobs_lost} referenced blob(s) are in no pack (packs were lost): "
                                   "'snap verify' names what they belong to")
            if report.recounted and not building:
                repo.healed.append(f"recounted every reference ({report.recounted})")
            repo.healed.extend(repo.finish_forgets(tolerant=mode == "read"))
            if check_index and repo.can_read:
                # what this sync saw and could not index; a fresh listing here would also hold
                # records other hosts stored since, which is no damage
                stale = report.unindexed
                if stale:
                    raise RepositoryDamaged(
                        f"{len(stale)} snapshot record(s) in {backend.describe()} cannot be indexed "
                        f"(e.g. {stale[0][:8]}): their trees are in no readable pack; run 'snap verify'")
        except BaseException:
            repo.close()
            raise
        return repo

    def sync(self, *, wait: float = 0.0, command: str = "", recount: bool = False, full: bool = False) -> SyncReport:
        """Bring the index up to date with the repository's files (one process of this host
        at a time): other processes, users and hosts change them, and this host's index is a
        cache (:func:`snapstore.repo.indexsync.sync_index`). ``recount``: recount every
        reference when the index is flagged (a writer; gc needs exact counts, readers do not).

        A remote repository whose change marker is the one this index was last brought up to
        date under, with no gc lease, is not listed (:mod:`snapstore.repo.generation`); ``full``
        lists all the same (gc, repair, verify: they look for what nobody announced)."""
        marker = read_marker(self.backend) if self.remote else None
        gone: set[bytes] = set()
        gc_present, gc_lease = read_gc_lease_object(self.backend, self.lease_codec())
        if gc_lease is not None and gc_lease.alive() and (self.lease is None or gc_lease.owner != self.lease.owner):
            gone = {p for p in (pack_id_of(n) for n in gc_lease.deleting) if p is not None}
        in_flight = self._announce_owed if self.writer else self.remote and self.index.writer_in_flight()
        stored = self.index.synced_generation() if self.remote else None
        if (self.remote and not full and not (recount and self.index.recount_flag() is not None)
                and may_skip_sync(stored=stored, current=marker, gc_lease=gc_present, in_flight=in_flight)):
            self._synced_under = marker
            self.sync_report = SyncReport(skipped=True)
            return self.sync_report
        # behind by a few announcements: read them instead of listing (what it lacks, not the
        # repository); anything unusual lists
        changes = None
        if self.remote and not full and not gc_present and not in_flight:
            changes = read_changes(self.backend, stored, marker)
        lock = locking.acquire(os.path.join(self.cache_dir, "locks"), "sync", exclusive=True,
                               wait=max(wait, 600.0), command=command)
        try:
            try:
                report = sync_index(self, gone=gone, recount_flagged=recount,
                                    announced=None if changes is None else self._announced(changes))
            finally:
                self._announced_tails = {}
            report.announcements = len(changes or [])
            if self.remote:
                complete = (marker is not None and not gc_present and not in_flight and not report.unindexed
                            and not report.bad_packs)
                self._synced_under = marker if complete else None
                token = marker.stored if complete and marker is not None else None
                if token != stored:
                    self.index.set_synced_generation(token)
        finally:
            lock.release()
        self.sync_report = report
        return report

    def _announced(self, changes: list[Change]) -> tuple[set[str], dict[bytes, tuple[int, float]]]:
        """The records and packs of the repository as the index plus these announcements
        make them (what a listing would give: announcements never delete a pack)."""
        records = self.index.snapshot_ids()
        with self.index.read() as txn:
            packs = {pack: (size, 0.0) for pack, size, _count in self.index.iter_packs(txn)}
        self._announced_tails = {}  # for this sync only (a mount syncs again and again)
        for change in changes:
            records = (records | change.records) - change.forgotten
            for name, size in change.packs:
                pack = pack_id_of(name)
                if pack is not None:
                    packs.setdefault(pack, (size, 0.0))
                    tail = change.tails.get(name)
                    if tail is not None:
                        self._announced_tails[pack] = tail
        return records, packs

    def _announce_changes(self) -> None:
        """A remote writer's last act before its lease goes: a new marker token when it changed
        the repository (or inherited a dead writer's changes), then the in-flight flag cleared.
        When its token replaced the one its index was up to date under, the index is up to date
        under the new one (its own changes are in it), so its next open lists nothing either."""
        noted = self.backend if isinstance(self.backend, ChangeNoting) else None
        synced = self._synced_under.stored if self._synced_under is not None else None
        if (noted is not None and noted.changed) or self._announce_owed:
            changes = noted.changes if noted is not None else ChangeSet(whole=True)
            if self._announce_owed or self.lease is None or self.lease.kind == "gc":
                # a dead writer's changes are unknown; gc and repair delete packs
                changes = replace(changes, whole=True)
            try:
                new, replaced = announce(self.backend, changes)
                gc_present, gc_lease = read_gc_lease_object(self.backend, self.lease_codec())
            except (SnapError, OSError):
                return  # the flag stays: this host lists at its next open, its next writer announces
            mine = gc_lease is not None and self.lease is not None and gc_lease.owner == self.lease.owner
            alone = (replaced is not None and self._synced_under is not None
                     and replaced.token == self._synced_under.token)
            synced = new.stored if alone and (not gc_present or mine) else None
        self.index.set_writer_in_flight(False, synced=synced)

    def compact_index(self) -> tuple[int, int] | None:
        """Rewrite this host's index when its file is much bigger than what it holds (a first
        take of many files leaves about three times its records' size: random keys, half-full
        pages and the copies of big writes; :meth:`Index.compact`). Only a writer calls it,
        between commands' work (no transaction of this process open), and only when no other
        process has the index open and none is opening it (the cache's ``sync`` lock, not
        waited for): otherwise it is left for a later take. Returns the sizes before and after,
        or None when nothing was done."""
        index = self.index
        size, used = index.usage()
        if size < COMPACT_MIN or size < COMPACT_RATIO * used:
            return None
        try:
            lock = locking.acquire(os.path.join(self.cache_dir, "locks"), "sync", exclusive=True, wait=0.0,
                                   command="compact index")
        except RepositoryLocked:
            return None
        try:
            if index.opened_elsewhere():
                return None
            with index_errors("compacting the index", index):
                return index.compact()
        except (SnapError, OSError):
            return None  # a full disk, say: the index stays as it was, and the take is committed
        finally:
            lock.release()

    def close(self) -> None:
        if self.writer:
            self.writer = False
            try:
                self._announce_changes()  # before the lease goes: see snapstore.repo.generation
            except (SnapError, OSError):
                pass  # the index could not be written: the flag stays, and this host lists again
        elif isinstance(self.backend, ChangeNoting) and self.backend.changed:
            # a reader that finished a killed forget deleted records: other hosts hear of it too
            # (this host's in-flight flag belongs to its writers: left alone)
            try:
                announce(self.backend, self.backend.changes)
            except (SnapError, OSError):
                pass  # they see it at their next listing
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

    # -- encryption -----------------------------------------------------------------------
    def _unlock(self, password: PasswordSource | None) -> None:
        """Unlock an encrypted repository's keys (nothing to do for a plaintext one)."""
        if not self.config.encrypted:
            return
        from snapstore.format.crypto import RepoCrypto
        from snapstore.repo.keystore import unlock
        from snapstore.repo.passwords import PasswordOptions

        explicit = password is not None
        source = password if password is not None else PasswordOptions().current
        unlocked = unlock(self.backend, self.config.id, source, cache_dir=cache_dir_for(self.config.id),
                          read_cache=not explicit, check_password=PasswordOptions().given(), location=self.path)
        material = unlocked.material
        if material.cipher != self.config.cipher:
            raise FormatError(f"key {unlocked.key.id} is for cipher {material.cipher}, the config says "
                              f"{self.config.cipher}")
        self.crypto = RepoCrypto(material)
        # the real seed lives in the key material; config.json holds none
        self.config = replace(self.config, chunker=replace(self.config.chunker, seed=material.chunker_seed))
        self.key_id = unlocked.key.id

    def lease_codec(self) -> LeaseCodec | None:
        if self.crypto is None:
            return None
        from snapstore.format.crypto import LeaseNotes

        return LeaseNotes(self.crypto)

    @property
    def can_read(self) -> bool:
        """False with a write-only key: content (blobs, trees, records) cannot be decrypted."""
        return self.crypto is None or self.crypto.full

    def require_full_key(self, what: str) -> None:
        """Refuse ``what`` (a command) with a write-only key, in one line (exit 18)."""
        if not self.can_read:
            raise WriteOnlyKey(f"this repository's key is write-only: it can take snapshots but not {what}")

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """The id of a blob's raw bytes: BLAKE3, keyed with the id key when encrypted."""
        if self.crypto is None:
            return chunk_id(data)
        return self.crypto.ids.blob_id(data)

    def snapshot_with_id(self, snapshot: Snapshot) -> Snapshot:
        return snapshot.with_id(None if self.crypto is None else self.crypto.ids.snapshot_id)

    def _table_opener(self, pack: bytes) -> Callable[[bytes], bytes] | None:
        crypto = self.crypto
        if crypto is None:
            return None
        from snapstore.format.crypto import KIND_TABLE

        return lambda frame: crypto.open_shared(KIND_TABLE, pack, frame)

    def decode_payload(self, blob_id: bytes, blob_type: int, compression: int, payload: bytes | memoryview,
                       raw_len: int, pack_hex: str = "") -> bytes:
        """A blob's raw bytes from its pack payload: decrypted (encrypted repositories),
        decompressed and checked against its id. ChunkUnreadable when any step fails: a blob
        that does not authenticate or match is never returned."""
        where = f" in pack {pack_hex}" if pack_hex else ""
        code = compression
        body = payload
        crypto = self.crypto
        if crypto is not None or compression & ENCRYPTED:
            if crypto is None or not compression & ENCRYPTED:
                raise ChunkUnreadable(f"chunk {blob_id.hex()[:16]}{where} is not encrypted as this repository "
                                      "says (tampered?)", blob_id, pack_hex)
            try:
                code, body = crypto.decode_blob(blob_id, blob_type, payload)
            except Exception as exc:
                # the crypto module is imported here only when a frame fails (an import per
                # blob cost restore about 2 us a blob, 10,000 small files and more)
                mapped = _sealed_failure(exc, blob_id, where, pack_hex)
                if mapped is None:
                    raise
                raise mapped from None
            if code != compression & ~ENCRYPTED:
                raise ChunkUnreadable(f"chunk {blob_id.hex()[:16]}{where} is corrupt (compression differs from "
                                      "its table)", blob_id, pack_hex)
        try:
            data = decompress(code, body, raw_len)
        except ValueError as exc:
            raise ChunkUnreadable(f"chunk {blob_id.hex()[:16]}{where} is corrupt ({exc})", blob_id, pack_hex
                                  ) from None
        if self.blob_id(data) != blob_id:
            raise ChunkUnreadable(f"chunk {blob_id.hex()[:16]}{where} is corrupt (hash mismatch)", blob_id,
                                  pack_hex)
        return data

    def salvage_entry(self, entry: BlobEntry, payload: bytes) -> BlobEntry | None:
        """A blob found by scanning a pack whose table is lost, as its table entry would be, when
        it checks out (decrypts, decompresses, matches its id); else None. An encrypted pack's
        clear blob headers hide compression and raw length: they come from inside the frame."""
        if not entry.compression & 0x80:
            try:
                self.decode_payload(entry.id, entry.type, entry.compression, payload, entry.raw_len)
            except ChunkUnreadable:
                return None
            return entry
        if self.crypto is None or not self.crypto.full:
            return None
        from snapstore.format.crypto import DecryptError
        from snapstore.format.packfile import MAX_BLOB

        try:
            code, body = self.crypto.decode_blob(entry.id, entry.type, payload)
            data = decompress(code, body, -1, limit=MAX_BLOB)
        except (DecryptError, ValueError):
            return None
        if self.blob_id(data) != entry.id:
            return None
        return BlobEntry(entry.id, entry.type, ENCRYPTED | code, entry.offset, entry.stored_len, len(data))

    def record_bytes(self, snapshot: Snapshot) -> bytes:
        """A snapshot record as the repository stores it (sealed when encrypted)."""
        if self.crypto is None:
            return snapshot.to_bytes()
        return self.crypto.seal_record(snapshot.id, snapshot.to_bytes())

    def store_record(self, snapshot: Snapshot) -> None:
        self.backend.put_bytes(snapshot_name(snapshot.id), self.record_bytes(snapshot))

    def load_record(self, snap_id: str) -> Snapshot:
        """The record ``snapshots/<snap_id>.json`` (FileNotFoundError when gone; FormatError when it
        does not parse, does not authenticate, or is not the record its name says)."""
        raw = self.backend.get(snapshot_name(snap_id))
        if self.crypto is not None:
            from snapstore.format.crypto import NeedsFullKey

            try:
                raw = self.crypto.open_record(snap_id, raw)
            except NeedsFullKey:
                raise WriteOnlyKey("this repository's key is write-only: it cannot read snapshot records") from None
        snap = Snapshot.from_bytes(raw)
        if snap.id != snap_id:
            raise FormatError(f"{snapshot_name(snap_id)}: record name does not match its id")
        return snap

    def read_pins(self) -> set[str] | None:
        """The ids in ``pins.json`` (None when there is none or it does not parse)."""
        try:
            raw = self.backend.get("pins.json")
        except FileNotFoundError:
            return None
        try:
            if self.crypto is not None:
                from snapstore.format.crypto import KIND_PINS

                raw = self.crypto.open_shared(KIND_PINS, b"pins.json", raw)
            return {str(p) for p in json.loads(raw)}
        except (ValueError, TypeError, RepositoryDamaged):
            return None

    def write_pins(self, pins: set[str]) -> None:
        raw = json.dumps(sorted(pins)).encode()
        if self.crypto is not None:
            from snapstore.format.crypto import KIND_PINS

            raw = self.crypto.seal_shared(KIND_PINS, b"pins.json", raw)
        self.backend.put_bytes("pins.json", raw)

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

    def _decode(self, blob_id: bytes, loc: ChunkLocation, payload: bytes | memoryview) -> bytes:
        """Decrypt, decompress and check a blob's payload against its id."""
        return self.decode_payload(blob_id, loc.type, loc.compression, payload, loc.raw_len, loc.pack.hex())

    def read_blobs(self, blob_ids: list[bytes], max_span: int = 8 * 1024 * 1024
                   ) -> Iterator[tuple[bytes, bytes | ChunkUnreadable]]:
        """``(id, data or the error)`` for each id, in order. Blobs that lie next to each other
        in one pack (as a file's chunks usually do), or on object storage within
        :data:`REMOTE_READ_GAP` of each other, are fetched with one ranged read of up to
        ``max_span`` bytes: one request instead of one per chunk on object storage."""
        gap = REMOTE_READ_GAP if self.remote else 0
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
                if nxt is None or nxt.pack != first.pack or not 0 <= nxt.offset - end - BLOB_HEADER.size <= gap \
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
            # views, not slices: decryption and zstd read each blob where it lies in the span
            view = memoryview(raw)
            for blob_id, loc in span:
                at = loc.offset - first.offset
                try:
                    yield blob_id, self._decode(blob_id, loc, view[at : at + loc.stored_len])
                except ChunkUnreadable as exc:
                    yield blob_id, exc

    def in_pack_order(self, blob_ids: Iterable[bytes]) -> list[bytes]:
        """``blob_ids`` once each, sorted by where they are stored (pack, offset), ids the index
        does not know last: what :meth:`read_blobs` needs to read many small blobs (the small
        files of a restore) in few reads."""
        with self.index.read() as txn:
            placed = [(self.index.get_chunk(b, txn), b) for b in dict.fromkeys(blob_ids)]
        known = sorted(((loc.pack, loc.offset), b) for loc, b in placed if loc is not None)
        return [b for _key, b in known] + [b for loc, b in placed if loc is None]

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

    def prefetch_trees(self, tree_ids: list[bytes]) -> None:
        """Read the trees of ``tree_ids`` that are not cached yet into the tree cache, neighbours
        in one pack with one read (a directory's subtrees are written side by side): a walk that
        calls this with a directory's subdirectories then costs one request per tree pack run on
        object storage instead of one per directory. Unreadable trees are left out; reading them
        later raises as usual."""
        with self._tree_lock:
            wanted = [t for t in dict.fromkeys(tree_ids) if t not in self._tree_cache]
        if len(wanted) < 2:
            return
        for tree_id, data in self.read_blobs(wanted):
            if isinstance(data, ChunkUnreadable):
                continue
            try:
                entries = decode_tree(data)
            except FormatError:
                continue  # read_tree says what is wrong, if the walk gets there
            with self._tree_lock:
                if len(self._tree_cache) > 4096:
                    self._tree_cache.clear()
                self._tree_cache[tree_id] = entries

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
            # an incomplete snapshot (a required source was missing) is never "latest": name its id
            chosen = [s for s in snaps if (not tier or s.tier == tier) and not s.incomplete]
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
        self.store_record(snapshot)
        faults.crash_point("take-after-record")
        children = self._children_with(new_trees)
        try:
            self._commit_index(snapshot, packs, files, children, counted=True)
        except KeyError as exc:
            # a blob this take deduplicated against left this host's index while it ran (a sync
            # by another process dropped a pack that a gc elsewhere deleted): the commit was
            # not made, so the record goes too, and the next take stores that data again
            self.backend.delete(snapshot_name(snapshot.id))
            missing = exc.args[0].hex()[:16] if exc.args and isinstance(exc.args[0], bytes) else "?"
            raise ConcurrentChange(f"blob {missing} that this take deduplicated against was removed from the "
                                   "repository while it ran (a gc elsewhere); nothing was committed: run the take "
                                   "again") from None
        except WriteOnlyKey:
            # a write-only host met a tree it cannot read (one that no record of its index keeps
            # alive): it keeps its own record (take --due) without reference counts, which only
            # gc needs, and gc needs a full key, whose index sync counts them
            self._commit_index(snapshot, packs, files, children, counted=False)

    def _commit_index(self, snapshot: Snapshot, packs: Iterable[bytes], files: dict[bytes, CachedFile],
                      children: Callable[[bytes], list[bytes]], *, counted: bool) -> None:
        index = self.index
        with index.write() as txn:
            # a sync by another process of this host may have rolled the record forward already
            if not index.has_snapshot(txn, snapshot.id):
                if counted:
                    add_reference(TxnCounts(index, txn), bytes.fromhex(snapshot.root), children)
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
        """Drop snapshots: first an intent (``intents/forget-*.json``, the ids), then the index
        in one transaction, then the record files, then the intent. Killed anywhere after the
        intent is stored, the next command finishes the forget (:func:`finish_forgets`) instead
        of adding the records back. Returns how many blobs became unreferenced. A snapshot
        whose blobs are missing (damage) is forgotten too: what cannot be counted is skipped."""
        from snapstore.repo.indexsync import TolerantCounts, tolerant_children

        self.require_full_key("forget snapshots")
        chosen = list(snapshots)
        if not chosen:
            return 0
        name = f"{INTENTS}/forget-{secrets.token_hex(8)}.json"
        intent: str | None = name
        try:
            self.backend.put_bytes(name, json.dumps({"forget": sorted(s.id for s in chosen)}).encode())
        except (OSError, NoSpace) as exc:
            if not isinstance(exc, NoSpace) and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # a full disk (gc --keep frees space there): forget as before intents, where a kill
            # in the window below brings the snapshots back instead (nothing is lost)
            intent = None
        faults.crash_point("forget-after-intent")
        freed = 0
        unreadable: list[bytes] = []
        children = tolerant_children(self, unreadable)
        index = self.index
        with index.write() as txn:
            counts = TolerantCounts(index, txn)
            for snap in chosen:
                if not index.has_snapshot(txn, snap.id):
                    continue
                before = len(unreadable)
                freed += len(drop_reference(counts, bytes.fromhex(snap.root), children))
                index.delete_snapshot(txn, snap.id)
                if len(unreadable) > before:  # its children were not released: counts too high until a recount
                    index.flag_recount(txn, f"a tree of forgotten snapshot {snap.short_id} could not be read")
        for n, snap in enumerate(chosen):
            if n == 1:
                faults.crash_point("forget-mid-delete")
            self.backend.delete(snapshot_name(snap.id))
        if intent is not None:
            self.backend.delete(intent)
        return freed

    def forget_intents(self) -> dict[str, set[str]]:
        """The stored intents of forgets not finished yet: name -> snapshot ids."""
        out: dict[str, set[str]] = {}
        for name, _size in self.backend.list(INTENTS):
            if not name.rsplit("/", 1)[-1].startswith("forget-"):
                continue
            try:
                ids = json.loads(self.backend.get(name))["forget"]
                out[name] = {str(i) for i in ids}
            except FileNotFoundError:
                continue  # finished meanwhile
            except (ValueError, KeyError, TypeError):
                out[name] = set()  # torn while written: the forget had not begun, nothing to finish
        return out

    def finish_forgets(self, *, tolerant: bool = False) -> list[str]:
        """Finish forgets killed after storing their intent (see :meth:`forget`). The index
        sync already treats their snapshots as gone; this deletes their files. ``tolerant``
        (a reader): a repository this process cannot write to is left for the next writer."""
        from snapstore.repo.indexsync import SyncReport, drop_records

        done: list[str] = []
        for name, ids in sorted(self.forget_intents().items()):
            drop_records(self, self.index, sorted(ids), SyncReport())
            try:
                for snap_id in sorted(ids):
                    self.backend.delete(snapshot_name(snap_id))
                self.backend.delete(name)
            except (OSError, RemoteAccessDenied):
                if not tolerant:
                    raise
                return done
            self.finished_forgets |= ids
            if ids:
                done.append(f"finished an interrupted forget of {len(ids)} snapshot(s): "
                            + ", ".join(sorted(i[:8] for i in ids)))
        return done

    def follow_records(self) -> bool:
        """For a long-lived reader (the mount): sync the index when the repository's snapshot
        records are no longer those it holds (another process, user or host took or forgot
        one). True when it synced. On a remote repository whose marker is still the one the
        index was brought up to date under, that is one GET and no listing."""
        if self.remote and self._synced_under is not None:
            marker = read_marker(self.backend)
            if marker is not None and marker.token == self._synced_under.token:
                return False  # nothing announced since (snapstore.repo.generation)
            self.sync()
            return True
        if self.record_ids() == self.index.snapshot_ids():
            return False
        self.sync()
        return True

    def record_ids(self) -> set[str]:
        """Ids of the snapshot records in ``snapshots/`` (the truth)."""
        return {name.rsplit("/", 1)[-1][: -len(".json")] for name, _ in self.backend.list("snapshots")
                if name.endswith(".json")}

    def set_pin(self, snap: Snapshot, pinned: bool) -> None:
        with self.index.write() as txn:
            self.index.set_pin(txn, snap.id, pinned)
        pins = set(self.index.pinned())
        if self.remote:  # other hosts pin too: change only this snapshot in the shared file
            shared = self.read_pins()
            if shared is not None:
                pins = shared
            (pins.add if pinned else pins.discard)(snap.id)
        self.write_pins(pins)

    def read_pack_table(self, pack: bytes, size: int | None = None) -> list[BlobEntry]:
        """The blob table of a pack, read from its end (FormatError when it does not parse).
        ``size``, when the caller knows it from a listing, saves asking the backend."""
        name = pack_name(pack)
        if size is None:
            size = self.backend.size(name)
        if size is None:
            raise FileNotFoundError(name)
        opener = self._table_opener(pack)
        announced = self._announced_tails.pop(pack, None)
        if announced is not None:  # its table as its writer announced it: no GET when it parses
            try:
                entries = parse_table(announced, size, open_table=opener)
                if tiles_pack(entries, size - len(announced)):
                    return entries
            except (FormatError, NeedMore):
                pass
            # not this pack's (damaged, or a plaintext table of another pack): its own tail decides
        want = min(size, table_tail(size) if self.remote else 64 * 1024)
        tail = self.backend.get_range(name, size - want, want)
        try:
            return parse_table(tail, size, open_table=opener)
        except NeedMore as more:
            need = int(more.args[0])
            return parse_table(self.backend.get_range(name, size - need, need), size, open_table=opener)

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
