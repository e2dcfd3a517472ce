"""Sequential read misses: the rest of the group with one ranged GET, random misses alone.

Real SeaweedFS, the real S3 backend (its GETs observed), a real block store
on tmpfs and the worker's opener, in-process (``tests/worker/s3_opener.py``).
Blocks of 64 KiB: a placement group is then 1,024 blocks, so a run reaches
the end of these small files.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import Unavailable, VersionChanged
from cachecluster.common.frames import BlockRef, ReadRequest
from cachecluster.worker.read_runs import BlockRun, MissTracker
from tests.worker.s3_opener import BLOCK, MOUNT, Env, run_keys


async def read(env: Env, key: BlockKey, ahead: int = 0) -> bytes:
    ref = BlockRef(MOUNT, key.path, key.version, key.index)
    request = ReadRequest(1, key.id, ref, 0, BLOCK, ahead=ahead)
    with await env.opener.open_block(request) as lease:
        return lease.read()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_a_sequential_miss_fetches_the_rest_of_the_file_with_one_get(env: Env) -> None:
    size = 10 * BLOCK + 1000  # the last block is short
    data = env.put("f.bin", size)
    keys = run_keys("f.bin", await env.version("f.bin"), range(11))
    got = [await read(env, keys[0]), await read(env, keys[1])]
    assert env.gets == ["bytes=0-65535", f"bytes={BLOCK}-{11 * BLOCK - 1}"]
    assert env.opener.runs_started == 1
    got += [await read(env, key) for key in keys[2:]]
    assert len(env.gets) == 2  # the rest came with the run
    assert digest(b"".join(got)) == digest(data)
    assert len(got[-1]) == 1000
    await env.opener.wait_runs()
    assert len(env.store.blocks()) == 11
    assert len(env.opener.buffers) == 10  # every run buffer went back to the pool


async def test_a_reader_saying_it_reads_on_gets_the_run_at_its_first_miss(env: Env) -> None:
    """The ``ahead`` hint: one GET from the first block, no lone first fetch and no HEAD."""
    size = 10 * BLOCK + 1000
    data = env.put("f.bin", size)
    keys = run_keys("f.bin", await env.version("f.bin"), range(11))
    env.heads.clear()
    got = [await read(env, key, ahead=10 - key.index) for key in keys]
    assert env.gets == [f"bytes=0-{11 * BLOCK - 1}"]
    assert env.heads == [] and env.opener.runs_started == 1
    assert digest(b"".join(got)) == digest(data)
    # A hint past the end of the file (a stale size): the run stops where the file does.
    other = env.put("g.bin", 3 * BLOCK)
    keys = run_keys("g.bin", await env.version("g.bin"), range(3))
    env.gets.clear()
    assert await read(env, keys[0], ahead=9) == other[:BLOCK]
    assert env.gets == [f"bytes=0-{10 * BLOCK - 1}"]
    rest = [await read(env, key) for key in keys[1:]]
    assert rest == [other[BLOCK : 2 * BLOCK], other[2 * BLOCK :]]
    await env.opener.wait_runs()
    assert len(env.gets) == 1 and len(env.store.blocks()) == 11 + 3
    # Hinted or not, a file changed since the reader saw it never mixes versions.
    old = run_keys("g.bin", await env.version("g.bin"), range(3, 6))
    env.put("g.bin", 6 * BLOCK, seed=3)
    with pytest.raises(VersionChanged):
        await read(env, old[0], ahead=2)


async def test_read_ahead_requests_join_one_run(env: Env) -> None:
    data = env.put("f.bin", 12 * BLOCK)
    keys = run_keys("f.bin", await env.version("f.bin"), range(12))
    first = await read(env, keys[0])
    # A client's read-ahead: the next four blocks asked at once, then the others.
    ahead = await asyncio.gather(*(read(env, key) for key in keys[1:5]))
    rest = await asyncio.gather(*(read(env, key) for key in keys[5:]))
    assert digest(first + b"".join(ahead) + b"".join(rest)) == digest(data)
    assert env.gets == ["bytes=0-65535", f"bytes={BLOCK}-{12 * BLOCK - 1}"]


async def test_random_misses_fetch_only_their_block(env: Env) -> None:
    data = env.put("f.bin", 16 * BLOCK)
    keys = run_keys("f.bin", await env.version("f.bin"), range(16))
    order = [7, 2, 11, 4, 14, 0, 9]
    for index in order:
        assert await read(env, keys[index]) == data[index * BLOCK : (index + 1) * BLOCK]
    assert env.gets == [f"bytes={i * BLOCK}-{(i + 1) * BLOCK - 1}" for i in order]
    assert env.opener.runs_started == 0


async def test_a_run_stops_before_a_cached_block(env: Env) -> None:
    data = env.put("f.bin", 8 * BLOCK)
    keys = run_keys("f.bin", await env.version("f.bin"), range(8))
    await read(env, keys[5])
    env.gets.clear()
    got = b"".join([await read(env, key) for key in keys])
    assert got == data
    assert env.gets == ["bytes=0-65535", f"bytes={BLOCK}-{5 * BLOCK - 1}", "bytes=393216-524287"]


async def test_a_file_changed_before_the_run_is_a_version_error(env: Env) -> None:
    env.put("f.bin", 6 * BLOCK)
    old = run_keys("f.bin", await env.version("f.bin"), range(6))
    await read(env, old[0])
    new_data = env.put("f.bin", 6 * BLOCK, seed=2)
    with pytest.raises(VersionChanged):
        await read(env, old[1])
    await env.opener.wait_runs()
    assert len(env.store.blocks()) == 1  # block 0 of the old version, nothing of the new
    new = run_keys("f.bin", await env.version("f.bin"), range(6))
    got = b"".join([await read(env, key) for key in new])
    assert got == new_data


async def test_a_run_pinned_to_an_old_version_fails_every_block(env: Env) -> None:
    """The run's one GET carries If-Match: a file changed after the stat never mixes bytes."""
    env.put("f.bin", 4 * BLOCK)
    old = run_keys("f.bin", await env.version("f.bin"), range(4))
    env.put("f.bin", 4 * BLOCK, seed=2)
    backend = (await env.opener.mounts.get(MOUNT)).backend
    run = BlockRun(old, BLOCK, [bytearray(BLOCK) for _ in old])
    await run.start(backend, "f.bin")
    for position in range(4):
        with pytest.raises(VersionChanged):
            await run.block(position, "f.bin")


