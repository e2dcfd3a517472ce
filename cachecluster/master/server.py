"""The master process: gRPC services, health, metrics, liveness checks, endpoint file.

:class:`MasterServer` starts and stops everything in order; :func:`run_master`
runs one until SIGTERM or SIGINT (or a given event), as ``cachecluster master``
does. Start-up: load ``datasets.json``, bind the gRPC port (MasterService,
MetadataService, DatasetService and the standard health service), start the
Prometheus HTTP server, start the liveness checks, and only then write
``<home>/endpoint.json``. Shutdown: health NOT_SERVING, stop the gRPC server
with a grace period, close the UFS backends and the metrics server, remove the
endpoint file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from cachecluster.common.endpoint_file import (
    read_endpoint_file,
    remove_endpoint_file,
    write_endpoint_file,
)
from cachecluster.common.errors import Unavailable
from cachecluster.common.lifecycle import run_until_stopped
from cachecluster.master.auth_interceptor import AuthInterceptor
from cachecluster.master.auth_service import AuthServicer
from cachecluster.master.config import MasterConfig
from cachecluster.master.dataload_runner import DataLoadController
from cachecluster.master.dataloads import DataLoadRegistry
from cachecluster.master.datasets import DatasetRegistry
from cachecluster.master.membership import Membership
from cachecluster.master.metadata import MetadataCache
from cachecluster.master.metrics import MasterMetrics, RpcMetricsInterceptor
from cachecluster.master.runtimes import RuntimeRegistry
from cachecluster.master.secrets import SecretStore
from cachecluster.master.service import (
    DataLoadServicer,
    DatasetServicer,
    MasterServicer,
    MetadataServicer,
    ResourceServicer,
    StatusServicer,
)
from cachecluster.master.status import DatasetStatusBoard, RuntimeInfo
from cachecluster.protos import (
    auth_pb2_grpc,
    dataload_pb2,
    dataload_pb2_grpc,
    master_pb2,
    master_pb2_grpc,
    resources_pb2,
    resources_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
)
from cachecluster.ufs.registry import start_preload

log = logging.getLogger(__name__)

STOP_GRACE_S = 2.0
"""Seconds calls in flight get to finish after SIGTERM."""

SERVICE_NAMES = (
    *(
        master_pb2.DESCRIPTOR.services_by_name[name].full_name
        for name in ("MasterService", "MetadataService", "DatasetService")
    ),
    dataload_pb2.DESCRIPTOR.services_by_name["DataLoadService"].full_name,
    resources_pb2.DESCRIPTOR.services_by_name["ResourceService"].full_name,
    status_pb2.DESCRIPTOR.services_by_name["StatusService"].full_name,
)
"""Fully qualified names of the master's services, as the health service knows them."""

_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})


def _remove_own_endpoint_file(home: Path) -> None:
    """Remove the endpoint file if this process wrote it (not another master's)."""
    data = read_endpoint_file(home)
    if data is not None and data.get("pid") == os.getpid():
        remove_endpoint_file(home)


def advertised_host(host: str) -> str:
    """The host name others use to reach a server bound to ``host``."""
    return socket.gethostname() if host in _WILDCARD_HOSTS else host


