"""``cachecluster load NS/NAME [--path P ...] [--no-wait]``: warm a dataset into the cache.

``load`` creates a DataLoad (named ``<dataset>-load-<UTC time>`` unless
``--name`` is given) and, unless ``--no-wait``, follows it with a progress bar
(bytes, throughput, ETA, files), then prints one line with the outcome and
the duration. It exits 0 when the load is Complete; when it is Failed it
names what could not be loaded and exits 1.

For other commands:

* :func:`wait_for_dataload` follows a DataLoad until its run finishes
  (``apply -f dataload.yaml --wait``);
* :func:`dataload_rows` gives the rows of ``get dataloads``
  (NAMESPACE, NAME, DATASET, PHASE, AGE, DURATION, PROGRESS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

import grpc
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from cachecluster.cli.context import (
    add_master_argument,
    add_token_argument,
    resolve_cli_token,
    resolve_master,
)
from cachecluster.cli.dataset_cmds import parse_ref
from cachecluster.common.grpc_auth import auth_interceptors
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.common.units import format_size
from cachecluster.protos import dataload_pb2, dataload_pb2_grpc, master_pb2

RPC_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.5
"""Longest pause between two status polls; the first ones come sooner (short loads)."""
FINISHED_PHASES = frozenset({"Complete", "Failed"})


def format_age(seconds: float) -> str:
    """A duration as kubectl prints ages: ``45s``, ``2m49s``, ``3h5m``, ``2d4h``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def dataload_rows(
    dataloads: Iterable[dataload_pb2.DataLoad], now_ms: int | None = None
) -> list[dict[str, str]]:
    """Rows of ``get dataloads``: NAMESPACE, NAME, DATASET, PHASE, AGE, DURATION, PROGRESS.

    DURATION is empty until a run started (as Fluid prints it); a running
    load shows its duration so far.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    rows: list[dict[str, str]] = []
    for load in dataloads:
        status = load.status
        rows.append(
            {
                "NAMESPACE": load.ref.namespace,
                "NAME": load.ref.name,
                "DATASET": load.dataset.name
                if load.dataset.namespace == load.ref.namespace
                else f"{load.dataset.namespace}/{load.dataset.name}",
                "PHASE": status.phase,
                "AGE": format_age((now - load.created_ms) / 1000),
                "DURATION": format_age(status.duration_ms / 1000) if status.start_time_ms else "",
                "PROGRESS": f"{status.percentage:.1f}%",
            }
        )
    return rows


def token_from(args: argparse.Namespace) -> str | None:
    """The namespace token: ``--token``, ``$CACHECLUSTER_TOKEN``, else the local admin's."""
    return resolve_cli_token(args)


def open_channel(master: str, token: str | None = None) -> grpc.aio.Channel:
    """A channel to the master that sends ``token`` (if any) on every call."""
    return grpc.aio.insecure_channel(master, interceptors=auth_interceptors(lambda: token))


def outcome_line(load: dataload_pb2.DataLoad) -> str:
    """One line: the DataLoad's phase, what it loaded, the duration and throughput."""
    status = load.status
    seconds = status.duration_ms / 1000
    rate = f", {format_size(status.bytes_done / seconds)}/s" if seconds > 0 else ""
    line = (
        f"dataload {load.ref.namespace}/{load.ref.name} {status.phase}: "
        f"{status.files_done}/{status.files_total} files, "
        f"{format_size(status.bytes_done)} of {format_size(status.bytes_total)} "
        f"({status.percentage:.1f}%) in {seconds:.1f}s{rate}"
    )
    if status.phase == "Failed" and status.message:
        line += f"\n  {status.message}"
    return line


def _run_finished(load: dataload_pb2.DataLoad, since_run: int) -> bool:
    status = load.status
    return status.phase in FINISHED_PHASES and status.runs > since_run


