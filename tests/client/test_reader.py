"""The block reader over real data servers and real block stores, without a master.

Three in-process "workers" (a ``BlockStore`` on tmpfs behind a ``DataServer``
on 127.0.0.1 and a Unix socket) load blocks from a local-directory UFS. A
small static placement (a real ``HashRing`` over the three) stands in for the
master's ring, so these tests cover block math, read-ahead and the fallback
order (owners, other workers, the UFS) quickly; the same paths against real
master and worker processes are in ``test_cluster.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cachecluster.client.cluster_view import Candidate, order_candidates
from cachecluster.client.data_conn import DataConnectionPool, WorkerAddress
from cachecluster.client.master_api import FileInfo
from cachecluster.client.reader import BlockFetcher, BufferPool, FileReader
from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import Unavailable, VersionChanged
from cachecluster.common.frames import ReadRequest
from cachecluster.common.ring import HashRing, RingWorker
from cachecluster.ufs.base import UfsBackend
from cachecluster.ufs.registry import create_backend
from cachecluster.worker.block_store import BlockLease, BlockStore
from cachecluster.worker.data_server import DataServer
from cachecluster.worker.tiers import Medium, TierConfig

BLOCK = 64 * 1024
SIZES = {
    "empty": 0,
    "one": 1,
    "block-1": BLOCK - 1,
    "block": BLOCK,
    "block+1": BLOCK + 1,
    "several": 5 * BLOCK + 123,
}


@dataclass
class UfsOpener:
    """A worker's opener in small: block from the store, else from the UFS into the store."""

    store: BlockStore
    ufs: UfsBackend
    fail: bool = False
    gate: asyncio.Event | None = None
    opened: int = 0

    async def open_block(self, request: ReadRequest) -> BlockLease:
        if self.fail:
            raise Unavailable("test: this worker refuses")
        if self.gate is not None:
            await self.gate.wait()
        key = request.key
        assert request.block_id == BlockKey(key.mount, key.path, key.version, key.index).id

        async def load() -> bytearray:
            buffer = bytearray(BLOCK)
            got = await self.ufs.read_into(
                key.path, key.index * BLOCK, memoryview(buffer), version=key.version
            )
            del buffer[got:]
            return buffer

        self.opened += 1
        return await self.store.get(request.block_id, load)


@dataclass
class RigWorker:
    worker_id: str
    store: BlockStore
    server: DataServer
    opener: UfsOpener

    @property
    def address(self) -> WorkerAddress:
        return WorkerAddress("127.0.0.1", self.server.port, self.server.unix_path)


@dataclass
class StaticPlacement:
    """The ring of ``workers`` (one replica), suspects tried last, one UFS backend."""

    workers: dict[str, WorkerAddress]
    ufs: UfsBackend
    replicas: int = 1
    suspects: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.ring = HashRing([RingWorker(w) for w in self.workers], vnodes=200)

    async def candidates(self, key: BlockKey) -> list[Candidate]:
        order = self.ring.owners(key.placement_key(BLOCK), len(self.workers))
        return [Candidate(w, self.workers[w]) for w in order_candidates(order, self.suspects)]

    def mark_suspect(self, worker_id: str) -> None:
        self.suspects.add(worker_id)

    def mark_healthy(self, worker_id: str) -> None:
        self.suspects.discard(worker_id)

    async def backend(self, mount_id: str) -> UfsBackend:
        return self.ufs


@dataclass
class Rig:
    workers: list[RigWorker]
    placement: StaticPlacement
    fetcher: BlockFetcher
    ufs_dir: Path
    ufs: UfsBackend

    async def info(self, name: str) -> FileInfo:
        status = await self.ufs.stat(name)
        return FileInfo(
            f"ns/ds/{name}", status.size, False, status.mtime, status.version, "m1", name
        )

    async def reader(self, name: str, readahead: int = 4) -> FileReader:
        info = await self.info(name)
        return FileReader(
            self.fetcher, info, BLOCK, readahead_blocks=readahead, buffers=BufferPool()
        )

    def expected(self, name: str) -> bytes:
        return (self.ufs_dir / name).read_bytes()

    def worker(self, worker_id: str) -> RigWorker:
        return next(w for w in self.workers if w.worker_id == worker_id)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    ufs_dir = tmp_path / "ufs"
    ufs_dir.mkdir()
    rng = random.Random(7)
    for name, size in SIZES.items():
        (ufs_dir / name).write_bytes(rng.randbytes(size))
    shm_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    shm = Path(tempfile.mkdtemp(prefix="cc-client-", dir=shm_root))
    sockets = Path(tempfile.mkdtemp(prefix="ccc-", dir="/tmp"))
    ufs = create_backend(f"local://{ufs_dir}")
    workers: list[RigWorker] = []
    pool = DataConnectionPool()
    try:
        for n in range(3):
            store = BlockStore([TierConfig(Medium.MEM, str(shm / f"w{n}"), 16 * 1024 * 1024)])
            await store.start()
            opener = UfsOpener(store, ufs)
            server = DataServer(opener, unix_path=str(sockets / f"w{n}.sock"))
            workers.append(RigWorker(f"w{n}", store, server, opener))
            await server.start()
        placement = StaticPlacement({w.worker_id: w.address for w in workers}, ufs)
        fetcher = BlockFetcher(placement, pool, block_timeout=5.0)
        yield Rig(workers, placement, fetcher, ufs_dir, ufs)
        await fetcher.close()
    finally:
        await pool.close()
        for worker in workers:
            await worker.server.close()
            await worker.store.close()
        await ufs.close()
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(sockets, ignore_errors=True)


