"""The FUSE device wait (:mod:`cachecluster.fuse.device_wait`) on a real pipe.

A readable descriptor is taken at once, at most ``MAX_STREAK`` times in a row
without a turn of the event loop; an idle one waits through the loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pyfuse3
import pyfuse3.asyncio
import pytest

from cachecluster.fuse import device_wait


@pytest.fixture
def installed() -> Iterator[None]:
    original = pyfuse3.asyncio.wait_readable
    device_wait.install()
    try:
        yield
    finally:
        pyfuse3.asyncio.wait_readable = original


async def test_readable_device_is_taken_at_once_but_the_loop_gets_its_turn(
    installed: None,
) -> None:
    read_end, write_end = os.pipe()
    try:
        fd = pyfuse3.FileHandleT(read_end)
        os.write(write_end, b"x")
        turns: list[int] = []
        asyncio.get_running_loop().call_soon(turns.append, 1)
        for _ in range(device_wait.MAX_STREAK):  # readable: no turn of the loop
            await pyfuse3.asyncio.wait_readable(fd)
        assert turns == []
        await pyfuse3.asyncio.wait_readable(fd)  # then through the loop (still readable)
        assert turns == [1]
        os.read(read_end, 1)  # idle now: the wait lasts until something comes
        waiting = asyncio.ensure_future(pyfuse3.asyncio.wait_readable(fd))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        os.write(write_end, b"y")
        await asyncio.wait_for(waiting, 5)
    finally:
        os.close(read_end)
        os.close(write_end)
