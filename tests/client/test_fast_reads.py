"""The blocking client's fast path and batched ``open``s, against real worker processes.

A local cluster (a master and two workers, MEM tiers, a cluster secret, 1 MiB
blocks): the blocking client reads block files the workers passed on the
caller's thread (:meth:`FileReader.read_held`), asks for many block files in
one round trip (:meth:`FdChannel.open_many`), and falls back when a worker
does not know ``open``. Every read is checked against the UFS bytes.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.client.cluster_view import LIST_AFTER_MISSES
from cachecluster.client.data_conn import WorkerAddress
from cachecluster.client.master_api import parse_dataset_path
from cachecluster.client.short_circuit import FdChannel, ShortCircuitReads
from cachecluster.client.sync_client import Client
from cachecluster.common import auth
from cachecluster.common.auth import SYSTEM_NAMESPACE
from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import PermissionDenied
from cachecluster.common.frames import BlockRef
from cachecluster.local.cluster import LocalCluster
from cachecluster.local.cluster_calls import master_channel
from cachecluster.protos import worker_pb2, worker_pb2_grpc
from cachecluster.worker.tiers import Medium, TierConfig
from tests.client.test_short_circuit import BLOCK_SIZE, FILES, _cluster, block_fds, sha
from tests.metrics import metric_samples

BIG = FILES["big.bin"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("fast-reads")
    with _cluster(root, Medium.MEM, auth_on=True) as cluster:
        cluster.apply_dataset("a", "ds", f"local://{root / 'ufs'}")
        yield cluster


pytestmark = pytest.mark.usefixtures("no_ambient_token")


def local_of(client: Client) -> ShortCircuitReads:
    local = client._async.fetcher.local
    assert local is not None
    return local


async def evict(cluster: LocalCluster, block_ids: list[str]) -> None:
    """Evict the blocks from every worker (their files are unlinked)."""
    token = cluster.token(SYSTEM_NAMESPACE)
    for worker in cluster.workers:
        async with master_channel(worker.grpc_address, token) as channel:
            stub = worker_pb2_grpc.WorkerServiceStub(channel)
            await stub.EvictBlocks(worker_pb2.EvictBlocksRequest(block_ids=block_ids))


def write_folder(cluster: LocalCluster, folder: str, contents: dict[str, bytes]) -> None:
    """Files ``folder/NAME`` with ``contents`` in the cluster's local UFS."""
    root = Path(cluster.home).parent / "ufs" / folder
    root.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (root / name).write_bytes(data)


