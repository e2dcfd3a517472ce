"""The worker's tiered block store: MEM, SSD and HDD tiers with quotas and watermarks.

State (the block index, every tier's byte accounting and eviction order) is
owned by one event loop and changed only on it, so it needs no locks. File
I/O runs in the store's thread pool and never blocks the loop.

Each block lives on exactly one tier, as one file (:mod:`.block_file`) under
``<tier path>/cachecluster-blocks/<first two hex digits>/<id>.blk``.

Capacity, per tier:

* ``used`` counts block files plus bytes *reserved* for writes in progress.
  A writer reserves before it writes, so concurrent writes never overshoot:
  ``used <= quota`` at every moment.
* A write that would take ``used`` past ``high x quota`` first evicts, in
  the tier's policy order, down to ``low x quota`` (it waits only until its
  own bytes fit under ``high``; the rest of the eviction goes on behind it).
  If nothing can be evicted (every block busy) the write may still use the
  room up to the quota; past the quota the write goes to the next tier, and
  a block no tier can hold is still served, from memory.
* An evicted block is demoted to the next tier (which may evict in turn);
  the last tier deletes. A hit on a lower tier promotes the block to the top
  tier, in the background.
* A block being written, moved or deleted is *busy*: readers wait for the
  move (a rename, or a copy across filesystems) and eviction skips it.

Deadlock freedom: a reservation waits only for evictions already running on
its tier (``freeing``); an eviction waits only for a reservation on a lower
tier; the last tier's evictions are deletes that wait for nothing. Promotions
(upward) are never counted in ``freeing``, so no wait points upward.

Readers get a :class:`~.block_file.BlockLease` holding an open fd: the bytes
stay readable after the block is evicted (unlink of an open file), demoted or
promoted (rename). Data read back from SSD/HDD is checksum-verified on every
read; MEM blocks once after a restart (or on every read with ``verify_mem``).
A corrupt block is dropped, counted, and fetched again when a loader is given.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import os
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Self, TypeVar

from prometheus_client import CollectorRegistry

from cachecluster.common.block_key import check_block_id, is_block_id
from cachecluster.common.errors import ConfigError, CorruptBlock, NotFound
from cachecluster.worker.block_file import (
    BLOCK_SUFFIX,
    BlockLease,
    block_file_name,
    block_file_size,
    is_temp_name,
    move_block_file,
    open_block,
    remove_file,
    scan_block_file,
    write_block_file,
)
from cachecluster.worker.eviction import DEFAULT_POLICY, EvictionPolicy, make_policy
from cachecluster.worker.metrics import WorkerMetrics
from cachecluster.worker.singleflight import SingleFlight
from cachecluster.worker.tiers import Medium, TierConfig, TierUsage, validate_tiers

__all__ = ["STORE_DIR_NAME", "BlockLease", "BlockLoader", "BlockStore"]

log = logging.getLogger("cachecluster.worker.block_store")

STORE_DIR_NAME = "cachecluster-blocks"
"""The directory a store owns inside each tier path; nothing outside it is touched."""

BlockLoader = Callable[[], Awaitable[bytes | bytearray | memoryview]]
"""Fetches one block's bytes (usually a UFS range read) when it is not cached."""

T = TypeVar("T")

_FANOUT = [f"{i:02x}" for i in range(256)]


@dataclasses.dataclass(eq=False, slots=True)
class _Entry:
    """One block in the index. ``busy`` is set while it is written, moved or deleted."""

    block_id: str
    tier: _Tier
    length: int
    size: int
    verified: bool
    committed: bool = False
    busy: asyncio.Future[None] | None = None


