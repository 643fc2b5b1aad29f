"""The one pack writer: every pack file snapstore writes (take, copy, gc, repair) goes through here.

A blob reaches a pack in two steps, kept apart on purpose:

1. **Encoding** (:func:`encode_blob`): the raw bytes of a blob become the payload stored in a
   pack, and a code saying how (today: zstd, or the raw bytes when zstd does not shrink them;
   codes in :mod:`snapstore.format.compress`). It is the one place where a payload is made;
   take calls it on its compressor threads. Per-blob encryption belongs exactly here, after
   compression (an AEAD over the compressed bytes, with the blob id as associated data), and its
   inverse next to the decompression in ``Repository._decode``. copy, gc and repair never
   encode: they move payloads that are already encoded, unchanged.
2. **The sink** (:class:`PackSink`): appends encoded payloads to the open pack of their blob type
   (data and trees in separate packs), and finishes each full pack. The sink does not look inside
   a payload, so it does not care how it was encoded. The pack table and footer are written by
   :meth:`snapstore.format.packfile.PackWriter.finish`; encryption of the table goes there (and
   in ``parse_table`` on the read side).

Finishing a pack, in this order, on finisher threads (``parallel`` of them: a remote backend
uploads several packs at once, as its ``parallel_puts`` says; compression goes on meanwhile):

- the pack is written in the backend's local ``tmp/`` directory, flushed and fsynced;
- it is re-read from disk: the BLAKE3 of every byte must equal the BLAKE3 of what was written,
  and the table parsed from the bytes read must list exactly the blobs that were added;
- only then is it put into the backend (``packs/``: rename + directory fsync, or an upload);
- then the caller's ``on_stored`` hook runs (take and copy index the pack there, as pending);
  gc and repair index what :meth:`PackSink.flush` returns in their own transaction, and delete
  the packs it replaces only after that.

Any failure (I/O, disk full, a remote error, a read-back mismatch, an error in ``on_stored``)
stops the sink: later ``add`` calls raise it, ``flush`` raises it, and :meth:`PackSink.abort`
removes every temporary file, lets ``on_discard`` un-index what was indexed, and deletes from
the backend every pack stored since the last :meth:`PackSink.mark_committed`. The caller then
commits nothing, so the old packs are untouched. (A take on a remote repository keeps its stored
packs: another host may already deduplicate against them; they stay pending and gc frees them
after the safety window, as after a killed take.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3

from snapstore import faults
from snapstore.errors import FormatError, RepositoryDamaged, SnapError
from snapstore.format.chunker import ID_SIZE
from snapstore.format.compress import compress
from snapstore.format.packfile import BlobEntry, NeedMore, PackWriter, parse_table
from snapstore.repo.repository import pack_name
from snapstore.storage.backend import Backend, raise_os_error

if TYPE_CHECKING:
    from snapstore.format.crypto import RepoCrypto


@dataclass(frozen=True, slots=True)
class EncodedBlob:
    """A blob as stored in a pack: ``code`` says how ``payload`` was made from ``raw_len`` bytes."""

    code: int
    payload: bytes
    raw_len: int


def encode_blob(blob_id: bytes, data: bytes, level: int, *, blob_type: int = 0,
                crypto: RepoCrypto | None = None) -> EncodedBlob:
    """The one encoding step: a blob's raw bytes -> the payload a pack stores.

    zstd at ``level`` with a raw fallback; in an encrypted repository (``crypto``) the
    compressed body is then sealed, padded, with the blob's id and type as associated data
    (snapstore.format.crypto), and the code gets the ``ENCRYPTED`` flag.
    """
    code, payload = compress(data, level)
    if crypto is not None:
        from snapstore.format.packfile import ENCRYPTED

        return EncodedBlob(ENCRYPTED | code, crypto.encode_blob(blob_id, blob_type, code, payload), len(data))
    return EncodedBlob(code, payload, len(data))


@dataclass(frozen=True, slots=True)
class StoredPack:
    """A pack that was checked and put into the backend."""

    id: bytes
    size: int
    entries: tuple[BlobEntry, ...]


class PackSink:
    """Writes packs of blobs to a backend, each one checked before anything refers to it.

    ``add`` may be called from several threads at once. ``on_stored(pack)`` runs on a finisher
    thread after the pack is in the backend; ``on_discard([(pack id, blob ids), ...])`` runs in
    :meth:`abort` before stored packs are deleted (to un-index them). ``verify=False`` skips
    the read-back (take's ``--verify none``); everything else is the same.
    """

    def __init__(self, backend: Backend, *, pack_size: int, parallel: int = 1, verify: bool = True,
                 on_stored: Callable[[StoredPack], None] | None = None,
                 on_discard: Callable[[list[tuple[bytes, list[bytes]]]], None] | None = None,
                 delete_on_abort: bool = True, what: str = "writing pack",
                 crypto: RepoCrypto | None = None) -> None:
        """``crypto``: an encrypted repository's keys (each pack's table is sealed)."""
        self.backend = backend
        self.crypto = crypto
        self.pack_size = pack_size
        self.verify = verify
        self.on_stored = on_stored
        self.on_discard = on_discard
        self.delete_on_abort = delete_on_abort
        self.what = what
        self.tmp_dir = backend.local_tmp_dir()
        self._lock = threading.Lock()
        self._writers: dict[int, tuple[bytes, PackWriter]] = {}
        self._finisher = ThreadPoolExecutor(max(1, parallel), thread_name_prefix="snap-pack")
        self._finishing: list[Future[StoredPack]] = []
        self._failure: BaseException | None = None
        # stored, not yet referenced by a commit: (pack id, its blob ids joined), 32 bytes a blob
        # rather than a BlobEntry (~110), as a take of many small files holds them to its end
        self._uncommitted: list[tuple[bytes, bytes]] = []
        self._since_flush: list[StoredPack] = []
        self._closed = False
        self.bytes_written = 0  # payload and header bytes appended (what the take reports as stored)
        self.blobs_written = 0
        self.packs_checked = 0
        self.packs_stored = 0

    def _sealer(self, pack_id: bytes) -> Callable[[bytes], bytes] | None:
        crypto = self.crypto
        if crypto is None:
            return None
        from snapstore.format.crypto import KIND_TABLE

        return lambda table: crypto.seal_shared(KIND_TABLE, pack_id, table)

    def _opener(self, pack_id: bytes) -> Callable[[bytes], bytes] | None:
        crypto = self.crypto
        if crypto is None:
            return None
        from snapstore.format.crypto import KIND_TABLE

        return lambda frame: crypto.open_shared(KIND_TABLE, pack_id, frame)

    # -- appending --------------------------------------------------------------------------
    def add(self, blob_id: bytes, blob_type: int, blob: EncodedBlob) -> BlobEntry:
        """Append one encoded blob to the open pack of ``blob_type``; hand a full pack to the
        finisher. Raises the failure of any earlier pack (then nothing more is written)."""
        if self._failure is not None:
            raise self._failure
        with self._lock:
            current = self._writers.get(blob_type)
            if current is None:
                pack_id = os.urandom(16)
                path = os.path.join(self.tmp_dir, f"{pack_id.hex()}.pack.tmp")
                try:
                    current = self._writers[blob_type] = (pack_id, PackWriter(path, seal_table=self._sealer(pack_id)))
                except OSError as exc:
                    raise self._fail(raise_os_error(exc, f"{self.what} {pack_id.hex()}")) from None
            writer = current[1]
            before = writer.size
            try:
                entry = writer.add(blob_id, blob_type, blob.code, blob.payload, blob.raw_len)
            except OSError as exc:
                raise self._fail(raise_os_error(exc, f"{self.what} {current[0].hex()}")) from None
            self.bytes_written += writer.size - before
            self.blobs_written += 1
            if writer.size >= self.pack_size:
                del self._writers[blob_type]
                self._finishing.append(self._finisher.submit(self._finish, *current))
                self._reap()
        return entry

    def _fail(self, exc: BaseException) -> BaseException:
        if self._failure is None:
            self._failure = exc
        return self._failure

    def _reap(self) -> None:
        """Drop finished futures (called with the lock held); their failures are in _failure."""
        self._finishing = [f for f in self._finishing if not f.done()]

    # -- finishing --------------------------------------------------------------------------
    def _finish(self, pack_id: bytes, writer: PackWriter) -> StoredPack:
        if self._failure is not None:  # another pack failed: write nothing more
            writer.abort()
            raise self._failure
        try:
            digest = writer.finish()
            faults.flip_pack_byte(writer.path)
            if self.verify:
                self._check(pack_id, writer.path, digest, writer.entries)
            self.backend.put_file(pack_name(pack_id), writer.path)
        except OSError as exc:
            writer.abort()
            raise self._fail(raise_os_error(exc, f"{self.what} {pack_id.hex()}")) from None
        except BaseException as exc:
            writer.abort()
            raise self._fail(exc) from None
        pack = StoredPack(pack_id, writer.size, tuple(writer.entries))
        with self._lock:
            self._uncommitted.append((pack_id, b"".join(e.id for e in pack.entries)))
            self.packs_stored += 1
            if self.verify:
                self.packs_checked += 1
        try:
            if self.on_stored is not None:
                self.on_stored(pack)
        except OSError as exc:
            raise self._fail(raise_os_error(exc, f"indexing pack {pack_id.hex()}")) from None
        except BaseException as exc:
            raise self._fail(exc) from None
        if self.on_stored is not None:
            # the entries were handed over: flush() returns the pack without them, so that what
            # the sink holds until then does not grow with the number of blobs
            pack = StoredPack(pack.id, pack.size, ())
        with self._lock:
            self._since_flush.append(pack)
        return pack

    def _check(self, pack_id: bytes, path: str, digest: str, entries: list[BlobEntry]) -> None:
        """Re-read the pack from disk: the same bytes as written, and a table listing the blobs added."""
        hasher = blake3.blake3()
        tail = b""
        size = 0
        with open(path, "rb") as handle:
            while block := handle.read(4 * 1024 * 1024):
                hasher.update(block)
                tail = block  # the table is parsed from the bytes read back, not from memory
                size += len(block)
        bad = f"pack {pack_id.hex()} reads back different from what was written; nothing refers to it"
        if hasher.hexdigest() != digest:
            raise RepositoryDamaged(bad)
        try:
            opener = self._opener(pack_id)
            try:
                table = parse_table(tail, size, open_table=opener)
            except NeedMore as more:
                with open(path, "rb") as handle:
                    handle.seek(size - int(more.args[0]))
                    table = parse_table(handle.read(), size, open_table=opener)
        except FormatError:
            raise RepositoryDamaged(bad) from None
        if table != entries:
            raise RepositoryDamaged(bad)

    def flush(self) -> list[StoredPack]:
        """Finish every open pack and wait for all of them; returns the packs stored since the
        last flush (in the order they were stored; without their entries when ``on_stored`` had
        them). Raises the first failure."""
        with self._lock:
            for pack_id, writer in self._writers.values():
                self._finishing.append(self._finisher.submit(self._finish, pack_id, writer))
            self._writers.clear()
            waiting = list(self._finishing)
            self._finishing = []
        for fut in waiting:
            try:
                fut.result()
            except BaseException as exc:  # noqa: BLE001 - kept, raised after all have settled
                self._fail(exc)
        if self._failure is not None:
            raise self._failure
        with self._lock:
            done, self._since_flush = self._since_flush, []
        return done

    def mark_committed(self) -> None:
        """The caller committed a transaction that refers to every pack stored so far: an abort
        from now on keeps them."""
        with self._lock:
            self._uncommitted.clear()

    def close(self) -> None:
        """Stop the finisher threads (after a successful :meth:`flush`)."""
        if not self._closed:
            self._closed = True
            self._finisher.shutdown(wait=True)

    def abort(self) -> None:
        """Stop after a failure (or an interrupt): nothing half-written stays behind.

        Queued packs are dropped, running ones are waited for, every temporary file is removed;
        the packs stored since the last :meth:`mark_committed` are handed to ``on_discard`` and
        then deleted from the backend (unless ``delete_on_abort`` is off).
        """
        self._fail(SnapError(f"{self.what}: stopped"))
        self._closed = True
        self._finisher.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for _pack_id, writer in self._writers.values():
                writer.abort()
            self._writers.clear()
            stored, self._uncommitted = self._uncommitted, []
        if not stored or not self.delete_on_abort:
            return
        if self.on_discard is not None:
            # un-index first: the index never points at a deleted pack
            self.on_discard([(pack_id, [ids[i : i + ID_SIZE] for i in range(0, len(ids), ID_SIZE)])
                             for pack_id, ids in stored])
        for pack_id, _ids in stored:
            try:
                self.backend.delete(pack_name(pack_id))
            except (OSError, SnapError):
                pass  # unindexed: the next gc deletes it as an orphan
