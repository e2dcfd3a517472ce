"""Dataset status figures: UFS total, cached bytes from reported blocks, capacity, phase."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import NotFound
from cachecluster.master.datasets import DatasetRegistry
from cachecluster.master.membership import Membership
from cachecluster.master.metadata import MetadataCache
from cachecluster.master.status import (
    DatasetStatusBoard,
    FileBlocks,
    RuntimeInfo,
    cached_bytes_of,
    worker_phase,
)
from cachecluster.protos import common_pb2

BLOCK = 1024


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ufs"
    write(root / "big.bin", b"x" * (BLOCK * 2 + 100))  # 3 blocks
    write(root / "small.bin", b"y" * 10)
    write(root / "sub" / "c.bin", b"z" * BLOCK)
    return root


def endpoint(port: int) -> common_pb2.WorkerEndpoint:
    return common_pb2.WorkerEndpoint(host="127.0.0.1", data_port=port, grpc_port=port + 1)


def tier(capacity: int) -> common_pb2.TierUsage:
    return common_pb2.TierUsage(medium=common_pb2.MEDIUM_MEM, capacity_bytes=capacity)


@pytest.fixture
async def board(tree: Path) -> AsyncIterator[DatasetStatusBoard]:
    registry = DatasetRegistry()
    registry.apply("ns", "ds", {"mounts": [{"mountPoint": f"local://{tree}", "name": "m0"}]})
    metadata = MetadataCache(registry, sync_interval=30)
    membership = Membership()
    board = DatasetStatusBoard(registry, metadata, membership, block_size=BLOCK, cached_ttl=0)
    try:
        yield board
    finally:
        await board.close()
        await metadata.close()


async def block_ids(board: DatasetStatusBoard, path: str) -> list[str]:
    entry = await board.metadata.get_status("ns", "ds", path)
    count = (entry.size + BLOCK - 1) // BLOCK
    return [BlockKey(entry.mount_id, entry.mount_path, entry.version, i).id for i in range(count)]


async def test_figures_follow_reported_blocks(board: DatasetStatusBoard) -> None:
    total = BLOCK * 2 + 100 + 10 + BLOCK
    figures = await board.dataset_status("ns", "ds")
    assert figures.phase == "NotBound"  # no worker yet
    assert figures.ufs_total_bytes == total
    assert figures.file_count == 3
    assert figures.cached_bytes == 0
    assert figures.cached_percentage == 0.0

    big = await block_ids(board, "big.bin")
    board.membership.register("w1", 1, endpoint(7000), tiers=[tier(4 << 30)], block_ids=big[:2])
    board.membership.register("w2", 1, endpoint(7010), tiers=[tier(1 << 30)], block_ids=big[2:])
    figures = await board.dataset_status("ns", "ds")
    assert figures.phase == "Bound"
    assert figures.cached_bytes == BLOCK * 2 + 100
    assert figures.cache_capacity_bytes == 5 << 30

    small = await block_ids(board, "small.bin")
    sub = await block_ids(board, "sub/c.bin")
    report = board.membership.start_block_report("w1", 1, full=False)
    report.add_chunk(small + sub, [])
    report.finish()
    figures = await board.dataset_status("ns", "ds", refresh=True)
    assert figures.cached_bytes == total
    assert figures.cached_percentage == 100.0


async def test_hit_ratio_and_missing_dataset(board: DatasetStatusBoard) -> None:
    board.membership.register("w1", 1, endpoint(7000))
    assert board.hit_ratio() == -1.0
    board.membership.heartbeat("w1", 1, counters=common_pb2.WorkerCounters(hits=3, misses=1))
    assert board.hit_ratio() == 0.75
    with pytest.raises(NotFound):
        await board.dataset_status("ns", "nope")


async def test_listing_failure_is_failed_phase(board: DatasetStatusBoard, tree: Path) -> None:
    board.registry.apply(
        "ns", "gone", {"mounts": [{"mountPoint": f"local://{tree}/missing", "name": "m0"}]}
    )
    figures = await board.dataset_status("ns", "gone")
    # A missing local root lists as empty or fails: either way no figure is made up.
    assert figures.phase in ("Failed", "NotBound")
    if figures.phase == "Failed":
        assert "listing" in figures.message


def test_cached_bytes_counts_partial_last_block() -> None:
    files = [FileBlocks("m", "f", "v1", BLOCK + 1)]
    ids = [BlockKey("m", "f", "v1", i).id for i in range(2)]
    assert cached_bytes_of(files, [{ids[1]}], BLOCK) == 1
    assert cached_bytes_of(files, [{ids[0]}, {ids[1]}], BLOCK) == BLOCK + 1
    assert cached_bytes_of(files, [], BLOCK) == 0


def test_worker_phase() -> None:
    assert worker_phase(2, 2) == "Ready"
    assert worker_phase(3, 2) == "Ready"
    assert worker_phase(1, 2) == "PartialReady"
    assert worker_phase(0, 2) == "NotReady"
    assert worker_phase(0, 0) == "NotReady"


async def test_runtime_status(board: DatasetStatusBoard) -> None:
    assert board.runtime_status() == []
    board.runtimes = lambda ns: [RuntimeInfo("share", "rt", "JindoRuntime", 2, 1)]
    board.membership.register("w1", 1, endpoint(7000), tiers=[tier(1 << 30)])
    (row,) = board.runtime_status()
    assert (row.master_phase, row.worker_phase, row.fuse_phase) == (
        "Ready",
        "PartialReady",
        "Ready",
    )
    board.membership.register("w2", 1, endpoint(7010), tiers=[tier(1 << 30)])
    (row,) = board.runtime_status()
    assert row.worker_phase == "Ready"
    assert row.cache_capacity_bytes == 2 << 30


async def test_reference_mirrors_its_subtree(board: DatasetStatusBoard) -> None:
    board.registry.apply("ref", "sub", {"mounts": [{"mountPoint": "dataset://ns/ds/sub"}]})
    board.membership.register("w1", 1, endpoint(7000), tiers=[tier(1 << 30)])
    report = board.membership.start_block_report("w1", 1, full=False)
    report.add_chunk(await block_ids(board, "sub/c.bin"), [])
    report.finish()
    mirror = await board.dataset_status("ref", "sub", refresh=True)
    assert mirror.reference == "dataset://ns/ds/sub"
    assert (mirror.ufs_total_bytes, mirror.cached_bytes, mirror.file_count) == (BLOCK, BLOCK, 1)
    assert mirror.cached_percentage == 100.0 and mirror.phase == "Bound"
    source = await board.dataset_status("ns", "ds", refresh=True)
    assert source.cached_bytes == BLOCK and source.cached_percentage < 100.0
    listed = await board.list_status()
    assert [(f.namespace, f.name) for f in listed] == [("ns", "ds"), ("ref", "sub")]