def sha(data: bytes | bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_whole_files_ranges_and_seeks(rig: Rig) -> None:
    rng = random.Random(1)
    for name, size in SIZES.items():
        reader = await rig.reader(name)
        expected = rig.expected(name)
        assert reader.size == size
        assert sha(await reader.read()) == sha(expected)
        assert await reader.read() == b""
        assert reader.tell() == size
        for _ in range(10):
            start = rng.randrange(0, size + 2)
            length = rng.randrange(0, 3 * BLOCK)
            buffer = bytearray(length)
            got = await reader.pread_into(start, buffer, readahead=False)
            assert bytes(buffer[:got]) == expected[start : start + length]
        reader.seek(-min(size, 1), os.SEEK_END)
        assert await reader.read(10) == expected[-1:]
        reader.seek(size // 2)
        reader.seek(3, os.SEEK_CUR)
        assert await reader.read(BLOCK) == expected[size // 2 + 3 : size // 2 + 3 + BLOCK]
        await reader.close()
    assert rig.fetcher.stats.ufs_reads == 0
    assert rig.fetcher.stats.worker_failures == 0


async def test_blocks_go_to_their_ring_owner(rig: Rig) -> None:
    info = await rig.info("several")
    reader = await rig.reader("several")
    await reader.read()
    for index in range(6):
        key = BlockKey("m1", "several", info.version, index)
        block_id = key.id
        owner = rig.placement.ring.owner(key.placement_key(BLOCK))
        holders = [w.worker_id for w in rig.workers if w.store.contains(block_id)]
        assert holders == [owner]


async def test_sequential_small_reads_use_readahead(rig: Rig) -> None:
    reader = await rig.reader("several", readahead=3)
    expected = rig.expected("several")
    chunks = []
    while chunk := await reader.read(10_000):
        chunks.append(chunk)
    assert b"".join(chunks) == expected
    assert rig.fetcher.stats.readahead_hits > 0
    await reader.close()
    await asyncio.sleep(0.05)
    assert not rig.fetcher._tasks
    # Whole-block reads go straight into the caller's buffer, the window behind them.
    reader = await rig.reader("several", readahead=2)
    buffer = bytearray(BLOCK)
    got = [await reader.readinto(buffer) for _ in range(7)]
    assert got == [BLOCK] * 5 + [123, 0]


async def test_random_reads_keep_no_window(rig: Rig) -> None:
    reader = await rig.reader("several")
    expected = rig.expected("several")
    reader.seek(3 * BLOCK + 5)
    assert await reader.read(100) == expected[3 * BLOCK + 5 : 3 * BLOCK + 105]
    assert not reader._window


async def test_dead_worker_falls_back_to_the_next(rig: Rig) -> None:
    info = await rig.info("several")
    first = BlockKey("m1", "several", info.version, 0)
    owner = rig.placement.ring.owner(first.placement_key(BLOCK))
    assert owner is not None
    await rig.worker(owner).server.close()
    reader = await rig.reader("several")
    assert await reader.read() == rig.expected("several")
    assert owner in rig.placement.suspects
    assert rig.fetcher.stats.worker_failures >= 1
    assert rig.fetcher.stats.ufs_reads == 0


async def test_every_worker_down_reads_the_ufs(rig: Rig) -> None:
    for worker in rig.workers:
        await worker.server.close()
    reader = await rig.reader("several")
    assert await reader.read() == rig.expected("several")
    assert rig.fetcher.stats.ufs_reads == 6
    assert rig.placement.suspects == {"w0", "w1", "w2"}


async def test_error_answer_tries_the_next_worker_without_suspecting(rig: Rig) -> None:
    rig.workers[0].opener.fail = True
    reader = await rig.reader("several")
    assert await reader.read() == rig.expected("several")
    assert rig.placement.suspects == set()
    assert rig.fetcher.stats.ufs_reads == 0


async def test_hung_worker_times_out_and_becomes_suspect(rig: Rig) -> None:
    info = await rig.info("block+1")
    owner = rig.placement.ring.owner(
        BlockKey("m1", "block+1", info.version, 0).placement_key(BLOCK)
    )
    assert owner is not None
    gate = asyncio.Event()
    rig.worker(owner).opener.gate = gate
    rig.fetcher.block_timeout = 0.5
    reader = await rig.reader("block+1", readahead=0)
    try:
        assert await reader.read() == rig.expected("block+1")
        assert owner in rig.placement.suspects
    finally:
        gate.set()


async def test_changed_file_is_version_changed(rig: Rig) -> None:
    reader = await rig.reader("block+1")
    path = rig.ufs_dir / "block+1"
    path.write_bytes(b"x" * (BLOCK + 1))
    os.utime(path, ns=(1, 1))  # a version the reader's status does not name
    with pytest.raises(VersionChanged):
        await reader.read()
