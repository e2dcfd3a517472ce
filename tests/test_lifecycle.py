"""run_until_stopped: start, wait for the event or SIGTERM, always stop."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from cachecluster.common.lifecycle import run_until_stopped


class Recorder:
    def __init__(self, fail_start: bool = False) -> None:
        self.calls: list[str] = []
        self.fail_start = fail_start

    async def start(self) -> None:
        self.calls.append("start")
        if self.fail_start:
            raise OSError("port in use")

    async def stop(self) -> None:
        self.calls.append("stop")


def test_the_event_stops_the_server() -> None:
    server = Recorder()

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        await run_until_stopped(server, stop)

    asyncio.run(main())
    assert server.calls == ["start", "stop"]


def test_sigterm_stops_the_server_and_the_handler_is_removed() -> None:
    server = Recorder()

    async def main() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)
        await run_until_stopped(server)

    asyncio.run(main())
    assert server.calls == ["start", "stop"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_failed_start_is_stopped_and_raised() -> None:
    server = Recorder(fail_start=True)
    with pytest.raises(OSError, match="port in use"):
        asyncio.run(run_until_stopped(server, asyncio.Event()))
    assert server.calls == ["start", "stop"]
