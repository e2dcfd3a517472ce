"""End to end: a 3-worker cluster (real processes) reads local and S3 datasets.

Bytes read through the client are compared with the source files: whole
files (zero bytes, one byte, around one block, several blocks with an odd
tail), odd ranges, seeks. Then placement: every block read sits on exactly
the workers the ring names for it, two distinct workers with 2 replicas, and
the master's block counts agree with what the workers hold.
"""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import NotFound
from cachecluster.common.ring import RING_SCHEME, HashRing, RingSnapshot, RingWorker
from cachecluster.protos import master_pb2, master_pb2_grpc
from tests.integration.conftest import (
    BLOCK_SIZE,
    S3_BUCKET,
    S3_PREFIX,
    ReadCluster,
    held_blocks,
    list_workers,
    sha256,
    wait_for,
)
from tests.servers.seaweed import SeaweedS3

DATASETS = ("local", "s3")


@pytest.mark.parametrize("dataset", DATASETS)
async def test_whole_files_are_byte_identical(
    read_cluster: ReadCluster, read_client: AsyncClient, dataset: str
) -> None:
    for name, data in read_cluster.files.items():
        path = read_cluster.path(dataset, name)
        assert sha256(await read_client.cat(path)) == sha256(data), path
        info = await read_client.stat(path)
        assert info.size == len(data) and not info.is_dir
        # The streaming path (read-ahead, reads not aligned to blocks) too.
        async with await read_client.open(path) as file:
            chunks = []
            while chunk := await file.read(300_000):
                chunks.append(chunk)
        assert sha256(b"".join(chunks)) == sha256(data), f"{path} read in chunks"


@pytest.mark.parametrize("dataset", DATASETS)
async def test_odd_ranges_and_seeks(
    read_cluster: ReadCluster, read_client: AsyncClient, dataset: str
) -> None:
    rng = random.Random(f"ranges-{dataset}")
    names = [name for name, data in read_cluster.files.items() if data]
    edges = [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 2 * BLOCK_SIZE - 3]
    for _ in range(40):
        name = rng.choice(names)
        data = read_cluster.files[name]
        start = rng.choice([*edges, rng.randrange(len(data) + 2)])
        length = rng.choice([1, 7, BLOCK_SIZE, BLOCK_SIZE + 2, rng.randrange(3 * BLOCK_SIZE)])
        path = read_cluster.path(dataset, name)
        got = await read_client.cat(path, start, start + length)
        assert got == data[start : start + length], f"{path} [{start}, {start + length})"
    name = "dir/several-blocks.bin"
    data = read_cluster.files[name]
    async with await read_client.open(read_cluster.path(dataset, name)) as file:
        for offset in (3 * BLOCK_SIZE - 5, 17, len(data) - 9, BLOCK_SIZE):
            file.seek(offset)
            assert await file.read(4096) == data[offset : offset + 4096]
            assert file.tell() == min(len(data), offset + 4096)
        file.seek(len(data) + 10)
        assert await file.read(10) == b""


@pytest.mark.parametrize("dataset", DATASETS)
async def test_listing_and_missing_files(
    read_cluster: ReadCluster, read_client: AsyncClient, dataset: str
) -> None:
    root = read_cluster.path(dataset, "")
    listed = {entry.rstrip("/").rsplit("/", 1)[-1] for entry in await read_client.ls(root)}
    top = {name.split("/", 1)[0] for name in read_cluster.files}
    assert listed == top
    assert await read_client.cat(read_cluster.path(dataset, "empty.bin")) == b""
    with pytest.raises(NotFound):
        await read_client.stat(read_cluster.path(dataset, "no-such-file.bin"))


async def _ring_of(master_address: str) -> tuple[HashRing, int]:
    """The master's ring rebuilt here from GetRing, independently of the client."""
    async with grpc.aio.insecure_channel(master_address) as channel:
        ring = await master_pb2_grpc.MasterServiceStub(channel).GetRing(
            master_pb2.GetRingRequest(), timeout=5
        )
    snapshot = RingSnapshot(
        workers=tuple(
            RingWorker(m.worker_id, f"{m.endpoint.host}:{m.endpoint.data_port}", m.weight)
            for m in ring.members
        ),
        vnodes=ring.vnodes,
        scheme=ring.scheme or RING_SCHEME,
    )
    return HashRing.from_snapshot(snapshot), ring.replicas


