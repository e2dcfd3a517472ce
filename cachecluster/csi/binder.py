"""Bind mounts through the mount(2) and umount2(2) system calls.

The calls are made in a worker thread (a call on a hung FUSE mount blocks)
rather than through util-linux ``mount`` in a child process: forking a
process that runs gRPC's threads can crash the child before it executes.

A read-only bind takes two calls, as the kernel requires: ``MS_BIND``, then
``MS_REMOUNT | MS_BIND | MS_RDONLY`` on the new mount (only that mount turns
read-only, not the FUSE mount it shows). When the second call fails the bind
is undone, so a target is never left writable by mistake.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import logging
import os
from pathlib import Path

from cachecluster.common.errors import CacheClusterError, ErrorKind
from cachecluster.common.mountinfo import mount_at

log = logging.getLogger(__name__)

MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MNT_DETACH = 0x2

MAX_STACKED = 16
"""Mounts stacked on one target that :func:`unbind` removes at most."""

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_void_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class MountFailed(CacheClusterError):
    """A mount or unmount system call failed; the message names the call, path and error."""

    kind = ErrorKind.INTERNAL


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise MountFailed(f"{what}: {os.strerror(code)} ({errno.errorcode.get(code, code)})")


def _bind(source: str, target: str, read_only: bool) -> None:
    _check(
        _libc.mount(source.encode(), target.encode(), None, MS_BIND, None),
        f"bind {source} on {target}",
    )
    if not read_only:
        return
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    try:
        _check(_libc.mount(None, target.encode(), None, flags, None), f"remount {target} read-only")
    except MountFailed:
        _libc.umount2(target.encode(), MNT_DETACH)
        raise


def _unmount(target: str) -> None:
    if _libc.umount2(target.encode(), 0) == 0:
        return
    code = ctypes.get_errno()
    log.info("%s: %s; detaching it lazily", target, os.strerror(code))
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"unmount {target}")


async def bind(source: str | Path, target: str | Path, *, read_only: bool) -> None:
    """Bind ``source`` onto the existing folder ``target``, read-only when asked."""
    await asyncio.to_thread(_bind, str(source), str(target), read_only)


async def unbind(target: str | Path) -> None:
    """Remove every mount at ``target``; a busy one is detached lazily (``MNT_DETACH``)."""
    for _ in range(MAX_STACKED):
        if mount_at(target) is None:
            return
        await asyncio.to_thread(_unmount, str(target))
    if mount_at(target) is not None:
        raise MountFailed(f"{target}: still mounted after {MAX_STACKED} unmounts")
