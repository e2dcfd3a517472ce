"""Test helper: real ``grpc.aio`` servers on 127.0.0.1, port 0."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

AddServicer = Callable[[Any, Any], None]
"""A generated ``add_XServicer_to_server(servicer, server)`` function."""


@contextlib.asynccontextmanager
async def grpc_channel(*services: tuple[AddServicer, object]) -> AsyncIterator[grpc.aio.Channel]:
    """Serve ``services`` on a free port of 127.0.0.1 and yield a channel to them.

    Each service is ``(add_XServicer_to_server, servicer)``::

        async with grpc_channel((add_WorkerServiceServicer_to_server, worker)) as channel:
            stub = WorkerServiceStub(channel)

    The channel is closed and the server stopped (no grace) on exit.
    """
    server = grpc.aio.server()
    for add_servicer, servicer in services:
        add_servicer(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        raise RuntimeError("grpc_channel: could not bind 127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(grace=None)
