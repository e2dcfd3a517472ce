"""Sequential read misses: the rest of a placement group with one UFS request.

Blocks are placed by group (:meth:`BlockKey.placement_key`): the 16
consecutive 4 MiB blocks of one file version sit on one worker. A sequential
reader's read-ahead asks that worker for several of them at once; fetched one
request a block, they make the UFS serve many concurrent 4 MiB ranges, which
a cold object store does slower than one stream. So:

* :class:`MissTracker` remembers, per file, the last block this worker
  fetched on a miss (or served right after it) and when. A miss of the very next block within
  :data:`SEQUENTIAL_WINDOW_S` is sequential. A random read's miss is
  sequential only when it happens to land right after the previous miss
  (about one in the file's block count), so random reads keep fetching just
  their block.
* On a sequential miss the worker fetches the missed block and the rest of
  its group (up to the end of the file) as one :class:`BlockRun`: one scatter
  read (one ranged GET pinned to the file version with ``If-Match``) into
  one buffer a block. Each block is handed out as soon as its bytes are in
  (``filled``), so the reader of the first block does not wait for the last.

A run never mixes versions: its one request is pinned to the version in the
block keys; a changed file fails every block not yet received with
``VersionChanged``.
"""

from __future__ import annotations

import asyncio
import collections
import mmap
from collections.abc import Callable, Sequence

from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import NotFound, Unavailable
from cachecluster.ufs.base import UfsBackend

SEQUENTIAL_WINDOW_S = 2.0
"""Seconds a miss counts as the previous one of a sequential reader."""
MAX_TRACKED_FILES = 1024
"""Files whose last miss is remembered (least recently missed forgotten first)."""

BlockBuffer = bytearray | mmap.mmap
"""Where a block's bytes are received: a writable buffer at least a block long."""

_FileId = tuple[str, str, str]


def _file_of(key: BlockKey) -> _FileId:
    return (key.mount_id, key.path, key.version)


class MissTracker:
    """Which file a worker missed last where: tells a sequential miss from a random one."""

    def __init__(
        self, window_s: float = SEQUENTIAL_WINDOW_S, max_files: int = MAX_TRACKED_FILES
    ) -> None:
        self.window_s = window_s
        self.max_files = max_files
        self._last: collections.OrderedDict[_FileId, tuple[int, float]] = collections.OrderedDict()

    def sequential(self, key: BlockKey, now: float) -> bool:
        """Whether a miss of ``key`` follows the last miss of its file closely."""
        last = self._last.get(_file_of(key))
        return last is not None and last[0] == key.index - 1 and now - last[1] <= self.window_s

    def passed(self, key: BlockKey, now: float) -> None:
        """A reader got ``key`` from the cache: a sequential reader goes on past it."""
        file = _file_of(key)
        last = self._last.get(file)
        if last is not None and last[0] == key.index - 1:
            self._last[file] = (key.index, now)

    def note(self, key: BlockKey, last_index: int, now: float) -> None:
        """Blocks of ``key``'s file up to ``last_index`` are being fetched as of ``now``."""
        file = _file_of(key)
        self._last[file] = (last_index, now)
        self._last.move_to_end(file)
        while len(self._last) > self.max_files:
            self._last.popitem(last=False)


class BlockRun:
    """One scatter read of consecutive blocks of one file; each block usable once it is in.

    ``keys`` are consecutive blocks of one file version, ``buffers`` one a
    block (at least ``block_size`` long). :meth:`start` begins the read;
    :meth:`block` waits for one block's bytes (a view of its buffer).
    """

    def __init__(
        self, keys: Sequence[BlockKey], block_size: int, buffers: Sequence[BlockBuffer]
    ) -> None:
        if len(keys) != len(buffers) or not keys:
            raise ValueError("a run needs one buffer a block, and at least one block")
        self.keys = list(keys)
        self.block_size = block_size
        self.buffers = list(buffers)
        self._loop = asyncio.get_running_loop()
        self._counts: list[asyncio.Future[int]] = [self._loop.create_future() for _ in keys]
        self._claimed = [False] * len(self.keys)
        self._task: asyncio.Task[None] | None = None

    @property
    def offset(self) -> int:
        """Where the run starts in the file."""
        return self.keys[0].index * self.block_size

    def start(self, backend: UfsBackend, where: str) -> asyncio.Task[None]:
        """Begin the read from ``backend`` (``where`` names the file in errors)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._fetch(backend, where))
            # Cancelled before it ever ran, _fetch cannot fail the blocks itself.
            self._task.add_done_callback(
                lambda _: self._fail(Unavailable(f"{where}: the read of blocks was cancelled"))
            )
        return self._task

    def claim(self, position: int) -> bool:
        """Take block ``position``'s buffer for one load; False if a load took it before.

        The first load stores the block and may give the buffer back to a pool
        for other reads: a second one must fetch the block itself.
        """
        if self._claimed[position]:
            return False
        self._claimed[position] = True
        return True

    async def block(self, position: int, where: str) -> memoryview:
        """The bytes of block ``keys[position]`` once received; ``NotFound`` past the end."""
        count = await asyncio.shield(self._counts[position])
        if count <= 0:
            key = self.keys[position]
            raise NotFound(
                f"block {key.index} of {where} is past the end of the file "
                f"(offset {key.index * self.block_size})"
            )
        return memoryview(self.buffers[position])[:count]

    def _filled(self, position: int, count: int) -> None:
        """A pool thread filled buffer ``position``: publish it on the loop."""
        self._loop.call_soon_threadsafe(self._publish, position, count)

    def _publish(self, position: int, count: int) -> None:
        future = self._counts[position]
        if not future.done():
            future.set_result(count)

    async def _fetch(self, backend: UfsBackend, where: str) -> None:
        views = [memoryview(buffer)[: self.block_size] for buffer in self.buffers]
        try:
            total = await backend.read_blocks_into(
                self.keys[0].path,
                self.offset,
                views,
                version=self.keys[0].version,
                filled=self._filled,
            )
        except asyncio.CancelledError:
            self._fail(Unavailable(f"{where}: the read of blocks from {self.offset} was cancelled"))
            raise
        except Exception as error:
            self._fail(error)
            return
        finally:
            views.clear()
        # Every ``filled`` call was queued before the read returned: only the
        # block the file ends in (short) and those past the end are left.
        for position in range(len(self.keys)):
            self._publish(
                position, max(0, min(self.block_size, total - position * self.block_size))
            )

    def _fail(self, error: BaseException) -> None:
        for future in self._counts:
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a block nobody waits for is no error to log


def run_keys(
    key: BlockKey,
    file_blocks: int,
    group: int,
    cached: Callable[[str], bool],
) -> list[BlockKey]:
    """``key`` and the blocks after it in its group and file, up to the first one ``cached``."""
    end = min(file_blocks, (key.index // group + 1) * group)
    keys = [key]
    for index in range(key.index + 1, end):
        following = BlockKey(key.mount_id, key.path, key.version, index)
        if cached(following.id):
            break
        keys.append(following)
    return keys
