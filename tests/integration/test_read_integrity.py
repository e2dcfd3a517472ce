"""Every byte right under chaos: readers compare each read while processes die and stall.

A 3-worker cluster (256 KiB blocks, 2 replicas, SSD tiers, fast heartbeats)
serves one local file. Reader tasks read it over and over, each whole read
with a client of its own choosing: read-ahead 0..6 blocks, chunks that are
whole blocks or cut blocks anywhere, random ranged reads, a block timeout of
a fifth of a second, and now and then a brand-new client (whose first ring
may be a freshly restarted master's, partial or empty). Meanwhile a chaos
task SIGKILLs and restarts workers, freezes one with SIGSTOP for longer than
the block timeout (so reads are cancelled mid-payload and go elsewhere) and
SIGKILLs and restarts the master.

Reads may fail with ``Unavailable`` (a new client cannot stat a file while
the master is down); a read may never return other bytes than the file's.
Everything the test stops is started again in a ``finally``, and the cluster
(a context manager) stops every process it started, also on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.common.errors import Unavailable
from cachecluster.local.cluster import LocalCluster
from cachecluster.worker.tiers import Medium, TierConfig

KiB = 1 << 10
BLOCK_SIZE = 256 * KiB
FILE_SIZE = 80 * BLOCK_SIZE + 12_345  # a short last block
DATASET = "chaos/data"
FILE_PATH = f"{DATASET}/file.bin"
CHAOS_SECONDS = float(os.environ.get("CACHECLUSTER_IT_CHAOS_SECONDS", "16"))
READERS = 4


@dataclass
class Tally:
    """What the readers saw."""

    reads: int = 0
    bytes: int = 0
    unavailable: int = 0
    wrong: list[str] = field(default_factory=list)
    fresh_clients: int = 0


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, bytes]]:
    """The UFS folder and the file's bytes (no two blocks alike)."""
    root = tmp_path_factory.mktemp("chaos-ufs")
    data = os.urandom(FILE_SIZE)
    (root / "file.bin").write_bytes(data)
    yield root, data


@pytest.fixture(scope="module")
def chaos_cluster(
    tmp_path_factory: pytest.TempPathFactory, source: tuple[Path, bytes]
) -> Iterator[LocalCluster]:
    """3 workers on SSD tiers (kept over restarts), 2 replicas, 0.25 s heartbeats."""
    home = tmp_path_factory.mktemp("chaos-cluster")
    cluster = LocalCluster(
        home,
        workers=3,
        tiers=[TierConfig(Medium.SSD, str(home / "ssd"), 256 * 1024 * KiB)],
        block_size=BLOCK_SIZE,
        replicas=2,
        master_args=["--heartbeat-interval", "0.25", "--missed-heartbeats", "4"],
    )
    with cluster:
        namespace, name = DATASET.split("/")
        cluster.apply_dataset(namespace, name, f"local://{source[0]}")
        yield cluster


def _first_difference(got: bytes | bytearray | memoryview, want: bytes, offset: int) -> str:
    """Where ``got`` (read at ``offset``) first differs from the file, and which block holds it."""
    view = memoryview(got)
    for start in range(0, len(view), 4096):
        if view[start : start + 4096] != want[offset + start : offset + start + 4096]:
            where = offset + start
            return f"bytes differ near {where} (block {where // BLOCK_SIZE})"
    return "bytes differ"


async def _whole_read(client: AsyncClient, data: bytes, rng: random.Random, tally: Tally) -> None:
    """One pass over the file, in chunks of a random size, then a few random ranges."""
    chunk = rng.choice(
        [BLOCK_SIZE, 3 * BLOCK_SIZE + 17, 8 * BLOCK_SIZE, 1 << 20, 4097, 2 * BLOCK_SIZE - 1]
    )
    buf = bytearray(chunk)
    async with await client.open(FILE_PATH, readahead_blocks=rng.randint(0, 6)) as file:
        offset = 0
        while n := await file.readinto(buf):
            if buf[:n] != data[offset : offset + n]:
                tally.wrong.append(
                    f"chunk {chunk} at {offset}: " + _first_difference(buf[:n], data, offset)
                )
            offset += n
            tally.bytes += n
        if offset != len(data):
            tally.wrong.append(f"read {offset} bytes of {len(data)}")
        for _ in range(3):
            start = rng.randrange(len(data))
            length = rng.randrange(1, 3 * BLOCK_SIZE)
            ranged = bytearray(length)
            got = await file.pread_into(start, ranged)
            want = data[start : start + length]
            if got != len(want) or ranged[:got] != want:
                tally.wrong.append(
                    f"range {start}+{length}: {got} bytes, "
                    + _first_difference(ranged[:got], data, start)
                )
    tally.reads += 1


