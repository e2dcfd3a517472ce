"""``FileReader.local_view`` (the FUSE mount's zero-copy reads) ahead of its reader.

A fresh client viewing a file block by block asks for the files of the
blocks after it in batches (one round trip a worker, not one ``open`` a
block); every view is compared with the UFS's bytes.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.local.cluster import LocalCluster
from cachecluster.worker.tiers import Medium, TierConfig
from tests.client.conftest import FdAsk
from tests.client.test_short_circuit import local_of

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


pytestmark = pytest.mark.usefixtures("no_ambient_token")


async def test_fresh_client_views_blocks_asked_for_in_batches(
    cluster: LocalCluster, fd_asks: list[FdAsk]
) -> None:
    async with AsyncClient(cluster.master_address) as warm:  # every block cached by its owner
        assert hashlib.sha256(await warm.cat("a/ds/model.bin")).digest() == (
            hashlib.sha256(DATA).digest()
        )
    warmed = len(fd_asks)  # the asks of the warm-up are not this test's
    async with AsyncClient(cluster.master_address) as client:
        local = local_of(client)
        async with await client.open("a/ds/model.bin") as file:
            for index in range(BLOCKS):
                start = index * BLOCK_SIZE
                view = await file.local_view(start, BLOCK_SIZE)
                assert view is not None and view.readonly
                assert bytes(view) == DATA[start : start + BLOCK_SIZE]
        # One open for each of the first two blocks, then batches of the rest (a part
        # fetched if cold, a part only if cached, a batch a worker): not one a block.
        asks = [ask.blocks for ask in fd_asks[warmed:]]
        assert sum(asks) >= BLOCKS
        assert len(asks) <= 6, asks
        assert local.stats.opens == BLOCKS
