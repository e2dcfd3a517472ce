"""Replication: the first owner of a freshly fetched block asks the other owners to load it.

With ``replicas`` R > 1 a block should end on R distinct workers. The worker
that fetched a block from the UFS and is its first owner on the ring calls
``WorkerService.LoadBlocks`` on the other owners. This is best effort and
never slows a read down:

* :meth:`Replicator.submit` only queues (per peer) and returns;
* one sender task per peer drains its queue in batches of up to
  :data:`BATCH` blocks, with at most ``parallelism`` calls in flight overall;
* at most ``max_queued`` blocks wait; beyond that new ones are dropped and
  counted (a reader that misses on a replica fetches the block itself);
* a failed call is logged once per peer until a call to it succeeds again.

The peers fetch from the UFS themselves (LoadBlocks); a peer that already
holds the block answers ``already_cached`` and fetches nothing.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Sequence
from typing import Any

import grpc

from cachecluster.common.grpc_errors import error_from_rpc_error
from cachecluster.protos import worker_pb2, worker_pb2_grpc
from cachecluster.worker.block_key import BlockKey
from cachecluster.worker.placement import RingView

log = logging.getLogger("cachecluster.worker.replication")

BATCH = 64
"""Blocks in one LoadBlocks call at most."""
PEER_CHANNEL_OPTIONS = (("grpc.max_reconnect_backoff_ms", 2000),)
"""A restarted peer is reached again within seconds, not gRPC's default two minutes."""
CALL_TIMEOUT = 120.0
"""Seconds one replication call may take (a batch of fetches from a slow UFS)."""


class Replicator:
    """Queues blocks for the other owners and sends them LoadBlocks calls in the background."""

    def __init__(self, ring: RingView, *, parallelism: int = 4, max_queued: int = 10_000) -> None:
        self.ring = ring
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(max(1, parallelism))
        self._queues: dict[str, collections.deque[worker_pb2.BlockRef]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._failing: set[str] = set()
        self._queued = 0
        self._closed = False
        self.sent = 0
        """Blocks handed to peers in calls that succeeded."""
        self.dropped = 0
        """Blocks not replicated: queue full, peer unknown or its call failed."""

    @property
    def queued(self) -> int:
        """Blocks waiting to be sent."""
        return self._queued

    def submit(
        self,
        block_id: str,
        key: BlockKey,
        ufs_uri: str,
        offset: int,
        length: int,
        peers: Sequence[str],
    ) -> None:
        """Queue one block for each of ``peers`` (worker ids); never waits."""
        if self._closed:
            return
        for peer in peers:
            if peer == self.ring.worker_id:
                continue
            if self._queued >= self.max_queued:
                self.dropped += 1
                continue
            ref = worker_pb2.BlockRef(
                block_id=block_id,
                mount_id=key.mount_id,
                ufs_uri=ufs_uri,
                path=key.path,
                version=key.version,
                index=key.index,
                offset=offset,
                length=length,
            )
            self._queues.setdefault(peer, collections.deque()).append(ref)
            self._queued += 1
            if peer not in self._senders:
                task = asyncio.ensure_future(self._drain(peer))
                self._senders[peer] = task
                task.add_done_callback(functools.partial(self._sender_done, peer))

    async def wait_idle(self) -> None:
        """Wait until every queued block was sent (or dropped); for tests and shutdown."""
        while self._senders:
            await asyncio.gather(*list(self._senders.values()), return_exceptions=True)

    async def close(self) -> None:
        """Drop what is queued, cancel the calls in flight, close the channels."""
        self._closed = True
        tasks = list(self._senders.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()
        self._queued = 0
        channels = list(self._channels.values())
        self._channels.clear()
        for channel in channels:
            await channel.close()

    # ------------------------------------------------------------ internals

    def _sender_done(self, peer: str, task: asyncio.Task[None]) -> None:
        if self._senders.get(peer) is task:  # it ended early (cancelled or failed)
            del self._senders[peer]
            dropped = self._queues.pop(peer, None)
            if dropped:
                self._queued -= len(dropped)
                self.dropped += len(dropped)
        if not task.cancelled() and task.exception() is not None:
            log.error("replication to %s failed", peer, exc_info=task.exception())

    async def _drain(self, peer: str) -> None:
        queue = self._queues[peer]
        while queue:
            batch = [queue.popleft() for _ in range(min(BATCH, len(queue)))]
            self._queued -= len(batch)
            async with self._slots:
                await self._send(peer, batch)
        # No await since the queue was seen empty: a later submit starts a new sender.
        del self._queues[peer]
        del self._senders[peer]

    async def _send(self, peer: str, batch: list[worker_pb2.BlockRef]) -> None:
        endpoint = self.ring.peer(peer)
        if endpoint is None or not endpoint.grpc_port:
            self.dropped += len(batch)
            return
        stub = worker_pb2_grpc.WorkerServiceStub(self._channel(endpoint.target))
        try:
            reply = await stub.LoadBlocks(
                worker_pb2.LoadBlocksRequest(blocks=batch), timeout=CALL_TIMEOUT
            )
        except grpc.RpcError as error:
            self.dropped += len(batch)
            if peer not in self._failing:
                self._failing.add(peer)
                log.warning(
                    "replication to %s at %s failed: %s",
                    peer,
                    endpoint.target,
                    error_from_rpc_error(error),
                )
            return
        if peer in self._failing:
            self._failing.discard(peer)
            log.info("replication to %s at %s works again", peer, endpoint.target)
        failed = [result for result in reply.results if not result.ok]
        self.sent += len(batch) - len(failed)
        self.dropped += len(failed)
        if failed:
            log.debug(
                "replication to %s: %d of %d blocks failed, first: %s",
                peer,
                len(failed),
                len(batch),
                failed[0].error.message,
            )

    def _channel(self, target: str) -> grpc.aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            channel = grpc.aio.insecure_channel(target, options=PEER_CHANNEL_OPTIONS)
            self._channels[target] = channel
        return channel

    def stats(self) -> dict[str, Any]:
        """Counters for logs and tests."""
        return {"sent": self.sent, "dropped": self.dropped, "queued": self._queued}
