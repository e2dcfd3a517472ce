"""Calls to a cluster's master and workers for local tools (``up``, ``status``, tests, demo, bench).

:func:`cluster_status` is what ``cachecluster status`` shows: the master's
``ListWorkers`` is the source of truth for states, tier usage and block
counts; in local mode ``cluster.json`` adds each process's pid and whether it
still runs. When the master cannot be reached the local record is still
shown, marked so.

The synchronous functions run their gRPC calls on a private event loop, in a
helper thread when the calling thread already runs one, so that blocking code (the CLI,
:class:`~cachecluster.local.cluster.LocalCluster`) and async tests can both
use them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import time
from collections.abc import Collection, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc

from cachecluster.common.auth import ADMIN_NAMESPACE, SECRET_FILE, issue_token, load_secret
from cachecluster.common.errors import ConfigError, Unavailable
from cachecluster.common.grpc_auth import auth_interceptors
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.local.layout import process_alive
from cachecluster.protos import common_pb2, master_pb2, master_pb2_grpc, worker_pb2, worker_pb2_grpc

T = TypeVar("T")

RPC_TIMEOUT_S = 5.0
RING_FETCH_GRACE_S = 0.2
"""Time a worker gets to fetch a new ring after the heartbeat that told it the epoch."""


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, even inside a running loop's thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def admin_token(home: str | Path | None, ttl: float = 3600.0) -> str | None:
    """An admin token made from ``<home>/cluster-secret``; ``None`` without a readable one."""
    if home is None:
        return None
    secret_file = Path(home) / SECRET_FILE
    if not os.access(secret_file, os.R_OK):
        return None
    try:
        return issue_token(load_secret(secret_file), ADMIN_NAMESPACE, ttl)
    except ConfigError:
        return None


def master_channel(master_address: str, token: str | None = None) -> grpc.aio.Channel:
    """A channel to the master (or a worker's gRPC) sending ``token`` (if any) with every call."""
    return grpc.aio.insecure_channel(
        master_address, interceptors=auth_interceptors(lambda: token) if token else None
    )


async def fetch_workers(
    master_address: str,
    *,
    include_lost: bool = True,
    timeout: float = RPC_TIMEOUT_S,
    token: str | None = None,
) -> master_pb2.ListWorkersResponse:
    """The master's ``ListWorkers`` answer."""
    async with master_channel(master_address, token) as channel:
        stub = master_pb2_grpc.MasterServiceStub(channel)
        with rpc_errors():
            return await stub.ListWorkers(
                master_pb2.ListWorkersRequest(include_lost=include_lost), timeout=timeout
            )


def list_workers(
    master_address: str,
    *,
    include_lost: bool = True,
    timeout: float = RPC_TIMEOUT_S,
    token: str | None = None,
) -> master_pb2.ListWorkersResponse:
    """:func:`fetch_workers`, synchronously."""
    return run_sync(
        fetch_workers(master_address, include_lost=include_lost, timeout=timeout, token=token)
    )


def wait_workers_active(
    master_address: str,
    worker_ids: Collection[str],
    *,
    timeout: float = 30.0,
    token: str | None = None,
) -> master_pb2.ListWorkersResponse:
    """Poll ``ListWorkers`` until every id in ``worker_ids`` is ACTIVE and has seen the ring.

    A worker learns about members that joined after it from its next
    heartbeat reply (the epoch), so the wait goes on until every worker has
    had a heartbeat answered after the last of them became active, plus
    :data:`RING_FETCH_GRACE_S` for it to fetch the new ring. Until then a
    worker could place replicas by an older ring. Returns the last answer.
    """

    async def poll() -> master_pb2.ListWorkersResponse:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        missing: set[str] = set(worker_ids)
        all_active_ms: float | None = None
        while True:
            try:
                answer = await fetch_workers(
                    master_address, include_lost=False, timeout=2.0, token=token
                )
                wanted = [w for w in answer.workers if w.worker_id in worker_ids]
                active = {w.worker_id for w in wanted if w.state == master_pb2.WORKER_STATE_ACTIVE}
                missing = set(worker_ids) - active
                if missing:
                    all_active_ms = None
                elif all_active_ms is None:
                    all_active_ms = time.time() * 1000
                elif all(w.last_heartbeat_ms > all_active_ms for w in wanted):
                    await asyncio.sleep(RING_FETCH_GRACE_S)
                    return answer
            except Unavailable as error:
                last_error = error
            if time.monotonic() > deadline:
                why = f" (last error: {last_error})" if last_error and missing else ""
                state = "not active" if missing else "without a heartbeat since all joined"
                names = missing or set(worker_ids)
                raise Unavailable(
                    f"workers {', '.join(sorted(names))} {state} at the master "
                    f"{master_address} after {timeout:.0f}s{why}"
                )
            await asyncio.sleep(0.1)

    return run_sync(poll())


async def fetch_worker_stats(
    grpc_address: str, *, timeout: float = RPC_TIMEOUT_S, token: str | None = None
) -> worker_pb2.GetStatsResponse:
    """A worker's ``GetStats`` (tiers, counters, block count now) at its gRPC ``host:port``."""
    async with master_channel(grpc_address, token) as channel:
        stub = worker_pb2_grpc.WorkerServiceStub(channel)
        with rpc_errors():
            return await stub.GetStats(worker_pb2.GetStatsRequest(), timeout=timeout)


def worker_stats(
    grpc_address: str, *, timeout: float = RPC_TIMEOUT_S, token: str | None = None
) -> worker_pb2.GetStatsResponse:
    """:func:`fetch_worker_stats`, synchronously (``token``: an admin token, with auth on)."""
    return run_sync(fetch_worker_stats(grpc_address, timeout=timeout, token=token))


async def apply_dataset_async(
    master_address: str,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    *,
    timeout: float = RPC_TIMEOUT_S,
    token: str | None = None,
) -> master_pb2.ApplyDatasetResponse:
    """Create or update dataset ``namespace/name`` from a Fluid Dataset ``spec`` (as a dict)."""
    request = master_pb2.ApplyDatasetRequest(
        ref=master_pb2.DatasetRef(namespace=namespace, name=name),
        spec_json=json.dumps(dict(spec)).encode(),
    )
    async with master_channel(master_address, token) as channel:
        stub = master_pb2_grpc.DatasetServiceStub(channel)
        with rpc_errors():
            return await stub.ApplyDataset(request, timeout=timeout)


def apply_dataset(
    master_address: str,
    namespace: str,
    name: str,
    mount_point: str,
    options: Mapping[str, str] | None = None,
    *,
    token: str | None = None,
) -> master_pb2.ApplyDatasetResponse:
    """Register a one-mount dataset whose root is ``mount_point`` (the temporary dataset form)."""
    mount: dict[str, Any] = {"mountPoint": mount_point, "name": "m0", "path": "/"}
    if options:
        mount["options"] = dict(options)
    spec = {"mounts": [mount]}
    return run_sync(apply_dataset_async(master_address, namespace, name, spec, token=token))


# ------------------------------------------------------------------ status

_MEDIUM_NAMES: dict[int, str] = {
    common_pb2.MEDIUM_MEM: "MEM",
    common_pb2.MEDIUM_SSD: "SSD",
    common_pb2.MEDIUM_HDD: "HDD",
}
_STATE_NAMES: dict[int, str] = {
    master_pb2.WORKER_STATE_ACTIVE: "ACTIVE",
    master_pb2.WORKER_STATE_SUSPECT: "SUSPECT",
    master_pb2.WORKER_STATE_LOST: "LOST",
    master_pb2.WORKER_STATE_DRAINING: "DRAINING",
}


def medium_name(medium: int) -> str:
    """``MEM``, ``SSD``, ``HDD`` for a proto Medium value."""
    return _MEDIUM_NAMES.get(medium, "?")


def state_name(state: int) -> str:
    """``ACTIVE``, ``SUSPECT``... for a proto WorkerState value."""
    return _STATE_NAMES.get(state, "UNKNOWN")


def _worker_entry(status: master_pb2.WorkerStatus) -> dict[str, Any]:
    endpoint = status.endpoint
    counters = status.counters
    return {
        "id": status.worker_id,
        "state": state_name(status.state),
        "address": f"{endpoint.host}:{endpoint.data_port}",
        "grpc": f"{endpoint.host}:{endpoint.grpc_port}",
        "unix_socket": endpoint.unix_socket,
        "metrics_port": endpoint.metrics_port,
        "blocks": status.block_count,
        "tiers": [
            {
                "medium": medium_name(tier.medium),
                "path": tier.path,
                "used": tier.used_bytes,
                "capacity": tier.capacity_bytes,
                "blocks": tier.block_count,
            }
            for tier in status.tiers
        ],
        "counters": {
            "hits": counters.hits,
            "misses": counters.misses,
            "bytes_served": counters.bytes_served,
            "bytes_fetched": counters.bytes_fetched,
            "evictions": counters.evictions,
            "ufs_errors": counters.ufs_errors,
        },
        "last_heartbeat_ms": status.last_heartbeat_ms,
        "pid": None,
        "alive": None,
    }


def cluster_status(
    master_address: str | None,
    record: Mapping[str, Any] | None,
    *,
    timeout: float = RPC_TIMEOUT_S,
) -> dict[str, Any]:
    """The status as a JSON-ready dict: ``master``, ``epoch``, ``workers`` (see the module doc).

    ``record`` is the local ``cluster.json`` (None for a remote cluster). The
    master's answer wins for everything it knows; workers only in the record
    are listed with state ``UNREGISTERED``.
    """
    master: dict[str, Any] = {"address": master_address, "reachable": False, "error": None}
    if record:
        master["pid"] = record.get("master_pid")
        master["alive"] = process_alive(
            int(record.get("master_pid") or 0), record.get("master_start_ticks")
        )
        master["metrics_port"] = record.get("master_metrics_port")
    status: dict[str, Any] = {"master": master, "epoch": None, "workers": []}
    if record:
        status["home"] = record.get("home")
    workers: dict[str, dict[str, Any]] = {}
    if master_address:
        try:
            home = (record or {}).get("home")
            answer = list_workers(master_address, timeout=timeout, token=admin_token(home))
        except (Unavailable, OSError) as error:
            master["error"] = str(error)
        except Exception as error:  # a wrong address, a server that is not a master
            master["error"] = f"{type(error).__name__}: {error}"
        else:
            master["reachable"] = True
            status["epoch"] = answer.epoch
            workers = {w.worker_id: _worker_entry(w) for w in answer.workers}
    for local in (record or {}).get("workers") or []:
        if not isinstance(local, Mapping):
            continue
        entry = workers.get(str(local.get("id")))
        if entry is None:
            entry = {
                "id": str(local.get("id")),
                "state": "UNREGISTERED" if master["reachable"] else "UNKNOWN",
                "address": local.get("data", ""),
                "grpc": local.get("grpc", ""),
                "unix_socket": local.get("unix_socket", ""),
                "metrics_port": local.get("metrics_port"),
                "blocks": None,
                "tiers": [],
                "counters": {},
            }
            workers[entry["id"]] = entry
        entry["pid"] = local.get("pid")
        entry["alive"] = process_alive(int(local.get("pid") or 0), local.get("start_ticks"))
    status["workers"] = [workers[key] for key in sorted(workers)]
    return status
