"""``cachecluster get``: datasets, runtimes and dataloads as ``kubectl get`` shows Fluid's.

::

    cachecluster get datasets [NAME] [-n NS | -A] [-o wide|json|yaml]
    cachecluster get runtimes [NAME] [-n NS | -A] [-o wide|json|yaml]
    cachecluster get dataloads [NAME] [-n NS | -A] [-o wide|json|yaml]

Singular forms, Fluid's kinds (``jindoruntime``, ``jindo``...) and comma lists
(``get dataset,jindoruntime``) work as with kubectl. Tables are plain aligned
columns like kubectl's (``-A`` adds NAMESPACE first); sizes print as Fluid's
(``1.16GiB``), percentages with one decimal (``100.0%``), ages like kubectl
(``4m1s``, ``15m``, ``3d16h``). ``-o wide`` adds FILE COUNT and CACHE HIT
RATIO to datasets. A figure the master has not computed yet prints as ``-``.

In local mode FUSE PHASE is ``Ready``: the runtime runs no FUSE daemon of its
own (readers use the client or mount FUSE themselves).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import yaml

from cachecluster.cli.context import (
    add_master_argument,
    add_token_argument,
    master_channel,
)
from cachecluster.cli.load_cmds import dataload_rows as load_rows
from cachecluster.common.errors import InvalidArgument, NotFound
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.common.units import format_size
from cachecluster.protos import (
    dataload_pb2,
    dataload_pb2_grpc,
    master_pb2,
    status_pb2,
    status_pb2_grpc,
)

RPC_TIMEOUT_S = 30.0
DEFAULT_NAMESPACE = "default"
UNKNOWN = "-"

_KINDS: dict[str, str] = {}
for _kind, _aliases in {
    "datasets": ("dataset", "datasets", "ds"),
    "runtimes": (
        "runtime",
        "runtimes",
        "cacheruntime",
        "cacheruntimes",
        "jindoruntime",
        "jindoruntimes",
        "jindo",
        "alluxioruntime",
        "alluxioruntimes",
        "alluxio",
        "juicefsruntime",
        "juicefsruntimes",
        "juicefs",
        "thinruntime",
        "thinruntimes",
        "thin",
    ),
    "dataloads": ("dataload", "dataloads"),
}.items():
    for _alias in _aliases:
        _KINDS[_alias] = _kind


def human_duration(seconds: float) -> str:
    """A duration as kubectl prints ages: ``45s``, ``4m1s``, ``15m``, ``1h``, ``3d16h``."""
    if seconds < -1:
        return "<invalid>"
    total = max(0, int(seconds))
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 120:
        return f"{total}s"
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if days < 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def age_of(created_ms: int, now: float | None = None) -> str:
    """AGE of something created at ``created_ms`` (Unix ms)."""
    if created_ms <= 0:
        return UNKNOWN
    return human_duration((now if now is not None else time.time()) - created_ms / 1000)


def percentage(value: float) -> str:
    """``100.0%``; ``-`` when unknown (negative).

    Rounded down, so that 99.97% cached never reads as ``100.0%``.
    """
    return UNKNOWN if value < 0 else f"{math.floor(value * 10 + 1e-9) / 10:.1f}%"


def size_or_unknown(value: int) -> str:
    """Fluid's size form, ``-`` when unknown (negative)."""
    return UNKNOWN if value < 0 else format_size(value)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, three spaces apart, as kubectl prints them."""
    widths = [len(cell) for cell in header]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


# -- rows ----------------------------------------------------------------------


def dataset_document(status: status_pb2.DatasetStatus) -> dict[str, Any]:
    """One dataset for ``-o json|yaml``: the table's cells plus exact numbers."""
    return {
        "namespace": status.ref.namespace,
        "name": status.ref.name,
        "phase": status.phase,
        "ufsTotal": size_or_unknown(status.ufs_total_bytes),
        "ufsTotalBytes": status.ufs_total_bytes,
        "cached": size_or_unknown(status.cached_bytes),
        "cachedBytes": status.cached_bytes,
        "cacheCapacity": format_size(status.cache_capacity_bytes),
        "cacheCapacityBytes": status.cache_capacity_bytes,
        "cachedPercentage": percentage(status.cached_percentage),
        "fileCount": status.file_count,
        "cacheHitRatio": percentage(
            status.cache_hit_ratio * 100 if status.cache_hit_ratio >= 0 else -1
        ),
        "runtime": status.runtime,
        "reference": status.reference,
        "accessModes": list(status.access_modes),
        "message": status.message,
        "createdMs": status.created_ms,
        "age": age_of(status.created_ms),
    }


