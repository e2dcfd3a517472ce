"""Coalesced loads: consecutive blocks of a file fetched with one ranged GET from SeaweedFS.

A real S3 server (SeaweedFS), a real S3 backend (its GET requests observed
through botocore's event hooks, nothing replaced), a real block store on
tmpfs and the worker's opener, in-process.
"""

from __future__ import annotations

import asyncio

import pytest

from cachecluster.common.errors import InvalidArgument, NotFound, VersionChanged
from cachecluster.common.frames import BlockRef, ReadRequest
from cachecluster.worker.opener import LoadOutcome
from tests.worker.s3_opener import BLOCK, MOUNT, Env, run_keys


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
