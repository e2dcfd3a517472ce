"""What ``cachecluster status`` shows: the master's view of its workers, plus local pids.

The master's ``ListWorkers`` is the source of truth for states, tier usage and
block counts; in local mode ``cluster.json`` adds each process's pid and
whether it still runs. When the master cannot be reached the local record is
still shown, marked so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cachecluster.common.errors import Unavailable
from cachecluster.local.cluster_calls import RPC_TIMEOUT_S, list_workers
from cachecluster.local.layout import process_alive
from cachecluster.protos import common_pb2, master_pb2

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
            answer = list_workers(master_address, timeout=timeout)
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