async def _reader(master: str, data: bytes, seed: int, stop: asyncio.Event, tally: Tally) -> None:
    """Read the file again and again until ``stop``; a new client about every third read."""
    rng = random.Random(seed)

    def new_client() -> AsyncClient:
        return AsyncClient(
            master,
            block_timeout=0.2,
            suspect_seconds=1.0,
            ring_refresh_interval=0.5,
            metadata_ttl=1.0,
            connections_per_worker=rng.choice([1, 2]),
        )

    client = new_client()
    try:
        while not stop.is_set():
            if rng.random() < 0.35:
                await client.close()
                client = new_client()
                tally.fresh_clients += 1
            try:
                await _whole_read(client, data, rng, tally)
            except Unavailable:
                tally.unavailable += 1
                await asyncio.sleep(0.05)
    finally:
        await client.close()


def _ensure_running(cluster: LocalCluster) -> None:
    """Wake frozen workers and start whatever is down (blocking: call in a thread)."""
    for worker in cluster.workers:
        if worker.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGCONT)
    if not cluster.master.alive:
        cluster.start_master()
    for index, worker in enumerate(cluster.workers):
        if not worker.alive:
            cluster.start_worker(index)


async def _chaos(cluster: LocalCluster, stop: asyncio.Event, seed: int, log: list[str]) -> None:
    """Kill, freeze and restart workers and the master until ``stop``; all running at the end."""
    rng = random.Random(seed)
    master_restarts = 0
    started = time.monotonic()
    try:
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.4, 1.0))
            elapsed = time.monotonic() - started
            action = rng.choice(
                ["kill", "freeze", "master"] if master_restarts < 2 else ["kill", "freeze"]
            )
            if action == "master" or (master_restarts == 0 and elapsed > CHAOS_SECONDS / 3):
                master_restarts += 1
                log.append(f"{elapsed:.1f}s master SIGKILL")
                await asyncio.to_thread(cluster.stop_master, signal.SIGKILL)
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                await asyncio.to_thread(cluster.start_master)
            elif action == "kill":
                index = rng.randrange(len(cluster.workers))
                log.append(f"{elapsed:.1f}s w{index} SIGKILL")
                await asyncio.to_thread(cluster.kill_worker, index, signal.SIGKILL)
                await asyncio.sleep(rng.uniform(0.1, 1.0))
                await asyncio.to_thread(cluster.start_worker, index)
            else:
                index = rng.randrange(len(cluster.workers))
                pid = cluster.workers[index].pid
                assert pid
                log.append(f"{elapsed:.1f}s w{index} SIGSTOP")
                os.kill(pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(rng.uniform(0.3, 0.8))  # well past the block timeout
                finally:
                    os.kill(pid, signal.SIGCONT)
    finally:
        await asyncio.to_thread(_ensure_running, cluster)


async def test_every_byte_is_right_while_workers_and_master_fail(
    chaos_cluster: LocalCluster, source: tuple[Path, bytes]
) -> None:
    data = source[1]
    seed = int(os.environ.get("CACHECLUSTER_IT_CHAOS_SEED", str(time.time_ns() % 10_000)))
    tally = Tally()
    log: list[str] = []
    stop = asyncio.Event()
    readers = [
        asyncio.create_task(_reader(chaos_cluster.master_address, data, seed + i, stop, tally))
        for i in range(READERS)
    ]
    chaos = asyncio.create_task(_chaos(chaos_cluster, stop, seed, log))
    try:
        await asyncio.wait(
            [chaos, *readers], timeout=CHAOS_SECONDS, return_when=asyncio.FIRST_EXCEPTION
        )
    finally:
        stop.set()
        results = await asyncio.gather(chaos, *readers, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    summary = (
        f"seed {seed}: {tally.reads} whole reads ({tally.bytes >> 20} MiB), "
        f"{tally.fresh_clients} fresh clients, {tally.unavailable} unavailable; chaos: {log}"
    )
    print(summary)
    assert not tally.wrong, f"{summary}; wrong bytes: {tally.wrong[:5]}"
    assert not failures, f"{summary}; failures: {failures!r}"
    assert tally.reads >= READERS, summary
    assert any("master" in line for line in log), summary
