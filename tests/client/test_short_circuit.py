"""Short-circuit reads against real worker processes: block files passed over the Unix socket.

Two local clusters (real master and worker processes, 1 MiB blocks): one with
a cluster secret and MEM tiers (capabilities checked, zero-copy views), one
open with SSD tiers (reads in a thread), whose workers the last tests evict
from and kill. Every test checks the bytes against the UFS.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.client.short_circuit import FdChannel, LocalBlock, ShortCircuitReads
from cachecluster.common import auth
from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import PermissionDenied
from cachecluster.common.frames import BlockRef
from cachecluster.local.cluster import LocalCluster
from cachecluster.local.cluster_calls import master_channel
from cachecluster.protos import worker_pb2, worker_pb2_grpc
from cachecluster.worker.block_file import BLOCK_SUFFIX
from cachecluster.worker.tiers import Medium, TierConfig

BLOCK_SIZE = 1 << 20
FILES = {
    "big.bin": random.Random(1).randbytes(5 * BLOCK_SIZE + 4321),
    "small.bin": random.Random(2).randbytes(65536),
}


def sha(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def block_fds() -> int:
    """Descriptors of this process open on block files."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").endswith(BLOCK_SUFFIX)
    return count


def _cluster(root: Path, medium: Medium, *, auth_on: bool) -> LocalCluster:
    for name, data in FILES.items():
        (root / "ufs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "ufs" / name).write_bytes(data)
    return LocalCluster(
        root / "home",
        workers=2,
        tiers=[TierConfig(medium, str(root / "tier"), 64 << 20)],
        block_size=BLOCK_SIZE,
        replicas=1,
        master_args=["--heartbeat-interval", "0.5", "--missed-heartbeats", "3"],
        auth=auth_on,
    )


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("sc-secure")
    with _cluster(root, Medium.MEM, auth_on=True) as cluster:
        cluster.apply_dataset("a", "ds", f"local://{root / 'ufs'}")
        yield cluster


@pytest.fixture(scope="module")
def disk_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Open (no secret), SSD tiers; tests may evict from and kill its workers."""
    root = tmp_path_factory.mktemp("sc-disk")
    with _cluster(root, Medium.SSD, auth_on=False) as cluster:
        cluster.apply_dataset("a", "ds", f"local://{root / 'ufs'}")
        yield cluster


pytestmark = pytest.mark.usefixtures("no_ambient_token")


def local_of(client: AsyncClient) -> ShortCircuitReads:
    local = client.fetcher.local
    assert local is not None
    return local


async def test_memory_tier_files_are_passed_and_mapped(secure_cluster: LocalCluster) -> None:
    token = secure_cluster.token("a")
    async with AsyncClient(secure_cluster.master_address, token=token) as client:
        for name, data in FILES.items():
            assert sha(await client.cat(f"a/ds/{name}")) == sha(data)
        stats = local_of(client).stats
        # big.bin's 6 blocks and small.bin's one, each passed once.
        assert stats.opens == 7 and stats.fallbacks == 0
        assert client.stats.ufs_reads == 0
        # Again: the files held are read again, no new open.
        assert sha(await client.cat("a/ds/big.bin")) == sha(FILES["big.bin"])
        assert stats.reuses >= 6
        # Zero-copy views, within one block, anywhere in it; a copy across block ends.
        async with await client.open("a/ds/big.bin") as file:
            big = FILES["big.bin"]
            for offset, size in ((0, 4096), (BLOCK_SIZE + 17, 1000), (5 * BLOCK_SIZE, 9999)):
                view = await file.local_view(offset, size)
                assert view is not None and view.readonly
                assert bytes(view) == big[offset : offset + size]
            across = await file.local_view(BLOCK_SIZE - 10, 2 * BLOCK_SIZE + 20)  # one copy
            assert across is not None
            assert bytes(across) == big[BLOCK_SIZE - 10 : 3 * BLOCK_SIZE + 10]
            assert await file.local_view(len(big), 10) is None
            # Odd-sized sequential reads straight from the files (no read-ahead buffers).
            buffer, parts = bytearray(300_001), []
            while got := await file.readinto(buffer):
                parts.append(bytes(buffer[:got]))
            assert sha(b"".join(parts)) == sha(big)
            assert client.stats.readahead_hits == 0 and client.stats.ufs_reads == 0
        # Past their time the worker is asked again; the same files keep their blocks held.
        held = dict(local_of(client)._blocks)
        for block in held.values():
            block.expires = 0.0
        assert sha(await client.cat("a/ds/big.bin")) == sha(FILES["big.bin"])
        assert stats.opens == 7 and stats.renewals >= 6
        assert all(local_of(client)._blocks[block_id] is block for block_id, block in held.items())


async def test_refused_capability_passes_no_fd(secure_cluster: LocalCluster) -> None:
    token = secure_cluster.token("a")
    async with AsyncClient(secure_cluster.master_address, token=token) as client:
        info = await client.stat("a/ds/small.bin")
    secret = auth.load_secret(secure_cluster.secret_file)
    good, _ = auth.issue_capability(secret, "a", {info.mount_id: ""}, 60)
    other, _ = auth.issue_capability(secret, "a", {info.mount_id: "elsewhere"}, 60)
    forged, _ = auth.issue_capability(bytes(32), "a", {info.mount_id: ""}, 60)
    block_id = BlockKey(info.mount_id, info.mount_path, info.version, 0).id
    ref = BlockRef(info.mount_id, info.mount_path, info.version, 0)
    before = block_fds()
    for worker in secure_cluster.workers:
        channel = await FdChannel.connect(worker.unix_socket)
        try:
            for cap, reason in ((None, "required"), (forged, "signature"), (other, "outside")):
                with pytest.raises(PermissionDenied, match=reason):
                    await channel.open(block_id, ref, cap)
            assert block_fds() == before  # no descriptor came
            grant, fd = await channel.open(block_id, ref, good)  # the channel still works
            assert fd is not None and grant.memory and grant.length == len(FILES["small.bin"])
            try:
                assert os.pread(fd, grant.length, grant.offset) == FILES["small.bin"]
                assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
            finally:
                os.close(fd)
        finally:
            channel.close()
    assert block_fds() == before


async def test_disk_tier_blocks_are_read_in_a_thread(disk_cluster: LocalCluster) -> None:
    async with AsyncClient(disk_cluster.master_address) as client:
        for name, data in FILES.items():
            assert sha(await client.cat(f"a/ds/{name}")) == sha(data)
        local = local_of(client)
        assert local.stats.opens == 7
        assert not any(block.memory for block in local._blocks.values())
        async with await client.open("a/ds/big.bin") as file:
            assert await file.local_view(0, 4096) is None  # no mapping of a disk block
            buffer = bytearray(3 * BLOCK_SIZE)
            assert await file.pread_into(BLOCK_SIZE // 2, buffer) == len(buffer)
            want = FILES["big.bin"][BLOCK_SIZE // 2 : BLOCK_SIZE // 2 + len(buffer)]
            assert sha(buffer) == sha(want)


async def evict(cluster: LocalCluster, block_ids: list[str]) -> int:
    evicted = 0
    for worker in cluster.workers:
        async with master_channel(worker.grpc_address) as channel:
            stub = worker_pb2_grpc.WorkerServiceStub(channel)
            reply = await stub.EvictBlocks(worker_pb2.EvictBlocksRequest(block_ids=block_ids))
            evicted += reply.evicted
    return evicted


async def test_block_evicted_while_its_file_is_held(disk_cluster: LocalCluster) -> None:
    async with AsyncClient(disk_cluster.master_address) as client:
        assert sha(await client.cat("a/ds/big.bin")) == sha(FILES["big.bin"])
        local = local_of(client)
        placements = await client.blocks("a/ds/big.bin")
        held: list[LocalBlock] = [local._blocks[p.block_id] for p in placements]
        assert await evict(disk_cluster, [p.block_id for p in placements]) == len(placements)
        # A file held from before reads the evicted block's bytes (the unlinked inode).
        buffer = bytearray(BLOCK_SIZE)
        assert await held[1].read_into(0, memoryview(buffer)) == BLOCK_SIZE
        assert buffer == FILES["big.bin"][BLOCK_SIZE : 2 * BLOCK_SIZE]
        # The next read sees the file unlinked and asks the worker again (it fetches anew).
        opens = local.stats.opens
        assert sha(await client.cat("a/ds/big.bin")) == sha(FILES["big.bin"])
        assert local.stats.opens == opens + len(placements)
        assert all(
            local._blocks[p.block_id] is not old for p, old in zip(placements, held, strict=True)
        )


async def test_killed_worker_falls_back(disk_cluster: LocalCluster) -> None:
    async with AsyncClient(
        disk_cluster.master_address, ring_refresh_interval=0.5, block_timeout=5
    ) as client:
        assert sha(await client.cat("a/ds/big.bin")) == sha(FILES["big.bin"])
        local = local_of(client)
        placements = await client.blocks("a/ds/big.bin")
        owners = {p.owners[0] for p in placements}
        victim = next(i for i, w in enumerate(disk_cluster.workers) if w.worker_id in owners)
        victim_socket = disk_cluster.workers[victim].unix_socket
        disk_cluster.kill_worker(victim, signal.SIGKILL)
        # The files it passed are dropped; its blocks come from the other worker (or the UFS).
        assert sha(await client.cat("a/ds/big.bin")) == sha(FILES["big.bin"])
        assert not any(block.source == victim_socket for block in local._blocks.values())
        assert client.stats.worker_failures >= 1
        assert local._channels[victim_socket].closed
