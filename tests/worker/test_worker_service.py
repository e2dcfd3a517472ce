"""WorkerService, the master link and replication, in-process against the real master.

Every test runs a real :class:`MasterServer` (gRPC on 127.0.0.1, port 0) and
real workers (``run_worker`` on the test's loop, real block stores on tmpfs,
real local-directory UFS), so the calls cross real gRPC and data sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from cachecluster.client.data_conn import DataConnection
from cachecluster.common.block_key import BlockKey
from cachecluster.common.endpoint_file import read_endpoint_file
from cachecluster.common.frames import BlockRef
from cachecluster.common.ring import HashRing, RingSnapshot, RingWorker
from cachecluster.master.config import MasterConfig
from cachecluster.master.server import MasterServer
from cachecluster.protos import common_pb2, master_pb2, master_pb2_grpc, worker_pb2, worker_pb2_grpc
from cachecluster.worker.config import build_worker_config
from cachecluster.worker.server import run_worker

BLOCK = 64 * 1024
NAMESPACE, DATASET = "team", "data"
HEARTBEAT = 0.2


@dataclass
class RunningWorker:
    """A worker running on the test's loop: its endpoint and a stub to its WorkerService."""

    worker_id: str
    home: Path
    endpoint: dict[str, Any]
    stop: asyncio.Event
    task: asyncio.Task[None]
    channel: grpc.aio.Channel

    @property
    def stub(self) -> worker_pb2_grpc.WorkerServiceStub:
        return worker_pb2_grpc.WorkerServiceStub(self.channel)

    async def stats(self) -> worker_pb2.GetStatsResponse:
        return await self.stub.GetStats(worker_pb2.GetStatsRequest(), timeout=5)


@dataclass
class Cluster:
    """A real master, its stubs, a local UFS directory and the workers started so far."""

    master: MasterServer
    channel: grpc.aio.Channel
    ufs: Path
    tmp: Path
    shm: Path
    workers: list[RunningWorker]

    @property
    def masters(self) -> master_pb2_grpc.MasterServiceStub:
        return master_pb2_grpc.MasterServiceStub(self.channel)

    @property
    def metadata(self) -> master_pb2_grpc.MetadataServiceStub:
        return master_pb2_grpc.MetadataServiceStub(self.channel)

    async def apply_dataset(self) -> None:
        spec = {"mounts": [{"mountPoint": f"local://{self.ufs}", "name": "m0", "path": "/"}]}
        await master_pb2_grpc.DatasetServiceStub(self.channel).ApplyDataset(
            master_pb2.ApplyDatasetRequest(
                ref=master_pb2.DatasetRef(namespace=NAMESPACE, name=DATASET),
                spec_json=json.dumps(spec).encode(),
            )
        )

    async def status(self, path: str) -> master_pb2.FileStatus:
        reply = await self.metadata.GetStatus(
            master_pb2.GetStatusRequest(
                dataset=master_pb2.DatasetRef(namespace=NAMESPACE, name=DATASET), path=path
            )
        )
        return reply.status

    async def start_worker(self, worker_id: str) -> RunningWorker:
        home = self.tmp / worker_id
        config = build_worker_config(
            master=self.master.address,
            home=home,
            worker_id=worker_id,
            unix_socket=None,
            tier_flags=[f"MEM:{self.shm / worker_id}:{64 * BLOCK}"],
        )
        stop = asyncio.Event()
        task = asyncio.ensure_future(run_worker(config, stop=stop))
        endpoint = await wait_for(lambda: _endpoint_of(home, config.incarnation), task=task)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{endpoint['grpc_port']}")
        worker = RunningWorker(worker_id, home, endpoint, stop, task, channel)
        self.workers.append(worker)
        await wait_for(lambda: self.is_active(worker_id))
        return worker

    async def stop_worker(self, worker: RunningWorker) -> None:
        worker.stop.set()
        await worker.channel.close()
        await worker.task
        self.workers.remove(worker)

    async def is_active(self, worker_id: str) -> bool:
        reply = await self.masters.ListWorkers(master_pb2.ListWorkersRequest(), timeout=5)
        return any(
            w.worker_id == worker_id and w.state == master_pb2.WORKER_STATE_ACTIVE
            for w in reply.workers
        )

    async def master_block_count(self, worker_id: str) -> int:
        reply = await self.masters.ListWorkers(master_pb2.ListWorkersRequest(), timeout=5)
        for status in reply.workers:
            if status.worker_id == worker_id:
                return int(status.block_count)
        return -1


async def _endpoint_of(home: Path, incarnation: int) -> dict[str, Any] | None:
    data = await asyncio.to_thread(read_endpoint_file, home)
    return data if data is not None and data.get("incarnation") == incarnation else None


