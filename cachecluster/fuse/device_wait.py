"""Waiting for the FUSE device's next request: ``poll`` first, the event loop only when idle.

pyfuse3's asyncio layer waits for the device before every request with
``loop.add_reader`` and ``remove_reader``: two ``epoll_ctl`` calls, a future
and two callbacks a request. While requests are queued (readers on several
threads, the kernel's read-ahead) the device is readable already, and one
``poll`` with no timeout says so: the request is then taken at once. At most
:data:`MAX_STREAK` requests in a row are taken that way before the wait goes
through the loop again, so that its other work (block file answers, timers,
signals) never waits behind a busy mount.
"""

from __future__ import annotations

import select
from collections.abc import Awaitable, Callable

import pyfuse3
import pyfuse3.asyncio

MAX_STREAK = 8
"""Requests taken in a row without a turn of the event loop."""


def install() -> None:
    """Make pyfuse3 (asyncio mode, :func:`pyfuse3.asyncio.enable`) wait this way.

    pyfuse3 looks ``wait_readable`` up on its asyncio module at every wait.
    """
    through_loop: Callable[[pyfuse3.FileHandleT], Awaitable[None]] = pyfuse3.asyncio.wait_readable
    poller = select.poll()
    polled: set[int] = set()
    streak = 0

    async def wait_readable(fd: pyfuse3.FileHandleT) -> None:
        nonlocal streak
        if fd not in polled:
            poller.register(fd, select.POLLIN)
            polled.add(fd)
        if streak < MAX_STREAK and poller.poll(0):
            streak += 1
            return
        streak = 0
        await through_loop(fd)

    pyfuse3.asyncio.wait_readable = wait_readable
