"""The worker process: block store, data server, gRPC service, metrics and master link.

:func:`run_worker` starts, in order:

1. the :class:`BlockStore` (rescanning its tiers: disk-tier blocks survive restarts);
2. the gRPC server: ``WorkerService`` and the standard health service;
3. the data server on TCP and the Unix socket, over :class:`UfsBlockOpener`;
4. the Prometheus endpoint (store metrics and data server counters);
5. the master link (register, heartbeats, block reports, ring) and the mount
   watch (the backends of the master's mounts open before their first read);

then writes ``<home>/endpoint.json`` and serves until SIGTERM or SIGINT (or
until ``stop`` is set). Shutdown goes in reverse: the master link stops, the
data server stops accepting and closes its connections (removing the Unix
socket), gRPC calls in progress get ``stop_grace`` seconds, then the UFS
backends and the store close and the endpoint file is removed. A failure to
start cleans up what was started and raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from cachecluster.common.auth import ADMIN_NAMESPACE, SYSTEM_NAMESPACE
from cachecluster.common.auth_interceptor import TokenInterceptor
from cachecluster.common.endpoint_file import remove_endpoint_file, write_endpoint_file
from cachecluster.common.errors import ConfigError
from cachecluster.common.grpc_auth import auth_interceptors, system_token_source
from cachecluster.protos import common_pb2, master_pb2_grpc, worker_pb2_grpc
from cachecluster.ufs.registry import start_preload
from cachecluster.worker.block_store import BlockStore
from cachecluster.worker.config import WorkerConfig
from cachecluster.worker.data_server import DataServer
from cachecluster.worker.master_link import MasterLink
from cachecluster.worker.metrics import DataServerCollector, MountCollector, WorkerMetrics
from cachecluster.worker.mount_watch import MountWatcher
from cachecluster.worker.mounts import MasterMountLookup, MountResolver
from cachecluster.worker.opener import Replicator, UfsBlockOpener
from cachecluster.worker.placement import RingView
from cachecluster.worker.service import WorkerServicer

log = logging.getLogger("cachecluster.worker.server")

GET_STATS = "/cachecluster.v1.WorkerService/GetStats"

WORKER_SERVICE_NAME = "cachecluster.v1.WorkerService"

_DEFAULT_SOCKET_NAME = re.compile(r"^(.+)-[0-9a-f]{6}\.sock$")
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})

CHANNEL_OPTIONS = (
    # gRPC backs off up to 120 s between reconnects; a worker must find a
    # restarted master within a heartbeat or two.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


async def run_worker(config: WorkerConfig, *, stop: asyncio.Event | None = None) -> None:
    """Run a worker until SIGTERM/SIGINT (or ``stop``); see the module docstring."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(_remove_endpoint, config)

        registry = CollectorRegistry()
        metrics = WorkerMetrics(registry)
        store = BlockStore(config.tiers, policy=config.eviction_policy, metrics=metrics)
        await store.start()
        cleanup.push_async_callback(store.close)
        log.info(
            "%s: block store ready, %d blocks on %s",
            config.worker_id,
            len(store.blocks()),
            ", ".join(f"{t.medium.value}:{t.path}" for t in store.tiers),
        )

        master_channel = grpc.aio.insecure_channel(
            config.master,
            options=CHANNEL_OPTIONS,
            interceptors=auth_interceptors(system_token_source(config.cluster_secret)),
        )
        cleanup.push_async_callback(master_channel.close)
        master_stub = master_pb2_grpc.MasterServiceStub(master_channel)
        ring = RingView(config.worker_id)
        mounts = MountResolver(
            MasterMountLookup(master_pb2_grpc.MetadataServiceStub(master_channel)),
            resolve_timeout=config.mount_resolve_timeout,
            refresh_interval=config.mount_refresh_interval,
        )
        cleanup.push_async_callback(mounts.close)
        replicator = Replicator(
            ring,
            parallelism=config.replication_parallelism,
            max_queued=config.replication_queue,
            cluster_secret=config.cluster_secret,
        )
        cleanup.push_async_callback(replicator.close)
        opener = UfsBlockOpener(
            store, mounts, ring, replicator=replicator, cluster_secret=config.cluster_secret
        )
        cleanup.push_async_callback(opener.close)

        grpc_server, grpc_port, health_servicer = await _start_grpc(config, store, opener)

        async def stop_grpc() -> None:
            await health_servicer.enter_graceful_shutdown()
            await grpc_server.stop(grace=config.stop_grace)

        cleanup.push_async_callback(stop_grpc)

        if config.unix_socket is not None:
            await asyncio.to_thread(_prepare_socket_dir, config.unix_socket)
            await asyncio.to_thread(_remove_stale_sockets, config.unix_socket)
        data_server = DataServer(
            opener, host=config.host, port=config.data_port, unix_path=config.unix_socket
        )
        try:
            await data_server.start()
        except OSError as error:
            raise _listen_error(
                "--data-port", config.host, config.data_port, error, config.unix_socket
            ) from None
        cleanup.push_async_callback(data_server.close)
        registry.register(DataServerCollector(data_server.stats))
        registry.register(MountCollector(mounts))

        try:
            metrics_server, metrics_thread = await asyncio.to_thread(
                start_http_server, config.metrics_port, config.host, registry
            )
        except OSError as error:
            raise _listen_error("--metrics-port", config.host, config.metrics_port, error) from None
        cleanup.push_async_callback(asyncio.to_thread, _stop_http, metrics_server, metrics_thread)
        metrics_port = int(metrics_server.server_port)

        host = config.advertise_host or advertised_host(config.host)
        endpoint = common_pb2.WorkerEndpoint(
            host=host,
            data_port=data_server.port,
            unix_socket=config.unix_socket or "",
            grpc_port=grpc_port,
            metrics_port=metrics_port,
        )
        link = MasterLink(
            stub=master_stub,
            master_address=config.master,
            worker_id=config.worker_id,
            incarnation=config.incarnation,
            endpoint=endpoint,
            store=store,
            ring=ring,
            version=config.version,
        )
        link_task = loop.create_task(link.run(), name="master-link")
        cleanup.push_async_callback(_cancel, link_task)
        watcher = MountWatcher(
            master_pb2_grpc.MetadataServiceStub(master_channel),
            mounts,
            master_address=config.master,
        )
        watch_task = loop.create_task(watcher.run(), name="mount-watch")
        cleanup.push_async_callback(_cancel, watch_task)

        fields: dict[str, Any] = {
            "worker_id": config.worker_id,
            "incarnation": config.incarnation,
            "host": host,
            "data_port": data_server.port,
            "unix_socket": config.unix_socket or "",
            "grpc_port": grpc_port,
            "metrics_port": metrics_port,
            "master": config.master,
        }
        await asyncio.to_thread(write_endpoint_file, config.home, fields)
        # Ready: now load the UFS SDKs in the background, so a first miss need not.
        start_preload()
        log.info(
            "%s serving: data %s:%d%s, grpc %d, metrics %d, master %s",
            config.worker_id,
            host,
            data_server.port,
            f" + {config.unix_socket}" if config.unix_socket else "",
            grpc_port,
            metrics_port,
            config.master,
        )

        await stop.wait()
        log.info("%s stopping", config.worker_id)
    log.info("%s stopped", config.worker_id)