async def wait_for_dataload(
    master: str,
    namespace: str,
    name: str,
    *,
    token: str | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    timeout: float | None = None,
    since_run: int = 0,
    poll_interval: float = POLL_INTERVAL_S,
) -> dataload_pb2.DataLoad:
    """Follow DataLoad ``namespace/name`` until a run after run ``since_run`` finishes.

    Shows a progress bar on ``console`` (stderr by default) unless
    ``show_progress`` is false; returns the DataLoad as it finished. A Cron
    load is followed until its next run finishes. ``TimeoutError`` after
    ``timeout`` seconds. Polls start 20 ms apart and slow down to
    ``poll_interval``.
    """
    console = console or Console(stderr=True)
    ref = master_pb2.DatasetRef(namespace=namespace, name=name)
    deadline = None if timeout is None else time.monotonic() + timeout
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[files]}"),
        console=console,
        disable=not show_progress,
        transient=False,
    )
    pause = 0.02
    async with open_channel(master, token) as channel:
        stub = dataload_pb2_grpc.DataLoadServiceStub(channel)
        with progress:
            task = progress.add_task(f"{namespace}/{name}", total=None, files="")
            while True:
                with rpc_errors():
                    answer = await stub.GetDataLoad(
                        dataload_pb2.GetDataLoadRequest(ref=ref), timeout=RPC_TIMEOUT_S
                    )
                load = answer.dataload
                status = load.status
                progress.update(
                    task,
                    total=status.bytes_total or None,
                    completed=status.bytes_done,
                    files=f"{status.files_done}/{status.files_total} files {status.phase}",
                )
                if _run_finished(load, since_run):
                    return load
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"dataload {namespace}/{name}: still {status.phase} after {timeout:g}s"
                    )
                await asyncio.sleep(pause)
                pause = min(poll_interval, pause * 1.5)


def _spec(args: argparse.Namespace, namespace: str, dataset: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"dataset": {"name": dataset, "namespace": namespace}}
    if args.path:
        spec["target"] = [{"path": path} for path in args.path]
    if args.load_metadata:
        spec["loadMetadata"] = True
    return spec


async def _load(args: argparse.Namespace) -> int:
    namespace, dataset = parse_ref(args.dataset)
    name = args.name or f"{dataset}-load-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    master = resolve_master(args)
    token = token_from(args)
    request = dataload_pb2.ApplyDataLoadRequest(
        ref=master_pb2.DatasetRef(namespace=namespace, name=name),
        spec_json=json.dumps(_spec(args, namespace, dataset)).encode("utf-8"),
    )
    async with open_channel(master, token) as channel:
        stub = dataload_pb2_grpc.DataLoadServiceStub(channel)
        with rpc_errors():
            await stub.ApplyDataLoad(request, timeout=RPC_TIMEOUT_S)
    out = Console(highlight=False)
    if args.no_wait:
        out.print(f"dataload {namespace}/{name} created", markup=False)
        return 0
    load = await wait_for_dataload(
        master,
        namespace,
        name,
        token=token,
        show_progress=not args.quiet,
    )
    if load.status.phase == "Failed":
        print(f"cachecluster load: {outcome_line(load)}", file=sys.stderr)
        return 1
    out.print(outcome_line(load), markup=False)
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """``load``."""
    return asyncio.run(_load(args))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``load``."""
    parser = sub.add_parser(
        "load",
        help="load a dataset (or some of its paths) into the cache, with progress",
        description="Create a DataLoad for dataset NS/NAME and follow it to the end.",
    )
    parser.add_argument("dataset", metavar="NS/NAME", help="the dataset (NAME: namespace default)")
    parser.add_argument(
        "--path",
        action="append",
        default=[],
        metavar="P",
        help="a dataset path to load (repeatable; default the whole dataset)",
    )
    parser.add_argument(
        "--name", default=None, help="DataLoad name (default <dataset>-load-<time>)"
    )
    parser.add_argument(
        "--load-metadata", action="store_true", help="list the UFS again before loading"
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="create the DataLoad and return at once"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_token_argument(parser)
    add_master_argument(parser)
    parser.set_defaults(handler=cmd_load)
