"""Reading files block by block from the workers, with read-ahead and fallback.

A file of ``size`` bytes is ``ceil(size / block_size)`` blocks. A read of a
byte range becomes one request a block (:func:`split_range`), all in flight at
once, each received straight into its slice of the caller's buffer (a
``memoryview``: no extra copy). Blocks go to different workers, so a large
read draws on several workers in parallel.

:class:`BlockFetcher` reads one block: from its owners in ring order, then
from other workers, then from the UFS directly (only in an open cluster: with a cluster secret the
client has no UFS credentials, every live worker is a candidate instead, and
each request carries the dataset's read capability, asked again once when a
worker refuses it). A worker on this host passes its block file instead of
its bytes when it can (:mod:`cachecluster.client.short_circuit`): the client
then reads the file itself. A worker whose connection
fails or times out is marked suspect (skipped for a while, but for one probe
a second) and the ring is refreshed; only the UFS's own error, or a changed
file (``VersionChanged``), reaches the caller.

:class:`FileReader` adds a position and read-ahead: on sequential access the
next ``readahead_blocks`` whole blocks are kept in flight into reusable
buffers (:class:`BufferPool`), and reads are served from them with one
``memcpy`` (about 10 GB/s here, far above the network).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from cachecluster.client.capabilities import CapabilityCache, dataset_of
from cachecluster.client.cluster_view import Candidate
from cachecluster.client.data_conn import DataConnectionPool
from cachecluster.client.master_api import FileInfo
from cachecluster.client.short_circuit import LocalBlock, ShortCircuitReads
from cachecluster.common.block_key import BlockKey, block_count, group_blocks
from cachecluster.common.errors import (
    CacheClusterError,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
    VersionChanged,
)
from cachecluster.common.frames import BlockRef
from cachecluster.ufs.base import UfsBackend

log = logging.getLogger("cachecluster.client")

DEFAULT_READAHEAD_BLOCKS = 4
DEFAULT_BLOCK_TIMEOUT = 30.0
DEFAULT_MAX_PARALLEL_BLOCKS = 32
MIN_LOCAL_FILE_SIZE = 1 << 20
"""Files smaller than this are not mapped (:meth:`BlockFetcher.local_view`, the
FUSE mount's zero-copy reads): a mapping costs more than copying a few pages.
Their block files are still asked for and held: the first read costs one
``open`` round trip (as a ``read`` would), and every read again while the file
is held is a ``preadv`` on the reader's own thread."""
LOCAL_BATCH_BLOCKS = 64
"""Block files asked of the same-host workers in one round trip ahead of a reader."""
MAX_FREE_BUFFER_BYTES = 64 * 1024 * 1024
"""Read-ahead buffers a client keeps for reuse, at most (in bytes)."""


class BlockSpan(NamedTuple):
    """The part of one block a read needs, and where it goes in the caller's buffer."""

    block: int  # the block's index in the file
    start: int  # offset in the block
    length: int
    buf_offset: int


def block_length(index: int, file_size: int, block_size: int) -> int:
    """Bytes of block ``index`` of a ``file_size``-byte file (the last one may be short)."""
    return max(0, min(block_size, file_size - index * block_size))


def split_range(offset: int, length: int, file_size: int, block_size: int) -> list[BlockSpan]:
    """The blocks covering ``length`` bytes at ``offset``, cut at the end of the file."""
    if offset < 0 or length < 0:
        raise InvalidArgument(f"range {offset}+{length}: negative")
    if block_size <= 0:
        raise InvalidArgument(f"block size {block_size}: must be > 0")
    end = min(offset + length, file_size)
    spans: list[BlockSpan] = []
    position = offset
    while position < end:
        index, start = divmod(position, block_size)
        count = min(block_size - start, end - position)
        spans.append(BlockSpan(index, start, count, position - offset))
        position += count
    return spans


class BlockPlacement(Protocol):
    """Where blocks are: what :class:`BlockFetcher` needs of the cluster view."""

    async def candidates(self, key: BlockKey) -> list[Candidate]:
        """Workers to try for a block, in order (its owners by placement key first)."""
        ...

    def mark_suspect(self, worker_id: str) -> None:
        """Avoid this worker for a while."""
        ...

    def mark_healthy(self, worker_id: str) -> None:
        """This worker answered: stop avoiding it."""
        ...

    async def backend(self, mount_id: str) -> UfsBackend:
        """The UFS backend of a mount."""
        ...


@dataclass
class FetchStats:
    """Counters of a client's block reads."""

    worker_reads: int = 0
    worker_failures: int = 0
    ufs_reads: int = 0
    readahead_hits: int = 0
    bytes_read: int = 0


class BlockFetcher:
    """Reads one block, with the fallback chain; shared by every file of a client."""

    def __init__(
        self,
        placement: BlockPlacement,
        pool: DataConnectionPool,
        *,
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
        max_parallel_blocks: int = DEFAULT_MAX_PARALLEL_BLOCKS,
        capabilities: CapabilityCache | None = None,
        local: ShortCircuitReads | None = None,
    ) -> None:
        self.placement = placement
        self.pool = pool
        self.capabilities = capabilities
        self.local = local
        self.block_timeout = block_timeout
        self.stats = FetchStats()
        self._slots = asyncio.Semaphore(max(1, max_parallel_blocks))
        self._tasks: set[asyncio.Task[int]] = set()
        self._quiet: set[asyncio.Task[None]] = set()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # made outside a loop: nothing is asked ahead from other threads
            self._loop = None

    async def read(
        self,
        info: FileInfo,
        block_size: int,
        index: int,
        start: int,
        view: memoryview,
        *,
        file_blocks: int = 0,
    ) -> int:
        """Fill ``view`` with the bytes at ``start`` of block ``index`` of ``info``.

        ``view`` must not reach past the block or the file. Returns ``len(view)``.
        ``file_blocks``: a sequential reader's hint (the file's block count), which
        makes a worker fetch the blocks after this one with it on a miss.
        """
        expected = len(view)
        if expected == 0:
            return 0
        key = BlockKey(info.mount_id, info.mount_path, info.version, index)
        block_id = key.id
        ref = BlockRef(info.mount_id, info.mount_path, info.version, index)
        async with self._slots:
            try:
                candidates = await self.placement.candidates(key)
            except Unavailable as exc:  # no ring yet and no master: the UFS still works
                log.debug("no ring for block %s: %s", block_id, exc)
                candidates = []
            for candidate in candidates:
                try:
                    async with asyncio.timeout(self.block_timeout):
                        got = await self._from_worker(
                            candidate,
                            block_id,
                            ref,
                            start,
                            view,
                            dataset_of(info.path),
                            file_blocks,
                        )
                except VersionChanged:
                    raise
                except (CacheClusterError, OSError, TimeoutError) as exc:
                    self.stats.worker_failures += 1
                    if isinstance(exc, TimeoutError):
                        self.placement.mark_suspect(candidate.worker_id)
                    log.info(
                        "block %s from worker %s failed (%s: %s); trying the next source",
                        block_id,
                        candidate.worker_id,
                        type(exc).__name__,
                        exc,
                    )
                    continue
                if got == expected:
                    self.placement.mark_healthy(candidate.worker_id)
                    self.stats.worker_reads += 1
                    self.stats.bytes_read += got
                    return got
                self.stats.worker_failures += 1
                log.info(
                    "block %s from worker %s: %d bytes where %d were due; trying the next source",
                    block_id,
                    candidate.worker_id,
                    got,
                    expected,
                )
            if self.capabilities is not None and self.capabilities.required:
                raise Unavailable(
                    f"block {index} of {info.path}: no worker could serve it "
                    f"({len(candidates)} tried), and this cluster has no UFS reads for clients"
                )
            return await self._from_ufs(info, block_size, index, start, view)

    async def _from_worker(
        self,
        candidate: Candidate,
        block_id: str,
        ref: BlockRef,
        start: int,
        view: memoryview,
        dataset: str,
        file_blocks: int = 0,
    ) -> int:
        block = await self._local_block(candidate, block_id, ref, dataset, file_blocks)
        ahead = max(0, file_blocks - 1 - ref.index)
        if block is not None:
            return await block.read_into(start, view)
        try:
            conn = await self.pool.get(candidate.address)
        except Unavailable:
            self.placement.mark_suspect(candidate.worker_id)
            raise
        cap = None if self.capabilities is None else await self.capabilities.get(dataset)
        try:
            try:
                return await conn.read_block(
                    block_id, ref, start, len(view), view, cap=cap, ahead=ahead
                )
            except PermissionDenied:
                if self.capabilities is None:
                    raise
                # Expired or outdated (a mount changed): ask once for a new one.
                self.capabilities.drop(dataset, cap)
                cap = await self.capabilities.get(dataset)
                return await conn.read_block(
                    block_id, ref, start, len(view), view, cap=cap, ahead=ahead
                )
        except Unavailable:
            if conn.closed:  # the connection died, not just an error answer
                self.placement.mark_suspect(candidate.worker_id)
            raise

    async def _local_block(
        self,
        candidate: Candidate,
        block_id: str,
        ref: BlockRef,
        dataset: str,
        file_blocks: int = 0,
    ) -> LocalBlock | None:
        """The block file of a same-host worker, or None (read over the data protocol)."""
        local = self.local
        if local is None or not local.usable(candidate.address):
            return None
        address = candidate.address
        cap = None if self.capabilities is None else await self.capabilities.get(dataset)
        try:
            return await local.block(address, block_id, ref, cap, file_blocks=file_blocks)
        except PermissionDenied:
            if self.capabilities is None:
                raise
            self.capabilities.drop(dataset, cap)
            cap = await self.capabilities.get(dataset)
            return await local.block(address, block_id, ref, cap, file_blocks=file_blocks)

    async def local_block(
        self, info: FileInfo, index: int, *, file_blocks: int = 0
    ) -> LocalBlock | None:
        """The file of block ``index`` as its owner on this host passed it, or None.

        None when the owner is not on this host, the file is small
        (:data:`MIN_LOCAL_FILE_SIZE`), or anything fails: then :meth:`read`
        it (which has the fallbacks). Only ``VersionChanged`` is raised.
        ``file_blocks``: a sequential reader's hint (the file's block count).
        """
        if self.local is None or info.size < MIN_LOCAL_FILE_SIZE:
            return None
        key = BlockKey(info.mount_id, info.mount_path, info.version, index)
        block_id = key.id
        ref = BlockRef(info.mount_id, info.mount_path, info.version, index)
        try:
            candidates = await self.placement.candidates(key)
            if not candidates:
                return None
            return await self._local_block(
                candidates[0], block_id, ref, dataset_of(info.path), file_blocks
            )
        except VersionChanged:
            raise
        except (CacheClusterError, OSError) as exc:
            log.debug("block %s: not read locally (%s: %s)", block_id, type(exc).__name__, exc)
            return None

    async def local_view(
        self, info: FileInfo, index: int, start: int, length: int, *, file_blocks: int = 0
    ) -> memoryview | None:
        """Bytes of block ``index`` without a copy, mapped from its owner's memory tier.

        None as for :meth:`local_block`, and for a block not on a memory tier.
        ``file_blocks``: a sequential reader's hint (the file's block count).
        """
        block = await self.local_block(info, index, file_blocks=file_blocks)
        if block is None or not block.memory or start + length > block.length:
            return None
        try:
            view = block.view()[start : start + length]
        except (OSError, ValueError) as exc:  # retired meanwhile, or the mapping failed
            log.debug("block %d of %s: no mapping (%s)", index, info.path, exc)
            return None
        self.stats.worker_reads += 1
        self.stats.bytes_read += length
        return view

    async def prefetch_local(
        self, info: FileInfo, indexes: range, *, fetch: bool = True, file_blocks: int = 0
    ) -> None:
        """Ask the same-host owners of blocks ``indexes`` for their files, a batch per worker.

        One round trip per worker (see :meth:`ShortCircuitReads.prefetch`);
        blocks held already are skipped. With ``fetch`` False only blocks the
        owners hold are asked for: a cold block is left for its reader.
        ``file_blocks``: a sequential reader's hint (the file's block count).
        Nothing is raised: a block that could not be had is asked for (or
        read) again when it is read.
        """
        blocks = [(info, index) for index in indexes]
        await self.prefetch_blocks(blocks, fetch=fetch, file_blocks=file_blocks)

    async def prefetch_blocks(
        self, blocks: list[tuple[FileInfo, int]], *, fetch: bool = True, file_blocks: int = 0
    ) -> None:
        """:meth:`prefetch_local` for blocks of several files of one dataset.

        ``file_blocks`` is a hint for blocks of one file only (0 for several files).
        """
        local = self.local
        if local is None or not blocks:
            return
        try:
            groups: dict[str, tuple[Candidate, list[tuple[str, BlockRef]]]] = {}
            for info, index in blocks:
                key = BlockKey(info.mount_id, info.mount_path, info.version, index)
                block_id = key.id
                if local.held(block_id) is not None:
                    continue
                candidates = await self.placement.candidates(key)
                if not candidates or not local.usable(candidates[0].address):
                    continue
                ref = BlockRef(info.mount_id, info.mount_path, info.version, index)
                group = groups.setdefault(candidates[0].worker_id, (candidates[0], []))
                group[1].append((block_id, ref))
            if not groups:
                return
            dataset = dataset_of(blocks[0][0].path)
            cap = None if self.capabilities is None else await self.capabilities.get(dataset)
            await asyncio.gather(
                *(
                    local.prefetch(owner.address, items, cap, fetch=fetch, file_blocks=file_blocks)
                    for owner, items in groups.values()
                )
            )
        except (CacheClusterError, OSError) as exc:
            where = blocks[0][0].path
            log.debug("blocks of %s...: not asked ahead (%s: %s)", where, type(exc).__name__, exc)

    async def _from_ufs(
        self, info: FileInfo, block_size: int, index: int, start: int, view: memoryview
    ) -> int:
        backend = await self.placement.backend(info.mount_id)
        offset = index * block_size + start
        got = await backend.read_into(info.mount_path, offset, view, version=info.version or None)
        if got != len(view):
            raise VersionChanged(
                f"{info.path}: {got} bytes at {offset} where {len(view)} were due "
                "(the file changed: stat it again)"
            )
        self.stats.ufs_reads += 1
        self.stats.bytes_read += got
        return got

    def call_on_loop(self, callback: Callable[[int], None], argument: int) -> bool:
        """Run ``callback(argument)`` on this fetcher's loop soon (safe from any thread).

        False (nothing done) when the fetcher was made outside a loop or its loop is closed.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(callback, argument)
        except RuntimeError:  # closed meanwhile
            return False
        return True

    def spawn_quiet(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background task (asking ahead) that :meth:`close` cancels; nothing to wait for."""
        task = asyncio.ensure_future(coro)
        self._quiet.add(task)
        task.add_done_callback(self._quiet.discard)

    def spawn(self, coro: Awaitable[int]) -> asyncio.Task[int]:
        """Run a background block read (read-ahead) that :meth:`close` cancels."""
        task: asyncio.Task[int] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Cancel the read-ahead still in flight."""
        tasks: list[asyncio.Task[Any]] = [*self._tasks, *self._quiet]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class BufferPool:
    """Reusable block buffers: touching fresh pages is slow, copying into used ones fast."""

    def __init__(self, max_free_bytes: int = MAX_FREE_BUFFER_BYTES) -> None:
        self.max_free_bytes = max_free_bytes
        self.free_bytes = 0
        self._free: dict[int, list[bytearray]] = {}

    def get(self, size: int) -> bytearray:
        """A buffer of ``size`` bytes (contents undefined)."""
        free = self._free.get(size)
        if not free:
            return bytearray(size)
        self.free_bytes -= size
        return free.pop()

    def put(self, buffer: bytearray) -> None:
        """Give a buffer back; nobody may use it afterwards. Kept only while under the cap."""
        if self.free_bytes + len(buffer) <= self.max_free_bytes:
            self._free.setdefault(len(buffer), []).append(buffer)
            self.free_bytes += len(buffer)


@dataclass(slots=True)
class _Prefetch:
    """One read-ahead block: its buffer, the fetch filling it, and who still needs it.

    The buffer goes back to the pool only when the entry has left the window
    (``dropped``), its fetch has ended (nothing writes into it any more) and
    no :meth:`FileReader._copy` still has to read it (``copies``).
    """

    index: int
    buffer: bytearray
    length: int
    task: asyncio.Task[int]
    copies: int = 0  # _copy calls made for this entry that have not finished
    dropped: bool = False  # out of the window: nobody new will use it
    returned: bool = False  # its buffer is back in the pool


class FileReader:
    """A position, read-ahead and ranged reads over one file of a dataset.

    Not safe for concurrent calls on one reader; open one reader a task.
    """

    def __init__(
        self,
        fetcher: BlockFetcher,
        info: FileInfo,
        block_size: int,
        *,
        readahead_blocks: int = DEFAULT_READAHEAD_BLOCKS,
        buffers: BufferPool | None = None,
    ) -> None:
        if info.is_dir:
            raise IsADirectoryError(f"{info.path}: is a directory")
        if block_size <= 0:
            raise InvalidArgument(f"block size {block_size}: must be > 0")
        self.fetcher = fetcher
        self.info = info
        self.block_size = block_size
        self.readahead_blocks = max(0, readahead_blocks)
        self.buffers = buffers if buffers is not None else BufferPool()
        self._position = 0
        self._expected = 0  # where a sequential read would start next
        self._sequential = True  # the last read started where the one before ended
        self._window: dict[int, _Prefetch] = {}
        self._block_ids: dict[int, str] = {}
        self._asking_ahead = False  # a batch of block files is being asked for (_ask_ahead)
        # The first block the last batch asked "only if held" and did not get (-1: none).
        self._cold_from = -1
        self._closed = False

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return self.info.size

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def tell(self) -> int:
        """The current position."""
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position (``whence`` as in :meth:`io.IOBase.seek`); returns it."""
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise InvalidArgument(f"seek: whence {whence} is not 0, 1 or 2")
        if position < 0:
            raise InvalidArgument(f"seek: position {position} is negative")
        self._position = position
        return position

    async def readinto(self, buf: memoryview | bytearray) -> int:
        """Read at the position into ``buf``; 0 at the end of the file."""
        got = await self.pread_into(self._position, buf)
        self._position += got
        return got

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes at the position (all the rest when negative)."""
        remaining = max(0, self.size - self._position)
        count = remaining if size is None or size < 0 else min(size, remaining)
        buffer = bytearray(count)
        got = await self.readinto(buffer)
        del buffer[got:]
        return bytes(buffer)

    async def pread_into(
        self, offset: int, buf: memoryview | bytearray, *, readahead: bool = True
    ) -> int:
        """Read at ``offset`` into ``buf`` without moving the position; returns the count.

        Reads starting where the previous one ended count as sequential and
        keep the read-ahead window going; pass ``readahead=False`` for a
        one-shot ranged read.
        """
        self._check_open()
        view = memoryview(buf).cast("B")
        if view.readonly:
            raise InvalidArgument("readinto needs a writable buffer")
        if offset < 0:
            raise InvalidArgument(f"read at {offset}: negative offset")
        length = min(len(view), self.size - offset)
        if length <= 0:
            return 0
        spans = split_range(offset, length, self.size, self.block_size)
        if self.fetcher.local is not None and await self._local_read(spans, view, readahead):
            return length
        sequential = (
            readahead
            and self.readahead_blocks > 0
            and (offset == self._expected or spans[0].block in self._window)
        )
        jobs: list[Awaitable[int]] = []
        for span in spans:
            target = view[span.buf_offset : span.buf_offset + span.length]
            entry = self._window.get(span.block)
            whole = span.length == block_length(span.block, self.size, self.block_size)
            if entry is None and sequential and not whole:
                entry = self._prefetch(span.block)
            if entry is not None:
                # Counted now, before _advance_window may drop the entry below:
                # its buffer must not go back to the pool (and into another
                # block's fetch) before this copy has read it.
                entry.copies += 1
                jobs.append(self._copy(entry, span, target))
            else:
                jobs.append(
                    self.fetcher.read(self.info, self.block_size, span.block, span.start, target)
                )
        end = offset + length
        if sequential:
            self._advance_window(end, spans[-1].block)
        results = await asyncio.gather(*jobs, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                if isinstance(result, VersionChanged):
                    self._drop_window()
                raise result
        if readahead:
            self._expected = end
            if not sequential:
                self._drop_window(keep=range(spans[0].block, spans[-1].block + 1))
        return length

    def mapped_view(self, offset: int, size: int) -> memoryview | None:
        """Up to ``size`` bytes at ``offset`` in one block, from its mapping made already, or None.

        Not a coroutine: a held, fresh block that :meth:`local_view` has
        mapped before (for this or another reader of the file) gives a view
        without a round trip and without mapping anew (populating a
        mapping costs more than copying a block read once). Loop thread only.
        """
        local = self.fetcher.local
        length = min(size, self.size - offset)
        if local is None or self._closed or offset < 0 or length <= 0:
            return None
        index = offset // self.block_size
        if (offset + length - 1) // self.block_size != index:
            return None
        block = local.held(self._block_id(index))
        if block is None or not block.mapped:
            return None
        start = offset - index * self.block_size
        try:
            return block.view()[start : start + length]
        except (OSError, ValueError):  # retired meanwhile
            return None

    def read_held(self, offset: int, buf: memoryview | bytearray) -> int | None:
        """Read at ``offset`` into ``buf`` from block files held already, on this thread.

        The fast path of the blocking client: no event loop, one ``preadv``
        a block straight into ``buf``. Safe on any thread while the loop runs
        (the blocks are pinned for the copy); the position does not move.
        None when a block of the range is not held fresh (or was retired
        meanwhile): then :meth:`pread_into`, which has every fallback (bytes
        it wrote to ``buf`` meanwhile are overwritten). The blocks are those
        of the version opened (block ids carry it), so an old file of a block
        the worker evicted meanwhile still has the right bytes. A block past
        its ``ttl`` is still read for another ``ttl`` while it is asked for
        again in the background (refused: it is dropped at once); blocks
        ahead of a sequential reader are asked for in batches.
        """
        local = self.fetcher.local
        if local is None or self._closed or offset < 0:
            return None
        view = memoryview(buf).cast("B")
        if view.readonly:
            return None
        length = min(len(view), self.size - offset)
        if length <= 0:
            return 0 if len(view) == 0 or offset >= self.size else None
        block_size = self.block_size
        first, last = offset // block_size, (offset + length - 1) // block_size
        blocks: list[LocalBlock] = []
        renew = -1  # the first block past its time: asked again in the background
        now = time.monotonic()
        for index in range(first, last + 1):
            block = local.held(self._block_id(index), stale=local.ttl)
            if block is None:
                return None
            if renew < 0 and block.expires <= now:
                renew = index
            blocks.append(block)
        position = offset
        end = offset + length
        for index, block in enumerate(blocks, first):
            start = position - index * block_size
            count = min(block_size - start, end - position)
            target = view[position - offset : position - offset + count]
            if block.read_now(start, target) != count:
                return None
            position += count
        self.fetcher.stats.worker_reads += len(blocks)
        self.fetcher.stats.bytes_read += length
        self._sequential = offset == self._expected
        self._expected = end
        if renew < 0:
            renew = self._due_ahead(last, stale=local.ttl)
        if renew >= 0 and not self._asking_ahead:
            self._asking_ahead = True
            if not self.fetcher.call_on_loop(self._ask_ahead, renew):
                self._asking_ahead = False
        return length

    def _block_id(self, index: int) -> str:
        block_id = self._block_ids.get(index)
        if block_id is None:
            info = self.info
            block_id = BlockKey(info.mount_id, info.mount_path, info.version, index).id
            if len(self._block_ids) >= 4 * LOCAL_BATCH_BLOCKS:
                self._block_ids.clear()
            self._block_ids[index] = block_id
        return block_id

    def _due_ahead(self, last: int, *, stale: float) -> int:
        """After a read up to block ``last``: the block to ask ahead from, or -1.

        The blocks after ``last`` are asked for (a batch, :meth:`_ask_ahead`)
        when the one ``readahead_blocks`` on is not held (or, with ``stale``
        seconds of grace, not fresh).
        """
        local = self.fetcher.local
        ahead = last + self.readahead_blocks
        if (
            local is None
            or not self.readahead_blocks
            or ahead >= block_count(self.size, self.block_size)
            or local.held(self._block_id(ahead), stale=stale) is not None
        ):
            return -1
        return last + 1

    def _hint(self, sequential: bool) -> int:
        """The ``file_blocks`` hint of a read: the file's block count when it is sequential.

        None (0) without read-ahead: a reader that asked for none gets no
        blocks fetched ahead by their owners either.
        """
        if not sequential or not self.readahead_blocks:
            return 0
        return block_count(self.size, self.block_size)

    def _ask_ahead(self, index: int) -> None:
        """Ask (in the background, on the loop) for the files of the blocks from ``index`` on.

        A batch of :data:`LOCAL_BATCH_BLOCKS`, so that a reader about to read
        there finds them held. For a sequential reader the first
        ``readahead_blocks``, and the first block of the next placement
        group, are fetched by their owners if cold, with the hint that makes
        an owner fetch the rest of their group with them: the next group's
        UFS request (about 70 ms to its first byte from a cold S3 server)
        then starts a group ahead of the reader, not four blocks. The others
        only if held already, so that a cold file is not fetched 64 blocks at
        once, nor blocks after a random read. ``_asking_ahead`` is set by the
        caller and cleared when the batch is answered.

        While the file is being fetched (the last batch found a block not
        cached: :attr:`_cold_from`), the "only if held" part stops
        ``readahead_blocks`` past that block instead of running to the end
        of the batch: a cold sequential read otherwise asked again, batch
        after batch, for some 55 blocks the owners did not hold yet (about
        1,600 refused ``open`` requests a GiB, each a round of Python work
        in the worker and here). It grows again as the blocks turn up held.
        """
        total = block_count(self.size, self.block_size)
        end = min(total, index + LOCAL_BATCH_BLOCKS)
        if self._closed or index >= end:
            self._asking_ahead = False
            return
        fetched: list[int] = []
        if self._sequential:
            fetched = list(range(index, min(end, index + self.readahead_blocks)))
            group = group_blocks(self.block_size)
            following = (index // group + 1) * group
            if following < end and following not in fetched:
                fetched.append(following)
        held_end = end
        if self._cold_from >= 0:
            reach = max(self._cold_from, index + self.readahead_blocks) + self.readahead_blocks
            held_end = min(end, reach)
        if_held = [i for i in range(index, held_end) if i not in fetched]
        info = self.info

        async def ask() -> None:
            try:
                await asyncio.gather(
                    self.fetcher.prefetch_blocks([(info, i) for i in fetched], file_blocks=total),
                    self.fetcher.prefetch_blocks([(info, i) for i in if_held], fetch=False),
                )
                self._cold_from = self._first_not_held(if_held, -1 if held_end == end else held_end)
            finally:
                self._asking_ahead = False

        self.fetcher.spawn_quiet(ask())

    def _first_not_held(self, indexes: list[int], otherwise: int) -> int:
        """The first of ``indexes`` whose block file is not held, or ``otherwise``."""
        local = self.fetcher.local
        if local is None:
            return otherwise
        for index in indexes:
            if local.held(self._block_id(index)) is None:
                return index
        return otherwise

    async def _local_read(self, spans: list[BlockSpan], view: memoryview, readahead: bool) -> bool:
        """Read every span from the block files of same-host workers; False if one is not.

        One copy (``preadv`` into ``view``) and no read-ahead buffers: the
        files of the blocks after are asked for ahead instead (:meth:`_ask_ahead`).
        The files of a range over several blocks are asked for in one round trip.
        """
        start = spans[0].block * self.block_size + spans[0].start
        sequential = readahead and start == self._expected
        hint = self._hint(sequential)
        if len(spans) > 1:
            indexes = range(spans[0].block, spans[-1].block + 1)
            await self.fetcher.prefetch_local(self.info, indexes, file_blocks=hint)
        blocks: list[LocalBlock] = []
        for span in spans:
            block = await self.fetcher.local_block(self.info, span.block, file_blocks=hint)
            if block is None or block.length < span.start + span.length:
                return False
            blocks.append(block)
        for block, span in zip(blocks, spans, strict=True):
            target = view[span.buf_offset : span.buf_offset + span.length]
            try:
                got = await block.read_into(span.start, target)
            except OSError as exc:  # retired meanwhile: the data protocol rewrites it all
                log.debug("block %d of %s: local read failed (%s)", span.block, self.info.path, exc)
                return False
            if got != span.length:
                return False
        self.fetcher.stats.worker_reads += len(spans)
        self.fetcher.stats.bytes_read += sum(span.length for span in spans)
        if readahead:
            self._drop_window()
            self._sequential = sequential
            self._expected = spans[-1].block * self.block_size + spans[-1].start + spans[-1].length
            start = self._due_ahead(spans[-1].block, stale=0.0)
            if start >= 0 and not self._asking_ahead:
                self._asking_ahead = True
                self._ask_ahead(start)
        return True

    async def local_view(self, offset: int, size: int) -> memoryview | None:
        """Up to ``size`` bytes at ``offset`` from the block files of same-host workers.

        Within one block the bytes are a read-only view of the block mapped
        from its owner's memory tier: no copy. A range over several blocks
        (a reader's unaligned buffer makes the kernel's ``direct_io``
        requests straddle block ends) is one copy of their views. None when
        the range is empty or a block cannot be mapped (see
        :meth:`BlockFetcher.local_view`): then read it with
        :meth:`pread_into`. Blocks after it are mapped ahead.
        """
        self._check_open()
        length = min(size, self.size - offset)
        if offset < 0 or length <= 0:
            return None
        # The kernel's reads of a sequential reader come a few at a time, a
        # little out of order: a view within a block of the last one is sequential.
        block_size = self.block_size
        self._sequential = abs(offset // block_size - self._expected // block_size) <= 1
        self._expected = offset + length
        hint = self._hint(self._sequential)
        spans = split_range(offset, length, self.size, block_size)
        views: list[memoryview] = []
        for span in spans:
            view = await self.fetcher.local_view(
                self.info, span.block, span.start, span.length, file_blocks=hint
            )
            if view is None:
                return None
            views.append(view)
        if self.readahead_blocks:
            self._map_ahead(spans[-1].block)
        return views[0] if len(views) == 1 else memoryview(b"".join(views))

    def _map_ahead(self, index: int) -> None:
        """After a view of block ``index``: ask for the files of the blocks after it.

        A batch in one round trip a worker (:meth:`_ask_ahead`: the first
        ``readahead_blocks`` fetched if cold, the rest only if held), when
        the block ``readahead_blocks`` on (or the file's last) is not held
        yet: one ``open`` a block would cost a round trip each on a fresh client.
        """
        local = self.fetcher.local
        ahead = min(index + self.readahead_blocks, block_count(self.size, self.block_size) - 1)
        if local is None or ahead <= index or self._asking_ahead:
            return
        if local.held(self._block_id(ahead)) is None:
            self._asking_ahead = True
            self._ask_ahead(index + 1)

    def close_now(self) -> bool:
        """Close at once when no read-ahead buffer is in use (any thread); False: :meth:`close`."""
        if self._window:
            return False
        self._closed = True
        return True

    async def close(self) -> None:
        """Stop read-ahead for this file; its buffers go back to the pool when their reads end."""
        if not self._closed:
            self._closed = True
            self._drop_window()

    # ------------------------------------------------------------ read-ahead

    def _prefetch(self, index: int) -> _Prefetch:
        length = block_length(index, self.size, self.block_size)
        buffer = self.buffers.get(self.block_size)
        view = memoryview(buffer)[:length]
        task = self.fetcher.spawn(
            self.fetcher.read(
                self.info, self.block_size, index, 0, view, file_blocks=self._hint(True)
            )
        )
        entry = _Prefetch(index, buffer, length, task)

        def fetch_done(task: asyncio.Task[int]) -> None:
            if not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" warning; _copy reports it
            self._give_back(entry)

        task.add_done_callback(fetch_done)
        self._window[index] = entry
        return entry

    def _advance_window(self, end: int, last_index: int) -> None:
        """Drop blocks wholly before ``end``; keep the next blocks in flight."""
        current = end // self.block_size
        for index in [i for i in self._window if i < current]:
            self._release(self._window.pop(index))
        block_total = block_count(self.size, self.block_size)
        first = last_index + 1
        for index in range(first, min(first + self.readahead_blocks, block_total)):
            if index not in self._window:
                self._prefetch(index)

    async def _copy(self, entry: _Prefetch, span: BlockSpan, target: memoryview) -> int:
        """Wait for a read-ahead block, then copy ``span`` of it into ``target``.

        The caller counted this copy in ``entry.copies`` when it made the
        coroutine; the count drops when the copy is done (or failed).
        """
        try:
            try:
                await asyncio.shield(entry.task)
            except asyncio.CancelledError:
                if entry.task.cancelled():  # the client is closing
                    raise Unavailable(f"{self.info.path}: client closed during the read") from None
                raise
            except BaseException:
                if self._window.get(entry.index) is entry:
                    self._release(self._window.pop(entry.index))
                raise
            target[:] = memoryview(entry.buffer)[span.start : span.start + span.length]
            self.fetcher.stats.readahead_hits += 1
            return span.length
        finally:
            entry.copies -= 1
            self._give_back(entry)

    def _drop_window(self, keep: range = range(0)) -> None:
        for index in [i for i in self._window if i not in keep]:
            self._release(self._window.pop(index))

    def _release(self, entry: _Prefetch) -> None:
        """The entry left the window: its buffer goes back once nobody uses it."""
        entry.dropped = True
        self._give_back(entry)

    def _give_back(self, entry: _Prefetch) -> None:
        """Return the entry's buffer to the pool if nothing can touch it any more.

        Called when the entry is dropped, when its fetch ends and when a copy
        from it ends. Giving it back earlier would let the next read-ahead
        fetch (a UFS read writes from a thread at once) overwrite bytes a
        :meth:`_copy` has yet to read: another block's bytes in the caller's
        buffer. A copy whose task was cancelled before it ever ran keeps its
        count: that buffer is then left to the garbage collector, never reused.
        """
        if entry.returned or not entry.dropped or entry.copies or not entry.task.done():
            return
        entry.returned = True
        self.buffers.put(entry.buffer)

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidArgument(f"{self.info.path}: read of a closed file")
