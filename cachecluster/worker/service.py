"""The worker's gRPC service: LoadBlocks, EvictBlocks, GetStats.

Called by the master (DataLoad, eviction), by other workers (replication) and
by ``cachecluster status``. Errors of a whole call go through
``@grpc_servicer``; the error of one block in a batch is an ``ItemError`` in
its result, so one bad block never fails the others.

The helpers :func:`tier_usage_protos` and :func:`worker_counters` turn the
store's state into the messages the master link sends in heartbeats too.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from cachecluster.common.block_key import BlockKey, is_block_id
from cachecluster.common.error_map import kind_of
from cachecluster.common.errors import ErrorKind, InvalidArgument
from cachecluster.common.grpc_errors import grpc_servicer, one_line
from cachecluster.protos import common_pb2, worker_pb2, worker_pb2_grpc
from cachecluster.worker.block_runs import max_run_blocks, plan_runs
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.config import MAX_LOAD_PARALLELISM
from cachecluster.worker.metrics import WorkerMetrics
from cachecluster.worker.opener import LoadOutcome, UfsBlockOpener, checked_key
from cachecluster.worker.tiers import Medium

MAX_BLOCKS_PER_CALL = 100_000
"""Blocks in one LoadBlocks or EvictBlocks call at most."""

_MEDIUM_PROTO = {
    Medium.MEM: common_pb2.MEDIUM_MEM,
    Medium.SSD: common_pb2.MEDIUM_SSD,
    Medium.HDD: common_pb2.MEDIUM_HDD,
}
_KIND_PROTO = {
    ErrorKind.INVALID: common_pb2.ERROR_KIND_INVALID,
    ErrorKind.NOT_FOUND: common_pb2.ERROR_KIND_NOT_FOUND,
    ErrorKind.PERMISSION: common_pb2.ERROR_KIND_PERMISSION,
    ErrorKind.UNAVAILABLE: common_pb2.ERROR_KIND_UNAVAILABLE,
    ErrorKind.CONFLICT: common_pb2.ERROR_KIND_CONFLICT,
    ErrorKind.CORRUPT: common_pb2.ERROR_KIND_CORRUPT,
    ErrorKind.READ_ONLY: common_pb2.ERROR_KIND_READ_ONLY,
    ErrorKind.INTERNAL: common_pb2.ERROR_KIND_INTERNAL,
}


def medium_proto(medium: Medium) -> common_pb2.Medium:
    """The proto enum value of a medium."""
    return _MEDIUM_PROTO[medium]


def item_error(error: BaseException) -> common_pb2.ItemError:
    """The ``ItemError`` of one failed item: its kind and a one-line message."""
    kind = _KIND_PROTO.get(kind_of(error), common_pb2.ERROR_KIND_INTERNAL)
    return common_pb2.ItemError(kind=kind, message=one_line(error))


def tier_usage_protos(store: BlockStore) -> list[common_pb2.TierUsage]:
    """Each tier's quota, usage and block count as ``TierUsage`` messages, fastest first."""
    return [
        common_pb2.TierUsage(
            medium=medium_proto(usage.medium),
            path=usage.path,
            capacity_bytes=usage.quota,
            used_bytes=usage.used,
            block_count=usage.blocks,
            high_watermark=usage.high,
            low_watermark=usage.low,
        )
        for usage in store.usage()
    ]


def _total(collector: object) -> int:
    """Sum of a counter's ``_total`` samples over all its labels."""
    total = 0.0
    for family in collector.collect():  # type: ignore[attr-defined]
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return int(total)


def worker_counters(metrics: WorkerMetrics) -> common_pb2.WorkerCounters:
    """The store's monotonic counters since the worker started."""
    return common_pb2.WorkerCounters(
        hits=_total(metrics.hits),
        misses=_total(metrics.misses),
        bytes_served=_total(metrics.bytes_served),
        bytes_fetched=_total(metrics.bytes_fetched),
        evictions=_total(metrics.evictions),
        ufs_errors=_total(metrics.load_errors),
        corrupt_blocks=_total(metrics.checksum_failures),
    )


def _result(block_id: str, outcome: LoadOutcome | Exception) -> worker_pb2.BlockResult:
    """The ``BlockResult`` of one block's load."""
    if isinstance(outcome, Exception):
        return worker_pb2.BlockResult(block_id=block_id, ok=False, error=item_error(outcome))
    return worker_pb2.BlockResult(
        block_id=block_id,
        ok=True,
        already_cached=outcome.already_cached,
        bytes_fetched=outcome.bytes_fetched,
    )


