"""Fixtures of the end-to-end tests: real local clusters (master + worker processes).

``read_cluster`` (one per session) is a 3-worker cluster with 2 replicas and a
1 MiB block size serving two datasets with the same files: ``it/local`` (a
local folder) and ``it/s3`` (a SeaweedFS bucket). Tests that kill processes
start clusters of their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.local.cluster import LocalCluster, WorkerProcess
from cachecluster.protos import master_pb2, worker_pb2, worker_pb2_grpc
from tests.servers.seaweed import SeaweedS3

BLOCK_SIZE = 1 << 20
NAMESPACE = "it"
S3_BUCKET = "it-data"
S3_PREFIX = "dataset"


def source_sizes(block_size: int = BLOCK_SIZE) -> dict[str, int]:
    """File name -> size: zero bytes, around one block, several blocks with an odd tail."""
    return {
        "empty.bin": 0,
        "one-byte.bin": 1,
        "block-minus-one.bin": block_size - 1,
        "block.bin": block_size,
        "block-plus-one.bin": block_size + 1,
        "dir/several-blocks.bin": 5 * block_size + 12345,
        "dir/sub/odd.bin": 2 * block_size + 777,
    }


def generate(sizes: Mapping[str, int], seed: int = 20261122) -> dict[str, bytes]:
    """Seeded random contents for each file."""
    rng = random.Random(seed)
    return {name: rng.randbytes(size) for name, size in sizes.items()}


def write_tree(root: Path, contents: Mapping[str, bytes]) -> None:
    """Write ``contents`` as files under ``root``."""
    for name, data in contents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def sha256(data: bytes | bytearray | memoryview) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def held_blocks(worker: WorkerProcess) -> set[str]:
    """Block ids in the worker's tier folders (block files are named by their id)."""
    found: set[str] = set()
    for tier in worker.tiers:
        found.update(path.stem for path in Path(tier.path).rglob("*.blk"))
    return found


async def wait_for(
    condition: Callable[[], Awaitable[bool]],
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.1,
) -> float:
    """Poll ``condition`` until it is true; return the seconds it took.

    After ``timeout`` the test fails with ``what`` (a callable is asked then,
    so the message can show the last state seen).
    """
    start = time.monotonic()
    while not await condition():
        if time.monotonic() - start > timeout:
            message = what() if callable(what) else what
            pytest.fail(f"{message}: not reached within {timeout:.0f}s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


async def worker_stats(worker: WorkerProcess) -> worker_pb2.GetStatsResponse:
    """``WorkerService.GetStats`` of a worker process."""
    async with grpc.aio.insecure_channel(worker.grpc_address) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        return await stub.GetStats(worker_pb2.GetStatsRequest(), timeout=5)


async def list_workers(cluster: LocalCluster) -> master_pb2.ListWorkersResponse:
    """The master's ``ListWorkers`` (LOST workers included)."""
    from cachecluster.local.cluster_calls import fetch_workers

    return await fetch_workers(cluster.master_address, include_lost=True, timeout=5)


@dataclass
class ReadCluster:
    """The session's read cluster and the files both of its datasets hold."""

    cluster: LocalCluster
    files: dict[str, bytes]

    def path(self, dataset: str, name: str) -> str:
        """The client path of file ``name`` in dataset ``dataset`` (``local`` or ``s3``)."""
        return f"{NAMESPACE}/{dataset}/{name}"


@pytest.fixture(scope="session")
def read_cluster(
    tmp_path_factory: pytest.TempPathFactory, s3_server: SeaweedS3
) -> Iterator[ReadCluster]:
    """3 workers, 2 replicas, 1 MiB blocks; datasets ``it/local`` and ``it/s3``."""
    root = tmp_path_factory.mktemp("read-cluster")
    files = generate(source_sizes())
    write_tree(root / "ufs", files)
    s3_server.create_bucket(S3_BUCKET)
    s3 = s3_server.client()
    for name, data in files.items():
        s3.put_object(Bucket=S3_BUCKET, Key=f"{S3_PREFIX}/{name}", Body=data)
    cluster = LocalCluster(root / "home", workers=3, block_size=BLOCK_SIZE, replicas=2)
    with cluster:
        cluster.apply_dataset(NAMESPACE, "local", f"local://{root / 'ufs'}")
        cluster.apply_dataset(
            NAMESPACE, "s3", f"s3://{S3_BUCKET}/{S3_PREFIX}", s3_server.backend_options()
        )
        yield ReadCluster(cluster, files)


@pytest.fixture
async def read_client(read_cluster: ReadCluster) -> AsyncIterator[AsyncClient]:
    """A client of the read cluster (TCP and Unix sockets as it prefers)."""
    async with AsyncClient(read_cluster.cluster.master_address) as client:
        yield client
