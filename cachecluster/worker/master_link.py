"""The worker's link to the master: register, heartbeat, block reports, ring refresh.

The master's view of a worker is soft state that the worker rebuilds:

1. **Register** with the endpoint, tier usage and every block id held: inline
   when there are few (:data:`INLINE_BLOCK_IDS`), else ``blocks_follow`` and
   a full ``ReportBlocks`` stream right after. The reply gives the heartbeat
   interval, the block size and the epoch.
2. **Heartbeat** every interval with tier usage, counters and block count;
   then, if blocks came or went since the last report, a ``ReportBlocks``
   stream with ``full=False`` and the deltas.
3. A heartbeat answered ``reregister`` (the master restarted or declared the
   worker lost), or any failed call, leads to a new registration with the full
   block list as soon as the master answers again.
4. When a reply carries another epoch than the ring the worker holds, the
   ring is fetched again (in the background: heartbeats keep their pace).

The link never ends the worker: while the master is away it logs one line,
keeps serving reads, and retries; when the master is back it logs one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc

from cachecluster.common.errors import CacheClusterError, Unavailable
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.protos import common_pb2, master_pb2, master_pb2_grpc
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.placement import RingView
from cachecluster.worker.service import tier_usage_protos, worker_counters

log = logging.getLogger("cachecluster.worker.master_link")

INLINE_BLOCK_IDS = 10_000
"""Block ids sent inside RegisterWorker at most; more go in a ReportBlocks stream."""
REPORT_CHUNK = 10_000
"""Block ids in one ReportBlocks message at most."""
DEFAULT_HEARTBEAT_INTERVAL = 1.0
"""Seconds between beats (and between tries while the master is away) until it says."""
MIN_HEARTBEAT_INTERVAL = 0.05
CALL_TIMEOUT = 10.0
"""Seconds a RegisterWorker or ReportBlocks call may take."""


class MasterLink:
    """Keeps one worker registered with the master; :meth:`run` until cancelled."""

    def __init__(
        self,
        *,
        stub: master_pb2_grpc.MasterServiceStub,
        master_address: str,
        worker_id: str,
        incarnation: int,
        endpoint: common_pb2.WorkerEndpoint,
        store: BlockStore,
        ring: RingView,
        version: str = "",
    ) -> None:
        self.stub = stub
        self.master_address = master_address
        self.worker_id = worker_id
        self.incarnation = incarnation
        self.endpoint = endpoint
        self.store = store
        self.ring = ring
        self.version = version
        self.interval = DEFAULT_HEARTBEAT_INTERVAL
        self.registered = asyncio.Event()
        """Set while the master knows this worker (cleared when it must register again)."""
        self.registrations = 0
        """Successful registrations so far (for tests and logs)."""
        self._reported: set[str] = set()
        self._away_since: float | None = None
        self._ring_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Register, then beat forever; never raises because the master is away."""
        try:
            while True:
                try:
                    if not self.registered.is_set():
                        await self.register()
                    await self.beat()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self._failed(error)
                await asyncio.sleep(self.interval)
        finally:
            if self._ring_task is not None:
                self._ring_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._ring_task

    async def register(self) -> None:
        """RegisterWorker with every block held (inline or as a full report that follows)."""
        block_ids = [block_id for block_id, _medium, _length in self.store.blocks()]
        inline = len(block_ids) <= INLINE_BLOCK_IDS
        request = master_pb2.RegisterWorkerRequest(
            worker_id=self.worker_id,
            incarnation=self.incarnation,
            endpoint=self.endpoint,
            tiers=tier_usage_protos(self.store),
            block_ids=block_ids if inline else [],
            blocks_follow=not inline,
            version=self.version,
        )
        with rpc_errors():
            reply = await self.stub.RegisterWorker(request, timeout=CALL_TIMEOUT)
        self.ring.set_block_size(reply.block_size)
        if reply.heartbeat_interval_ms > 0:
            self.interval = max(MIN_HEARTBEAT_INTERVAL, reply.heartbeat_interval_ms / 1000)
        if not inline:
            await self._report(full=True, added=block_ids, removed=[])
        self._reported = set(block_ids)
        self.registrations += 1
        self.registered.set()
        if self._away_since is not None:
            log.info(
                "master %s is back after %.1fs: registered again with %d blocks (epoch %d)",
                self.master_address,
                time.monotonic() - self._away_since,
                len(block_ids),
                reply.epoch,
            )
            self._away_since = None
        else:
            log.info(
                "registered with master %s: %d blocks, epoch %d, heartbeat every %.2fs",
                self.master_address,
                len(block_ids),
                reply.epoch,
                self.interval,
            )
        self._check_epoch(reply.epoch)

    async def beat(self) -> None:
        """One heartbeat, then the block deltas since the last report."""
        request = master_pb2.HeartbeatRequest(
            worker_id=self.worker_id,
            incarnation=self.incarnation,
            tiers=tier_usage_protos(self.store),
            counters=worker_counters(self.store.metrics),
            block_count=sum(usage.blocks for usage in self.store.usage()),
        )
        with rpc_errors():
            reply = await self.stub.Heartbeat(request, timeout=max(2 * self.interval, 2.0))
        if reply.reregister:
            log.info("master %s asks this worker to register again", self.master_address)
            self.registered.clear()
            await self.register()
            return
        await self.report_changes()
        self._check_epoch(reply.epoch)

    async def report_changes(self) -> None:
        """Send the blocks added and removed since the last report, if any."""
        current = {block_id for block_id, _medium, _length in self.store.blocks()}
        added = sorted(current - self._reported)
        removed = sorted(self._reported - current)
        if not added and not removed:
            return
        await self._report(full=False, added=added, removed=removed)
        self._reported = current

    async def _report(self, *, full: bool, added: Sequence[str], removed: Sequence[str]) -> None:
        requests = list(_report_chunks(self.worker_id, self.incarnation, full, added, removed))

        async def stream() -> AsyncIterator[master_pb2.ReportBlocksRequest]:
            for request in requests:
                yield request

        with rpc_errors():
            await self.stub.ReportBlocks(stream(), timeout=CALL_TIMEOUT)

    def _failed(self, error: BaseException) -> None:
        """A call failed: register again once the master answers; log going away once."""
        self.registered.clear()
        unreachable = isinstance(error, Unavailable | grpc.RpcError | OSError)
        if unreachable:
            if self._away_since is None:
                self._away_since = time.monotonic()
                log.warning(
                    "master %s unreachable (%s); serving on with the last ring, retrying",
                    self.master_address,
                    _one_line(error),
                )
            return
        if isinstance(error, CacheClusterError):
            log.warning("master %s refused a call: %s", self.master_address, _one_line(error))
        else:
            log.error("master link failed; retrying", exc_info=error)

    def _check_epoch(self, epoch: int) -> None:
        if epoch == self.ring.epoch or (self._ring_task is not None and not self._ring_task.done()):
            return
        self._ring_task = asyncio.ensure_future(self._refresh_ring())

    async def _refresh_ring(self) -> None:
        try:
            await self.ring.refresh(self.stub)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("could not fetch the ring from %s: %s", self.master_address, error)

    def status(self) -> dict[str, Any]:
        """Where the link stands, for logs and tests."""
        return {
            "registered": self.registered.is_set(),
            "registrations": self.registrations,
            "away": self._away_since is not None,
            "reported_blocks": len(self._reported),
            "interval": self.interval,
        }


def _report_chunks(
    worker_id: str, incarnation: int, full: bool, added: Sequence[str], removed: Sequence[str]
) -> Iterator[master_pb2.ReportBlocksRequest]:
    """ReportBlocks messages of at most :data:`REPORT_CHUNK` ids; at least one message."""
    items = [(True, block_id) for block_id in added] + [(False, block_id) for block_id in removed]
    first = True
    for start in range(0, max(1, len(items)), REPORT_CHUNK):
        chunk = items[start : start + REPORT_CHUNK]
        yield master_pb2.ReportBlocksRequest(
            worker_id=worker_id,
            incarnation=incarnation,
            full=full and first,
            added=[block_id for is_added, block_id in chunk if is_added],
            removed=[block_id for is_added, block_id in chunk if not is_added],
        )
        first = False


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__