async def _start_grpc(
    config: WorkerConfig, store: BlockStore, opener: UfsBlockOpener
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """The gRPC server with WorkerService and health, started; its bound port."""
    # Without so_reuseport=0 a second worker on the same port would share it silently.
    interceptors = []
    if config.cluster_secret is not None:
        # LoadBlocks/EvictBlocks: the master and peer workers only; GetStats also the admin.
        interceptors.append(
            TokenInterceptor(
                config.cluster_secret,
                admitted={GET_STATS: (SYSTEM_NAMESPACE, ADMIN_NAMESPACE)},
                default=(SYSTEM_NAMESPACE,),
            )
        )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)], interceptors=interceptors)
    servicer = WorkerServicer(
        worker_id=config.worker_id,
        incarnation=config.incarnation,
        store=store,
        opener=opener,
        default_parallelism=config.load_parallelism,
        version=config.version,
    )
    worker_pb2_grpc.add_WorkerServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bind = f"[{config.host}]" if ":" in config.host else config.host
    try:
        port = server.add_insecure_port(f"{bind}:{config.grpc_port}")
    except RuntimeError as error:  # grpc raises RuntimeError when it cannot bind
        raise _listen_error("--grpc-port", config.host, config.grpc_port, error) from None
    if port == 0:
        raise ConfigError("--grpc-port", f"cannot listen on {config.host}:{config.grpc_port}")
    await server.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    await health_servicer.set("", serving)
    await health_servicer.set(WORKER_SERVICE_NAME, serving)
    return server, port, health_servicer


def _listen_error(
    flag: str, host: str, port: int, error: BaseException, unix_path: str | None = None
) -> ConfigError:
    """A one-line error naming the flag whose listener could not be opened."""
    reason = getattr(error, "strerror", None) or str(error)
    if unix_path is not None:
        flag = f"{flag}/--unix-socket"
        return ConfigError(flag, f"cannot listen on {host}:{port} and {unix_path}: {reason}")
    return ConfigError(flag, f"cannot listen on {host}:{port}: {reason}")


def advertised_host(host: str) -> str:
    """The host others use to reach a worker bound to ``host`` (the host name for a wildcard)."""
    return socket.gethostname() if host in _WILDCARD_HOSTS else host


def _prepare_socket_dir(path: str) -> None:
    """Create the Unix socket's directory (private to this user when we create it)."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            "--unix-socket", f"cannot create {directory}: {error.strerror or error}"
        ) from None


def _remove_stale_sockets(path: str) -> None:
    """Remove sockets a killed earlier run of this worker left (default names only).

    Default socket names are ``<worker id>-<6 hex>.sock``; a file of that form
    for our id that nobody listens on any more is a leftover of a SIGKILL.
    """
    directory, name = os.path.split(path)
    match = _DEFAULT_SOCKET_NAME.match(name)
    if match is None:
        return
    prefix = match.group(1)
    for entry in os.scandir(directory):
        found = _DEFAULT_SOCKET_NAME.match(entry.name)
        if found is None or found.group(1) != prefix or entry.path == path:
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(entry.path)
        except ConnectionRefusedError:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                log.info("removed stale socket %s", entry.path)
        except OSError:
            pass
        finally:
            probe.close()


def _stop_http(server: Any, thread: Any) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _remove_endpoint(config: WorkerConfig) -> None:
    await asyncio.to_thread(remove_endpoint_file, config.home)
