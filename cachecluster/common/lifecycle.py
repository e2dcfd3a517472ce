"""Run a server until it is told to stop: SIGTERM/SIGINT or an event, then stop it cleanly.

The processes that are one server each (the master, the CSI plugin) share
this loop: :func:`run_until_stopped` starts the server, waits, and always
stops it, also when starting fails halfway, so a partly started server
releases what it took (ports, sockets, files).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stoppable(Protocol):
    """A server with an async ``start`` and an async ``stop`` that is safe after a failed start."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_stopped(server: Stoppable, stop: asyncio.Event | None = None) -> None:
    """Start ``server``, wait for ``stop`` or SIGTERM/SIGINT, then stop it (always).

    Signal handlers are installed only where the loop allows it (the main
    thread) and removed again on the way out.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        await server.start()
        await stop.wait()
        log.info("stopping")
    finally:
        await server.stop()
        for signum in handled:
            loop.remove_signal_handler(signum)
    log.info("stopped")
