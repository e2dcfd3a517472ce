"""The plugin process: Identity and Node over gRPC on a Unix socket, plus the repair loop.

Start: load the published targets, remove a socket file left by an earlier
run, listen on the socket, start the repair loop. SIGTERM or SIGINT stops it:
the server stops accepting calls, waits up to ``STOP_GRACE_S`` for calls in
flight, the loop is cancelled and the socket file removed. Published binds
stay: pods keep their volumes while the plugin restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from cachecluster.common.errors import Unavailable
from cachecluster.common.lifecycle import run_until_stopped
from cachecluster.csi.config import UNIX_SCHEME, CsiConfig
from cachecluster.csi.identity import IdentityServicer
from cachecluster.csi.node import NodeServicer
from cachecluster.csi.publisher import VolumePublisher
from cachecluster.csi.rebind import rebind_forever
from cachecluster.csi.state import PublishedTargets
from cachecluster.operator.naming import CSI_DRIVER
from cachecluster.protos import csi_pb2_grpc

log = logging.getLogger(__name__)

STOP_GRACE_S = 5.0


class CsiServer:
    """One plugin: start, then stop (safe to call twice)."""

    def __init__(self, config: CsiConfig) -> None:
        self.config = config
        self.targets = PublishedTargets(config.state_dir)
        self.publisher = VolumePublisher(config.fuse_root, self.targets)
        self._server: grpc.aio.Server | None = None
        self._repair: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen on the socket and start repairing; raises when the socket cannot be bound."""
        config = self.config
        known = self.targets.load()
        config.socket.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            config.socket.unlink()  # left by a plugin that was killed
        server = grpc.aio.server()
        csi_pb2_grpc.add_IdentityServicer_to_server(IdentityServicer(), server)
        csi_pb2_grpc.add_NodeServicer_to_server(
            NodeServicer(config.node_id, self.publisher), server
        )
        if server.add_insecure_port(f"{UNIX_SCHEME}{config.socket}") == 0:
            raise Unavailable(f"--endpoint: cannot listen on {config.socket}")
        await server.start()
        self._server = server
        self._repair = asyncio.create_task(
            rebind_forever(self.publisher, config.rebind_interval), name="csi-rebind"
        )
        log.info(
            "serving %s for node %s on %s (%d published target(s) in %s, FUSE root %s)",
            CSI_DRIVER,
            config.node_id,
            config.socket,
            known,
            self.targets.path,
            config.fuse_root,
        )

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Stop serving and repairing, remove the socket file."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._repair is not None:
            self._repair.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._repair
            self._repair = None
        with contextlib.suppress(FileNotFoundError):
            self.config.socket.unlink()


async def run_csi(config: CsiConfig, stop: asyncio.Event | None = None) -> None:
    """Run the plugin until ``stop`` is set, or SIGTERM/SIGINT arrives; then stop cleanly."""
    await run_until_stopped(CsiServer(config), stop)
