"""``FileReader.local_view`` (the FUSE mount's zero-copy reads) ahead of its reader.

A fresh client viewing a file block by block asks for the files of the
blocks after it in batches (one round trip a worker, not one ``open`` a
block) and has the next ones mapped in a thread; every view is compared with
the UFS's bytes. :meth:`LocalBlock.view` is safe on any thread.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.client.reader import MAP_AHEAD_BLOCKS
from cachecluster.client.short_circuit import FdChannel, LocalBlock, ShortCircuitReads
from cachecluster.common.block_key import BlockKey
from cachecluster.common.frames import BlockRef, FdGrant
from cachecluster.local.cluster import LocalCluster
from cachecluster.worker.tiers import Medium, TierConfig

BLOCK_SIZE = 1 << 20
BLOCKS = 24
DATA = random.Random(3).randbytes(BLOCKS * BLOCK_SIZE - 999)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("view-ahead")
    (root / "ufs").mkdir()
    (root / "ufs" / "model.bin").write_bytes(DATA)
    with LocalCluster(
        root / "home",
        workers=2,
        tiers=[TierConfig(Medium.MEM, str(root / "tier"), 256 << 20)],
        block_size=BLOCK_SIZE,
        replicas=1,
    ) as made:
        made.apply_dataset("a", "ds", f"local://{root / 'ufs'}")
        yield made


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CACHECLUSTER_TOKEN", raising=False)
    monkeypatch.setenv("CACHECLUSTER_HOME", str(tmp_path / "no-home"))


def mapped(block: LocalBlock) -> bool:
    return block._mapping is not None


def local_of(client: AsyncClient) -> ShortCircuitReads:
    local = client.fetcher.local
    assert local is not None
    return local


async def test_fresh_client_views_blocks_asked_in_batches_and_mapped_ahead(
    cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncClient(cluster.master_address) as warm:  # every block cached by its owner
        assert hashlib.sha256(await warm.cat("a/ds/model.bin")).digest() == (
            hashlib.sha256(DATA).digest()
        )
    asks: list[int] = []  # blocks in each ``open`` round trip (the real channel, counted)
    real_ask = FdChannel.ask

    async def counted_ask(
        self: FdChannel,
        blocks: list[tuple[str, BlockRef]],
        cap: bytes | None,
        *,
        cached_only: bool = False,
    ) -> list[asyncio.Future[tuple[FdGrant, int | None]]]:
        asks.append(len(blocks))
        return await real_ask(self, blocks, cap, cached_only=cached_only)

    monkeypatch.setattr(FdChannel, "ask", counted_ask)
    async with AsyncClient(cluster.master_address) as client:
        local = local_of(client)
        async with await client.open("a/ds/model.bin") as file:
            info = file.info

            def held_block(index: int) -> LocalBlock | None:
                return local.held(BlockKey(info.mount_id, info.mount_path, info.version, index).id)

            async def wait_for(what: str, condition: Callable[[], bool]) -> None:
                for _ in range(500):
                    if condition():
                        return
                    await asyncio.sleep(0.01)
                pytest.fail(what)

            for index in range(BLOCKS):
                start = index * BLOCK_SIZE
                view = await file.local_view(start, BLOCK_SIZE)
                assert view is not None and view.readonly
                assert bytes(view) == DATA[start : start + BLOCK_SIZE]
                if index == 0:  # the next ones come in a batch (answered in the background)
                    await wait_for("blocks asked ahead", lambda: held_block(5) is not None)
                if index == 1:  # the next ones held: mapped in a thread
                    for ahead in range(2, 2 + MAP_AHEAD_BLOCKS):
                        block = held_block(ahead)
                        assert block is not None
                        await wait_for(f"block {ahead} mapped", functools.partial(mapped, block))
        # One open for the first block, then batches: a few round trips, not one a block.
        assert sum(asks) >= BLOCKS
        assert len(asks) <= 6, asks
        assert local.stats.opens == BLOCKS


async def test_a_block_is_viewed_from_many_threads_and_not_after_retiring(
    cluster: LocalCluster,
) -> None:
    async with AsyncClient(cluster.master_address) as client:
        local = local_of(client)
        async with await client.open("a/ds/model.bin") as file:
            info = file.info
            assert await file.pread_into(0, bytearray(3 * BLOCK_SIZE)) == 3 * BLOCK_SIZE
            block, unmapped = (
                local.held(BlockKey(info.mount_id, info.mount_path, info.version, index).id)
                for index in (2, 1)
            )
            assert block is not None and block._mapping is None
            with ThreadPoolExecutor(8) as pool:  # each maps or finds the mapping made
                views = list(pool.map(lambda _: bytes(block.view()), range(16)))
            assert all(view == DATA[2 * BLOCK_SIZE : 3 * BLOCK_SIZE] for view in views)
            assert unmapped is not None and unmapped._mapping is None
            unmapped.retire()
            with pytest.raises(OSError):  # its descriptor is closed: nothing to map
                unmapped.view()