class _Tier:
    """A tier's configuration, directory, byte accounting and eviction order."""

    def __init__(self, index: int, config: TierConfig, policy: EvictionPolicy) -> None:
        self.index = index
        self.config = config
        self.medium = config.medium
        self.quota = config.quota
        self.high_bytes = config.high_bytes
        self.low_bytes = config.low_bytes
        self.root = os.path.join(config.path, STORE_DIR_NAME)
        self.policy = policy
        self.used = 0  # block files + reservations; never above quota
        self.reserved = 0  # part of used: writes in progress
        self.freeing = 0  # part of used: blocks being evicted (demoted or deleted) now
        self.blocks = 0  # committed blocks
        self._waiters: list[asyncio.Future[None]] = []

    def path_of(self, block_id: str) -> str:
        return os.path.join(self.root, block_id[:2], block_file_name(block_id))

    async def changed(self) -> None:
        """Wait until :meth:`notify` is called (space was freed or eviction ended)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class BlockStore:
    """Cached blocks on one to three tiers, with leases for readers.

    ``tiers`` are validated and sorted fastest first. ``policy`` names the
    eviction policy of every tier (``lru`` or ``slru``). With ``promote`` a
    hit on a lower tier moves the block to the top tier. ``verify_mem``
    checks MEM blocks on every read (disk tiers always are). Call
    :meth:`start` (or use ``async with``) before anything else, from the
    event loop that will own the store.
    """

    def __init__(
        self,
        tiers: Sequence[TierConfig],
        *,
        policy: str = DEFAULT_POLICY,
        metrics: WorkerMetrics | None = None,
        promote: bool = True,
        verify_mem: bool = False,
        io_threads: int = 4,
    ) -> None:
        configs = validate_tiers(tiers)
        self._tiers = [_Tier(i, config, make_policy(policy)) for i, config in enumerate(configs)]
        self.policy_name = policy
        self.metrics = metrics if metrics is not None else WorkerMetrics(CollectorRegistry())
        self.promote = promote
        self.verify_mem = verify_mem
        self._io_threads = max(1, io_threads)
        self._index: dict[str, _Entry] = {}
        self._flights: SingleFlight[str, memoryview | None] = SingleFlight()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"  # new -> running -> closing -> closed

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create the tier directories, rescan them, evict tiers that are over ``high``.

        A tier path that cannot be written is a one-line ``ConfigError``
        naming the tier and the path. Valid block files found are kept (their
        mtime gives the recency order) and verified on first read; temp
        files and bad block files are deleted.
        """
        if self._state != "new":
            raise RuntimeError(f"BlockStore.start: store is {self._state}")
        self._loop = asyncio.get_running_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self._io_threads, thread_name_prefix="block-io"
        )
        try:
            for tier in self._tiers:
                await self._io(_prepare_tier_dir, tier.medium, tier.config.path, tier.root)
            for tier in self._tiers:
                found = await self._io(_scan_tier_dir, tier.root)
                await self._adopt(tier, found)
                self.metrics.set_tier_capacity(tier.medium, tier.quota)
                self._publish(tier)
            self._state = "running"
            for tier in self._tiers:
                if tier.used > tier.high_bytes:
                    self._start_evictions(tier, tier.used - tier.freeing - tier.low_bytes)
                    while tier.freeing:
                        await tier.changed()
        except BaseException:
            self._state = "running"
            await self.close()
            raise

    async def close(self) -> None:
        """Cancel loads in flight, finish moves and writes under way, stop the thread pool."""
        if self._state in ("closing", "closed"):
            return
        self._state = "closing"
        await self._flights.cancel_all()
        await self.wait_idle()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._state = "closed"

    async def wait_idle(self) -> None:
        """Wait until background work (evictions, demotions, promotions, writes) has ended."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------ queries

    def contains(self, block_id: str) -> bool:
        """Whether the block is stored (fully written) on some tier."""
        entry = self._index.get(block_id)
        return entry is not None and entry.committed

    def tier_of(self, block_id: str) -> Medium | None:
        """The medium of the tier holding the block, or ``None``."""
        entry = self._index.get(block_id)
        return entry.tier.medium if entry is not None and entry.committed else None

    def blocks(self) -> list[tuple[str, Medium, int]]:
        """Every stored block as ``(block id, medium, data bytes)``."""
        return [
            (entry.block_id, entry.tier.medium, entry.length)
            for entry in self._index.values()
            if entry.committed
        ]

    def usage(self) -> list[TierUsage]:
        """Each tier's quota, bytes used (files plus reservations) and block count."""
        return [
            TierUsage(
                medium=tier.medium,
                path=tier.config.path,
                quota=tier.quota,
                used=tier.used,
                blocks=tier.blocks,
                high=tier.config.high,
                low=tier.config.low,
            )
            for tier in self._tiers
        ]

    @property
    def tiers(self) -> list[TierConfig]:
        """The tier configurations, fastest first."""
        return [tier.config for tier in self._tiers]

    # ------------------------------------------------------------ reads and writes

    async def get(
        self,
        block_id: str,
        loader: BlockLoader | None = None,
        recycle: Callable[[], None] | None = None,
    ) -> BlockLease:
        """A lease on the block's bytes; load and store it first if it is missing.

        A miss with ``loader`` runs the loader once however many readers miss
        at the same time (single flight); ``recycle`` as for :meth:`load`
        (the lease then reads the block from its tier). A miss without one raises
        ``NotFound``. A corrupt block is dropped and, with ``loader``, fetched
        again; without one ``CorruptBlock`` is raised. A block that no tier
        can hold is served from memory. The caller closes the lease.
        """
        check_block_id(block_id)
        self._check_running()
        try:
            lease = await self._open_cached(block_id, promote=self.promote)
        except CorruptBlock:
            if loader is None:
                raise
            lease = None
        if lease is not None:
            self.metrics.record_hit(lease.medium or Medium.MEM, lease.length)
            return lease
        self.metrics.record_miss()
        if loader is None:
            raise NotFound(f"block {block_id}: not cached and no loader given")
        while True:
            self._check_running()  # no new loads once close() has begun
            data = await self._flights.do(
                block_id, functools.partial(self._load_and_store, block_id, loader, recycle)
            )
            try:  # not a touch: for the policy this block was just added, read once
                lease = await self._open_cached(block_id, promote=False, touch=False)
            except CorruptBlock:
                lease = None
            if lease is None and data is not None:  # no tier could hold it, or it left already
                lease = BlockLease.in_memory(block_id, data)
            if lease is not None:
                break
            # Stored by a load whose buffer went back to its pool, and gone already: fetch again.
        self.metrics.record_served(lease.length)
        return lease

    async def load(
        self, block_id: str, loader: BlockLoader, recycle: Callable[[], None] | None = None
    ) -> bool:
        """Make sure the block is stored (a DataLoad); ``True`` if it was cached already.

        Unlike :meth:`get` no lease is opened and nothing is read back or
        counted as a miss or as bytes served: a load is a fetch and a store.
        It shares the single flight with readers. When this call's loader ran
        and its bytes were stored on a tier, ``recycle`` is called (the
        loader's buffer is free again: nobody else holds it); otherwise the
        buffer is left to whoever holds it (readers served from memory).
        """
        check_block_id(block_id)
        self._check_running()
        if self.contains(block_id):
            return True
        await self._flights.do(
            block_id, functools.partial(self._load_and_store, block_id, loader, recycle)
        )
        return False

    async def put(self, block_id: str, data: bytes | bytearray | memoryview) -> Medium | None:
        """Store a block (no-op if it is stored already); the medium it is on, or ``None``.

        ``None`` means no tier could hold it (bigger than every quota, or
        every tier full of busy blocks): nothing is stored and nothing fails.
        """
        check_block_id(block_id)
        self._check_running()
        view = memoryview(data).cast("B")
        return await asyncio.shield(self._spawn(self._store(block_id, view)))

    async def evict(self, block_id: str) -> bool:
        """Delete a block from whichever tier holds it (no demotion); ``False`` if absent.

        Leases already given out stay readable.
        """
        check_block_id(block_id)
        self._check_running()
        entry = self._index.get(block_id)
        if entry is None:
            return False
        return await asyncio.shield(self._spawn(self._remove_entry(entry, count_eviction=True)))

    # ------------------------------------------------------------ read path internals

    async def _open_cached(
        self, block_id: str, *, promote: bool, touch: bool = True
    ) -> BlockLease | None:
        """Open the stored block, or ``None`` if it is not stored. Raises ``CorruptBlock``."""
        while True:
            entry = self._index.get(block_id)
            if entry is None:
                return None
            if entry.busy is not None:
                await asyncio.shield(entry.busy)
                continue
            tier = entry.tier
            verify = tier.medium is not Medium.MEM or not entry.verified or self.verify_mem
            want_promote = promote and tier.index > 0 and entry.size <= self._tiers[0].quota
            if touch:
                tier.policy.touch(block_id)
            path = tier.path_of(block_id)
            open_call = functools.partial(
                open_block, path, block_id, entry.length, verify=verify, keep_data=want_promote
            )
            try:
                if tier.medium is Medium.MEM and not verify and not want_promote:
                    # On tmpfs an open, a 48-byte pread and a futimens touch only
                    # memory (no I/O to wait for): cheaper than a thread hop.
                    opened = open_call()
                else:
                    opened = await self._io(open_call)
            except FileNotFoundError:
                if self._index.get(block_id) is entry and entry.busy is None and entry.tier is tier:
                    log.warning("block file %s vanished; forgetting block %s", path, block_id)
                    await self._spawn(self._remove_entry(entry, count_eviction=False))
                    return None
                continue  # it moved while we opened it: look again
            except CorruptBlock as error:
                log.warning("dropping corrupt block %s on %s: %s", block_id, tier.medium, error)
                self.metrics.record_checksum_failure(tier.medium)
                await self._spawn(self._remove_entry(entry, count_eviction=False))
                raise
            entry.verified = entry.verified or verify
            lease = BlockLease(block_id, fd=opened.fd, length=entry.length, medium=tier.medium)
            if opened.data is not None:
                self._schedule_promotion(entry, tier, opened.data)
            return lease

    async def _load_and_store(
        self, block_id: str, loader: BlockLoader, recycle: Callable[[], None] | None
    ) -> memoryview | None:
        """The single-flight body: run the loader, store the bytes, return them.

        With ``recycle``, bytes stored on a tier are given back to it and
        ``None`` is returned (waiters then open the block from its tier).
        """
        started = time.perf_counter()
        try:
            raw = await loader()
        except asyncio.CancelledError:
            raise
        except BaseException:
            self.metrics.record_load_error(time.perf_counter() - started)
            raise
        view = memoryview(raw).cast("B")
        self.metrics.record_load(len(view), time.perf_counter() - started)
        try:
            medium = await asyncio.shield(self._spawn(self._store(block_id, view)))
        except OSError as error:
            log.warning("could not store block %s, serving it from memory: %s", block_id, error)
            return view
        if recycle is not None and medium is not None:
            del view, raw
            recycle()
            return None
        return view

    # ------------------------------------------------------------ mutations (tasks)

    async def _store(self, block_id: str, view: memoryview) -> Medium | None:
        """Write a new block to the fastest tier with room; runs as a task, never cancelled."""
        existing = self._index.get(block_id)
        if existing is not None:
            existing.tier.policy.touch(block_id)
            return existing.tier.medium
        size = block_file_size(len(view))
        for tier in self._tiers:
            if await self._reserve(tier, size):
                break
        else:
            return None
        existing = self._index.get(block_id)
        if existing is not None:  # stored by someone else while we made room
            self._release(tier, size)
            return existing.tier.medium
        entry = _Entry(block_id, tier, len(view), size, verified=True)
        entry.busy = self._new_future()
        self._index[block_id] = entry
        try:
            await self._io(write_block_file, tier.path_of(block_id), block_id, view)
        except BaseException:
            del self._index[block_id]
            self._release(tier, size)
            self._release_busy(entry)
            raise
        tier.reserved -= size
        tier.blocks += 1
        tier.policy.add(block_id)
        entry.committed = True
        self._release_busy(entry)
        self._publish(tier)
        return tier.medium

    def _schedule_promotion(self, entry: _Entry, from_tier: _Tier, data: bytearray) -> None:
        if (
            self._state != "running"
            or self._index.get(entry.block_id) is not entry
            or entry.busy is not None
            or entry.tier is not from_tier
        ):
            return
        entry.busy = self._new_future()
        self._spawn(self._promote(entry, from_tier, data))

    async def _promote(self, entry: _Entry, from_tier: _Tier, data: bytearray) -> None:
        """Copy a verified block to the top tier, then delete it below."""
        top = self._tiers[0]
        block_id, size = entry.block_id, entry.size
        try:
            if not await self._reserve(top, size):
                return
            try:
                await self._io(write_block_file, top.path_of(block_id), block_id, data)
            except OSError as error:
                log.warning("could not promote block %s: %s", block_id, error)
                self._release(top, size)
                return
            try:
                await self._io(remove_file, from_tier.path_of(block_id))
            except OSError as error:  # a stray copy; the next rescan removes it
                log.warning("could not remove promoted block %s: %s", block_id, error)
            from_tier.policy.remove(block_id)
            from_tier.used -= size
            from_tier.blocks -= 1
            top.reserved -= size
            top.blocks += 1
            top.policy.add(block_id)
            entry.tier = top
            entry.verified = True
            self.metrics.record_promotion(from_tier.medium)
            from_tier.notify()
            self._publish(from_tier)
            self._publish(top)
        finally:
            self._release_busy(entry)

    def _start_evictions(self, tier: _Tier, want_bytes: int) -> None:
        """Start evicting at least ``want_bytes`` (as far as blocks are free to move)."""
        if want_bytes <= 0:
            return
        chosen: list[_Entry] = []
        total = 0
        for block_id in tier.policy.victims():
            entry = self._index.get(block_id)
            if entry is None or entry.busy is not None or entry.tier is not tier:
                continue
            chosen.append(entry)
            total += entry.size
            if total >= want_bytes:
                break
        for entry in chosen:
            tier.policy.remove(entry.block_id)
            entry.busy = self._new_future()
            tier.freeing += entry.size
            self._spawn(self._evict_one(entry, tier))

    async def _evict_one(self, entry: _Entry, tier: _Tier) -> None:
        """Demote one block to the next tier, or delete it from the last one."""
        block_id, size = entry.block_id, entry.size
        lower = self._tiers[tier.index + 1] if tier.index + 1 < len(self._tiers) else None
        demoted = False
        try:
            if lower is not None and await self._reserve(lower, size):
                try:
                    await self._io(move_block_file, tier.path_of(block_id), lower.path_of(block_id))
                except OSError as error:
                    log.warning("could not demote block %s: %s", block_id, error)
                    self._release(lower, size)
                else:
                    lower.reserved -= size
                    lower.blocks += 1
                    lower.policy.add(block_id)
                    entry.tier = lower
                    demoted = True
                    self._publish(lower)
            if not demoted:
                try:
                    await self._io(remove_file, tier.path_of(block_id))
                except OSError as error:
                    log.warning("could not delete evicted block %s: %s", block_id, error)
                if self._index.get(block_id) is entry:
                    del self._index[block_id]
            tier.used -= size
            tier.blocks -= 1
            self.metrics.record_eviction(tier.medium, demoted)
        finally:
            tier.freeing -= size
            self._release_busy(entry)
            tier.notify()
            self._publish(tier)

    async def _remove_entry(self, entry: _Entry, *, count_eviction: bool) -> bool:
        """Delete a block outright once it is not busy; ``False`` if it was gone already."""
        while entry.busy is not None:
            await asyncio.shield(entry.busy)
        if self._index.get(entry.block_id) is not entry or not entry.committed:
            return False
        tier = entry.tier
        entry.busy = self._new_future()
        tier.policy.remove(entry.block_id)
        try:
            try:
                await self._io(remove_file, tier.path_of(entry.block_id))
            except OSError as error:
                log.warning("could not delete block %s: %s", entry.block_id, error)
            del self._index[entry.block_id]
            tier.used -= entry.size
            tier.blocks -= 1
            if count_eviction:
                self.metrics.record_eviction(tier.medium, demoted=False)
        finally:
            self._release_busy(entry)
            tier.notify()
            self._publish(tier)
        return True

    # ------------------------------------------------------------ capacity

    async def _reserve(self, tier: _Tier, nbytes: int) -> bool:
        """Reserve ``nbytes`` on ``tier``, evicting first if needed; ``False`` if it cannot fit.

        Succeeds at once while the tier stays under ``high``; otherwise starts
        eviction down to ``low`` and waits for it. When nothing more can be
        evicted the room up to the quota may be used; beyond it, ``False``.
        """
        if nbytes > tier.quota:
            return False
        while tier.used + nbytes > tier.high_bytes:
            self._start_evictions(tier, tier.used - tier.freeing + nbytes - tier.low_bytes)
            if tier.freeing == 0:
                if tier.used + nbytes <= tier.quota:
                    break
                return False
            await tier.changed()
        tier.used += nbytes
        tier.reserved += nbytes
        self._publish(tier)
        return True

    def _release(self, tier: _Tier, nbytes: int) -> None:
        """Give back a reservation that was not used."""
        tier.used -= nbytes
        tier.reserved -= nbytes
        tier.notify()
        self._publish(tier)

    async def _adopt(self, tier: _Tier, found: list[tuple[str, int, int, float]]) -> None:
        """Index the blocks a rescan found on ``tier``, least recently used first."""
        for block_id, length, size, _mtime in sorted(found, key=lambda item: item[3]):
            if block_id in self._index:  # also on a faster tier (a move cut short)
                await self._io(remove_file, tier.path_of(block_id))
                continue
            entry = _Entry(block_id, tier, length, size, verified=False, committed=True)
            self._index[block_id] = entry
            tier.used += size
            tier.blocks += 1
            tier.policy.add(block_id)

    # ------------------------------------------------------------ plumbing

    def _check_running(self) -> None:
        if self._state == "new":
            raise RuntimeError("BlockStore is not started; call start() first")
        if self._state != "running":
            raise RuntimeError(f"BlockStore is {self._state}")

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._loop is not None and self._executor is not None
        return await self._loop.run_in_executor(self._executor, fn, *args)

    def _new_future(self) -> asyncio.Future[None]:
        assert self._loop is not None
        return self._loop.create_future()

    def _release_busy(self, entry: _Entry) -> None:
        busy, entry.busy = entry.busy, None
        if busy is not None and not busy.done():
            busy.set_result(None)

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("block store task failed", exc_info=task.exception())

    def _publish(self, tier: _Tier) -> None:
        self.metrics.set_tier_usage(tier.medium, tier.used, tier.blocks)


