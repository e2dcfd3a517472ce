"""An in-process worker opener over a real SeaweedFS bucket, its GET requests observed.

Used by the run tests (DataLoad runs and sequential read runs): a real S3
backend (its GETs recorded through botocore's event hooks, nothing
replaced), a real block store on tmpfs and the worker's opener. The fixture
``s3_opener`` (``tests/worker/conftest.py``) builds one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import NotFound
from cachecluster.ufs.base import UfsBackend
from cachecluster.ufs.registry import create_backend
from cachecluster.ufs.s3 import S3Backend
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.mounts import MountResolver, MountSpec
from cachecluster.worker.opener import UfsBlockOpener
from cachecluster.worker.placement import RingView
from cachecluster.worker.tiers import Medium, TierConfig
from tests.servers.seaweed import SeaweedS3

BLOCK = 64 * 1024
MOUNT = "0123456789abcdef"


@dataclasses.dataclass
class Env:
    """The opener under test, its store, and what it asked the S3 server for."""

    opener: UfsBlockOpener
    store: BlockStore
    s3: Any  # a boto3 S3 client, to write objects behind the cache's back
    bucket: str
    gets: list[str]  # the Range header of every GET the backend sent
    heads: list[str] = dataclasses.field(default_factory=list)  # the key of every HEAD

    def put(self, name: str, size: int, seed: int = 1) -> bytes:
        data = random.Random(seed).randbytes(size)
        self.s3.put_object(Bucket=self.bucket, Key=f"data/{name}", Body=data)
        return data

    async def version(self, name: str) -> str:
        return (await (await self.opener.mounts.get(MOUNT)).backend.stat(name)).version

    async def stored(self, key: BlockKey) -> bytes:
        with await self.store.get(key.id) as lease:
            return lease.read()


@contextlib.asynccontextmanager
async def opener_env(
    s3_server: SeaweedS3, shm_dir: Path, block_size: int = BLOCK, tier_blocks: int = 64
) -> AsyncIterator[Env]:
    """An :class:`Env` on a fresh bucket; everything closed afterwards."""
    bucket = f"runs-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    gets: list[str] = []
    heads: list[str] = []

    def record(request: Any, **_: Any) -> None:
        gets.append(request.headers["Range"].decode())

    def record_head(request: Any, **_: Any) -> None:
        heads.append(request.url.rsplit("/", 1)[-1])

    def factory(uri: str, options: Mapping[str, str]) -> UfsBackend:
        backend = create_backend(uri, options)
        assert isinstance(backend, S3Backend)
        backend._client.meta.events.register("before-send.s3.GetObject", record)
        backend._client.meta.events.register("before-send.s3.HeadObject", record_head)
        return backend

    spec = MountSpec(MOUNT, f"s3://{bucket}/data", s3_server.backend_options())

    async def lookup(mount_id: str) -> MountSpec:
        if mount_id != MOUNT:
            raise NotFound(f"mount {mount_id}: no such mount")
        return spec

    ring = RingView("w-test")
    ring.set_block_size(block_size)
    resolver = MountResolver(lookup, backend_factory=factory)
    tier = TierConfig(Medium.MEM, str(shm_dir / "mem"), tier_blocks * block_size)
    try:
        async with BlockStore([tier]) as store:
            opener = UfsBlockOpener(store, resolver, ring)
            try:
                yield Env(opener, store, s3_server.client(), bucket, gets, heads)
            finally:
                await opener.close()
    finally:
        await resolver.close()


def run_keys(name: str, version: str, indices: range) -> list[BlockKey]:
    """Keys of blocks ``indices`` of ``name`` at ``version`` on the test mount."""
    return [BlockKey(MOUNT, name, version, index) for index in indices]
