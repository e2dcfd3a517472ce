"""Synchronous calls to the master for local tools (``up``, ``status``, tests, demo, bench).

Each runs its gRPC call on a private event loop, in a helper thread when the
calling thread already runs one, so that blocking code (the CLI,
:class:`~cachecluster.local.cluster.LocalCluster`) and async tests can both
use them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Collection, Coroutine, Mapping
from typing import Any, TypeVar

import grpc

from cachecluster.common.errors import Unavailable
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.protos import master_pb2, master_pb2_grpc

T = TypeVar("T")

RPC_TIMEOUT_S = 5.0


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code, even inside a running loop's thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def fetch_workers(
    master_address: str, *, include_lost: bool = True, timeout: float = RPC_TIMEOUT_S
) -> master_pb2.ListWorkersResponse:
    """The master's ``ListWorkers`` answer."""
    async with grpc.aio.insecure_channel(master_address) as channel:
        stub = master_pb2_grpc.MasterServiceStub(channel)
        with rpc_errors():
            return await stub.ListWorkers(
                master_pb2.ListWorkersRequest(include_lost=include_lost), timeout=timeout
            )


def list_workers(
    master_address: str, *, include_lost: bool = True, timeout: float = RPC_TIMEOUT_S
) -> master_pb2.ListWorkersResponse:
    """:func:`fetch_workers`, synchronously."""
    return run_sync(fetch_workers(master_address, include_lost=include_lost, timeout=timeout))


def wait_workers_active(
    master_address: str, worker_ids: Collection[str], *, timeout: float = 30.0
) -> master_pb2.ListWorkersResponse:
    """Poll ``ListWorkers`` until every id in ``worker_ids`` is ACTIVE; return that answer."""

    async def poll() -> master_pb2.ListWorkersResponse:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        missing: set[str] = set(worker_ids)
        while True:
            try:
                answer = await fetch_workers(master_address, include_lost=False, timeout=2.0)
                active = {
                    w.worker_id for w in answer.workers if w.state == master_pb2.WORKER_STATE_ACTIVE
                }
                missing = set(worker_ids) - active
                if not missing:
                    return answer
            except Unavailable as error:
                last_error = error
            if time.monotonic() > deadline:
                why = f" (last error: {last_error})" if last_error and missing else ""
                raise Unavailable(
                    f"workers {', '.join(sorted(missing))} not active at the master "
                    f"{master_address} after {timeout:.0f}s{why}"
                )
            await asyncio.sleep(0.1)

    return run_sync(poll())


async def apply_dataset_async(
    master_address: str,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    *,
    timeout: float = RPC_TIMEOUT_S,
) -> master_pb2.ApplyDatasetResponse:
    """Create or update dataset ``namespace/name`` from a Fluid Dataset ``spec`` (as a dict)."""
    request = master_pb2.ApplyDatasetRequest(
        ref=master_pb2.DatasetRef(namespace=namespace, name=name),
        spec_json=json.dumps(dict(spec)).encode(),
    )
    async with grpc.aio.insecure_channel(master_address) as channel:
        stub = master_pb2_grpc.DatasetServiceStub(channel)
        with rpc_errors():
            return await stub.ApplyDataset(request, timeout=timeout)


def apply_dataset(
    master_address: str,
    namespace: str,
    name: str,
    mount_point: str,
    options: Mapping[str, str] | None = None,
) -> master_pb2.ApplyDatasetResponse:
    """Register a one-mount dataset whose root is ``mount_point`` (the temporary dataset form)."""
    mount: dict[str, Any] = {"mountPoint": mount_point, "name": "m0", "path": "/"}
    if options:
        mount["options"] = dict(options)
    return run_sync(apply_dataset_async(master_address, namespace, name, {"mounts": [mount]}))