def test_held_blocks_are_read_on_the_callers_thread(cluster: LocalCluster) -> None:
    with Client(cluster.master_address, token=cluster.token("a")) as client:
        with client.open("a/ds/big.bin") as file:  # the first read asks for the files
            buffer, parts = bytearray(3 * BLOCK_SIZE + 7), []
            while got := file.readinto(buffer):
                parts.append(bytes(buffer[:got]))
            assert sha(b"".join(parts)) == sha(BIG)
        local = local_of(client)
        assert local.stats.opens == 6 and local.stats.fallbacks == 0
        reuses = local.stats.reuses
        with client.open("a/ds/big.bin") as file:
            cases = [
                (0, 10),
                (BLOCK_SIZE - 5, 10),  # across a block end
                (BLOCK_SIZE - 1, 2 * BLOCK_SIZE + 2),  # over three blocks
                (5 * BLOCK_SIZE, 9999),  # the last, short block, past the end of the file
                (len(BIG) - 1, 100),
                (0, len(BIG) + 100),
            ]
            for offset, size in cases:
                want = BIG[offset : offset + size]
                held = bytearray(size)
                assert file._file.read_held(offset, held) == len(want)  # no loop involved
                assert held[: len(want)] == want
                buffer = bytearray(size)
                assert file.pread_into(offset, buffer) == len(want)
                assert buffer[: len(want)] == want
                assert file.pread(offset, size) == want
            assert file.pread_into(len(BIG), bytearray(10)) == 0
            assert file.tell() == 0
            # Sequential reads and read() move the position.
            file.seek(BLOCK_SIZE - 3)
            assert file.read(6) == BIG[BLOCK_SIZE - 3 : BLOCK_SIZE + 3]
            buffer, parts = bytearray(BLOCK_SIZE // 3), []
            while got := file.readinto(buffer):
                parts.append(bytes(buffer[:got]))
            assert b"".join(parts) == BIG[BLOCK_SIZE + 3 :]
            assert file.read() == b""
        assert local.stats.reuses == reuses  # every read above took the fast path
        assert local.stats.opens == 6


def test_small_files_are_read_from_held_files(cluster: LocalCluster) -> None:
    """A small file's block file is held too: read again, it needs neither loop nor worker."""
    small = FILES["small.bin"]
    with Client(cluster.master_address, token=cluster.token("a")) as client:
        assert client.cat("a/ds/small.bin") == small  # its file is passed, then held
        local = local_of(client)
        opens, reuses = local.stats.opens, local.stats.reuses
        assert opens == 1
        calls: list[Any] = []
        loop_call = client._loop.call

        def counted(coro: Any) -> Any:
            calls.append(coro)
            return loop_call(coro)

        client._loop.call = counted  # type: ignore[method-assign]
        for _ in range(5):
            with client.open("a/ds/small.bin") as file:  # its status is cached
                buffer = bytearray(4 * len(small))
                assert file.readinto(buffer) == len(small)
                assert buffer[: len(small)] == small
                assert file.readinto(buffer) == 0
        assert not calls  # open, reads and close on this thread
        assert (local.stats.opens, local.stats.reuses) == (opens, reuses)


def test_reads_from_many_threads_while_blocks_are_dropped(cluster: LocalCluster) -> None:
    before = block_fds()
    with Client(cluster.master_address, token=cluster.token("a")) as client:
        assert client.cat("a/ds/big.bin") == BIG
        local = local_of(client)
        block_ids = [placement.block_id for placement in client.blocks("a/ds/big.bin")]
        stop = threading.Event()
        failures: list[BaseException] = []
        reads = [0]

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            try:
                with client.open("a/ds/big.bin") as file:
                    while not stop.is_set():
                        offset = rng.randrange(len(BIG))
                        buffer = bytearray(rng.choice((1, 4096, BLOCK_SIZE, 2 * BLOCK_SIZE + 3)))
                        got = file.pread_into(offset, buffer)
                        want = BIG[offset : offset + len(buffer)]
                        assert got == len(want) and buffer[:got] == want, f"at {offset}"
                        reads[0] += 1
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + 3.0
            rounds = 0
            while time.monotonic() < deadline and not failures:
                # Held files dropped on the loop (as eviction or a failed renewal does)...
                for block_id in block_ids[rounds % 2 :: 2]:
                    client._loop.loop.call_soon_threadsafe(local._forget, block_id)
                # ... and blocks evicted from the workers (their files unlinked).
                if rounds % 3 == 0:
                    asyncio.run(evict(cluster, block_ids[:3]))
                rounds += 1
                time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert not failures, failures[0]
        assert reads[0] > 100 and rounds > 10
    assert block_fds() == before  # every file held was closed


async def test_batched_open_checks_each_key(cluster: LocalCluster) -> None:
    with Client(cluster.master_address, token=cluster.token("a")) as client:
        big, small = client.stat("a/ds/big.bin"), client.stat("a/ds/small.bin")
    secret = auth.load_secret(cluster.secret_file)
    only_big, _ = auth.issue_capability(secret, "a", {big.mount_id: big.mount_path}, 60)
    both, _ = auth.issue_capability(secret, "a", {big.mount_id: ""}, 60)

    def key(info: object, index: int) -> tuple[str, BlockRef]:
        mount_id, path, version = info.mount_id, info.mount_path, info.version  # type: ignore[attr-defined]
        return BlockKey(mount_id, path, version, index).id, BlockRef(mount_id, path, version, index)

    before = block_fds()
    for worker in cluster.workers:
        channel = await FdChannel.connect(worker.unix_socket)
        try:
            blocks = [key(big, 0), key(small, 0), key(big, 5)]
            answers = await channel.open_many(blocks, only_big)
            assert isinstance(answers[1], PermissionDenied)  # that key only
            for answer, (offset, length) in (
                (answers[0], (0, BLOCK_SIZE)),
                (answers[2], (5 * BLOCK_SIZE, len(BIG) - 5 * BLOCK_SIZE)),
            ):
                assert isinstance(answer, tuple)
                grant, fd = answer
                assert fd is not None and grant.length == length
                try:
                    assert os.pread(fd, grant.length, grant.offset) == BIG[offset : offset + length]
                finally:
                    os.close(fd)
            answers = await channel.open_many([key(small, 0)], both)  # the channel goes on
            assert isinstance(answers[0], tuple) and answers[0][1] is not None
            os.close(answers[0][1])
        finally:
            channel.close()
    assert block_fds() == before


async def _rewrite_open(client: asyncio.StreamReader, worker: asyncio.StreamWriter) -> None:
    """Forward requests, turning ``open`` into an op the worker does not know."""
    while data := await client.read(65536):
        worker.write(data.replace(b"\xa4open", b"\xa4opex"))
        await worker.drain()
    worker.close()


async def _forward(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    while data := await source.read(65536):
        sink.write(data)
        await sink.drain()
    sink.close()


async def test_worker_without_open_is_read_over_the_data_protocol(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """An older worker answers ``open`` as an unknown op: that worker is not asked again."""
    worker = cluster.workers[0]
    tasks: set[asyncio.Task[None]] = set()

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(worker.unix_socket)
        for task in (_rewrite_open(reader, up_writer), _forward(up_reader, writer)):
            tasks.add(asyncio.ensure_future(task))

    path = str(tmp_path / "old-worker.sock")
    server = await asyncio.start_unix_server(proxy, path)
    with Client(cluster.master_address, token=cluster.token("a")) as client:
        info = client.stat("a/ds/big.bin")
        cap = client._call(client._async.fetcher.capabilities.get("a/ds"))  # type: ignore[union-attr]
    local = ShortCircuitReads()
    try:
        address = WorkerAddress("127.0.0.1", 0, path)
        blocks = [
            (
                BlockKey(info.mount_id, info.mount_path, info.version, index).id,
                BlockRef(info.mount_id, info.mount_path, info.version, index),
            )
            for index in range(3)
        ]
        await local.prefetch(address, blocks, cap)
        assert local.stats.fallbacks == 3 and local.stats.opens == 0
        assert not local.usable(address)
        assert all(local.held(block_id) is None for block_id, _ in blocks)
        assert await local.block(address, *blocks[0], cap) is None
    finally:
        await local.close()
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def test_a_changed_file_is_never_read_from_its_old_blocks(tmp_path: Path) -> None:
    ufs = tmp_path / "ufs"
    ufs.mkdir()
    old = random.Random(7).randbytes(2 * BLOCK_SIZE + 100)
    new = random.Random(8).randbytes(2 * BLOCK_SIZE + 200)
    (ufs / "changing.bin").write_bytes(old)
    with LocalCluster(
        tmp_path / "home",
        workers=1,
        tiers=[TierConfig(Medium.MEM, str(tmp_path / "tier"), 64 << 20)],
        block_size=BLOCK_SIZE,
        master_args=["--metadata-sync-interval", "0"],  # the master asks the UFS every time
    ) as cluster:
        cluster.apply_dataset("a", "ds", f"local://{ufs}")
        with Client(cluster.master_address, metadata_ttl=0) as client:
            assert client.cat("a/ds/changing.bin") == old
            with client.open("a/ds/changing.bin") as before:
                assert before._file.read_held(0, bytearray(10)) == 10  # its blocks are held
                (ufs / "changing.bin").write_bytes(new)
                later = time.time_ns() + 10**9
                os.utime(ufs / "changing.bin", ns=(later, later))
                with client.open("a/ds/changing.bin") as after:
                    buffer = bytearray(len(new) + 10)
                    assert after.pread_into(0, buffer) == len(new)
                    assert buffer[: len(new)] == new
                    assert after.read() == new
                # The file opened before keeps reading its own version's blocks.
                assert before.pread(BLOCK_SIZE, 10) == old[BLOCK_SIZE : BLOCK_SIZE + 10]


async def test_a_folder_whose_files_are_opened_one_by_one_is_listed(
    cluster: LocalCluster,
) -> None:
    names = [f"f{i:02d}" for i in range(LIST_AFTER_MISSES + 4)]
    write_folder(cluster, "many", {name: bytes([i]) * 100 for i, name in enumerate(names)})
    async with AsyncClient(cluster.master_address, token=cluster.token("a")) as client:
        view = client.view
        for name in names[: LIST_AFTER_MISSES - 1]:
            assert (await client.stat(f"a/ds/many/{name}")).size == 100
        assert view.cached_stat(parse_dataset_path(f"a/ds/many/{names[-1]}")) is None
        await client.stat(f"a/ds/many/{names[LIST_AFTER_MISSES - 1]}")  # the limit: listed
        await asyncio.gather(*view._listings)
        for i, name in enumerate(names):  # every file's status is cached now
            info = view.cached_stat(parse_dataset_path(f"a/ds/many/{name}"))
            assert info is not None and info.size == 100
            async with await client.open(f"a/ds/many/{name}") as file:
                assert await file.read() == bytes([i]) * 100


def test_files_after_a_small_one_in_a_listed_folder_are_asked_for_together(
    cluster: LocalCluster,
) -> None:
    contents = {f"f{i:02d}": random.Random(100 + i).randbytes(1000 + i) for i in range(12)}
    write_folder(cluster, "siblings", contents)
    with Client(cluster.master_address, token=cluster.token("a")) as client:
        assert len(client.ls("a/ds/siblings")) == 12  # the listing is cached
        assert client.cat("a/ds/siblings/f00") == contents["f00"]
        local = local_of(client)
        infos = client.ls("a/ds/siblings", detail=True)
        ids = [BlockKey(i.mount_id, i.mount_path, i.version, 0).id for i in infos]
        deadline = time.monotonic() + 10
        while any(local.held(block_id) is None for block_id in ids):
            assert time.monotonic() < deadline, "the next files' block files never came"
            time.sleep(0.05)
        opens = local.stats.opens
        assert opens == 12  # f00's, then the eleven after it
        for name, data in contents.items():
            with client.open(f"a/ds/siblings/{name}") as file:
                assert file.read() == data
        assert local.stats.opens == opens


def test_a_folder_read_again_from_its_start_asks_for_the_next_files_again(
    cluster: LocalCluster,
) -> None:
    """A read well before the one that asked last asks again (a new pass over the folder).

    Before, any read below the window asked last asked nothing while the
    listing was cached: a second pass over more small files than the client
    keeps found none of them held, and each file was one round trip.
    """
    contents = {f"f{i:02d}": random.Random(200 + i).randbytes(900 + i) for i in range(40)}
    write_folder(cluster, "again", contents)
    with Client(cluster.master_address, token=cluster.token("a")) as client:
        infos = client.ls("a/ds/again", detail=True)  # the listing is cached
        ids = [BlockKey(i.mount_id, i.mount_path, i.version, 0).id for i in infos]
        local = local_of(client)
        assert client.cat("a/ds/again/f39") == contents["f39"]  # the last: nothing after it
        assert client.cat("a/ds/again/f00") == contents["f00"]  # from the start again
        deadline = time.monotonic() + 10
        while any(local.held(block_id) is None for block_id in ids):
            assert time.monotonic() < deadline, "the next files' block files never came"
            time.sleep(0.05)
        opens = local.stats.opens
        for name, data in contents.items():
            with client.open(f"a/ds/again/{name}") as file:
                assert file.read() == data
        assert local.stats.opens == opens


def ufs_reads(cluster: LocalCluster) -> dict[str, float]:
    """The workers' UFS read requests so far, by kind (``block``, ``run``), summed."""
    counts = {"block": 0.0, "run": 0.0}
    for worker in cluster.workers:
        for sample in metric_samples(worker.metrics_port, worker.host):
            if sample.name == "cachecluster_worker_ufs_reads_total":
                counts[sample.labels["kind"]] += sample.value
    return counts


def test_a_cold_file_read_in_order_is_one_ufs_read_and_random_reads_fetch_one_block(
    cluster: LocalCluster,
) -> None:
    """The reader's ``ahead`` hint: its first miss makes the owner fetch the group at once.

    Without it the first block came alone (a second miss in a row started
    the run). Random reads fetch their own block and nothing ahead.
    """
    ufs = Path(cluster.home).parent / "ufs"
    (ufs / "cold").mkdir(parents=True, exist_ok=True)
    ordered = random.Random(7).randbytes(40 * BLOCK_SIZE + 123)  # within one placement group
    scattered = random.Random(8).randbytes(16 * BLOCK_SIZE)
    (ufs / "cold" / "ordered.bin").write_bytes(ordered)
    (ufs / "cold" / "scattered.bin").write_bytes(scattered)
    with Client(cluster.master_address, token=cluster.token("a")) as client:
        before = ufs_reads(cluster)
        with client.open("a/ds/cold/ordered.bin") as file:
            chunks = []
            while chunk := file.read(BLOCK_SIZE):
                chunks.append(chunk)
        assert sha(b"".join(chunks)) == sha(ordered)
        after = ufs_reads(cluster)
        assert (after["block"] - before["block"], after["run"] - before["run"]) == (0, 1)
        with client.open("a/ds/cold/scattered.bin") as file:
            for index in (9, 3, 12, 6):
                file.seek(index * BLOCK_SIZE + 17)
                start = index * BLOCK_SIZE + 17
                assert file.read(1000) == scattered[start : start + 1000]
        time.sleep(0.2)  # anything asked ahead would be under way by now
        last = ufs_reads(cluster)
        assert (last["block"] - after["block"], last["run"] - after["run"]) == (4, 0)


async def test_held_files_are_bounded_by_their_bytes(cluster: LocalCluster) -> None:
    with Client(cluster.master_address, token=cluster.token("a")) as client:
        info = client.stat("a/ds/big.bin")
        placements = client.blocks("a/ds/big.bin")
        cap = client._call(client._async.fetcher.capabilities.get("a/ds"))  # type: ignore[union-attr]
    addresses = {
        w.worker_id: WorkerAddress("127.0.0.1", w.data_port, w.unix_socket) for w in cluster.workers
    }
    before = block_fds()
    local = ShortCircuitReads(max_bytes=3 * BLOCK_SIZE)
    try:
        for placement in placements:  # one at a time, oldest first
            ref = BlockRef(info.mount_id, info.mount_path, info.version, placement.index)
            await local.prefetch(addresses[placement.owners[0]], [(placement.block_id, ref)], cap)
        held = [p.index for p in placements if local.held(p.block_id) is not None]
        assert held == [3, 4, 5]  # 2 MiB and the short last block: one more is over 3 MiB
        assert block_fds() == before + 3
    finally:
        await local.close()
    assert block_fds() == before
