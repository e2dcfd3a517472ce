"""The worker's block opener: serve a block from the store, fetching it from the UFS on a miss.

:class:`UfsBlockOpener` is the data server's ``BlockOpener`` and also what
``WorkerService.LoadBlocks`` loads through, so that a reader and a load of the
same block share one UFS fetch (the store's single flight).

A request names its block twice: by id and by key (mount id, path in the
mount, file version, block index). The opener recomputes the id from the key
and refuses a mismatch, so that a reader can never make the worker store
bytes under another block's id. On a miss the loader reads the whole block
(``block_size`` bytes, short at the end of the file) with the file version
pinned: a UFS object that changed since the reader saw it raises
``VersionChanged`` and the reader gets a ``conflict`` error, never mixed bytes.

With a cluster secret, a data request must carry a read capability the master
signed (:mod:`cachecluster.common.auth`) that covers the block's mount and
path; otherwise the reader gets a ``PermissionDenied`` error response (the
connection stays usable). The worker's gRPC calls (``LoadBlocks``, from the
master and from peers replicating) need the system token instead (see
``worker/server.py``).

Replication. With ``replicas`` R > 1 a block should end on R distinct
workers: after a fetch from the UFS, if this worker is the block's first
owner on the ring, it asks the other owners to load the block with
``WorkerService.LoadBlocks`` (:class:`Replicator`). This is best effort and
never slows a read down:

* :meth:`Replicator.submit` only queues (per peer) and returns;
* one sender task per peer drains its queue in batches of up to
  :data:`REPLICATION_BATCH` blocks, with at most ``parallelism`` calls in
  flight overall;
* at most ``max_queued`` blocks wait; beyond that new ones are dropped and
  counted (a reader that misses on a replica fetches the block itself);
* a failed call is logged once per peer until a call to it succeeds again.

The peers fetch from the UFS themselves; a peer that already holds the block
answers ``already_cached`` and fetches nothing.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import logging
import mmap
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from cachecluster.common.auth import verify_capability
from cachecluster.common.block_key import BlockKey, block_count, check_block_id, group_blocks
from cachecluster.common.errors import (
    CacheClusterError,
    InvalidArgument,
    NotCached,
    NotFound,
    Unavailable,
)
from cachecluster.common.frames import ReadRequest
from cachecluster.common.grpc_auth import auth_interceptors, system_token_source
from cachecluster.common.grpc_errors import error_from_rpc_error
from cachecluster.common.paths import normalize_path
from cachecluster.protos import worker_pb2, worker_pb2_grpc
from cachecluster.worker.block_file import BlockLease
from cachecluster.worker.block_runs import max_run_blocks
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.mounts import MountResolver
from cachecluster.worker.placement import RingView
from cachecluster.worker.read_runs import BlockBuffer, BlockRun, MissTracker, run_keys

log = logging.getLogger("cachecluster.worker.opener")

REPLICATION_BATCH = 64
"""Blocks in one LoadBlocks call at most."""
PEER_CHANNEL_OPTIONS = (("grpc.max_reconnect_backoff_ms", 2000),)
"""A restarted peer is reached again within seconds, not gRPC's default two minutes."""
MAX_IDLE_BUFFERS = 32
"""Block buffers the opener keeps for loads between uses (a LoadBlocks call's parallelism x 4)."""
REPLICATION_CALL_TIMEOUT = 120.0
"""Seconds one replication call may take (a batch of fetches from a slow UFS)."""


@dataclasses.dataclass(frozen=True, slots=True)
class LoadOutcome:
    """What loading one block did: nothing (``already_cached``) or a fetch of ``bytes_fetched``."""

    block_id: str
    already_cached: bool
    bytes_fetched: int