async def test_a_cancelled_run_fails_its_readers_cleanly(env: Env) -> None:
    data = env.put("f.bin", 64 * BLOCK)
    keys = run_keys("f.bin", await env.version("f.bin"), range(64))
    await read(env, keys[0])
    readers = [asyncio.ensure_future(read(env, key)) for key in keys[1:]]
    while env.opener.runs_started == 0:
        await asyncio.sleep(0.001)
    await env.opener.close()  # the worker stops: its runs are cancelled
    outcomes = await asyncio.gather(*readers, return_exceptions=True)
    for index, outcome in enumerate(outcomes, start=1):
        if isinstance(outcome, bytes):  # arrived before the cancel
            assert outcome == data[index * BLOCK : (index + 1) * BLOCK]
        else:
            assert isinstance(outcome, Unavailable), outcome
    # Whatever was stored is right, and the rest reads again.
    for key in keys:
        assert await read(env, key) == data[key.index * BLOCK : (key.index + 1) * BLOCK]


def test_the_tracker_knows_a_sequential_miss_from_a_random_one() -> None:
    tracker = MissTracker(window_s=2.0, max_files=2)
    a = [BlockKey("m", "a", "v", i) for i in range(4)]
    assert not tracker.sequential(a[1], 0.0)
    tracker.note(a[0], 0, 0.0)
    assert tracker.sequential(a[1], 1.0)
    assert not tracker.sequential(a[2], 1.0)  # a gap
    assert not tracker.sequential(a[1], 3.0)  # too late
    assert not tracker.sequential(BlockKey("m", "a", "v2", 1), 1.0)  # another version
    tracker.note(a[1], 3, 1.0)  # a run up to block 3
    assert tracker.sequential(BlockKey("m", "a", "v", 4), 1.5)
    tracker.passed(BlockKey("m", "a", "v", 4), 1.6)  # a hit right after: still sequential
    tracker.passed(BlockKey("m", "a", "v", 9), 1.6)  # a hit elsewhere changes nothing
    assert tracker.sequential(BlockKey("m", "a", "v", 5), 1.7)
    tracker.note(BlockKey("m", "b", "v", 0), 0, 1.0)
    tracker.note(BlockKey("m", "c", "v", 0), 0, 1.0)  # "a" is forgotten: two files at most
    assert not tracker.sequential(BlockKey("m", "a", "v", 5), 1.7)
