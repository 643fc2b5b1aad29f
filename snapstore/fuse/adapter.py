"""The pyfuse3 operations of a snapstore mount: a thin translation over :class:`Namespace`.

This module owns the mapping between the namespace and the FUSE protocol: attributes to
:class:`pyfuse3.EntryAttributes`, kernel lookup counts, directory handles with stable readdir
offsets, and errors to errno values. It holds no storage logic. Every handler that could
modify something answers ``EROFS``; any other failure becomes a :class:`pyfuse3.FUSEError`
(damage in the repository: ``EIO``, logged), never an exception that would stop the mount.
File reads run on trio worker threads so that one slow chunk does not stall other requests.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pyfuse3
import trio

from snapstore.errors import RepositoryDamaged, SnapError
from snapstore.view.namespace import Attr, Namespace, Node

log = logging.getLogger("snapstore.mount")

NAME_MAX = 255
INLINE_FETCH_BYTES = 128 * 1024


class SnapshotOperations(pyfuse3.Operations):
    """Read-only FUSE operations over a :class:`Namespace`."""

    supports_dot_lookup = False  # no NFS export: the kernel never looks up "." or ".."
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, namespace: Namespace) -> None:
        super().__init__()
        self.ns = namespace
        self._dirs: dict[int, list[tuple[bytes, Node]]] = {}
        self._dir_handles = itertools.count(1)
        self._reported: set[tuple[int, str]] = set()

    # -- helpers -----------------------------------------------------------------------------
    @contextmanager
    def _errors(self, what: str, inode: int = 0) -> Iterator[None]:
        """Turn any failure into a FUSEError: OSError keeps its errno, damage gives EIO."""
        try:
            yield
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except RepositoryDamaged as exc:
            self._report(what, inode, exc.message)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except SnapError as exc:
            self._report(what, inode, exc.message)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            log.exception("%s failed on inode %d", what, inode)
            raise pyfuse3.FUSEError(errno.EIO) from None

    def _report(self, what: str, inode: int, message: str) -> None:
        if (inode, message) in self._reported:
            return
        if len(self._reported) > 10_000:
            self._reported.clear()
        self._reported.add((inode, message))
        try:
            path = self.ns.node(inode).path.decode("utf-8", "replace")
        except OSError:
            path = f"inode {inode}"
        log.error("%s %s: %s (EIO)", what, path, message)

    @staticmethod
    def entry_attributes(attr: Attr) -> pyfuse3.EntryAttributes:
        out = pyfuse3.EntryAttributes()
        out.st_ino = attr.inode
        out.generation = 0
        out.entry_timeout = attr.cache_seconds
        out.attr_timeout = attr.cache_seconds
        out.st_mode = attr.mode
        out.st_nlink = attr.nlink
        out.st_uid = attr.uid
        out.st_gid = attr.gid
        out.st_rdev = attr.rdev
        out.st_size = attr.size
        out.st_blksize = attr.blksize
        out.st_blocks = attr.blocks
        out.st_atime_ns = attr.mtime_ns
        out.st_mtime_ns = attr.mtime_ns
        out.st_ctime_ns = attr.mtime_ns
        return out

    # -- lookups and attributes ----------------------------------------------------------------
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        with self._errors("lookup", parent_inode):
            node = self.ns.node(parent_inode) if name == b"." else self.ns.lookup(parent_inode, name)
            attrs = self.entry_attributes(self.ns.attr(node))
            self.ns.ref(node)
            return attrs

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            self.ns.forget(inode, count)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        with self._errors("getattr", inode):
            return self.entry_attributes(self.ns.getattr(inode))

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        with self._errors("readlink", inode):
            return self.ns.readlink(inode)

    # -- directories ----------------------------------------------------------------------------
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        with self._errors("opendir", inode):
            listing = self.ns.readdir(inode)
        fh = next(self._dir_handles)
        self._dirs[fh] = listing  # offsets index this list: stable for the life of the handle
        return fh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self._dirs.get(fh)
        if listing is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        for index in range(start_id, len(listing)):
            name, node = listing[index]
            with self._errors("readdir", node.inode):
                attrs = self.entry_attributes(self.ns.attr(node))
            if not pyfuse3.readdir_reply(token, name, attrs, index + 1):
                break
            self.ns.ref(node)

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        raise pyfuse3.FUSEError(errno.ENOSYS)

    # -- files ------------------------------------------------------------------------------------
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_APPEND):
            raise pyfuse3.FUSEError(errno.EROFS)
        with self._errors("open", inode):
            self.ns.file_entry(inode)
        # Snapshot contents never change: let the kernel keep pages cached across opens.
        return pyfuse3.FileInfo(fh=inode, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        with self._errors("read", fh):
            # Cached chunks (the common case when streaming, thanks to read-ahead) and small
            # fetches are served inline: a thread hop costs more than they do.
            if self.ns.fetch_bytes(fh, off, size) <= INLINE_FETCH_BYTES:
                return self.ns.read(fh, off, size)
            return await trio.to_thread.run_sync(self.ns.read, fh, off, size)

    async def flush(self, fh: int) -> None:
        raise pyfuse3.FUSEError(errno.ENOSYS)  # nothing to flush: the kernel stops sending it

    async def release(self, fh: int) -> None:
        return None

    async def fsync(self, fh: int, datasync: bool) -> None:
        raise pyfuse3.FUSEError(errno.ENOSYS)  # nothing to sync: the kernel stops asking

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        out = pyfuse3.StatvfsData()
        out.f_bsize = 4096
        out.f_frsize = 4096
        out.f_blocks = 0
        out.f_bfree = 0
        out.f_bavail = 0
        out.f_files = self.ns.live_nodes()
        out.f_ffree = 0
        out.f_favail = 0
        out.f_namemax = NAME_MAX
        return out

    # Snapshots record no extended attributes: ENOSYS makes the kernel answer "not supported"
    # itself from then on, instead of asking for every ACL lookup of ``ls -l`` or ``cp -a``.
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        if mode & os.W_OK:
            raise pyfuse3.FUSEError(errno.EROFS)
        return True

    # -- everything that would change something: read-only ------------------------------------
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: int | None, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int, name_new: bytes,
                     flags: int, ctx: pyfuse3.RequestContext) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)
