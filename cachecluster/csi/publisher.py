"""Publish, unpublish and repair bind mounts of FUSE paths, one operation at a time.

:class:`VolumePublisher` is the plugin's core, free of gRPC: ``node`` calls
:meth:`~VolumePublisher.publish` and :meth:`~VolumePublisher.unpublish`,
``rebind`` calls :meth:`~VolumePublisher.repair` periodically. One lock
serialises them, so a repair never races a publish of the same target.

A source is accepted only when it lies under the FUSE root the plugin serves
(``--fuse-root``) through no symbolic link, exists, answers ``stat`` and sits
on a FUSE mount: a PV
cannot bind an arbitrary host folder into a pod, and an empty folder where the
runtime's FUSE pod has not mounted yet is never bound in its place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cachecluster.common.errors import (
    AlreadyExists,
    CacheClusterError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from cachecluster.common.mountinfo import STALE_ERRNOS, mount_at, mount_holding
from cachecluster.csi import binder
from cachecluster.csi.state import Published, PublishedTargets

log = logging.getLogger(__name__)

STAT_TIMEOUT_S = 5.0
"""A FUSE path that does not answer ``stat`` in this time counts as unavailable."""


def _stat_live(path: str) -> os.stat_result:
    # statfs always asks the FUSE process (stat may answer from the kernel's
    # attribute cache for a while after the process died).
    os.statvfs(path)
    return os.stat(path)


async def _stat(path: str) -> os.stat_result:
    """``os.stat(path)`` of a path whose file system answers, off the event loop.

    A FUSE mount whose process died raises ``OSError`` (ENOTCONN), a hung one
    ``TimeoutError``.
    """
    return await asyncio.wait_for(asyncio.to_thread(_stat_live, path), STAT_TIMEOUT_S)


def is_stale(error: OSError) -> bool:
    """Whether ``error`` comes from a FUSE mount whose process died."""
    return error.errno in STALE_ERRNOS


@dataclass(frozen=True, slots=True)
class SourceState:
    """A healthy FUSE source: its ``stat`` (device and inode identify it)."""

    device: int
    inode: int


class VolumePublisher:
    """Bind mounts of FUSE paths under ``fuse_root`` onto targets, remembered in ``targets``."""

    def __init__(self, fuse_root: Path, targets: PublishedTargets) -> None:
        self.fuse_root = Path(os.path.abspath(fuse_root))
        self.targets = targets
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------ sources

    def check_source_path(self, volume_id: str, source: str) -> str:
        """``source`` made absolute and normal; refused unless it lies under the FUSE root."""
        if not os.path.isabs(source):
            raise InvalidArgument(f"volume {volume_id}: fusePath {source!r} is not absolute")
        normal = os.path.normpath(source)
        root = str(self.fuse_root)
        if normal != root and not normal.startswith(root.rstrip("/") + "/"):
            raise InvalidArgument(
                f"volume {volume_id}: fusePath {source} is outside the FUSE root {root} "
                "this plugin serves (--fuse-root)"
            )
        return normal

    async def probe_source(self, volume_id: str, source: str) -> SourceState:
        """The state of a healthy source, else the error that says what is wrong with it."""
        try:
            found = await _stat(source)
        except FileNotFoundError:
            raise NotFound(
                f"volume {volume_id}: fusePath {source} does not exist "
                "(dataset not registered on its runtime, or not in its FUSE view)"
            ) from None
        except TimeoutError:
            raise Unavailable(
                f"volume {volume_id}: fusePath {source} did not answer in {STAT_TIMEOUT_S:.0f}s"
            ) from None
        except OSError as exc:
            if is_stale(exc):
                raise Unavailable(
                    f"volume {volume_id}: the FUSE mount serving {source} is not connected "
                    "(its FUSE process died); retry once the runtime's FUSE pod is back"
                ) from None
            raise Unavailable(f"volume {volume_id}: fusePath {source}: {exc.strerror}") from None
        if not stat.S_ISDIR(found.st_mode):
            raise InvalidArgument(f"volume {volume_id}: fusePath {source} is not a directory")
        real = await asyncio.wait_for(asyncio.to_thread(os.path.realpath, source), STAT_TIMEOUT_S)
        if real != source:  # the bind would follow it, maybe out of the FUSE root
            raise InvalidArgument(
                f"volume {volume_id}: fusePath {source} passes through a symbolic link (to {real})"
            )
        holder = mount_holding(source)
        if holder is None or not holder.is_fuse:
            raise Unavailable(
                f"volume {volume_id}: fusePath {source} is not on a FUSE mount "
                "(the runtime's FUSE pod is not serving on this node)"
            )
        return SourceState(found.st_dev, found.st_ino)

    # ------------------------------------------------------------ publish

    async def publish(self, volume_id: str, target: str, source: str, *, read_only: bool) -> bool:
        """Bind ``source`` at ``target``; False when it already was, identically (idempotent).

        A stale bind at ``target`` (its FUSE died) is replaced; any other mount
        there, or a writable one when read-only is asked, is :class:`AlreadyExists`.
        A read-write bind shows the FUSE mount's own flags (read-only for a
        read-only dataset view).
        """
        source = self.check_source_path(volume_id, source)
        async with self._lock:
            wanted = await self.probe_source(volume_id, source)
            entry = mount_at(target)
            if entry is not None:
                try:
                    there = await _stat(target)
                except OSError as exc:
                    if not is_stale(exc):
                        raise
                    log.info("%s: stale bind (its FUSE died): replacing it", target)
                    await binder.unbind(target)
                else:
                    same = (there.st_dev, there.st_ino) == (wanted.device, wanted.inode)
                    if same and (entry.read_only or not read_only):
                        self.targets.put(Published(volume_id, target, source, read_only))
                        return False
                    mode = "read-only" if entry.read_only else "read-write"
                    raise AlreadyExists(
                        f"volume {volume_id}: {target} is already mounted ({entry.fstype} "
                        f"{entry.root}, {mode}), not as {source} "
                        f"{'read-only' if read_only else 'read-write'}"
                    )
            try:
                os.makedirs(target, exist_ok=True)
            except FileExistsError:
                raise InvalidArgument(
                    f"volume {volume_id}: target path {target} exists and is not a directory"
                ) from None
            await binder.bind(source, target, read_only=read_only)
            self.targets.put(Published(volume_id, target, source, read_only))
        log.info(
            "published %s: %s -> %s (%s)",
            volume_id,
            source,
            target,
            "read-only" if read_only else "read-write",
        )
        return True

    async def unpublish(self, volume_id: str, target: str) -> None:
        """Unmount everything at ``target`` and remove the folder; nothing there is fine."""
        async with self._lock:
            await binder.unbind(target)
            try:
                os.rmdir(target)
            except FileNotFoundError:
                pass
            except OSError as exc:  # not ours to delete: kubelet removes the rest
                log.warning("%s: unmounted but not removed: %s", target, exc.strerror)
            self.targets.remove(target)
        log.info("unpublished %s from %s", volume_id, target)

    # ------------------------------------------------------------ repair

    async def repair(self) -> int:
        """One pass over the published targets: re-bind those whose FUSE came back.

        A target whose folder is gone (kubelet cleaned it up) is forgotten; one
        whose FUSE is still down is left for the next pass. Returns how many
        targets were bound again.
        """
        repaired = 0
        for record in self.targets.all():
            async with self._lock:
                if self.targets.get(record.target) != record:
                    continue  # unpublished or published anew meanwhile
                try:
                    repaired += await self._repair_one(record)
                except (Unavailable, NotFound) as waiting:  # the FUSE is not back yet
                    log.debug("%s: %s", record.target, waiting)
                except CacheClusterError as error:  # the next pass tries again
                    log.warning("%s: repair failed: %s", record.target, error)
        return repaired

    async def _repair_one(self, record: Published) -> bool:
        try:
            await _stat(record.target)
        except FileNotFoundError:
            log.info("%s: gone; forgetting it", record.target)
            self.targets.remove(record.target)
            return False
        except TimeoutError:
            return False
        except OSError as exc:
            if not is_stale(exc):
                log.warning("%s: %s", record.target, exc.strerror)
                return False
        else:
            return False  # healthy, or not mounted (then not ours to restore)
        await self.probe_source(record.volume_id, record.source)  # raises while still down
        log.warning(
            "%s: its FUSE process died and is back: binding %s again", record.target, record.source
        )
        await binder.unbind(record.target)
        await binder.bind(record.source, record.target, read_only=record.read_only)
        return True
