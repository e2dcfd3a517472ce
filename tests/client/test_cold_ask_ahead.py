"""A cold sequential read asks its owners ahead for few blocks they do not hold yet.

Blocks ahead of a reader are asked for in batches: a part fetched if cold, the
rest "only if held" (a refused ``open`` when the owner has not stored the
block yet). While a file is being fetched the "only if held" part stays a few
blocks past the first one that was refused: it used to be the whole rest of
the batch, asked again batch after batch (about 1,600 refused ``open``
requests a GiB). A warm file is still asked for in whole batches (see
test_local_view_ahead.py). Every read is compared with the UFS's bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.client.reader import DEFAULT_READAHEAD_BLOCKS, LOCAL_BATCH_BLOCKS
from cachecluster.local.cluster import LocalCluster
from cachecluster.worker.tiers import Medium, TierConfig
from tests.client.conftest import FdAsk
from tests.client.test_short_circuit import local_of

BLOCK_SIZE = 1 << 20
BLOCKS = 48
READ_SIZE = 2 * BLOCK_SIZE


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCluster, Path]]:
    root = tmp_path_factory.mktemp("cold-ahead")
    (root / "ufs").mkdir()
    with LocalCluster(
        root / "home",
        workers=2,
        tiers=[TierConfig(Medium.MEM, str(root / "tier"), 512 << 20)],
        block_size=BLOCK_SIZE,
        replicas=1,
    ) as made:
        made.apply_dataset("a", "ds", f"local://{root / 'ufs'}")
        yield made, root / "ufs"


pytestmark = pytest.mark.usefixtures("no_ambient_token")


class Asks:
    """Blocks in the ``open`` round trips of the real channel, by kind."""

    def __init__(self, asks: list[FdAsk]) -> None:
        self._asks = asks

    @property
    def cached_only(self) -> int:
        """Blocks asked for "only if held"."""
        return sum(ask.blocks for ask in self._asks if ask.cached_only)

    @property
    def fetch(self) -> int:
        """Blocks asked to be fetched if cold."""
        return sum(ask.blocks for ask in self._asks if not ask.cached_only)

    def reset(self) -> None:
        """Count from here on."""
        self._asks.clear()


@pytest.fixture
def asks(fd_asks: list[FdAsk]) -> Asks:
    return Asks(fd_asks)


async def read_sha256(client: AsyncClient, path: str) -> bytes:
    """sha256 of the file at ``path`` read start to end, ``READ_SIZE`` at a time."""
    got = hashlib.sha256()
    async with await client.open(path) as file:
        buffer = memoryview(bytearray(READ_SIZE))
        while n := await file.readinto(buffer):
            got.update(buffer[:n])
    return got.digest()


async def test_a_cold_sequential_read_is_exact_and_read_from_the_files_passed(
    cluster: tuple[LocalCluster, Path], asks: Asks
) -> None:
    made, ufs = cluster
    data = random.Random(5).randbytes(BLOCKS * BLOCK_SIZE - 777)
    (ufs / "cold.bin").write_bytes(data)
    async with AsyncClient(made.master_address) as client:
        assert await read_sha256(client, "a/ds/cold.bin") == hashlib.sha256(data).digest()
        assert local_of(client).stats.opens >= BLOCKS  # read from the files passed
    assert asks.fetch <= 2 * BLOCKS, asks.fetch  # each block asked to be fetched about once


async def test_blocks_refused_ahead_are_not_asked_for_again_batch_after_batch(
    cluster: tuple[LocalCluster, Path], asks: Asks
) -> None:
    """Every other block read from the second on: the blocks between are never fetched.

    (A read at offset 0 would count as sequential: its owner would fetch the
    rest of the group with it.)

    The first batch asks for the whole window "only if held" and is refused;
    after that each batch asks for at most ``2 * readahead_blocks`` of them
    (the old way asked for the whole rest of the window every time).
    """
    made, ufs = cluster
    data = random.Random(7).randbytes(BLOCKS * BLOCK_SIZE)
    (ufs / "strided.bin").write_bytes(data)
    reads = 0
    async with (
        AsyncClient(made.master_address) as client,
        await client.open("a/ds/strided.bin") as file,
    ):
        buffer = memoryview(bytearray(BLOCK_SIZE))
        for index in range(1, BLOCKS, 2):
            assert await file.pread_into(index * BLOCK_SIZE, buffer) == BLOCK_SIZE
            assert buffer == data[index * BLOCK_SIZE : (index + 1) * BLOCK_SIZE]
            reads += 1
            await asyncio.sleep(0.02)  # the batch asked after this read is answered
    bound = LOCAL_BATCH_BLOCKS + 2 * DEFAULT_READAHEAD_BLOCKS * reads
    assert asks.cached_only <= bound, (asks.cached_only, bound)


async def test_a_warm_file_is_still_asked_for_in_whole_batches(
    cluster: tuple[LocalCluster, Path], asks: Asks
) -> None:
    made, ufs = cluster
    data = random.Random(6).randbytes(BLOCKS * BLOCK_SIZE - 55)
    (ufs / "warm.bin").write_bytes(data)
    async with AsyncClient(made.master_address) as warm:  # every block cached by its owner
        assert hashlib.sha256(await warm.cat("a/ds/warm.bin")).digest() == (
            hashlib.sha256(data).digest()
        )
    asks.reset()
    async with AsyncClient(made.master_address) as client:
        assert await read_sha256(client, "a/ds/warm.bin") == hashlib.sha256(data).digest()
        assert local_of(client).stats.opens == BLOCKS
    # The first batch holds all the blocks after the first reads: asked once each.
    assert asks.cached_only + asks.fetch <= BLOCKS + 8, (asks.cached_only, asks.fetch)
