"""The tiered block store on real tmpfs files: capacity, tiers, single flight, corruption."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cachecluster.common.errors import ConfigError, CorruptBlock, NotFound
from cachecluster.worker.block_file import DATA_OFFSET
from cachecluster.worker.block_store import STORE_DIR_NAME, BlockStore
from cachecluster.worker.metrics import WorkerMetrics
from cachecluster.worker.tiers import Medium, TierConfig
from tests.worker.helpers import (
    SMALL_BLOCK,
    SMALL_FILE,
    CountingLoader,
    block_data,
    block_files,
    block_id,
    files_bytes,
)

MTIME_TICK = 0.011
"""File times advance in kernel clock ticks (up to 10 ms): sleep this long to order them."""


def tier(
    root: Path, medium: Medium, blocks: float, high: float = 0.9, low: float = 0.5
) -> TierConfig:
    """A tier under ``root`` whose quota holds ``blocks`` small blocks."""
    return TierConfig(medium, str(root / medium.value.lower()), int(blocks * SMALL_FILE), high, low)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(f"cachecluster_worker_{name}", labels)
    return 0.0 if value is None else value


async def read_all(store: BlockStore, n: int, loader: CountingLoader | None = None) -> bytes:
    async with await store.get(block_id(n), loader(n) if loader else None) as lease:
        return lease.read()


class Harness:
    """A started store plus its registry; closes the store at the end."""

    def __init__(self, tiers: Sequence[TierConfig], **options: object) -> None:
        self.tiers = list(tiers)
        self.registry = CollectorRegistry()
        self.store = BlockStore(tiers, metrics=WorkerMetrics(self.registry), **options)  # type: ignore[arg-type]

    def value(self, name: str, **labels: str) -> float:
        return sample(self.registry, name, **labels)


@pytest.fixture
async def harness_factory() -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    made: list[Harness] = []

    async def make(tiers: Sequence[TierConfig], **options: object) -> Harness:
        harness = Harness(tiers, **options)
        await harness.store.start()
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.store.close()


def check_quota(store: BlockStore) -> None:
    """``used <= quota`` by the books and on disk."""
    for usage in store.usage():
        assert 0 <= usage.used <= usage.quota, usage
        assert files_bytes(usage.path) <= usage.quota, usage


def check_high(store: BlockStore) -> None:
    for usage in store.usage():
        assert usage.used <= int(usage.high * usage.quota), usage


class WatchingMetrics(WorkerMetrics):
    """Checks ``0 <= used <= quota`` at every change of tier usage (the store publishes each)."""

    def __init__(self, registry: CollectorRegistry, quotas: dict[Medium, int]) -> None:
        super().__init__(registry)
        self.quotas = quotas
        self.changes = 0
        self.violations: list[str] = []

    def set_tier_usage(self, medium: Medium, used: int, blocks: int) -> None:
        super().set_tier_usage(medium, used, blocks)
        self.changes += 1
        if not 0 <= used <= self.quotas[medium]:
            self.violations.append(f"{medium}: used {used} of {self.quotas[medium]}")


async def test_eviction_keeps_tiers_between_watermarks_under_5x_workload(shm_dir: Path) -> None:
    tiers = [
        tier(shm_dir, Medium.MEM, 10),
        tier(shm_dir, Medium.SSD, 10),
        tier(shm_dir, Medium.HDD, 20),
    ]
    registry = CollectorRegistry()
    metrics = WatchingMetrics(registry, {t.medium: t.quota for t in tiers})
    store = BlockStore(tiers, metrics=metrics)
    await store.start()
    total_quota = sum(t.quota for t in tiers)
    n_blocks = 5 * total_quota // SMALL_FILE  # 5x what all tiers can hold together
    loader = CountingLoader()

    async def reader(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(n_blocks // 2):
            n = rng.randrange(n_blocks)
            assert await read_all(store, n, loader) == block_data(n)

    try:
        # a sequential pass over everything, checking after every write ...
        for n in range(n_blocks):
            assert await read_all(store, n, loader) == block_data(n)
            check_high(store)
            if n % 10 == 0:
                check_quota(store)
        await store.wait_idle()
        for usage in store.usage():  # eviction stops at low: full tiers sit between the marks
            assert int(usage.low * usage.quota) - SMALL_FILE < usage.used, usage
        # ... then concurrent random readers (hits now promote, which drains lower tiers)
        await asyncio.gather(*(reader(seed) for seed in range(4)))
        await store.wait_idle()
    finally:
        await store.close()
    assert not metrics.violations
    assert metrics.changes > 1000  # the watch saw every change of usage
    check_high(store)
    check_quota(store)
    for usage in store.usage():
        assert usage.used == usage.blocks * SMALL_FILE  # nothing reserved at rest
        assert len(block_files(os.path.join(usage.path, STORE_DIR_NAME))) == usage.blocks
    assert sample(registry, "evictions_total", medium="MEM") > 0
    assert sample(registry, "evictions_total", medium="HDD") > 0
    assert sample(registry, "demotions_total", medium="SSD") > 0
    assert sample(registry, "tier_capacity_bytes", medium="HDD") == tiers[2].quota
    used = {u.medium.value: u.used for u in store.usage()}
    assert sample(registry, "tier_used_bytes", medium="SSD") == used["SSD"]


async def test_lru_order_is_respected(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await harness_factory([tier(shm_dir, Medium.MEM, 10, high=1.0, low=0.6)])
    store = harness.store
    for n in range(10):
        await store.put(block_id(n), block_data(n))
    for n in (0, 1, 2):  # read: now the most recent
        await read_all(store, n)
    await store.put(block_id(10), block_data(10))  # passes high: evict down to low (6 blocks)
    await store.wait_idle()
    held = {bid for bid, _, _ in store.blocks()}
    assert held == {block_id(n) for n in (8, 9, 0, 1, 2, 10)}
    assert harness.value("evictions_total", medium="MEM") == 5


async def test_demotion_down_the_tiers_and_promotion_on_hit(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    tiers = [
        tier(shm_dir, Medium.MEM, 2, high=1.0, low=0.5),
        tier(shm_dir, Medium.SSD, 2, high=1.0, low=0.5),
        tier(shm_dir, Medium.HDD, 10, high=1.0, low=0.5),
    ]
    harness = await harness_factory(tiers)
    store = harness.store
    for n in range(2):
        assert await store.put(block_id(n), block_data(n)) is Medium.MEM
    await store.put(block_id(2), block_data(2))  # MEM passes high: 0 goes down to SSD
    await store.wait_idle()
    assert store.tier_of(block_id(0)) is Medium.SSD
    assert store.tier_of(block_id(2)) is Medium.MEM
    for n in range(3, 6):
        await store.put(block_id(n), block_data(n))
        await store.wait_idle()
    assert store.tier_of(block_id(0)) is Medium.HDD  # MEM -> SSD -> HDD
    assert harness.value("demotions_total", medium="MEM") >= 3
    assert harness.value("demotions_total", medium="SSD") >= 1

    ssd_block = next(bid for bid, medium, _ in store.blocks() if medium is Medium.SSD)
    n = next(n for n in range(6) if block_id(n) == ssd_block)
    lease = await store.get(ssd_block)
    assert lease.medium is Medium.SSD
    await store.wait_idle()
    assert store.tier_of(ssd_block) is Medium.MEM  # promoted in the background
    assert lease.read() == block_data(n)  # the old lease still reads the right bytes
    lease.close()
    assert harness.value("promotions_total", medium="SSD") == 1
    assert harness.value("block_hits_total", medium="SSD") == 1
    async with await store.get(ssd_block) as again:
        assert again.medium is Medium.MEM and again.read() == block_data(n)
    check_quota(store)


async def test_no_promotion_when_disabled(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    tiers = [tier(shm_dir, Medium.MEM, 1, high=1.0), tier(shm_dir, Medium.SSD, 4)]
    harness = await harness_factory(tiers, promote=False)
    store = harness.store
    await store.put(block_id(0), block_data(0))
    await store.put(block_id(1), block_data(1))
    await store.wait_idle()
    assert store.tier_of(block_id(0)) is Medium.SSD
    assert await read_all(store, 0) == block_data(0)
    await store.wait_idle()
    assert store.tier_of(block_id(0)) is Medium.SSD


async def test_32_concurrent_readers_one_loader_call(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await harness_factory([tier(shm_dir, Medium.MEM, 4)])
    loader = CountingLoader(delay=0.02)
    results = await asyncio.gather(*(read_all(harness.store, 7, loader) for _ in range(32)))
    assert loader.calls == {7: 1}
    assert all(result == block_data(7) for result in results)
    assert harness.value("block_misses_total") == 32
    assert harness.value("bytes_fetched_total") == SMALL_BLOCK
    assert harness.value("bytes_served_total") == 32 * SMALL_BLOCK
    assert harness.value("block_load_seconds_count") == 1
    assert harness.store.tier_of(block_id(7)) is Medium.MEM
    assert await read_all(harness.store, 7, loader) == block_data(7)
    assert loader.calls == {7: 1} and harness.value("block_hits_total", medium="MEM") == 1


async def test_load_fetches_and_stores_once_shared_with_readers_and_recycles(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await harness_factory([tier(shm_dir, Medium.MEM, 4)])
    loader = CountingLoader(delay=0.02)
    recycled: list[int] = []
    load = asyncio.ensure_future(
        harness.store.load(block_id(5), loader(5), lambda: recycled.append(5))
    )
    await asyncio.sleep(0.005)  # the load's flight is running: readers join it
    readers = await asyncio.gather(*(read_all(harness.store, 5, loader) for _ in range(4)))
    assert await load is False
    assert loader.calls == {5: 1} and recycled == [5]
    assert all(result == block_data(5) for result in readers)  # from the tier, not the buffer
    assert harness.value("block_misses_total") == 4  # the readers' misses; a load is no miss
    assert harness.value("bytes_served_total") == 4 * SMALL_BLOCK
    assert harness.value("bytes_fetched_total") == SMALL_BLOCK
    assert await harness.store.load(block_id(5), loader(5), lambda: recycled.append(0)) is True
    assert loader.calls == {5: 1} and recycled == [5]


async def test_load_of_a_block_no_tier_holds_keeps_its_buffer(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await harness_factory([tier(shm_dir, Medium.MEM, 2)])
    loader = CountingLoader(delay=0.02)
    recycled: list[int] = []
    big = 3 * SMALL_BLOCK
    load = asyncio.ensure_future(
        harness.store.load(block_id(1), loader(1, big), lambda: recycled.append(1))
    )
    await asyncio.sleep(0.005)
    async with await harness.store.get(block_id(1), loader(1, big)) as lease:
        assert lease.medium is None and lease.read() == block_data(1, big)
    assert await load is False
    assert recycled == [] and loader.calls == {1: 1}


async def test_failed_load_reaches_all_waiters_and_is_retried(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await harness_factory([tier(shm_dir, Medium.MEM, 4)])
    calls = 0

    async def flaky() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise ConnectionError("UFS unreachable")
        return block_data(3)

    outcomes = await asyncio.gather(
        *(harness.store.get(block_id(3), flaky) for _ in range(8)), return_exceptions=True
    )
    assert calls == 1 and all(isinstance(o, ConnectionError) for o in outcomes)
    assert not harness.store.contains(block_id(3))
    assert harness.value("block_load_errors_total") == 1
    async with await harness.store.get(block_id(3), flaky) as lease:
        assert lease.read() == block_data(3)
    assert calls == 2


async def test_miss_without_loader_is_not_found(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await harness_factory([tier(shm_dir, Medium.MEM, 4)])
    with pytest.raises(NotFound, match=block_id(1)):
        await harness.store.get(block_id(1))
    with pytest.raises(ValueError, match="block id"):
        await harness.store.get("../../etc/passwd")


async def test_corrupt_ssd_block_is_detected_and_refetched(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    tiers = [tier(shm_dir, Medium.MEM, 1, high=1.0), tier(shm_dir, Medium.SSD, 4)]
    harness = await harness_factory(tiers)
    store = harness.store
    loader = CountingLoader()
    for n in (0, 1):
        await read_all(store, n, loader)
    await store.wait_idle()
    assert store.tier_of(block_id(0)) is Medium.SSD
    (path,) = [p for p in block_files(tiers[1].path) if p.name.startswith(block_id(0))]
    with open(path, "r+b") as handle:  # flip one bit of the data
        handle.seek(DATA_OFFSET + 4242)
        byte = handle.read(1)[0]
        handle.seek(DATA_OFFSET + 4242)
        handle.write(bytes([byte ^ 0x80]))
    assert await read_all(store, 0, loader) == block_data(0)
    assert loader.calls[0] == 2  # refetched once
    assert harness.value("checksum_failures_total", medium="SSD") == 1
    await store.wait_idle()
    assert await read_all(store, 0) == block_data(0)  # what is stored now is good

    # without a loader the reader gets CorruptBlock, and the block is dropped
    await read_all(store, 1, loader)
    await store.wait_idle()
    (path,) = [p for p in block_files(tiers[1].path) if p.name.startswith(block_id(0))]
    with open(path, "r+b") as handle:
        handle.seek(DATA_OFFSET + 1)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(CorruptBlock, match=str(path)):
        await store.get(block_id(0))
    assert not store.contains(block_id(0)) and not path.exists()
    assert harness.value("checksum_failures_total", medium="SSD") == 2


async def test_restart_finds_blocks_on_disk_tiers(shm_dir: Path) -> None:
    tiers = [tier(shm_dir, Medium.MEM, 2, high=1.0), tier(shm_dir, Medium.SSD, 8, high=1.0)]
    loader = CountingLoader()
    async with BlockStore(tiers) as store:
        for n in range(6):
            await read_all(store, n, loader)
        await store.wait_idle()
        before = sorted(store.blocks())
    assert loader.total == 6
    ssd_dir = Path(tiers[1].path) / STORE_DIR_NAME
    (ssd_dir / "ab" / ("ab" * 16 + ".blk.tmp-1-2")).write_bytes(b"half a write")
    torn = ssd_dir / "cd" / ("cd" * 16 + ".blk")
    torn.write_bytes(b"CCBLK")
    foreign = ssd_dir / "README"
    foreign.write_text("not ours")

    registry = CollectorRegistry()
    async with BlockStore(tiers, metrics=WorkerMetrics(registry)) as store:
        assert sorted(store.blocks()) == before
        for n in range(6):  # no loader: every block comes from the tiers
            assert await read_all(store, n) == block_data(n)
        assert sample(registry, "block_misses_total") == 0
    assert loader.total == 6
    assert not list(ssd_dir.rglob("*.tmp-*")) and not torn.exists()
    assert foreign.exists()  # files the store does not own are left alone


async def test_restart_rebuilds_lru_order_from_mtime(shm_dir: Path) -> None:
    tiers = [tier(shm_dir, Medium.SSD, 4, high=1.0, low=1.0)]
    async with BlockStore(tiers) as store:
        for n in range(4):
            await store.put(block_id(n), block_data(n))
        for n in (2, 0, 3, 1):  # recency after this: 2 is the least recent
            await asyncio.sleep(MTIME_TICK)
            await read_all(store, n)
    async with BlockStore(tiers) as store:
        await store.put(block_id(9), block_data(9))
        await store.wait_idle()
        assert not store.contains(block_id(2))
        assert all(store.contains(block_id(n)) for n in (0, 1, 3, 9))


async def test_restart_with_smaller_quota_evicts_down_to_low(shm_dir: Path) -> None:
    async with BlockStore([tier(shm_dir, Medium.HDD, 10, high=1.0)]) as store:
        for n in range(10):
            await asyncio.sleep(MTIME_TICK)
            await store.put(block_id(n), block_data(n))
    smaller = tier(shm_dir, Medium.HDD, 6, high=0.9, low=0.5)
    async with BlockStore([smaller]) as store:
        (usage,) = store.usage()
        assert usage.used <= smaller.low_bytes and usage.blocks == 3
        assert {bid for bid, _, _ in store.blocks()} == {block_id(n) for n in (7, 8, 9)}


async def test_unwritable_tier_path_is_a_one_line_error(shm_dir: Path) -> None:
    regular_file = shm_dir / "not-a-dir"
    regular_file.write_text("x")
    bad = TierConfig(Medium.SSD, str(regular_file / "cache"), SMALL_FILE * 4)
    store = BlockStore([tier(shm_dir, Medium.MEM, 2), bad])
    with pytest.raises(ConfigError) as info:
        await store.start()
    assert (
        str(info.value) == f"tier SSD: path {regular_file}/cache is not writable: Not a directory"
    )


def test_unknown_policy_is_a_config_error(shm_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"^worker.evictionPolicy: unknown eviction policy 'mru'"):
        BlockStore([tier(shm_dir, Medium.MEM, 2)], policy="mru")


async def test_block_bigger_than_every_quota_is_served_from_memory(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await harness_factory([tier(shm_dir, Medium.MEM, 2), tier(shm_dir, Medium.SSD, 2)])
    loader = CountingLoader()
    big = 3 * SMALL_BLOCK
    async with await harness.store.get(block_id(1), loader(1, big)) as lease:
        assert lease.medium is None and lease.fd is None
        assert lease.read() == block_data(1, big)
    assert await harness.store.put(block_id(1), block_data(1, big)) is None
    assert harness.store.blocks() == []


async def test_lease_survives_eviction(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await harness_factory([tier(shm_dir, Medium.MEM, 2, high=1.0)])
    store = harness.store
    await store.put(block_id(0), block_data(0))
    lease = await store.get(block_id(0))
    assert await store.evict(block_id(0)) is True
    assert await store.evict(block_id(0)) is False
    for n in range(1, 5):  # churn the tier
        await store.put(block_id(n), block_data(n))
    await store.wait_idle()
    buf = memoryview(bytearray(SMALL_BLOCK))
    assert lease.readinto(buf) == SMALL_BLOCK and buf == block_data(0)
    lease.close()
    assert not store.contains(block_id(0))


async def test_slru_store_keeps_hot_blocks_through_a_scan(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await harness_factory([tier(shm_dir, Medium.MEM, 20, 1.0, 0.9)], policy="slru")
    store = harness.store
    loader = CountingLoader()
    hot = range(5)
    for _ in range(3):
        for n in hot:
            await read_all(store, n, loader)
    for n in range(100, 160):  # a scan three times the tier
        await read_all(store, n, loader)
    await store.wait_idle()
    assert all(store.contains(block_id(n)) for n in hot)


def flip_data_byte(path: Path, offset: int = 100) -> None:
    with open(path, "r+b") as handle:
        handle.seek(DATA_OFFSET + offset)
        byte = handle.read(1)[0]
        handle.seek(DATA_OFFSET + offset)
        handle.write(bytes([byte ^ 0xFF]))


async def test_rescanned_mem_block_is_verified_on_first_read(shm_dir: Path) -> None:
    tiers = [tier(shm_dir, Medium.MEM, 4)]
    async with BlockStore(tiers) as store:
        for n in (0, 1):
            await store.put(block_id(n), block_data(n))
    for path in block_files(tiers[0].path):
        flip_data_byte(path)  # e.g. damaged while the worker was down
    registry = CollectorRegistry()
    loader = CountingLoader()
    async with BlockStore(tiers, metrics=WorkerMetrics(registry)) as store:
        assert store.contains(block_id(0))  # the rescan reads headers only
        assert await read_all(store, 0, loader) == block_data(0)
        with pytest.raises(CorruptBlock):
            await store.get(block_id(1))
        assert sample(registry, "checksum_failures_total", medium="MEM") == 2
        assert loader.calls == {0: 1}
        flip_data_byte(block_files(tiers[0].path)[0])  # verified once: MEM trusts it now
        async with await store.get(block_id(0)) as lease:
            assert lease.read() != block_data(0)


async def test_verify_mem_checks_every_read(
    shm_dir: Path, harness_factory: Callable[..., Awaitable[Harness]]
) -> None:
    harness = await harness_factory([tier(shm_dir, Medium.MEM, 4)], verify_mem=True)
    loader = CountingLoader()
    assert await read_all(harness.store, 0, loader) == block_data(0)
    (path,) = block_files(harness.tiers[0].path)
    flip_data_byte(path)
    assert await read_all(harness.store, 0, loader) == block_data(0)
    assert loader.calls == {0: 2}
    assert harness.value("checksum_failures_total", medium="MEM") == 1


async def test_close_cancels_loads_in_flight(shm_dir: Path) -> None:
    store = BlockStore([tier(shm_dir, Medium.MEM, 4)])
    await store.start()
    started = asyncio.Event()

    async def hang() -> bytes:
        started.set()
        await asyncio.sleep(3600)
        return b""

    reader = asyncio.ensure_future(store.get(block_id(0), hang))
    await started.wait()
    await store.close()
    with pytest.raises(asyncio.CancelledError):
        await reader
    with pytest.raises(RuntimeError, match="closed"):
        await store.get(block_id(0))
