"""Recovery of broken FUSE binds: a periodic repair pass over the published targets.

When a runtime's FUSE process dies, every bind of its paths answers
``ENOTCONN``; binding the same path again after the FUSE pod has mounted anew
does not help those binds, they still point at the dead connection. The
loop here calls :meth:`VolumePublisher.repair` every interval: it unmounts a
stale target and binds its source again once the source is healthy. Pods see
the new bind when their volumeMount has ``mountPropagation: HostToContainer``.
"""

from __future__ import annotations

import asyncio
import logging

from cachecluster.csi.publisher import VolumePublisher

log = logging.getLogger(__name__)


async def rebind_forever(publisher: VolumePublisher, interval: float) -> None:
    """Repair stale targets every ``interval`` seconds until cancelled; errors are logged."""
    while True:
        try:
            repaired = await publisher.repair()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("repair pass failed")
        else:
            if repaired:
                log.info("re-bound %d target(s)", repaired)
        await asyncio.sleep(interval)