def checked_key(block_id: str, mount_id: str, path: str, version: str, index: int) -> BlockKey:
    """The key of a block request, refusing an id that does not match it.

    The path must already be normal (relative, no ``.``/``..``/double
    slashes): it is part of the block id, so two spellings of one file would
    otherwise cache its bytes twice.
    """
    check_block_id(block_id)
    key = BlockKey(mount_id, path, version, index)
    if normalize_path(path) != path:
        raise InvalidArgument(f"block path {path!r} is not normalised")
    if not version:
        raise InvalidArgument(f"block {block_id}: the file version is empty")
    if key.id != block_id:
        raise InvalidArgument(
            f"block id {block_id} does not match its key "
            f"(mount {mount_id}, path {path!r}, version {version!r}, index {index})"
        )
    return key


class UfsBlockOpener:
    """Leases blocks from ``store``, loading misses from the mount's UFS."""

    def __init__(
        self,
        store: BlockStore,
        mounts: MountResolver,
        ring: RingView,
        *,
        replicator: Replicator | None = None,
        cluster_secret: bytes | None = None,
    ) -> None:
        self.store = store
        self._secret = cluster_secret
        self.mounts = mounts
        self.ring = ring
        self.replicator = replicator
        self.buffers = BufferPool()
        self.misses = MissTracker()
        self.runs_started = 0
        """Sequential-miss runs started (for tests and logs)."""
        # Block id -> its place in a run being set up or fetched (None: not in one after all).
        self._in_runs: dict[str, asyncio.Future[tuple[BlockRun, int] | None]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()

    async def open_block(self, request: ReadRequest) -> BlockLease:
        """The data server's entry point: a lease on the requested block (see the module doc).

        With ``request.cached_only`` a block not held raises ``NotCached``: nothing is fetched.
        """
        ref = request.key
        key = checked_key(request.block_id, ref.mount, ref.path, ref.version, ref.index)
        if self._secret is not None:  # the key is checked, so its path is normalised
            verify_capability(self._secret, request.cap).check(key.mount_id, key.path)
        if self.store.contains(request.block_id):
            self.misses.passed(key, time.monotonic())
        elif request.cached_only:
            raise NotCached(f"block {request.block_id} is not cached here")
        else:
            place = await self._run_place(key, request.ahead)
            if place is not None:
                load, recycle = self._run_loader(*place)
                return await self.store.get(request.block_id, load, recycle)
        return await self.store.get(request.block_id, lambda: self.fetch(key))

    async def wait_runs(self) -> None:
        """Wait until the sequential-miss runs under way have stored their blocks (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel the sequential-miss runs under way (their fetches and stores)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ sequential misses

    async def _run_place(self, key: BlockKey, ahead: int = 0) -> tuple[BlockRun, int] | None:
        """The run (:mod:`.read_runs`) a missed block comes with, joined or started; or None.

        None: the miss is not sequential, and the caller fetches the block
        alone. A miss is sequential when the reader says so (``ahead``: the
        blocks it will read right after this one) or when it follows this
        worker's previous miss of the file. A run's errors
        (``VersionChanged``, ``Unavailable``, ...) reach the block's readers
        as a fetch's would.
        """
        pending = self._in_runs.get(key.id)
        if pending is None:
            now = time.monotonic()
            if ahead < 1 and not self.misses.sequential(key, now):
                self.misses.note(key, key.index, now)
                return None
            pending = self._plan_run(key, now, ahead)
            if pending is None:
                return None
        return await asyncio.shield(pending)

    def _plan_run(
        self, key: BlockKey, now: float, ahead: int = 0
    ) -> asyncio.Future[tuple[BlockRun, int] | None] | None:
        """Claim the blocks from ``key`` to its group's end (or ``ahead`` blocks); run them.

        Runs without a wait, so that the read-ahead requests arriving right
        after find their blocks claimed and join instead of fetching alone.
        """
        block_size = self.ring.block_size
        if block_size is None:
            return None
        group = min(group_blocks(block_size), max_run_blocks(block_size))
        keys = run_keys(
            key,
            key.index + 1 + ahead if ahead else key.index + group,
            group,
            lambda b: self.store.contains(b) or b in self._in_runs,
        )
        if len(keys) < 2:
            self.misses.note(key, key.index, now)
            return None
        self.misses.note(key, keys[-1].index, now)
        loop = asyncio.get_running_loop()
        places: list[asyncio.Future[tuple[BlockRun, int] | None]] = []
        for member in keys:
            place: asyncio.Future[tuple[BlockRun, int] | None] = loop.create_future()
            self._in_runs[member.id] = place
            places.append(place)
        task = self._spawn(self._start_run(keys, block_size, places, stat=not ahead))
        # Cancelled before it ran (the worker stops), it must still let its readers go.
        task.add_done_callback(lambda _: self._leave_run(keys, places))
        return places[0]

    def _leave_run(
        self, keys: list[BlockKey], places: list[asyncio.Future[tuple[BlockRun, int] | None]]
    ) -> None:
        """Blocks whose place is still open are not in a run after all."""
        for key, place in zip(keys, places, strict=True):
            if not place.done():
                place.set_result(None)
                if self._in_runs.get(key.id) is place:
                    del self._in_runs[key.id]

    async def _start_run(
        self,
        keys: list[BlockKey],
        block_size: int,
        places: list[asyncio.Future[tuple[BlockRun, int] | None]],
        *,
        stat: bool = True,
    ) -> None:
        """Fetch ``keys`` up to the file's end as one run.

        With ``stat`` the file is stat-ed first (its end and version): blocks
        past the end, or all of them when the stat fails or finds another
        version, go back to single fetches. Without (the reader said how far
        it reads), the run's one request is pinned to the version anyway and
        a block past the end is ``NotFound`` to whoever asks for it.
        """
        run: BlockRun | None = None
        first = keys[0]
        try:
            mount = await self.mounts.get(first.mount_id)
            in_file = len(keys)
            if stat:
                status = await mount.backend.stat(first.path)
                in_file = block_count(status.size, block_size) - first.index
                if status.is_dir or status.version != first.version:
                    in_file = 0
            if in_file >= 2:
                members = keys[:in_file]
                buffers = [self.buffers.acquire(block_size) for _ in members]
                run = BlockRun(members, block_size, buffers)
                self._spawn(run.start(mount.backend, mount.spec.file_uri(first.path)))
                self.runs_started += 1
                self.store.metrics.record_ufs_read(run=True)
        except CacheClusterError as error:
            log.debug("no run from block %d of %s: %s", first.index, first.path, error)
        finally:
            if run is not None:
                for position, place in enumerate(places[: len(run.keys)]):
                    place.set_result((run, position))
            self._leave_run(keys, places)
        if run is not None:
            for position, key in enumerate(run.keys):
                self._spawn(self._store_run_block(key, run, position, places[position]))

    async def _store_run_block(
        self,
        key: BlockKey,
        run: BlockRun,
        position: int,
        place: asyncio.Future[tuple[BlockRun, int] | None],
    ) -> None:
        """Store one block of a run when it arrives, whether or not a reader asked for it."""
        try:
            load, recycle = self._run_loader(run, position)
            await self.store.load(key.id, load, recycle)
        except Exception as error:  # the reader of the block, if any, has it too
            log.debug("block %d of %s from a run: %s", key.index, key.path, error)
        finally:
            if self._in_runs.get(key.id) is place:
                del self._in_runs[key.id]

    def _run_loader(
        self, run: BlockRun, position: int
    ) -> tuple[Callable[[], Awaitable[memoryview]], Callable[[], None]]:
        """A loader for block ``position`` of ``run`` and the recycler of its buffer.

        A run's buffer goes to one load only: a later load of the same block
        (the first one's block was evicted meanwhile, its buffer reused)
        fetches it alone.
        """
        key = run.keys[position]
        claimed = False

        async def load() -> memoryview:
            nonlocal claimed
            if not run.claim(position):
                return await self.fetch(key)
            claimed = True
            mount = await self.mounts.get(key.mount_id)
            data = await run.block(position, mount.spec.file_uri(key.path))
            self._replicate(key, mount.spec.uri, key.index * run.block_size, len(data))
            return data

        def recycle() -> None:
            nonlocal claimed
            if claimed:
                claimed = False
                self.buffers.release(run.buffers[position])

        return load, recycle

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def load(self, block_id: str, key: BlockKey) -> LoadOutcome:
        """Make sure a block is cached (LoadBlocks); ``key`` must be checked by the caller.

        A fetch and a store (no lease, no read-back), into a buffer of the
        opener's pool that goes back to it once the block is on a tier.
        """
        if self.store.contains(block_id):
            return LoadOutcome(block_id, True, 0)
        fetched = 0
        buffer: BlockBuffer | None = None

        async def loader() -> memoryview:
            nonlocal fetched, buffer
            block_size = self.ring.require_block_size()
            buffer = self.buffers.acquire(block_size)
            data = await self.fetch(key, buffer)
            fetched = len(data)
            return data

        def recycle() -> None:
            nonlocal buffer
            if buffer is not None:
                self.buffers.release(buffer)
                buffer = None

        already = await self.store.load(block_id, loader, recycle)
        return LoadOutcome(block_id, already, fetched)

    async def load_run(self, keys: Sequence[BlockKey]) -> list[LoadOutcome | Exception]:
        """Load consecutive blocks of one file (see :mod:`.block_runs`); one outcome each.

        ``keys`` are checked by the caller, of one mount, path and version,
        with indices ``n, n+1, ...``. Blocks cached already are skipped; each
        stretch of the others is fetched with one scatter read of the UFS
        (one ranged GET, pinned to the version) straight into pooled block
        buffers, then every block is stored through the store's single
        flight. A failed fetch fails every block of its stretch with its error.
        """
        _check_run(keys)
        outcomes: list[LoadOutcome | Exception] = []
        stretch: list[BlockKey] = []
        for key in keys:
            if self.store.contains(key.id):
                outcomes.extend(await self._stretch_outcomes(stretch))
                stretch = []
                outcomes.append(LoadOutcome(key.id, True, 0))
            else:
                stretch.append(key)
        outcomes.extend(await self._stretch_outcomes(stretch))
        return outcomes

    async def _stretch_outcomes(self, keys: list[BlockKey]) -> list[LoadOutcome | Exception]:
        """:meth:`_load_stretch`; an error before any block was tried fails each of them."""
        try:
            return await self._load_stretch(keys)
        except Exception as error:  # no block size yet, an unknown mount, ...
            return [error] * len(keys)

    async def _load_stretch(self, keys: list[BlockKey]) -> list[LoadOutcome | Exception]:
        """Blocks ``keys`` (consecutive, none cached a moment ago) with one scatter read."""
        if len(keys) <= 1:
            return [await _outcome(self.load(key.id, key)) for key in keys]
        block_size = self.ring.require_block_size()
        mount = await self.mounts.get(keys[0].mount_id)
        offset = keys[0].index * block_size
        buffers = [self.buffers.acquire(block_size) for _ in keys]
        self.store.metrics.record_ufs_read(run=True)
        fetch = asyncio.ensure_future(
            mount.backend.read_blocks_into(
                keys[0].path,
                offset,
                [memoryview(buffer)[:block_size] for buffer in buffers],
                version=keys[0].version,
            )
        )
        # A buffer is "lent" while a loader has it (the store then owns it until it
        # calls recycle, or keeps it to serve readers from memory).
        lent = [False] * len(keys)
        fetched = [0] * len(keys)
        closed = False

        def loader(position: int) -> Callable[[], Awaitable[memoryview]]:
            async def load() -> memoryview:
                key = keys[position]
                if closed:  # started after the run gave its buffers back
                    raise Unavailable(f"block {key.id}: its load was cancelled")
                lent[position] = True
                try:
                    total = await _shared_result(fetch, key.id)
                    count = min(block_size, total - position * block_size)
                    if count <= 0:
                        raise NotFound(
                            f"block {key.index} of {mount.spec.file_uri(key.path)} is "
                            f"past the end of the file (offset {key.index * block_size})"
                        )
                except BaseException:
                    lent[position] = False
                    raise
                fetched[position] = count
                self._replicate(key, mount.spec.uri, key.index * block_size, count)
                return memoryview(buffers[position])[:count]

            return load

        def recycler(position: int) -> Callable[[], None]:
            def recycle() -> None:
                self.buffers.release(buffers[position])

            return recycle

        try:
            results = await asyncio.gather(
                *(
                    _outcome(self.store.load(key.id, loader(i), recycler(i)), key.id)
                    for i, key in enumerate(keys)
                )
            )
        finally:
            closed = True
            if not fetch.done():
                fetch.cancel()
            # Its thread may still be writing into the buffers: wait for it.
            await asyncio.gather(fetch, return_exceptions=True)
            for position, buffer in enumerate(buffers):
                if not lent[position]:
                    self.buffers.release(buffer)
        return [
            LoadOutcome(result.block_id, result.already_cached, fetched[i])
            if isinstance(result, LoadOutcome)
            else result
            for i, result in enumerate(results)
        ]

    def _replicate(self, key: BlockKey, ufs_uri: str, offset: int, count: int) -> None:
        """Queue a block fetched from the UFS for its other owners, if this worker is the first."""
        if self.replicator is not None and self.ring.replicas > 1:
            block_id = key.id
            owners = self.ring.owners(key)
            if owners and owners[0] == self.ring.worker_id:
                self.replicator.submit(block_id, key, ufs_uri, offset, count, owners[1:])

    async def fetch(self, key: BlockKey, buffer: BlockBuffer | None = None) -> memoryview:
        """Read block ``key`` from its UFS: ``block_size`` bytes, fewer at the end of the file.

        Runs at most once per block at a time (it is the store's loader).
        Reads into ``buffer`` when given (at least a block long; the result
        is a view of it), else into a new anonymous mapping: its pages cost
        only when written, so a 64 KiB file does not pay for zeroing a whole
        block (``bytearray(block_size)`` did, about a third of the worker's
        time on cold small files). Raises ``NotFound`` for a block past the
        end of the file, ``VersionChanged`` when the file has another version now.
        """
        block_size = self.ring.require_block_size()
        mount = await self.mounts.get(key.mount_id)
        pooled = buffer is not None
        view = memoryview(buffer if buffer is not None else mmap.mmap(-1, block_size))
        view = view[:block_size]
        offset = key.index * block_size
        self.store.metrics.record_ufs_read(run=False)
        count = await mount.backend.read_into(key.path, offset, view, version=key.version)
        if count <= 0:
            raise NotFound(
                f"block {key.index} of {mount.spec.file_uri(key.path)} is past the end "
                f"of the file (offset {offset})"
            )
        if count < block_size // 4 and not pooled:  # small: do not keep a whole block alive
            view = memoryview(bytes(view[:count]))
        self._replicate(key, mount.spec.uri, offset, count)
        return view[:count]


def _check_run(keys: Sequence[BlockKey]) -> None:
    """Refuse keys that are not consecutive blocks of one file: bytes would land under wrong ids."""
    for position, key in enumerate(keys):
        first = keys[0]
        same_file = (key.mount_id, key.path, key.version) == (
            first.mount_id,
            first.path,
            first.version,
        )
        if not same_file or key.index != first.index + position:
            raise InvalidArgument(
                f"load_run: block {key.index} of {key.path!r} does not follow block "
                f"{first.index} of {first.path!r} at position {position}"
            )


async def _shared_result(fetch: asyncio.Future[int], block_id: str) -> int:
    """Await a fetch several loaders share; its cancellation is an error for the others.

    A flight that another call joined must not end "cancelled" because the
    run that started the fetch was: the joiner was not cancelled itself.
    """
    try:
        return await asyncio.shield(fetch)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if fetch.cancelled() and task is not None and not task.cancelling():
            raise Unavailable(f"block {block_id}: the load that fetched it was cancelled") from None
        raise


async def _outcome(
    load: Awaitable[LoadOutcome | bool], block_id: str = ""
) -> LoadOutcome | Exception:
    """The outcome of one block's load, its error as a value (one block never fails others).

    ``load`` is :meth:`UfsBlockOpener.load` or :meth:`BlockStore.load` (``True``
    when the block was cached already; the bytes fetched are filled in later).
    """
    try:
        result = await load
    except Exception as error:
        return error
    if isinstance(result, LoadOutcome):
        return result
    return LoadOutcome(block_id, result, 0)


class BufferPool:
    """Block buffers for UFS reads, reused: touching fresh pages costs more than the copy.

    A new buffer is an anonymous mapping: its pages cost only when a read
    writes them (a ``bytearray`` zeroed all of them first, also the unused
    end of a file's last block). At most ``max_idle`` buffers are kept
    between uses (``max_idle`` x the block size of memory); a buffer of
    another size is dropped.
    """

    def __init__(self, max_idle: int = MAX_IDLE_BUFFERS) -> None:
        self.max_idle = max_idle
        self._idle: list[BlockBuffer] = []

    def acquire(self, size: int) -> BlockBuffer:
        """A buffer of ``size`` bytes (its contents are stale)."""
        while self._idle:
            buffer = self._idle.pop()
            if len(buffer) == size:
                return buffer
        return mmap.mmap(-1, size)

    def release(self, buffer: BlockBuffer) -> None:
        """Give a buffer back; nobody may use it afterwards."""
        if len(self._idle) < self.max_idle:
            self._idle.append(buffer)

    def __len__(self) -> int:
        return len(self._idle)


class Replicator:
    """Queues blocks for the other owners and sends them LoadBlocks calls in the background."""

    def __init__(
        self,
        ring: RingView,
        *,
        parallelism: int = 4,
        max_queued: int = 10_000,
        cluster_secret: bytes | None = None,
    ) -> None:
        self.ring = ring
        self._token_source = system_token_source(cluster_secret)
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(max(1, parallelism))
        self._queues: dict[str, collections.deque[worker_pb2.BlockRef]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._channels: dict[str, tuple[str, grpc.aio.Channel]] = {}  # peer -> target, channel
        self._closing: set[asyncio.Task[None]] = set()
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
        channels = [channel for _target, channel in self._channels.values()]
        self._channels.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)
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
            batch = [queue.popleft() for _ in range(min(REPLICATION_BATCH, len(queue)))]
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
        stub = worker_pb2_grpc.WorkerServiceStub(self._channel(peer, endpoint.target))
        try:
            reply = await stub.LoadBlocks(
                worker_pb2.LoadBlocksRequest(blocks=batch), timeout=REPLICATION_CALL_TIMEOUT
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

    def _channel(self, peer: str, target: str) -> grpc.aio.Channel:
        """The channel to ``peer``; a peer that moved (restarted elsewhere) gets a new one."""
        known = self._channels.get(peer)
        if known is not None and known[0] == target:
            return known[1]
        if known is not None:
            task = asyncio.ensure_future(known[1].close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        channel = grpc.aio.insecure_channel(
            target,
            options=PEER_CHANNEL_OPTIONS,
            interceptors=auth_interceptors(self._token_source),
        )
        self._channels[peer] = (target, channel)
        return channel

    def stats(self) -> dict[str, Any]:
        """Counters for logs and tests."""
        return {"sent": self.sent, "dropped": self.dropped, "queued": self._queued}