async def wait_for(
    probe: Callable[[], Awaitable[Any]],
    *,
    timeout: float = 10.0,
    task: asyncio.Task[None] | None = None,
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail early if ``task`` died."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if task is not None and task.done():
            task.result()
            raise AssertionError("the worker stopped before it was ready")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


async def start_master(home: Path, *, replicas: int = 1, port: int = 0) -> MasterServer:
    master = MasterServer(
        MasterConfig(
            home=home,
            port=port,
            replicas=replicas,
            block_size=BLOCK,
            heartbeat_interval=HEARTBEAT,
            missed_heartbeats=10,
            metadata_sync_interval=0.0,
        )
    )
    await master.start()
    return master


@contextlib.asynccontextmanager
async def cluster_of(tmp: Path, shm: Path, *, replicas: int = 1) -> AsyncIterator[Cluster]:
    ufs = tmp / "ufs"
    ufs.mkdir()
    master = await start_master(tmp / "master", replicas=replicas)
    channel = grpc.aio.insecure_channel(master.address)
    cluster = Cluster(master, channel, ufs, tmp, shm, [])
    try:
        await cluster.apply_dataset()
        yield cluster
    finally:
        for worker in list(cluster.workers):
            worker.stop.set()
            await worker.channel.close()
            with contextlib.suppress(Exception):
                await worker.task
        await channel.close()
        await cluster.master.stop(grace=0.1)


def write_file(directory: Path, name: str, size: int, seed: int = 1) -> bytes:
    data = random.Random(seed).randbytes(size)
    (directory / name).write_bytes(data)
    return data


def _placement(status: master_pb2.FileStatus, index: int) -> bytes:
    """The ring key of a block (its group's), as every component places it."""
    return BlockKey(status.mount_id, status.mount_path, status.version, index).placement_key(BLOCK)


def block_ref(status: master_pb2.FileStatus, index: int) -> worker_pb2.BlockRef:
    key = BlockKey(status.mount_id, status.mount_path, status.version, index)
    return worker_pb2.BlockRef(
        block_id=key.id,
        mount_id=status.mount_id,
        path=status.mount_path,
        version=status.version,
        index=index,
        offset=index * BLOCK,
        length=BLOCK,
    )


async def read_block(
    worker: RunningWorker, status: master_pb2.FileStatus, index: int, length: int = BLOCK
) -> bytes:
    ref = block_ref(status, index)
    key = BlockRef(ref.mount_id, ref.path, ref.version, ref.index)
    buf = bytearray(BLOCK)
    async with await DataConnection.connect("127.0.0.1", worker.endpoint["data_port"]) as conn:
        got = await conn.read_block(ref.block_id, key, 0, length, buf)
    return bytes(buf[:got])


@pytest.fixture
async def cluster(tmp_path: Path, shm_dir: Path) -> AsyncIterator[Cluster]:
    async with cluster_of(tmp_path, shm_dir) as cluster:
        yield cluster


# ---------------------------------------------------------------- WorkerService


async def test_load_blocks_reports_each_block(cluster: Cluster) -> None:
    data = write_file(cluster.ufs, "f.bin", 2 * BLOCK + 10)
    worker = await cluster.start_worker("w1")
    status = await cluster.status("f.bin")
    refs = [block_ref(status, i) for i in range(3)]
    forged = worker_pb2.BlockRef()
    forged.CopyFrom(refs[0])
    forged.block_id = refs[1].block_id
    past_end = block_ref(status, 3)
    reply = await worker.stub.LoadBlocks(
        worker_pb2.LoadBlocksRequest(blocks=[*refs, forged, past_end], parallelism=2)
    )
    results = list(reply.results)
    assert [r.ok for r in results] == [True, True, True, False, False]
    assert [r.bytes_fetched for r in results[:3]] == [BLOCK, BLOCK, 10]
    assert results[3].error.kind == common_pb2.ERROR_KIND_INVALID
    assert results[4].error.kind == common_pb2.ERROR_KIND_NOT_FOUND
    again = await worker.stub.LoadBlocks(worker_pb2.LoadBlocksRequest(blocks=refs))
    assert all(r.ok and r.already_cached and r.bytes_fetched == 0 for r in again.results)
    assert await read_block(worker, status, 2) == data[2 * BLOCK :]
    stats = await worker.stats()
    assert stats.block_count == 3
    assert stats.counters.bytes_fetched == 2 * BLOCK + 10
    assert stats.counters.hits == 1
    assert stats.worker_id == "w1" and stats.tiers[0].medium == common_pb2.MEDIUM_MEM


async def test_load_blocks_reports_a_changed_file_as_a_conflict(cluster: Cluster) -> None:
    write_file(cluster.ufs, "f.bin", BLOCK)
    worker = await cluster.start_worker("w1")
    status = await cluster.status("f.bin")
    write_file(cluster.ufs, "f.bin", BLOCK + 1, seed=2)
    reply = await worker.stub.LoadBlocks(
        worker_pb2.LoadBlocksRequest(blocks=[block_ref(status, 0)])
    )
    assert reply.results[0].error.kind == common_pb2.ERROR_KIND_CONFLICT
    stats = await worker.stats()
    assert stats.counters.ufs_errors == 1


async def test_evict_blocks_counts_evicted_and_missing(cluster: Cluster) -> None:
    write_file(cluster.ufs, "f.bin", 2 * BLOCK)
    worker = await cluster.start_worker("w1")
    status = await cluster.status("f.bin")
    refs = [block_ref(status, i) for i in range(2)]
    await worker.stub.LoadBlocks(worker_pb2.LoadBlocksRequest(blocks=refs))
    reply = await worker.stub.EvictBlocks(
        worker_pb2.EvictBlocksRequest(block_ids=[refs[0].block_id, "0" * 32])
    )
    assert (reply.evicted, reply.missing, reply.bytes_freed) == (1, 1, BLOCK)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await worker.stub.EvictBlocks(worker_pb2.EvictBlocksRequest(block_ids=["../x"]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await worker.stats()).block_count == 1


# ---------------------------------------------------------------- master link


async def test_block_changes_reach_the_master_at_heartbeat_time(cluster: Cluster) -> None:
    write_file(cluster.ufs, "f.bin", 3 * BLOCK)
    worker = await cluster.start_worker("w1")
    status = await cluster.status("f.bin")
    for index in range(3):
        await read_block(worker, status, index)

    async def master_sees(count: int) -> bool:
        return await cluster.master_block_count("w1") == count

    await wait_for(lambda: master_sees(3))
    await worker.stub.EvictBlocks(
        worker_pb2.EvictBlocksRequest(block_ids=[block_ref(status, 0).block_id])
    )
    await wait_for(lambda: master_sees(2))
    blocks = cluster.master.membership.get("w1")
    assert blocks is not None
    assert blocks.blocks == {block_ref(status, i).block_id for i in (1, 2)}


async def test_worker_serves_while_the_master_is_away_and_reregisters(
    tmp_path: Path, shm_dir: Path
) -> None:
    async with cluster_of(tmp_path, shm_dir) as cluster:
        data = write_file(cluster.ufs, "f.bin", 2 * BLOCK)
        worker = await cluster.start_worker("w1")
        status = await cluster.status("f.bin")
        assert await read_block(worker, status, 0) == data[:BLOCK]  # caches block 0 and the mount
        port = cluster.master.grpc_port
        await cluster.master.stop(grace=0.1)
        await asyncio.sleep(3 * HEARTBEAT)
        # Cached blocks and cached mounts keep working without the master.
        assert await read_block(worker, status, 0) == data[:BLOCK]
        assert await read_block(worker, status, 1) == data[BLOCK:]
        cluster.master = await start_master(tmp_path / "master", port=port)

        async def reported() -> bool:
            return await cluster.master_block_count("w1") == 2

        await wait_for(reported)
        record = cluster.master.membership.get("w1")
        assert record is not None and len(record.blocks) == 2


# ---------------------------------------------------------------- replication


async def test_first_owner_replicates_to_the_other_owner(tmp_path: Path, shm_dir: Path) -> None:
    async with cluster_of(tmp_path, shm_dir, replicas=2) as cluster:
        write_file(cluster.ufs, "f.bin", 8 * BLOCK)
        first = await cluster.start_worker("w1")
        second = await cluster.start_worker("w2")
        third = await cluster.start_worker("w3")
        by_id = {w.worker_id: w for w in (first, second, third)}
        status = await cluster.status("f.bin")
        await asyncio.sleep(3 * HEARTBEAT)  # every worker has fetched the ring of 3
        reply = await cluster.masters.GetRing(master_pb2.GetRingRequest())
        assert len(reply.members) == 3
        ring = HashRing.from_snapshot(
            RingSnapshot(tuple(RingWorker(m.worker_id) for m in reply.members), vnodes=reply.vnodes)
        )
        owners = [ring.owners(_placement(status, i), 2) for i in range(8)]
        for index, (primary, _replica) in enumerate(owners):
            await read_block(by_id[primary], status, index)

        async def replicated() -> bool:
            for index, pair in enumerate(owners):
                block_id = block_ref(status, index).block_id
                for worker_id in pair:
                    record = cluster.master.membership.get(worker_id)
                    if record is None or block_id not in record.blocks:
                        return False
            return True

        await wait_for(replicated)
        # A read on a worker that is not the first owner replicates nothing.
        write_file(cluster.ufs, "g.bin", BLOCK)
        g = await cluster.status("g.bin")
        g_owners = ring.owners(_placement(g, 0), 3)
        await read_block(by_id[g_owners[2]], g, 0)
        await asyncio.sleep(3 * HEARTBEAT)
        stats = [await w.stats() for w in by_id.values()]
        total = sum(s.counters.bytes_fetched for s in stats)
        assert total == 2 * 8 * BLOCK + BLOCK


# ---------------------------------------------------------------- process plumbing


async def test_worker_stops_cleanly_and_removes_its_endpoint_file(cluster: Cluster) -> None:
    worker = await cluster.start_worker("w1")
    assert os.path.exists(worker.home / "endpoint.json")
    await cluster.stop_worker(worker)
    assert not os.path.exists(worker.home / "endpoint.json")
    assert (worker.home / "worker-id").exists() is False  # --id given: nothing written
