"""Bind mounts through util-linux ``mount`` and ``umount``.

A read-only bind takes two steps, as the kernel requires: ``mount --bind``,
then ``mount -o remount,bind,ro`` on the new mount (only that mount turns
read-only, not the FUSE mount it shows). When the second step fails the bind
is undone, so a target is never left writable by mistake.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from cachecluster.common.errors import CacheClusterError, ErrorKind
from cachecluster.csi.mountinfo import mount_at

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 30.0
"""A mount or umount that takes longer than this has hung (e.g. on a dead FUSE)."""

MAX_STACKED = 16
"""Mounts stacked on one target that :func:`unbind` removes at most."""


class MountFailed(CacheClusterError):
    """``mount`` or ``umount`` failed; the message has the command's own error line."""

    kind = ErrorKind.INTERNAL


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise MountFailed(f"{' '.join(command)}: no answer in {COMMAND_TIMEOUT_S:.0f}s") from None
    if process.returncode != 0:
        message = " ".join(stderr.decode(errors="replace").split()) or f"exit {process.returncode}"
        raise MountFailed(f"{' '.join(command)}: {message}")


async def bind(source: str | Path, target: str | Path, *, read_only: bool) -> None:
    """Bind ``source`` onto the existing folder ``target``, read-only when asked."""
    await _run("mount", "--bind", str(source), str(target))
    if not read_only:
        return
    try:
        await _run("mount", "-o", "remount,bind,ro", str(target))
    except MountFailed:
        await unbind(target)
        raise


async def unbind(target: str | Path) -> None:
    """Remove every mount at ``target``; a busy one is detached lazily (``umount -l``)."""
    for _ in range(MAX_STACKED):
        if mount_at(target) is None:
            return
        try:
            await _run("umount", str(target))
        except MountFailed as error:
            log.info("%s: %s; detaching it lazily", target, error)
            await _run("umount", "-l", str(target))
    if mount_at(target) is not None:
        raise MountFailed(f"{target}: still mounted after {MAX_STACKED} unmounts")