def dataset_rows(
    statuses: Sequence[status_pb2.DatasetStatus], *, wide: bool, all_namespaces: bool
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of ``get datasets``."""
    header = ["NAME", "UFS TOTAL SIZE", "CACHED", "CACHE CAPACITY", "CACHED PERCENTAGE", "PHASE"]
    if wide:
        header += ["FILE COUNT", "CACHE HIT RATIO"]
    header.append("AGE")
    rows = []
    for status in statuses:
        doc = dataset_document(status)
        row = [
            status.ref.name,
            doc["ufsTotal"],
            doc["cached"],
            doc["cacheCapacity"],
            doc["cachedPercentage"],
            status.phase,
        ]
        if wide:
            row += [UNKNOWN if status.file_count < 0 else str(status.file_count)]
            row += [doc["cacheHitRatio"]]
        row.append(doc["age"])
        rows.append(([status.ref.namespace] if all_namespaces else []) + row)
    return (["NAMESPACE"] if all_namespaces else []) + header, rows


def runtime_document(status: status_pb2.RuntimeStatus) -> dict[str, Any]:
    """One runtime for ``-o json|yaml``."""
    return {
        "namespace": status.ref.namespace,
        "name": status.ref.name,
        "kind": status.kind,
        "masterPhase": status.master_phase,
        "workerPhase": status.worker_phase,
        "fusePhase": status.fuse_phase,
        "desiredWorkers": status.desired_workers,
        "readyWorkers": status.ready_workers,
        "cacheCapacity": format_size(status.cache_capacity_bytes),
        "cacheCapacityBytes": status.cache_capacity_bytes,
        "createdMs": status.created_ms,
        "age": age_of(status.created_ms),
    }


def runtime_rows(
    statuses: Sequence[status_pb2.RuntimeStatus], *, wide: bool, all_namespaces: bool
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of ``get runtimes`` (wide adds KIND and READY WORKERS)."""
    header = ["NAME", "MASTER PHASE", "WORKER PHASE", "FUSE PHASE"]
    if wide:
        header += ["KIND", "READY WORKERS"]
    header.append("AGE")
    rows = []
    for status in statuses:
        row = [status.ref.name, status.master_phase, status.worker_phase, status.fuse_phase]
        if wide:
            row += [status.kind, f"{status.ready_workers}/{status.desired_workers}"]
        row.append(age_of(status.created_ms))
        rows.append(([status.ref.namespace] if all_namespaces else []) + row)
    return (["NAMESPACE"] if all_namespaces else []) + header, rows


def _duration_ms(load: dataload_pb2.DataLoad) -> int:
    status = load.status
    if status.duration_ms > 0:
        return int(status.duration_ms)
    if status.start_time_ms > 0 and status.end_time_ms >= status.start_time_ms:
        return int(status.end_time_ms - status.start_time_ms)
    if status.start_time_ms > 0 and status.phase == "Executing":
        return int(time.time() * 1000) - int(status.start_time_ms)
    return -1


def dataload_document(load: dataload_pb2.DataLoad) -> dict[str, Any]:
    """One dataload for ``-o json|yaml``."""
    duration = _duration_ms(load)
    return {
        "namespace": load.ref.namespace,
        "name": load.ref.name,
        "dataset": f"{load.dataset.namespace}/{load.dataset.name}",
        "phase": load.status.phase,
        "percentage": percentage(load.status.percentage),
        "filesDone": load.status.files_done,
        "filesTotal": load.status.files_total,
        "bytesDone": load.status.bytes_done,
        "bytesTotal": load.status.bytes_total,
        "durationMs": duration,
        "duration": UNKNOWN if duration < 0 else human_duration(duration / 1000),
        "message": load.status.message,
        "failures": [{"path": f.path, "message": f.message} for f in load.status.failures],
        "createdMs": load.created_ms,
        "age": age_of(load.created_ms),
    }


def dataload_rows(
    loads: Sequence[dataload_pb2.DataLoad], *, wide: bool, all_namespaces: bool
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of ``get dataloads`` (wide adds PROGRESS).

    The cells come from :func:`cachecluster.cli.load_cmds.dataload_rows` (DATASET
    is ``ns/name`` for a dataset of another namespace; DURATION stays empty
    until a run started, as Fluid prints it); AGE and DURATION use the same
    kubectl form as the other tables.
    """
    header = ["NAME", "DATASET", "PHASE", "AGE", "DURATION"]
    if wide:
        header.append("PROGRESS")
    rows = []
    for load, cells in zip(loads, load_rows(loads), strict=True):
        duration = _duration_ms(load)
        row = [cells["NAME"], cells["DATASET"], cells["PHASE"] or "Pending"]
        row.append(age_of(load.created_ms))
        row.append(human_duration(duration / 1000) if cells["DURATION"] and duration >= 0 else "")
        if wide:
            row.append(cells["PROGRESS"])
        rows.append(([cells["NAMESPACE"]] if all_namespaces else []) + row)
    return (["NAMESPACE"] if all_namespaces else []) + header, rows


# -- calls ---------------------------------------------------------------------


def _channel(args: argparse.Namespace) -> grpc.aio.Channel:
    return master_channel(args)


def _namespace(args: argparse.Namespace) -> str:
    return "" if args.all_namespaces else (args.namespace or DEFAULT_NAMESPACE)


async def _fetch(args: argparse.Namespace, kinds: list[str]) -> dict[str, list[Any]]:
    namespace = _namespace(args)
    found: dict[str, list[Any]] = {}
    async with _channel(args) as channel:
        status = status_pb2_grpc.StatusServiceStub(channel)
        for kind in kinds:
            with rpc_errors():
                if kind == "datasets":
                    if args.name:
                        ref = master_pb2.DatasetRef(namespace=namespace or "", name=args.name)
                        one = await status.GetDatasetStatus(
                            status_pb2.GetDatasetStatusRequest(ref=ref, refresh=args.refresh),
                            timeout=RPC_TIMEOUT_S,
                        )
                        found[kind] = [one.status]
                    else:
                        many = await status.ListDatasetStatus(
                            status_pb2.ListDatasetStatusRequest(
                                namespace=namespace, refresh=args.refresh
                            ),
                            timeout=RPC_TIMEOUT_S,
                        )
                        found[kind] = list(many.datasets)
                elif kind == "runtimes":
                    runtimes = await status.ListRuntimeStatus(
                        status_pb2.ListRuntimeStatusRequest(namespace=namespace),
                        timeout=RPC_TIMEOUT_S,
                    )
                    found[kind] = list(runtimes.runtimes)
                else:
                    loads = dataload_pb2_grpc.DataLoadServiceStub(channel)
                    answer = await loads.ListDataLoads(
                        dataload_pb2.ListDataLoadsRequest(namespace=namespace),
                        timeout=RPC_TIMEOUT_S,
                    )
                    found[kind] = list(answer.dataloads)
            if args.name and kind != "datasets":
                found[kind] = [item for item in found[kind] if item.ref.name == args.name]
                if not found[kind]:
                    where = namespace or "any namespace"
                    raise NotFound(f"no {kind[:-1]} {args.name!r} in {where}")
    return found


_DOCUMENTS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "datasets": dataset_document,
    "runtimes": runtime_document,
    "dataloads": dataload_document,
}
_ROWS: dict[str, Callable[..., tuple[list[str], list[list[str]]]]] = {
    "datasets": dataset_rows,
    "runtimes": runtime_rows,
    "dataloads": dataload_rows,
}


_RUNTIME_KIND_OF = {
    "cacheruntime": "cacheruntime",
    "jindo": "jindoruntime",
    "alluxio": "alluxioruntime",
    "juicefs": "juicefsruntime",
    "thin": "thinruntime",
}


def runtime_kinds(text: str) -> set[str] | None:
    """The runtime kinds (lowercase) ``text`` asks for; ``None`` for every runtime.

    ``get jindoruntime`` shows JindoRuntimes only, as kubectl would; ``get
    runtimes`` shows every kind.
    """
    wanted: set[str] = set()
    for part in text.lower().split(","):
        base = part.split(".", 1)[0]
        if _KINDS.get(base) != "runtimes":
            continue
        singular = base[:-1] if base.endswith("runtimes") else base
        kind = _RUNTIME_KIND_OF.get(singular) or _RUNTIME_KIND_OF.get(
            singular.removesuffix("runtime")
        )
        if kind is None:
            return None  # runtime, runtimes
        wanted.add(kind)
    return wanted or None


def parse_kinds(text: str) -> list[str]:
    """``dataset,jindoruntime`` as ``["datasets", "runtimes"]``; an unknown kind is an error."""
    kinds: list[str] = []
    for part in text.lower().split(","):
        base = part.split(".", 1)[0]  # dataset.data.fluid.io -> dataset
        kind = _KINDS.get(base)
        if kind is None:
            raise InvalidArgument(
                f"get {part!r}: unknown resource type (datasets, runtimes, dataloads)"
            )
        if kind not in kinds:
            kinds.append(kind)
    return kinds


def render(found: dict[str, list[Any]], output: str, all_namespaces: bool) -> str:
    """The text ``get`` prints for what ``_fetch`` found."""
    if output in ("json", "yaml"):
        documents = {
            kind: [_DOCUMENTS[kind](item) for item in items] for kind, items in found.items()
        }
        body: Any = documents if len(documents) > 1 else next(iter(documents.values()))
        if output == "json":
            return json.dumps(body, indent=2)
        return yaml.safe_dump(body, sort_keys=False).rstrip("\n")
    blocks = []
    for kind, items in found.items():
        header, rows = _ROWS[kind](items, wide=output == "wide", all_namespaces=all_namespaces)
        if not rows:
            continue
        blocks.append(render_table(header, rows))
    return "\n\n".join(blocks)


def cmd_get(args: argparse.Namespace) -> int:
    """``get KIND[,KIND] [NAME]``."""
    kinds = parse_kinds(args.kind)
    if args.name and len(kinds) > 1:
        raise InvalidArgument("get: a NAME goes with one resource type only")
    if args.name and args.all_namespaces:
        raise InvalidArgument("get: a NAME cannot be combined with -A")
    found = asyncio.run(_fetch(args, kinds))
    only = runtime_kinds(args.kind)
    if only is not None and "runtimes" in found:
        found["runtimes"] = [item for item in found["runtimes"] if item.kind.lower() in only]
    text = render(found, args.output, args.all_namespaces)
    if not text:
        where = "any namespace" if args.all_namespaces else f"{_namespace(args)} namespace"
        print(f"No resources found in {where}.")
        return 0
    print(text)
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``get``."""
    parser = sub.add_parser(
        "get",
        help="show datasets, runtimes and dataloads with their status",
        description="Show datasets (UFS TOTAL SIZE, CACHED, CACHE CAPACITY, CACHED "
        "PERCENTAGE, PHASE, AGE), runtimes (MASTER/WORKER/FUSE PHASE) or dataloads "
        "(DATASET, PHASE, AGE, DURATION), as kubectl shows Fluid's.",
    )
    parser.add_argument(
        "kind",
        metavar="KIND",
        help="datasets | runtimes | dataloads (singular, Fluid kinds such as "
        "jindoruntime, and comma lists work too)",
    )
    parser.add_argument("name", metavar="NAME", nargs="?", default="")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default="", help="namespace (default: default)")
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace you may see"
    )
    parser.add_argument(
        "-o", "--output", choices=("table", "wide", "json", "yaml"), default="table"
    )
    parser.add_argument(
        "--refresh",
        action="store_true",
        help="wait for fresh figures (a new UFS listing) instead of the last computed ones",
    )
    add_token_argument(parser)
    add_master_argument(parser)
    parser.set_defaults(handler=cmd_get)
