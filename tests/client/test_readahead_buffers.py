"""Read-ahead buffers are reused only once nothing reads or writes them any more.

A regression test for a wrong-bytes read: ``FileReader._advance_window``
dropped the window's blocks that the running read was about to copy from and
gave their buffers straight back to the pool; the read-ahead it started in the
same breath took those buffers, and when that read-ahead went to the UFS (an
empty or all-suspect ring, e.g. right after a master restart) its thread wrote
the next blocks into them before the copies ran. The fake UFS here writes
before its first ``await``, as a thread may, which makes the race certain.
"""

from __future__ import annotations

import asyncio

from cachecluster.client.cluster_view import Candidate
from cachecluster.client.data_conn import DataConnectionPool
from cachecluster.client.master_api import FileInfo
from cachecluster.client.reader import BlockFetcher, BufferPool, FileReader
from cachecluster.common.block_key import BlockKey
from cachecluster.ufs.base import UfsBackend

BLOCK = 4096
BLOCKS = 64
SIZE = BLOCKS * BLOCK + 1000  # a short last block too
DATA = bytes((i * 7 + i // BLOCK) % 251 for i in range(SIZE))


class EagerUfs:
    """A UFS whose reads fill the buffer at once, then yield (as a thread may)."""

    uri = "test://eager"

    def __init__(self) -> None:
        self.reads = 0

    async def read_into(
        self, path: str, offset: int, buf: memoryview, *, version: str | None = None
    ) -> int:
        count = max(0, min(len(buf), SIZE - offset))
        buf[:count] = DATA[offset : offset + count]
        self.reads += 1
        await asyncio.sleep(0)
        return count


class NoWorkers:
    """A placement with an empty ring: every block comes from the UFS."""

    def __init__(self) -> None:
        self.ufs = EagerUfs()

    async def candidates(self, key: BlockKey) -> list[Candidate]:
        return []

    def mark_suspect(self, worker_id: str) -> None:
        pass

    def mark_healthy(self, worker_id: str) -> None:
        pass

    async def backend(self, mount_id: str) -> UfsBackend:
        return self.ufs  # type: ignore[return-value]


def _info() -> FileInfo:
    return FileInfo("ns/ds/f.bin", SIZE, False, version="v1", mount_id="m1", mount_path="f.bin")


async def _read_whole(fetcher: BlockFetcher, pool: BufferPool, chunk: int) -> bytes:
    reader = FileReader(fetcher, _info(), BLOCK, readahead_blocks=4, buffers=pool)
    buf = bytearray(chunk)
    out = bytearray()
    try:
        while n := await reader.readinto(buf):
            out += buf[:n]
            await asyncio.sleep(0.001)  # let the read-ahead finish before the next read
    finally:
        await reader.close()
    return bytes(out)


async def test_window_buffers_are_not_reused_before_their_copy() -> None:
    placement = NoWorkers()
    fetcher = BlockFetcher(placement, DataConnectionPool())
    pool = BufferPool()
    try:
        # Chunks of 8 whole blocks: each read copies 4 read-ahead blocks and
        # drops them from the window while it starts the next 4.
        got = await _read_whole(fetcher, pool, 8 * BLOCK)
    finally:
        await fetcher.close()
    assert got == DATA
    assert fetcher.stats.readahead_hits > 0


async def test_concurrent_readers_sharing_a_pool_get_their_own_bytes() -> None:
    placement = NoWorkers()
    fetcher = BlockFetcher(placement, DataConnectionPool())
    pool = BufferPool()
    try:
        chunks = [8 * BLOCK, 3 * BLOCK + 17, BLOCK, 5 * BLOCK - 1]
        results = await asyncio.gather(*(_read_whole(fetcher, pool, c) for c in chunks))
    finally:
        await fetcher.close()
    assert all(result == DATA for result in results)


async def test_buffers_go_back_to_the_pool_once_each() -> None:
    fetcher = BlockFetcher(NoWorkers(), DataConnectionPool())
    pool = BufferPool()
    try:
        await _read_whole(fetcher, pool, 8 * BLOCK)
        await asyncio.sleep(0.01)  # the last read-ahead ends after close
    finally:
        await fetcher.close()
    free = [buffer for buffers in pool._free.values() for buffer in buffers]
    assert free, "read-ahead buffers were not reused"
    assert len({id(buffer) for buffer in free}) == len(free), "a buffer was given back twice"
    assert pool.free_bytes == sum(len(buffer) for buffer in free)