async def test_blocks_sit_on_the_ring_owners_on_two_distinct_workers(
    read_cluster: ReadCluster, read_client: AsyncClient
) -> None:
    cluster = read_cluster.cluster
    ring, replicas = await _ring_of(cluster.master_address)
    assert replicas == 2
    owners: dict[str, tuple[str, ...]] = {}
    block_size = await read_client.block_size()
    for dataset in DATASETS:
        for name, data in read_cluster.files.items():
            path = read_cluster.path(dataset, name)
            assert await read_client.cat(path) == data
            info = await read_client.stat(path)
            for block in await read_client.blocks(path):
                key = BlockKey(info.mount_id, info.mount_path, info.version, block.index)
                expected = tuple(ring.owners(key.placement_key(block_size), replicas))
                assert block.owners == expected, f"client and master disagree on {path}"
                owners[block.block_id] = expected
    assert owners and all(len(set(names)) == 2 for names in owners.values())

    def placement() -> dict[str, set[str]]:
        holders: dict[str, set[str]] = {}
        for worker in cluster.workers:
            for block_id in held_blocks(worker):
                holders.setdefault(block_id, set()).add(worker.worker_id)
        return holders

    async def replicated() -> bool:  # the second copy is loaded in the background
        holders = placement()
        return all(holders.get(block_id) == set(names) for block_id, names in owners.items())

    try:
        await wait_for(replicated, 15, "every block on exactly its 2 ring owners")
    finally:
        holders = placement()
        wrong = {
            block_id: (sorted(holders.get(block_id, ())), names)
            for block_id, names in owners.items()
            if holders.get(block_id) != set(names)
        }
        assert not wrong, f"{len(wrong)} of {len(owners)} blocks misplaced (held, owners): {wrong}"

    async def counts_reported() -> bool:
        answer = await list_workers(cluster)
        reported = {w.worker_id: w.block_count for w in answer.workers}
        return all(reported.get(w.worker_id) == len(held_blocks(w)) for w in cluster.workers)

    await wait_for(counts_reported, 10, "the master's block counts match the workers' tiers")


async def test_cold_reads_of_new_s3_files_are_exact(
    read_cluster: ReadCluster, read_client: AsyncClient, s3_server: SeaweedS3
) -> None:
    """Cold sequential (runs of a group from one GET), random and concurrent reads of S3 files.

    The files are new, so every block is a miss; a sequential reader's
    misses make its owner fetch the rest of the group as one ranged GET
    (``worker/read_runs.py``), random reads fetch single blocks.
    """
    rng = random.Random("cold-s3")
    sizes = {
        "seq.bin": 40 * BLOCK_SIZE + 4321,
        "random.bin": 24 * BLOCK_SIZE,
        "shared.bin": 20 * BLOCK_SIZE + 5,
    }
    files = {name: rng.randbytes(size) for name, size in sizes.items()}
    s3 = s3_server.client()
    for name, data in files.items():
        s3.put_object(Bucket=S3_BUCKET, Key=f"{S3_PREFIX}/cold/{name}", Body=data)

    def path(name: str) -> str:
        return read_cluster.path("s3", f"cold/{name}")

    async with await read_client.open(path("seq.bin")) as file:
        chunks = []
        while chunk := await file.read(1 << 20):
            chunks.append(chunk)
    assert sha256(b"".join(chunks)) == sha256(files["seq.bin"])

    data = files["random.bin"]
    for _ in range(30):
        start = rng.randrange(len(data))
        length = rng.choice([1, 4096, 1 << 20, BLOCK_SIZE + 3])
        assert (
            await read_client.cat(path("random.bin"), start, start + length)
            == data[start : start + length]
        ), f"random.bin [{start}, {start + length})"

    async def whole(name: str) -> str:
        async with await read_client.open(path(name)) as file:
            return sha256(await file.read())

    digests = await asyncio.gather(*(whole("shared.bin") for _ in range(4)))
    assert digests == [sha256(files["shared.bin"])] * 4
