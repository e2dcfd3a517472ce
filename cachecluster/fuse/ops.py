"""pyfuse3 operations over an :class:`~cachecluster.client.client.AsyncClient`: translation only.

A mount shows one of three views of the cluster (:class:`MountView`): the
namespaces the token may read (``MOUNT/NS/DATASET/...``), the datasets of
one namespace, references included (``MOUNT/DATASET/...``), or one dataset
at the root (``MOUNT/...``, how a PVC sees it). Every answer comes from the
client: its metadata cache and read-ahead are the mount's; errors become an
errno through :func:`cachecluster.common.error_map.to_errno` and nowhere else.
Lookups in a folder looked into more than :data:`LIST_AFTER_MISSES` times
list it once, so a walk over its files costs one master call, not one a file.
Blocks whose files the client holds (passed by a same-host worker) are
answered without a round trip: as views of their mappings if made already,
else copied from the files on the loop's thread; others of a worker's memory
tier are mapped, and the views kept by the open file for the kernel's next
requests.

Reads are buffered (page cache) by default: ``keep_cache`` keeps a file's
pages while its version is unchanged, so re-reads never reach Python, and
``mmap`` works. ``direct_io`` (one option) sends 1 MiB requests straight to
us for streams read once, at the price of the page cache and of ``mmap``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import pyfuse3

from cachecluster.client.client import AsyncClient, AsyncFile
from cachecluster.client.master_api import FileInfo
from cachecluster.common.error_map import to_errno

log = logging.getLogger(__name__)

_T = TypeVar("_T")

DIR_MODE = stat.S_IFDIR | 0o555
FILE_MODE = stat.S_IFREG | 0o444
BLOCK_UNIT = 512
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT
CHUNK = 8 << 20
"""Sequential reads fetch aligned chunks of this size, the next one ahead, and
answer the kernel's 128 KiB-1 MiB requests with memoryviews of them: one
client call a chunk (the client reads 8 MiB at 1.5-1.8 GB/s, 128 KiB calls
at a fraction of that)."""
KEEP_CHUNKS = 4
KEEP_MAPPED = 2
"""Mapped blocks a handle keeps (the one being read and the one before, for
the kernel's read-ahead requests that arrive slightly out of order)."""
OPEN_PREFETCH = 1 << 20
"""Files up to this size are read whole as soon as they are opened: from the
block files the client holds (see :func:`_held_whole`), else fetched while the
kernel turns from OPEN to READ."""
NEAR_CHUNKS = 8
"""A read within this many chunks of the last one counts as sequential (the
kernel's concurrent read-ahead requests arrive slightly out of order)."""
LIST_AFTER_MISSES = 2
"""Lookups in a folder the mount has not listed yet that it answers with one
``stat`` each; the next one lists the folder (one master call for all its
entries, which the client then serves and lists again when they expire) rather
than one call a file. A single file looked up in a huge folder lists nothing."""
MAX_FOLDERS_TRACKED = 100_000
COLD_BLOCK_S = 0.02
"""A block the client waited this long for was fetched from the UFS: the file is
being read cold, and its blocks are mapped rather than copied (the mapping is
made while the reader waits for the UFS anyway, and later reads are views)."""


@dataclass(slots=True)
class _Handle:
    """An open file: its client file and its latest chunks (tasks, single-flight).

    ``lock``: one client call at a time per file, in arrival order (the
    client keeps its own read-ahead going underneath). ``mapped``: the latest
    whole blocks mapped from a same-host worker's memory tier, by index: the
    kernel's next requests within them are answered without asking the client
    again (a block's bytes never change: its id carries the file version the
    handle was opened at, and the mapping outlives an eviction of its file).
    """

    file: AsyncFile
    lock: asyncio.Lock
    block_size: int
    whole: memoryview | None = None
    """A small file's bytes, read at open from block files the client held."""
    chunks: dict[int, asyncio.Task[memoryview]] = field(default_factory=dict)
    mapped: dict[int, memoryview] = field(default_factory=dict)
    joined: bytearray = field(default_factory=bytearray)
    last: int = 0
    cold: bool = False
    """A block took :data:`COLD_BLOCK_S` or more to come: map blocks, don't copy them."""

    def near(self, index: int) -> bool:
        return self.last - 1 <= index <= self.last + NEAR_CHUNKS

    def chunk(self, index: int) -> asyncio.Task[memoryview]:
        task = self.chunks.get(index)
        if task is None:
            task = asyncio.ensure_future(self._fetch(index))
            self.chunks[index] = task
            while len(self.chunks) > KEEP_CHUNKS:  # the oldest; waiters keep theirs
                del self.chunks[next(iter(self.chunks))]
        self.last = max(self.last, index) if self.near(index) else index
        return task

    async def _fetch(self, index: int) -> memoryview:
        start = index * CHUNK
        buffer = bytearray(min(CHUNK, self.file.size - start))
        try:
            async with self.lock:
                got = await self.file.pread_into(start, buffer)
        except BaseException:
            if self.chunks.get(index) is asyncio.current_task():
                del self.chunks[index]
            raise
        return memoryview(buffer)[:got]

    def mapping_made(self, off: int, end: int) -> memoryview | None:
        """Bytes ``[off, end)`` within one block as a view of a mapping made already, or None.

        The handle's own, or one the client made for an earlier reader
        (:meth:`AsyncFile.mapped_view`): no round trip, nothing mapped anew.
        """
        index = off // self.block_size
        start = index * self.block_size
        if end > start + self.block_size:
            return None
        block = self.mapped.get(index)
        if block is None:
            block = self.file.mapped_view(start, min(self.block_size, self.file.size - start))
            if block is None:
                return None
            self._keep(index, block)
        return block[off - start : end - start]

    async def mapped_range(self, off: int, end: int) -> memoryview | None:
        """Bytes ``[off, end)`` within one block as a view of its mapping (made if need be)."""
        view = self.mapping_made(off, end)
        index = off // self.block_size
        start = index * self.block_size
        if view is not None or end > start + self.block_size:
            return view
        began = time.monotonic()
        block = await self.file.local_view(start, min(self.block_size, self.file.size - start))
        if block is None:
            return None
        self.cold = self.cold or time.monotonic() - began >= COLD_BLOCK_S
        self._keep(index, block)
        return block[off - start : end - start]

    def _keep(self, index: int, block: memoryview) -> None:
        self.mapped[index] = block
        while len(self.mapped) > KEEP_MAPPED:
            del self.mapped[next(iter(self.mapped))]

    def held_copy(self, off: int, end: int) -> memoryview | None:
        """Bytes ``[off, end)`` copied from block files the client holds, or None.

        For blocks not mapped yet: one ``preadv`` a block on this thread into
        the buffer the handle reuses (as :meth:`mapped_copy`: the reply is
        sent before this task yields), no round trip. Cheaper than mapping
        a block read once (a model after a fresh mount): populating a 4 MiB
        mapping took 1.7 ms here, copying its bytes 1.1 ms. Not for a file
        read cold (``cold``): its blocks are mapped for the reads after.
        """
        if self.cold:
            return None
        if len(self.joined) < end - off:
            self.joined = bytearray(end - off)
        target = memoryview(self.joined)[: end - off]
        return target if self.file.read_held(off, target) == end - off else None

    async def mapped_copy(self, off: int, end: int) -> memoryview | None:
        """Bytes ``[off, end)`` over block ends, copied from their mappings, or None.

        Into a buffer the handle reuses (a fresh one costs more than the copy):
        the copy happens after the last ``await`` and pyfuse3 sends the reply
        before this task yields, so a concurrent read never overwrites it
        before it is sent.
        """
        parts: list[memoryview] = []
        position = off
        while position < end:
            boundary = min(end, (position // self.block_size + 1) * self.block_size)
            part = await self.mapped_range(position, boundary)
            if part is None:
                return None
            parts.append(part)
            position = boundary
        if len(self.joined) < end - off:
            self.joined = bytearray(end - off)
        target = memoryview(self.joined)
        done = 0
        for part in parts:
            target[done : done + len(part)] = part
            done += len(part)
        return target[:done]

    async def exact(self, off: int, end: int) -> memoryview:
        buffer = bytearray(end - off)
        async with self.lock:
            got = await self.file.pread_into(off, buffer)
        return memoryview(buffer)[:got]


def _held_whole(file: AsyncFile) -> memoryview | None:
    """A small file's bytes from block files the client holds already, or None.

    One ``preadv`` on this thread, no round trip to a worker (see
    :meth:`AsyncFile.read_held`: the blocks are those of the version the
    file was opened at). The block files of the next files in its folder
    are then asked for, so that the reader going through the folder finds
    them held too.
    """
    buffer = bytearray(file.size)
    if file.read_held(0, buffer) != file.size:
        return None
    file.ask_siblings()
    return memoryview(buffer)


def _retrieved(task: asyncio.Task[memoryview]) -> None:
    """Mark a prefetch's outcome as seen (a failure reaches the read that awaits it)."""
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True, slots=True)
class MountView:
    """What the mount's root is: ``""`` (every namespace), ``"NS"`` or ``"NS/DATASET"``."""

    prefix: str = ""

    def full(self, relative: str) -> str:
        """The client path of a path relative to the mount root."""
        if not relative:
            return self.prefix
        return f"{self.prefix}/{relative}" if self.prefix else relative


class CacheClusterOperations(pyfuse3.Operations):
    """Lookup, getattr, readdir, open and read; every change is EROFS.

    ``attr_timeout`` (entry and attribute cache of the kernel) should be the
    client's metadata TTL: the kernel then asks again when the client would.
    """

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(
        self,
        client: AsyncClient,
        view: MountView,
        *,
        attr_timeout: float,
        direct_io: bool = False,
        on_init: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.on_init = on_init
        self.client = client
        self.view = view
        self.attr_timeout = attr_timeout
        self.direct_io = direct_io
        self._paths: dict[int, str] = {pyfuse3.ROOT_INODE: ""}
        self._inodes: dict[str, int] = {"": pyfuse3.ROOT_INODE}
        self._lookups: dict[int, int] = {}  # inode -> the kernel's lookup count of it
        self._next_inode = pyfuse3.ROOT_INODE + 1
        self._files: dict[int, _Handle] = {}
        self._dirs: dict[int, list[tuple[str, FileInfo]]] = {}
        self._next_fh = 1
        self._cached_version: dict[int, str] = {}
        self._told_size: dict[int, int] = {}  # inode -> the file size the kernel was told
        self._listed: set[str] = set()  # folders listed once: the client lists them again
        self._misses: dict[str, int] = {}  # folder -> lookups in it not yet listed
        self._uid = os.getuid()
        self._gid = os.getgid()

    def init(self) -> None:
        """The kernel's INIT is being answered: ``on_init`` (e.g. to raise read_ahead_kb)."""
        if self.on_init is not None:
            self.on_init()

    # ------------------------------------------------------------ helpers

    def _inode(self, relative: str) -> int:
        inode = self._inodes.get(relative)
        if inode is None:
            inode = self._next_inode
            self._next_inode += 1
            self._inodes[relative] = inode
            self._paths[inode] = relative
        return inode

    def _looked_up(self, relative: str) -> int:
        """The inode of ``relative``, counted once more as known to the kernel."""
        inode = self._inode(relative)
        if inode != pyfuse3.ROOT_INODE:
            self._lookups[inode] = self._lookups.get(inode, 0) + 1
        return inode

    @property
    def inode_count(self) -> int:
        """Inodes in the table (the root included)."""
        return len(self._paths)

    def _path(self, inode: int) -> str:
        try:
            return self._paths[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _attributes(self, inode: int, info: FileInfo) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = pyfuse3.InodeT(inode)
        attr.generation = 0
        attr.entry_timeout = self.attr_timeout
        attr.attr_timeout = self.attr_timeout
        attr.st_mode = pyfuse3.ModeT(DIR_MODE if info.is_dir else FILE_MODE)
        attr.st_nlink = 2 if info.is_dir else 1
        attr.st_uid = self._uid
        attr.st_gid = self._gid
        attr.st_size = info.size
        if not info.is_dir:
            self._told_size[inode] = info.size
        attr.st_blksize = 1 << 20
        attr.st_blocks = (info.size + BLOCK_UNIT - 1) // BLOCK_UNIT
        mtime_ns = int(info.mtime * 1e9)
        attr.st_atime_ns = mtime_ns
        attr.st_mtime_ns = mtime_ns
        attr.st_ctime_ns = mtime_ns
        return attr

    async def _stat(self, relative: str) -> FileInfo:
        if not relative:  # the root is there even while its namespace has no dataset
            return FileInfo.directory(self.view.prefix)
        folder = relative.rpartition("/")[0]
        if self._should_list(folder):
            try:
                await self.client.ls(self.view.full(folder))
            except Exception as exc:  # the stat below says what is wrong, if anything
                log.debug("listing %r for a lookup failed: %s", folder, exc)
            else:
                self._was_listed(folder)
        return await self.client.stat(self.view.full(relative))

    def _should_list(self, folder: str) -> bool:
        """Whether a lookup in ``folder`` should list it first (see LIST_AFTER_MISSES)."""
        if folder in self._listed:
            return False
        misses = self._misses.get(folder, 0) + 1
        if len(self._misses) >= MAX_FOLDERS_TRACKED:
            self._misses.clear()
        self._misses[folder] = misses
        return misses > LIST_AFTER_MISSES

    def _was_listed(self, folder: str) -> None:
        if len(self._listed) >= MAX_FOLDERS_TRACKED:
            self._listed.clear()
        self._listed.add(folder)
        self._misses.pop(folder, None)

    async def _call(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run one operation; any error becomes the errno of ``error_map``."""
        try:
            return await call()
        except pyfuse3.FUSEError:
            raise
        except Exception as exc:
            code = to_errno(exc)
            if code == errno.EIO:
                log.error("%s: %s", what, exc, exc_info=not isinstance(exc, OSError))
            else:
                log.debug("%s: %s (errno %d)", what, exc, code)
            raise pyfuse3.FUSEError(code) from exc

    # ------------------------------------------------------------ metadata

    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._path(parent_inode)
        text = os.fsdecode(name)
        if text == ".":
            relative = parent
        elif text == "..":
            relative = parent.rpartition("/")[0]
        else:
            relative = f"{parent}/{text}" if parent else text

        async def run() -> pyfuse3.EntryAttributes:
            info = await self._stat(relative)
            return self._attributes(self._looked_up(relative), info)

        return await self._call(f"lookup {relative}", run)

    async def getattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext | None = None
    ) -> pyfuse3.EntryAttributes:
        relative = self._path(inode)

        async def run() -> pyfuse3.EntryAttributes:
            return self._attributes(inode, await self._stat(relative))

        return await self._call(f"getattr {relative}", run)

    async def opendir(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileHandleT:
        relative = self._path(inode)

        async def run() -> pyfuse3.FileHandleT:
            entries = await self.client.ls(self.view.full(relative), detail=True)
            listing = [(entry.name, entry) for entry in entries]
            self._was_listed(relative)
            fh = self._next_fh
            self._next_fh += 1
            self._dirs[fh] = listing
            return pyfuse3.FileHandleT(fh)

        return await self._call(f"opendir {relative}", run)

    async def readdir(
        self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken
    ) -> None:
        listing = self._dirs.get(fh)
        if listing is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        for index in range(start_id, len(listing)):
            name, info = listing[index]
            relative = self._relative(info.path) or name
            inode = self._inode(relative)
            if not pyfuse3.readdir_reply(
                token,
                pyfuse3.FileNameT(os.fsencode(name)),
                self._attributes(inode, info),
                index + 1,
            ):
                break
            self._looked_up(relative)  # an entry sent counts as a lookup (readdirplus)

    def _relative(self, full: str) -> str:
        prefix = self.view.prefix
        if not prefix:
            return full
        return full[len(prefix) + 1 :] if full.startswith(prefix + "/") else ""

    async def forget(self, inode_list: Sequence[tuple[pyfuse3.InodeT, int]]) -> None:
        """The kernel dropped lookups of inodes: free those it no longer knows.

        The path gets a new inode when it is looked up again. Counts only ever
        err high (a reply the kernel dropped), so an inode the kernel still
        holds is never freed.
        """
        for inode, count in inode_list:
            left = self._lookups.get(inode, 0) - count
            if left > 0:
                self._lookups[inode] = left
                continue
            self._lookups.pop(inode, None)
            if inode == pyfuse3.ROOT_INODE:
                continue
            relative = self._paths.pop(inode, None)
            if relative is not None and self._inodes.get(relative) == inode:
                del self._inodes[relative]
            self._cached_version.pop(inode, None)
            self._told_size.pop(inode, None)

    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        self._dirs.pop(fh, None)

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = 1 << 20
        data.f_frsize = 1 << 20
        data.f_namemax = 255
        return data

    # ------------------------------------------------------------ reads

    async def open(
        self, inode: pyfuse3.InodeT, flags: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        relative = self._path(inode)

        async def run() -> pyfuse3.FileInfo:
            file = await self.client.open(self.view.full(relative))
            self._tell_size(inode, file.size)
            block_size = await self.client.block_size()
            fh = self._next_fh
            self._next_fh += 1
            handle = self._files[fh] = _Handle(file, asyncio.Lock(), block_size)
            if 0 < file.size <= OPEN_PREFETCH:  # the whole small file, held or fetched
                handle.whole = _held_whole(file)
                if handle.whole is None:  # fetched while the kernel turns to READ
                    handle.chunk(0).add_done_callback(_retrieved)  # a read reports its errors
            # Keep the kernel's pages while the version is the one they came from.
            version = file.info.version
            keep = self._cached_version.get(inode) == version
            self._cached_version[inode] = version
            return pyfuse3.FileInfo(
                fh=pyfuse3.FileHandleT(fh),
                direct_io=self.direct_io,
                keep_cache=keep and not self.direct_io,
                nonseekable=False,
            )

        return await self._call(f"open {relative}", run)

    def _tell_size(self, inode: pyfuse3.InodeT, size: int) -> None:
        """The file opened has another size than the kernel was told: its attributes go stale.

        The kernel ends reads at the size it holds (for up to ``attr_timeout``):
        a file changed in the UFS since then would read as the new bytes cut
        at the old length, neither version. Invalidated, the kernel asks
        ``getattr`` before it uses the size again (a ``read`` past it, an
        ``fstat``), and gets the opened version's.
        """
        told = self._told_size.get(inode)
        if told is None or told == size:
            return
        self._told_size[inode] = size
        try:
            pyfuse3.invalidate_inode(inode, attr_only=True)
        except OSError as exc:  # the kernel forgot the inode meanwhile: nothing stale
            log.debug("attributes of inode %d not invalidated: %s", inode, exc)

    async def read(  # type: ignore[override]  # any buffer: pyfuse3 takes a memoryview
        self, fh: pyfuse3.FileHandleT, off: int, size: int
    ) -> memoryview:
        handle = self._files.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        file = handle.file

        async def run() -> memoryview:
            end = min(off + size, file.size)
            if off >= end:
                return memoryview(b"")
            if handle.whole is not None:
                return handle.whole[off:end]
            index = off // CHUNK
            if index not in handle.chunks:  # else fetched already (a small file, at open)
                held = handle.mapping_made(off, end) or handle.held_copy(off, end)
                if held is not None:  # from a block file held: no round trip
                    return held
                if (end - 1) // handle.block_size == off // handle.block_size:
                    mapped = await handle.mapped_range(off, end)
                else:  # over a block end: one copy
                    mapped = await handle.mapped_copy(off, end)
                if mapped is not None:  # a same-host worker's block file
                    return mapped
            if (end - 1) // CHUNK != index or not (index in handle.chunks or handle.near(index)):
                handle.last = index
                return await handle.exact(off, end)  # random: exactly what was asked
            task = handle.chunk(index)
            if (index + 1) * CHUNK < file.size:
                handle.chunk(index + 1)  # ahead: fetched while the kernel copies this one
            chunk = await task
            start = index * CHUNK
            return chunk[off - start : min(end - start, len(chunk))]

        return await self._call(f"read {file.path}@{off}+{size}", run)

    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        handle = self._files.pop(fh, None)
        if handle is not None:
            handle.mapped.clear()
            for task in handle.chunks.values():
                task.cancel()
            await handle.file.close()

    async def close_all(self) -> None:
        """Close every open file (at unmount)."""
        for fh in list(self._files):
            await self.release(pyfuse3.FileHandleT(fh))

    # ------------------------------------------------------------ changes: read-only

    async def setattr(self, *args: object, **kwargs: object) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def write(self, fh: pyfuse3.FileHandleT, off: int, buf: bytes) -> int:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def create(
        self, *args: object, **kwargs: object
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mkdir(self, *args: object, **kwargs: object) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def unlink(self, *args: object, **kwargs: object) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rmdir(self, *args: object, **kwargs: object) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rename(self, *args: object, **kwargs: object) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)