def _prepare_tier_dir(medium: Medium, path: str, root: str) -> None:
    """Create ``root`` and its 256 fan-out directories; prove it is writable."""
    try:
        os.makedirs(root, exist_ok=True)
        for name in _FANOUT:
            os.makedirs(os.path.join(root, name), exist_ok=True)
        probe = os.path.join(root, f".probe-{os.getpid()}")
        with open(probe, "wb") as handle:
            handle.write(b"x")
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise ConfigError(
            f"tier {medium.value}", f"path {path} is not writable: {reason}"
        ) from None


def _scan_tier_dir(root: str) -> list[tuple[str, int, int, float]]:
    """``(block id, data length, file size, mtime)`` of every valid block file under ``root``.

    Temp files and block files that fail their header or size check are
    deleted; files the store does not own are left alone.
    """
    found: list[tuple[str, int, int, float]] = []
    for fanout in _FANOUT:
        directory = os.path.join(root, fanout)
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if is_temp_name(name):
                remove_file(path)
                continue
            block_id = name.removesuffix(BLOCK_SUFFIX)
            if not name.endswith(BLOCK_SUFFIX) or not is_block_id(block_id):
                continue
            try:
                header, size, mtime = scan_block_file(path)
                if header.block_id != block_id or block_id[:2] != fanout:
                    raise CorruptBlock(f"block file {path}: holds block {header.block_id}")
            except CorruptBlock as error:
                log.warning("rescan: deleting %s", error)
                remove_file(path)
                continue
            except FileNotFoundError:
                continue
            found.append((block_id, header.data_length, size, mtime))
    return found
