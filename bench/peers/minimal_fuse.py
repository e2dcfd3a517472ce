"""The least read-only pyfuse3 server: a folder passed through, ``read`` = a mapping's slice.

Run: ``python -m bench.peers.minimal_fuse SOURCE MOUNTPOINT`` (foreground;
SIGTERM or SIGINT unmounts and exits). No cache, no blocks, no network: what
any FUSE file system built on pyfuse3 pays to serve bytes that are already in
RAM: the reply is a slice of the file's mapping (a memoryview), the cheapest
``read`` pyfuse3 takes. The peer suite mounts it over the tmpfs copy of the objects
(:class:`bench.peers.ceiling_fuse.Pyfuse3Minimal`) as the reference for the
mount's warm rows.
"""

from __future__ import annotations

import errno
import mmap
import os
import signal
import stat
import sys
from typing import Any

import pyfuse3
import trio

TIMEOUT_S = 300.0
"""Kernel entry and attribute cache: the files never change while mounted."""


class PassThrough(pyfuse3.Operations):
    """Serves ``source``'s tree read-only; inode numbers are handed out on lookup."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self._paths: dict[int, str] = {pyfuse3.ROOT_INODE: source}
        self._inodes: dict[str, int] = {source: pyfuse3.ROOT_INODE}
        self._open: dict[int, tuple[mmap.mmap | None, memoryview]] = {}
        self._serial = 0

    def _inode(self, path: str) -> int:
        inode = self._inodes.get(path)
        if inode is None:
            inode = self._inodes[path] = len(self._paths) + 1
            self._paths[inode] = path
        return inode

    def _attributes(self, inode: int) -> Any:
        try:
            found = os.lstat(self._paths[inode])
        except OSError as error:
            raise pyfuse3.FUSEError(error.errno or errno.EIO) from error
        attributes = pyfuse3.EntryAttributes()
        attributes.st_ino = inode
        mode = 0o555 if stat.S_ISDIR(found.st_mode) else 0o444
        attributes.st_mode = stat.S_IFMT(found.st_mode) | mode
        attributes.st_nlink = found.st_nlink
        attributes.st_size = found.st_size
        attributes.st_mtime_ns = attributes.st_ctime_ns = attributes.st_atime_ns = found.st_mtime_ns
        attributes.st_blksize = 1 << 20
        attributes.st_blocks = (found.st_size + 511) // 512
        attributes.entry_timeout = attributes.attr_timeout = TIMEOUT_S
        return attributes

    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        """The source's attributes, read-only."""
        return self._attributes(inode)

    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
        """The entry ``name`` of a folder."""
        path = os.path.join(self._paths[parent_inode], os.fsdecode(name))
        return self._attributes(self._inode(path))

    async def opendir(self, inode: int, ctx: Any) -> int:
        """The folder's inode is its handle."""
        return inode

    async def readdir(self, inode: int, start_id: int, token: Any) -> None:
        """The folder's entries in name order, from the ``start_id``-th."""
        folder = self._paths[inode]
        names = sorted(os.listdir(folder))
        for index in range(start_id, len(names)):
            name = names[index]
            attributes = self._attributes(self._inode(os.path.join(folder, name)))
            if not pyfuse3.readdir_reply(token, os.fsencode(name), attributes, index + 1):
                return

    async def open(self, inode: int, flags: int, ctx: Any) -> Any:
        """The source file mapped; the kernel may keep its pages."""
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise pyfuse3.FUSEError(errno.EROFS)
        with open(self._paths[inode], "rb") as file:
            size = os.fstat(file.fileno()).st_size
            mapped = mmap.mmap(file.fileno(), size, prot=mmap.PROT_READ) if size else None
        self._serial += 1
        self._open[self._serial] = (mapped, memoryview(mapped if mapped is not None else b""))
        return pyfuse3.FileInfo(fh=self._serial, keep_cache=True)

    async def read(self, fh: int, off: int, size: int) -> memoryview:  # type: ignore[override]
        """A slice of the mapping: pyfuse3 copies it into the reply."""
        return self._open[fh][1][off : off + size]

    async def release(self, fh: int) -> None:
        """Unmap the file."""
        mapped, view = self._open.pop(fh)
        view.release()
        if mapped is not None:
            mapped.close()


async def _serve() -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pyfuse3.main)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


def main(argv: list[str]) -> int:
    """Mount ``argv[0]`` at ``argv[1]`` until SIGTERM or SIGINT."""
    if len(argv) != 2:
        print("usage: python -m bench.peers.minimal_fuse SOURCE MOUNTPOINT", file=sys.stderr)
        return 2
    source, mountpoint = os.path.abspath(argv[0]), argv[1]
    options = set(pyfuse3.default_options) - {"default_permissions"}
    options |= {"fsname=minimal-pyfuse3", "ro"}
    pyfuse3.init(PassThrough(source), mountpoint, options)
    try:
        trio.run(_serve)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
