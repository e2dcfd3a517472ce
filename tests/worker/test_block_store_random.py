"""Randomized: any mix of concurrent gets, puts, evictions and held leases keeps the books.

Hypothesis draws the tiers (one to three, quotas, watermarks), the policy and
batches of operations that run concurrently. Checked:

* ``0 <= used <= quota`` at every change of any tier's usage;
* every read returns the block's bytes, and a lease held across the churn
  still does at the end;
* at rest, the books match the disk: each tier's block files are exactly the
  blocks it reports, their sizes add up to ``used``, and no temp file is left.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from cachecluster.worker.block_file import DATA_OFFSET, BlockLease
from cachecluster.worker.block_store import STORE_DIR_NAME, BlockStore
from cachecluster.worker.metrics import WorkerMetrics
from cachecluster.worker.tiers import Medium, TierConfig
from tests.worker.helpers import block_data, block_id

UNIT = 8 * 1024
N_IDS = 16


def data_length(n: int) -> int:
    return UNIT * (1 + n % 3)


class QuotaWatch(WorkerMetrics):
    def __init__(self, quotas: dict[Medium, int]) -> None:
        super().__init__(CollectorRegistry())
        self.quotas = quotas
        self.violations: list[str] = []

    def set_tier_usage(self, medium: Medium, used: int, blocks: int) -> None:
        super().set_tier_usage(medium, used, blocks)
        if not 0 <= used <= self.quotas[medium]:
            self.violations.append(f"{medium}: {used} > {self.quotas[medium]}")


tier_specs = st.lists(
    st.tuples(
        st.integers(DATA_OFFSET + UNIT, 8 * (DATA_OFFSET + 3 * UNIT)),  # quota
        st.floats(0.3, 1.0),  # high
        st.floats(0.0, 1.0),  # low, as a fraction of high
    ),
    min_size=1,
    max_size=3,
)
operations = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(["get", "get", "put", "evict", "hold"]), st.integers(0, N_IDS - 1)
        ),
        min_size=1,
        max_size=6,
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=int(os.environ.get("CC_RANDOM_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    specs=tier_specs,
    batches=operations,
    policy=st.sampled_from(["lru", "slru"]),
    promote=st.booleans(),
)
def test_random_operations_keep_capacity_invariants(
    specs: list[tuple[int, float, float]],
    batches: list[list[tuple[str, int]]],
    policy: str,
    promote: bool,
) -> None:
    root = Path(tempfile.mkdtemp(prefix="cc-worker-random-", dir="/dev/shm"))
    try:
        asyncio.run(_scenario(root, specs, batches, policy, promote))
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _scenario(
    root: Path,
    specs: list[tuple[int, float, float]],
    batches: list[list[tuple[str, int]]],
    policy: str,
    promote: bool,
) -> None:
    tiers = [
        TierConfig(medium, str(root / medium.value), quota, high, high * low_share)
        for medium, (quota, high, low_share) in zip(Medium, specs, strict=False)
    ]
    watch = QuotaWatch({t.medium: t.quota for t in tiers})
    store = BlockStore(tiers, policy=policy, metrics=watch, promote=promote, io_threads=2)
    await store.start()
    held: list[tuple[int, BlockLease]] = []

    async def run(op: str, n: int) -> None:
        expected = block_data(n, data_length(n))

        async def load() -> bytes:
            await asyncio.sleep(0)
            return expected

        if op == "put":
            await store.put(block_id(n), expected)
        elif op == "evict":
            await store.evict(block_id(n))
        else:
            lease = await store.get(block_id(n), load)
            assert lease.read() == expected
            if op == "hold":
                held.append((n, lease))
            else:
                lease.close()

    try:
        for batch in batches:
            await asyncio.gather(*(run(op, n) for op, n in batch))
        await store.wait_idle()
        assert not watch.violations, watch.violations
        for n, lease in held:
            assert lease.read() == block_data(n, data_length(n))
        _check_books_match_disk(store)
    finally:
        for _, lease in held:
            lease.close()
        await store.close()


def _check_books_match_disk(store: BlockStore) -> None:
    by_medium: dict[Medium, dict[str, int]] = {}
    for bid, medium, length in store.blocks():
        by_medium.setdefault(medium, {})[bid] = length
        assert store.contains(bid) and store.tier_of(bid) is medium
    for usage in store.usage():
        on_disk: dict[str, int] = {}
        for dirpath, _dirs, names in os.walk(os.path.join(usage.path, STORE_DIR_NAME)):
            for name in names:
                assert name.endswith(".blk"), f"left behind: {name}"
                size = os.path.getsize(os.path.join(dirpath, name))
                on_disk[name.removesuffix(".blk")] = size - DATA_OFFSET
        assert on_disk == by_medium.get(usage.medium, {})
        assert usage.used == sum(DATA_OFFSET + length for length in on_disk.values())
        assert usage.blocks == len(on_disk)
        assert usage.used <= usage.quota