class MasterServer:
    """One master, started with :meth:`start` and stopped with :meth:`stop`."""

    def __init__(self, config: MasterConfig) -> None:
        self.config = config
        self.datasets = DatasetRegistry(
            config.home,
            secrets=SecretStore(config.home),
            runtimes=RuntimeRegistry(config.home),
        )
        self.membership = Membership(
            heartbeat_interval=config.heartbeat_interval,
            missed_heartbeats=config.missed_heartbeats,
        )
        self.metadata = MetadataCache(self.datasets, sync_interval=config.metadata_sync_interval)
        self.dataloads = DataLoadController(
            DataLoadRegistry(config.home),
            metadata=self.metadata,
            membership=self.membership,
            config=config,
        )
        self.status = DatasetStatusBoard(
            self.datasets,
            self.metadata,
            self.membership,
            block_size=config.block_size,
            ufs_refresh=max(config.metadata_sync_interval, 1.0),
            runtimes=self._runtime_infos,
        )
        self.registry = CollectorRegistry()
        self.metrics = MasterMetrics(self.registry, self.membership, self.datasets, self.metadata)
        self.health = health.aio.HealthServicer()
        self.grpc_port = 0
        self.metrics_port = 0
        self._server: grpc.aio.Server | None = None
        self._http: tuple[Any, threading.Thread] | None = None
        self._liveness: asyncio.Task[None] | None = None
        self._opening: asyncio.Task[None] | None = None

    def _runtime_infos(self, namespace: str) -> list[RuntimeInfo]:
        return [
            RuntimeInfo(r.namespace, r.name, r.kind, r.spec.replicas, r.created_ms)
            for r in self.datasets.runtimes.runtimes(namespace)
        ]

    @property
    def address(self) -> str:
        """``host:port`` of the gRPC services (after :meth:`start`)."""
        return f"{advertised_host(self.config.host)}:{self.grpc_port}"

    async def start(self) -> None:
        """Bind every listener, then write the endpoint file."""
        config = self.config
        stores = ((self.datasets.secrets, "secret"), (self.datasets.runtimes, "runtime"))
        for store, what in stores:
            count = await asyncio.to_thread(store.load)
            if count:
                log.info("loaded %d %s(s) from %s", count, what, store.path)
        loaded = await asyncio.to_thread(self.datasets.load)
        if loaded:
            log.info("loaded %d dataset(s) from %s", loaded, self.datasets.path)
        interceptors: list[grpc.aio.ServerInterceptor] = [RpcMetricsInterceptor(self.metrics)]
        if config.cluster_secret is not None:
            interceptors.append(AuthInterceptor(config.cluster_secret))
            log.info("authentication on: every call needs a token")
        server = grpc.aio.server(
            interceptors=interceptors,
            # Without this, a second master on the same port would share it silently.
            options=[("grpc.so_reuseport", 0)],
        )
        master_pb2_grpc.add_MasterServiceServicer_to_server(
            MasterServicer(self.membership, config), server
        )
        master_pb2_grpc.add_MetadataServiceServicer_to_server(
            MetadataServicer(self.metadata), server
        )
        master_pb2_grpc.add_DatasetServiceServicer_to_server(
            DatasetServicer(self.datasets, self.metadata), server
        )
        resources_pb2_grpc.add_ResourceServiceServicer_to_server(
            ResourceServicer(self.datasets, self.metadata), server
        )
        dataload_pb2_grpc.add_DataLoadServiceServicer_to_server(
            DataLoadServicer(self.dataloads), server
        )
        status_pb2_grpc.add_StatusServiceServicer_to_server(StatusServicer(self.status), server)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(self.datasets, config.cluster_secret), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        bind = f"[{config.host}]" if ":" in config.host else config.host
        try:
            port = server.add_insecure_port(f"{bind}:{config.port}")
        except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
            raise Unavailable(f"--port: cannot listen on {bind}:{config.port}: {exc}") from exc
        if port == 0:
            raise Unavailable(f"--port: cannot listen on {bind}:{config.port}")
        self._server = server
        self.grpc_port = port
        await server.start()
        try:
            http = await asyncio.to_thread(
                start_http_server, config.metrics_port, config.host, self.registry
            )
        except OSError as exc:
            await self.stop()
            raise Unavailable(
                f"--metrics-port: cannot listen on {config.host}:{config.metrics_port}: {exc}"
            ) from exc
        self._http = http
        self.metrics_port = int(http[0].server_port)
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._liveness = asyncio.create_task(
            self.membership.run_liveness_checks(), name="master-liveness"
        )
        start_preload()  # UFS SDKs load in the background: an apply or a stat need not wait
        self._opening = asyncio.create_task(self.metadata.open_backends(), name="open-backends")
        host = advertised_host(config.host)
        await asyncio.to_thread(
            write_endpoint_file,
            config.home,
            {
                "grpc": f"{host}:{port}",
                "host": host,
                "grpc_port": port,
                "metrics_port": self.metrics_port,
            },
        )
        log.info(
            "serving on %s:%d (metrics on port %d, home %s)",
            host,
            port,
            self.metrics_port,
            config.home,
        )
        resumed = await self.dataloads.start()
        if resumed:
            log.info("loaded %d dataload(s) from %s", resumed, self.dataloads.registry.path)

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Stop serving, close everything, remove the endpoint file. Safe to call twice."""
        await asyncio.to_thread(_remove_own_endpoint_file, self.config.home)
        with contextlib.suppress(Exception):
            await self.health.enter_graceful_shutdown()
        await self.metadata.end_watches()  # else each worker's watch would hold the grace
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._opening
            self._opening = None
        if self._liveness is not None:
            self._liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness
            self._liveness = None
        await self.dataloads.close()
        await self.status.close()
        await self.metadata.close()
        if self._http is not None:
            http_server, thread = self._http
            self._http = None
            await asyncio.to_thread(http_server.shutdown)
            http_server.server_close()
            await asyncio.to_thread(thread.join, 5.0)


async def run_master(config: MasterConfig, stop: asyncio.Event | None = None) -> None:
    """Run a master until ``stop`` is set, or SIGTERM/SIGINT arrives; then shut down cleanly."""
    await run_until_stopped(MasterServer(config), stop)