def block_count(store: BlockStore) -> int:
    """Blocks stored on every tier together."""
    return sum(usage.blocks for usage in store.usage())


@grpc_servicer
class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    """``WorkerService`` over a block store and its UFS opener."""

    def __init__(
        self,
        *,
        worker_id: str,
        incarnation: int,
        store: BlockStore,
        opener: UfsBlockOpener,
        default_parallelism: int = 4,
        version: str = "",
    ) -> None:
        self.worker_id = worker_id
        self.incarnation = incarnation
        self.store = store
        self.opener = opener
        self.default_parallelism = default_parallelism
        self.version = version
        self.started_at_ms = int(time.time() * 1000)

    async def LoadBlocks(
        self, request: worker_pb2.LoadBlocksRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.LoadBlocksResponse:
        """Fetch the blocks into the store; one result each, in request order.

        Consecutive blocks of one file are fetched together, one UFS request
        for each run (:mod:`.block_runs`); at most ``parallelism`` runs at a time.
        A block named twice is loaded once and reported twice.
        """
        if len(request.blocks) > MAX_BLOCKS_PER_CALL:
            raise InvalidArgument(
                f"LoadBlocks: {len(request.blocks)} blocks, at most {MAX_BLOCKS_PER_CALL} a call"
            )
        if request.parallelism < 0:
            raise InvalidArgument(f"LoadBlocks: parallelism {request.parallelism} is negative")
        parallelism = min(request.parallelism or self.default_parallelism, MAX_LOAD_PARALLELISM)
        slots = asyncio.Semaphore(parallelism)
        checked: list[BlockKey | Exception] = []  # per request position
        for ref in request.blocks:
            try:
                checked.append(self._checked_key(ref))
            except Exception as error:
                checked.append(error)
        keys = {key.id: key for key in checked if isinstance(key, BlockKey)}
        block_size = self.opener.ring.block_size
        runs = plan_runs(keys.values(), max_run_blocks(block_size) if block_size else 1)
        outcomes: dict[str, LoadOutcome | Exception] = {}

        async def load_run(run: list[BlockKey]) -> None:
            async with slots:
                results = await self.opener.load_run(run)
            for key, result in zip(run, results, strict=True):
                outcomes[key.id] = result

        await asyncio.gather(*(load_run(run) for run in runs))
        return worker_pb2.LoadBlocksResponse(
            results=[
                _result(ref.block_id, key if isinstance(key, Exception) else outcomes[key.id])
                for ref, key in zip(request.blocks, checked, strict=True)
            ]
        )

    def _checked_key(self, ref: worker_pb2.BlockRef) -> BlockKey:
        key = checked_key(ref.block_id, ref.mount_id, ref.path, ref.version, ref.index)
        block_size = self.opener.ring.block_size
        if ref.length > 0 and block_size is not None and ref.offset != ref.index * block_size:
            raise InvalidArgument(
                f"block {ref.block_id}: offset {ref.offset} is not index {ref.index} x "
                f"block size {block_size}"
            )
        return key

    async def EvictBlocks(
        self, request: worker_pb2.EvictBlocksRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.EvictBlocksResponse:
        """Delete the blocks from whichever tier holds them; unknown ids count as missing."""
        if len(request.block_ids) > MAX_BLOCKS_PER_CALL:
            raise InvalidArgument(
                f"EvictBlocks: {len(request.block_ids)} ids, at most {MAX_BLOCKS_PER_CALL} a call"
            )
        for block_id in request.block_ids:
            if not is_block_id(block_id):
                raise InvalidArgument(f"EvictBlocks: {block_id[:64]!r} is not a block id")
        lengths = {block_id: length for block_id, _medium, length in self.store.blocks()}
        evicted = freed = missing = 0
        for block_id in dict.fromkeys(request.block_ids):
            if await self.store.evict(block_id):
                evicted += 1
                freed += lengths.get(block_id, 0)
            else:
                missing += 1
        return worker_pb2.EvictBlocksResponse(evicted=evicted, bytes_freed=freed, missing=missing)

    async def GetStats(
        self, request: worker_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.GetStatsResponse:
        """The worker's tiers, counters and block count now."""
        return worker_pb2.GetStatsResponse(
            worker_id=self.worker_id,
            incarnation=self.incarnation,
            tiers=tier_usage_protos(self.store),
            counters=worker_counters(self.store.metrics),
            block_count=block_count(self.store),
            started_at_ms=self.started_at_ms,
            version=self.version,
        )
