"""The worker follows the master's mounts, so their UFS backends are open before a first read.

:class:`MountWatcher` keeps one ``WatchMounts`` stream open to the master. The
master sends the whole mount set at once and again after every change; each
message goes to :meth:`MountResolver.prepare`, which opens new backends in the
background and drops the mounts of deleted datasets.

The watch is an optimisation: reads resolve an unknown mount themselves
(``GetMount``) whatever happens here. So the watcher never ends the worker:
while the master is away it retries quietly; a master that does not offer
``WatchMounts`` (an older version) is asked again only now and then. A stream
is reopened every :data:`REOPEN_AFTER` seconds (its deadline), so a
connection that died silently costs at most that long.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from cachecluster.protos import master_pb2, master_pb2_grpc
from cachecluster.worker.mounts import MountResolver, MountSpec

log = logging.getLogger("cachecluster.worker.mount_watch")

REOPEN_AFTER = 300.0
"""Seconds one stream lasts (its deadline) before it is opened again."""
RETRY_MIN = 0.25
RETRY_MAX = 5.0
"""Seconds between tries while the master is away (doubling from RETRY_MIN)."""
OLD_MASTER_RETRY = 60.0
"""Seconds between tries when the master does not know WatchMounts."""


class MountWatcher:
    """Feeds the master's mount set to a :class:`MountResolver`; :meth:`run` until cancelled."""

    def __init__(
        self,
        stub: master_pb2_grpc.MetadataServiceStub,
        resolver: MountResolver,
        *,
        master_address: str,
        reopen_after: float = REOPEN_AFTER,
    ) -> None:
        self.stub = stub
        self.resolver = resolver
        self.master_address = master_address
        self.reopen_after = reopen_after
        self.updates = 0
        """Mount sets received (for logs and tests)."""

    async def run(self) -> None:
        """Watch, and watch again after the stream ends; never raises but CancelledError."""
        delay = RETRY_MIN
        while True:
            try:
                await self._watch()
                delay = RETRY_MIN  # the stream ended cleanly (master stopping, deadline)
            except asyncio.CancelledError:
                raise
            except grpc.RpcError as error:
                code = error.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue  # the stream's lifetime is over: open the next at once
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    log.info(
                        "master %s does not offer WatchMounts: mounts open on their first read",
                        self.master_address,
                    )
                    delay = OLD_MASTER_RETRY
                else:
                    log.debug("mount watch on %s ended: %s", self.master_address, code)
            except Exception:
                log.warning("mount watch on %s failed", self.master_address, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, RETRY_MIN), RETRY_MAX)

    async def _watch(self) -> None:
        # A cancelled task cancels the call (grpc.aio does it when a read is cancelled).
        call = self.stub.WatchMounts(master_pb2.WatchMountsRequest(), timeout=self.reopen_after)
        async for reply in call:
            specs = [MountSpec.from_proto(mount) for mount in reply.mounts]
            self.updates += 1
            log.debug("master lists %d mount(s)", len(specs))
            self.resolver.prepare(specs)
