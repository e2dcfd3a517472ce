"""The worker's copy of the master's ring: who owns a block, and how to reach them.

A worker needs placement for one decision: after it fetched a block from the
UFS, is it the block's first owner, and if so which other workers should hold
a replica. It keeps the ring the master publishes (``GetRing``) and fetches it
again when the epoch in a heartbeat reply changes. The ring is built in a
thread (a 1,000-worker ring takes about half a second) and swapped in whole,
so lookups never see a half-built ring. While the master is away the last ring
stays in use.

The cluster's block size also lives here: it comes from the master (in
``RegisterWorker`` and ``GetRing`` replies), and a worker cannot load a block
before it knows it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import Unavailable
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.common.ring import HashRing, RingSnapshot, RingWorker
from cachecluster.protos import common_pb2, master_pb2, master_pb2_grpc

log = logging.getLogger("cachecluster.worker.placement")

GET_RING_TIMEOUT = 10.0
"""Seconds a GetRing call may take."""


@dataclasses.dataclass(frozen=True, slots=True)
class PeerEndpoint:
    """Where another worker's gRPC service listens."""

    worker_id: str
    host: str
    grpc_port: int

    @property
    def target(self) -> str:
        """The gRPC target ``host:port``."""
        return f"{self.host}:{self.grpc_port}"


class RingView:
    """The latest ring of the master, its epoch, replica count and block size.

    Methods other than :meth:`refresh` are cheap and never wait. Before the
    first ring arrives, :meth:`owners` is empty (so nothing is replicated).
    """

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._ring: HashRing | None = None
        self._epoch = 0
        self._replicas = 1
        self._block_size: int | None = None
        self._peers: dict[str, PeerEndpoint] = {}
        self._refresh_lock = asyncio.Lock()

    @property
    def epoch(self) -> int:
        """Epoch of the ring held (0 before the first one)."""
        return self._epoch

    @property
    def replicas(self) -> int:
        """Copies of each block the cluster wants."""
        return self._replicas

    @property
    def block_size(self) -> int | None:
        """The cluster's block size, or None while the master has not told it yet."""
        return self._block_size

    def require_block_size(self) -> int:
        """The block size, or :class:`Unavailable` when the master has not been reached yet."""
        if self._block_size is None:
            raise Unavailable("the worker has not reached the master yet: block size unknown")
        return self._block_size

    def set_block_size(self, block_size: int) -> None:
        """Take the block size from a master reply (ignored when not positive)."""
        if block_size > 0:
            if self._block_size not in (None, block_size):
                log.warning(
                    "cluster block size changed from %d to %d bytes", self._block_size, block_size
                )
            self._block_size = block_size

    def owners(self, key: BlockKey) -> list[str]:
        """Ids of the block's owners, first owner first; empty without a ring or block size."""
        ring = self._ring
        if ring is None or self._block_size is None:
            return []
        return ring.owners(key.placement_key(self._block_size), self._replicas)

    def peer(self, worker_id: str) -> PeerEndpoint | None:
        """The gRPC endpoint of a worker on the ring, or None."""
        return self._peers.get(worker_id)

    async def refresh(self, stub: master_pb2_grpc.MasterServiceStub) -> bool:
        """Fetch the ring if its epoch changed and swap it in; True when it changed.

        Raises our errors (``Unavailable`` when the master is away). Calls
        overlapping in time share one fetch.
        """
        async with self._refresh_lock:
            with rpc_errors():
                reply = await stub.GetRing(
                    master_pb2.GetRingRequest(known_epoch=self._epoch), timeout=GET_RING_TIMEOUT
                )
            if reply.unchanged:
                return False
            self.set_block_size(reply.block_size)
            await self.apply(reply)
            return True

    async def apply(self, reply: master_pb2.GetRingResponse) -> None:
        """Build the ring of a GetRing reply in a thread, then swap it in."""
        workers = tuple(
            RingWorker(
                member.worker_id,
                _data_address(member.endpoint),
                member.weight if member.weight > 0 else 1.0,
            )
            for member in reply.members
        )
        snapshot = RingSnapshot(workers=workers, vnodes=reply.vnodes or 1000)
        if reply.scheme:
            snapshot = dataclasses.replace(snapshot, scheme=reply.scheme)
        ring = await asyncio.to_thread(HashRing.from_snapshot, snapshot)
        self._peers = {
            member.worker_id: PeerEndpoint(
                member.worker_id, member.endpoint.host, member.endpoint.grpc_port
            )
            for member in reply.members
        }
        self._ring = ring
        self._replicas = max(1, reply.replicas)
        previous, self._epoch = self._epoch, reply.epoch
        log.info(
            "ring epoch %d -> %d: %d workers, %d replicas",
            previous,
            reply.epoch,
            len(workers),
            self._replicas,
        )


def _data_address(endpoint: common_pb2.WorkerEndpoint) -> str:
    return f"{endpoint.host}:{endpoint.data_port}"
