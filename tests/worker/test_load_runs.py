"""Coalesced loads: consecutive blocks of a file fetched with one ranged GET from SeaweedFS.

A real S3 server (SeaweedFS), a real S3 backend (its GET requests observed
through botocore's event hooks, nothing replaced), a real block store on
tmpfs and the worker's opener, in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import InvalidArgument, NotFound, VersionChanged
from cachecluster.common.frames import BlockRef, ReadRequest
from cachecluster.ufs.base import UfsBackend
from cachecluster.ufs.registry import create_backend
from cachecluster.ufs.s3 import S3Backend
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.mounts import MountResolver, MountSpec
from cachecluster.worker.opener import LoadOutcome, UfsBlockOpener
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

    def put(self, name: str, size: int, seed: int = 1) -> bytes:
        data = random.Random(seed).randbytes(size)
        self.s3.put_object(Bucket=self.bucket, Key=f"data/{name}", Body=data)
        return data

    async def version(self, name: str) -> str:
        return (await (await self.opener.mounts.get(MOUNT)).backend.stat(name)).version

    async def stored(self, key: BlockKey) -> bytes:
        with await self.store.get(key.id) as lease:
            return lease.read()


@pytest.fixture
async def env(s3_server: SeaweedS3, shm_dir: Path) -> AsyncIterator[Env]:
    bucket = f"runs-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    gets: list[str] = []

    def record(request: Any, **_: Any) -> None:
        gets.append(request.headers["Range"].decode())

    def factory(uri: str, options: Mapping[str, str]) -> UfsBackend:
        backend = create_backend(uri, options)
        assert isinstance(backend, S3Backend)
        backend._client.meta.events.register("before-send.s3.GetObject", record)
        return backend

    spec = MountSpec(MOUNT, f"s3://{bucket}/data", s3_server.backend_options())

    async def lookup(mount_id: str) -> MountSpec:
        if mount_id != MOUNT:
            raise NotFound(f"mount {mount_id}: no such mount")
        return spec

    ring = RingView("w-test")
    ring.set_block_size(BLOCK)
    resolver = MountResolver(lookup, backend_factory=factory)
    tier = TierConfig(Medium.MEM, str(shm_dir / "mem"), 64 * BLOCK)
    try:
        async with BlockStore([tier]) as store:
            yield Env(
                UfsBlockOpener(store, resolver, ring), store, s3_server.client(), bucket, gets
            )
    finally:
        await resolver.close()


def run_keys(name: str, version: str, indices: range) -> list[BlockKey]:
    return [BlockKey(MOUNT, name, version, index) for index in indices]


async def test_a_run_is_one_get_and_each_block_holds_its_bytes(env: Env) -> None:
    data = env.put("f.bin", 5 * BLOCK + 1000)  # the last block is partial
    keys = run_keys("f.bin", await env.version("f.bin"), range(6))
    outcomes = await env.opener.load_run(keys)
    assert outcomes == [LoadOutcome(key.id, False, BLOCK) for key in keys[:5]] + [
        LoadOutcome(keys[5].id, False, 1000)
    ]
    assert env.gets == [f"bytes=0-{6 * BLOCK - 1}"]
    for key in keys:
        assert await env.stored(key) == data[key.index * BLOCK : (key.index + 1) * BLOCK]
    assert len(env.opener.buffers) == 6  # every block buffer went back to the pool
    with pytest.raises(InvalidArgument, match="does not follow"):
        await env.opener.load_run([keys[0], keys[2]])  # a gap: bytes would go astray
    again = await env.opener.load_run(keys)
    assert all(isinstance(o, LoadOutcome) and o.already_cached for o in again)
    assert len(env.gets) == 1


async def test_a_cached_block_splits_the_run(env: Env) -> None:
    data = env.put("f.bin", 6 * BLOCK)
    keys = run_keys("f.bin", await env.version("f.bin"), range(6))
    await env.opener.load(keys[2].id, keys[2])
    env.gets.clear()
    outcomes = await env.opener.load_run(keys)
    assert outcomes[2] == LoadOutcome(keys[2].id, True, 0)
    assert [o.bytes_fetched for o in outcomes if isinstance(o, LoadOutcome)] == [
        BLOCK, BLOCK, 0, BLOCK, BLOCK, BLOCK
    ]  # fmt: skip
    assert env.gets == [f"bytes=0-{2 * BLOCK - 1}", f"bytes={3 * BLOCK}-{6 * BLOCK - 1}"]
    for key in keys:
        assert await env.stored(key) == data[key.index * BLOCK : (key.index + 1) * BLOCK]


async def test_blocks_past_the_end_fail_alone(env: Env) -> None:
    data = env.put("f.bin", 2 * BLOCK)
    keys = run_keys("f.bin", await env.version("f.bin"), range(4))
    outcomes = await env.opener.load_run(keys)
    assert outcomes[:2] == [LoadOutcome(key.id, False, BLOCK) for key in keys[:2]]
    for outcome in outcomes[2:]:
        assert isinstance(outcome, NotFound) and "past the end" in str(outcome)
    assert len(env.gets) == 1
    assert await env.stored(keys[1]) == data[BLOCK:]
    assert not env.store.contains(keys[2].id) and not env.store.contains(keys[3].id)
    assert len(env.opener.buffers) == 4


async def test_a_changed_object_fails_every_block_and_stores_nothing(env: Env) -> None:
    env.put("f.bin", 4 * BLOCK)
    old = run_keys("f.bin", await env.version("f.bin"), range(4))
    new_data = env.put("f.bin", 4 * BLOCK, seed=2)  # overwritten before the load
    outcomes = await env.opener.load_run(old)
    for outcome in outcomes:
        assert isinstance(outcome, VersionChanged) and "f.bin" in str(outcome)
    assert env.store.blocks() == []
    assert len(env.opener.buffers) == 4
    new = run_keys("f.bin", await env.version("f.bin"), range(4))
    assert all(isinstance(o, LoadOutcome) for o in await env.opener.load_run(new))
    assert await env.stored(new[3]) == new_data[3 * BLOCK :]


async def test_a_reader_and_a_run_share_the_fetch_of_a_block(env: Env) -> None:
    data = env.put("f.bin", 8 * BLOCK)
    version = await env.version("f.bin")
    keys = run_keys("f.bin", version, range(8))
    request = ReadRequest(1, keys[5].id, BlockRef(MOUNT, "f.bin", version, 5), 0, BLOCK)

    async def read() -> bytes:
        with await env.opener.open_block(request) as lease:
            return lease.read()

    outcomes, read_bytes = await asyncio.gather(env.opener.load_run(keys), read())
    assert read_bytes == data[5 * BLOCK : 6 * BLOCK]
    assert all(isinstance(o, LoadOutcome) for o in outcomes)
    for key in keys:
        assert await env.stored(key) == data[key.index * BLOCK : (key.index + 1) * BLOCK]
    assert len(env.store.blocks()) == 8


async def test_a_cancelled_run_leaves_the_store_consistent(env: Env) -> None:
    data = env.put("f.bin", 16 * BLOCK)
    keys = run_keys("f.bin", await env.version("f.bin"), range(16))
    task = asyncio.ensure_future(env.opener.load_run(keys))
    await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)  # the flights it started end (their fetch was cancelled)
    await env.store.wait_idle()
    outcomes = await env.opener.load_run(keys)
    assert all(isinstance(o, LoadOutcome) for o in outcomes)
    for key in keys:
        assert await env.stored(key) == data[key.index * BLOCK : (key.index + 1) * BLOCK]
