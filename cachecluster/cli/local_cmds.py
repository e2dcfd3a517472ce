"""``cachecluster up``, ``down`` and ``status``: the local cluster (the embedded default).

``up`` starts a master and N workers as background processes on 127.0.0.1
with tiers under the home folder and records them in ``<home>/cluster.json``
(other commands find the master there); ``down`` stops them; ``status``
shows the master's view of its workers, with local pids.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from cachecluster.cli.context import add_home_argument, add_master_argument, resolve_home
from cachecluster.common.error_map import to_exit_code
from cachecluster.common.errors import Unavailable
from cachecluster.common.units import format_size, parse_size
from cachecluster.local.cluster import STOP_TIMEOUT_S, LocalCluster, stop_recorded_cluster
from cachecluster.local.cluster_calls import cluster_status
from cachecluster.local.layout import ClusterLayout, load_runtime_file, read_cluster_record
from cachecluster.worker.tiers import Medium, TierConfig, parse_tier_flag

DEFAULT_WORKERS = 2


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``up``, ``down`` and ``status``."""
    up = sub.add_parser(
        "up",
        help="start a local cluster (master + workers) in the background",
        description="Start a master and N workers as background processes on this host.",
    )
    add_home_argument(up)
    up.add_argument(
        "--workers", type=int, default=None, help=f"worker count (default {DEFAULT_WORKERS})"
    )
    up.add_argument(
        "--tier",
        action="append",
        default=None,
        metavar="MEDIUM:PATH:QUOTA[:HIGH:LOW]",
        help="a cache tier of each worker (repeatable); each worker uses PATH/w<i> "
        "(default: MEM 2Gi on /dev/shm + SSD 8Gi under the home)",
    )
    up.add_argument("--block-size", default=None, help="block size, e.g. 4Mi (master default)")
    up.add_argument("--replicas", type=int, default=None, help="copies of each block (default 1)")
    up.add_argument("--master-port", type=int, default=0, help="master gRPC port (0 = pick)")
    up.add_argument(
        "--worker-port-base",
        type=int,
        default=None,
        help="worker i listens on BASE+3i (data), +1 (gRPC), +2 (metrics); default: pick",
    )
    up.add_argument(
        "-f",
        "--file",
        type=Path,
        default=None,
        help="a CacheRuntime/JindoRuntime YAML: spec.replicas and spec.tieredstore.levels",
    )
    up.add_argument(
        "--auth",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create <home>/cluster-secret (0600) and require tokens: clients see only "
        "their namespace (`cachecluster token NS`); the local admin (who can read the "
        "secret) needs none. --no-auth runs open (dev mode). Default: --auth",
    )
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for start-up")
    up.set_defaults(handler=run_up)

    down = sub.add_parser("down", help="stop the local cluster")
    add_home_argument(down)
    down.add_argument(
        "--timeout",
        type=float,
        default=STOP_TIMEOUT_S,
        help="seconds to wait after SIGTERM before SIGKILL",
    )
    down.add_argument("--purge", action="store_true", help="also remove the disk tiers")
    down.set_defaults(handler=run_down)

    status = sub.add_parser("status", help="show the master and its workers")
    add_master_argument(status)
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status.set_defaults(handler=run_status)


# ------------------------------------------------------------------ up


def cluster_from_args(args: argparse.Namespace) -> LocalCluster:
    """The (not yet started) cluster ``up``'s flags describe; flags win over ``-f``."""
    workers: int | None = args.workers
    tiers: list[TierConfig] | None = None
    if args.file is not None:
        runtime = load_runtime_file(args.file)
        if workers is None:
            workers = runtime.workers
        tiers = runtime.tiers
    if args.tier:
        tiers = [parse_tier_flag(flag) for flag in args.tier]
    if workers is None:
        workers = DEFAULT_WORKERS
    block_size = parse_size(args.block_size, "--block-size") if args.block_size else None
    return LocalCluster(
        resolve_home(args.home),
        workers=workers,
        tiers=tiers,
        block_size=block_size,
        replicas=args.replicas,
        master_port=args.master_port,
        worker_port_base=args.worker_port_base,
        start_timeout=args.timeout,
        auth=getattr(args, "auth", True),
    )


def _tier_summary(tiers: list[TierConfig]) -> str:
    return ", ".join(f"{tier.medium.value} {format_size(tier.quota)}" for tier in tiers)


def run_up(args: argparse.Namespace) -> int:
    """Start the cluster and print where it listens."""
    cluster = cluster_from_args(args)
    console = Console()
    with console.status(f"starting a master and {len(cluster.workers)} workers"):
        cluster.start()
    table = Table(title=f"cachecluster up: {cluster.home}", title_justify="left")
    table.add_column("process")
    table.add_column("address", no_wrap=True)
    table.add_column("pid", justify="right")
    table.add_column("tiers")
    table.add_row("master", cluster.master_address, str(cluster.master_pid), "")
    for worker in cluster.workers:
        table.add_row(
            worker.worker_id, worker.data_address, str(worker.pid), _tier_summary(worker.tiers)
        )
    console.print(table)
    console.print(
        f"master at [bold]{cluster.master_address}[/bold]; "
        f"commands find it via {cluster.layout.cluster_file} "
        f"(or export CACHECLUSTER_MASTER={cluster.master_address}). "
        f"Logs in {cluster.layout.logs_dir}. "
        "Stop with: cachecluster down" + (f" --home {cluster.home}" if args.home else ""),
        highlight=False,
    )
    return 0


# ------------------------------------------------------------------ down


def run_down(args: argparse.Namespace) -> int:
    """Stop the recorded cluster: SIGTERM, then SIGKILL after ``--timeout``."""
    home = resolve_home(args.home)
    if read_cluster_record(ClusterLayout(home)) is None:
        print(f"no cluster recorded in {home}: nothing to stop")
        return 0
    stopped = stop_recorded_cluster(home, timeout=args.timeout, purge=args.purge)
    if stopped:
        names = ", ".join(f"{name} (pid {pid})" for name, pid in stopped)
        print(f"stopped {names}")
    else:
        print(f"the cluster in {home} was not running; removed its record")
    return 0


# ------------------------------------------------------------------ status


def _short_size(n: int) -> str:
    """``0``, ``512Ki``, ``1.5Gi``: sizes for narrow table cells."""
    value = float(n)
    for unit in ("", "Ki", "Mi", "Gi", "Ti"):
        if value < 1024 or unit == "Ti":
            return f"{value:.3g}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _usage(tiers: list[dict[str, Any]], medium: Medium) -> str:
    for tier in tiers:
        if tier["medium"] == medium.value:
            return f"{_short_size(tier['used'])}/{_short_size(tier['capacity'])}"
    return ""


def _print_status(status: dict[str, Any]) -> None:
    console = Console()
    master = status["master"]
    parts = [f"master {master['address']}"]
    if master.get("pid"):
        parts.append(f"pid {master['pid']}" + ("" if master.get("alive") else " (not running)"))
    parts.append(f"epoch {status['epoch']}" if master["reachable"] else "UNREACHABLE")
    console.print("  ".join(parts), highlight=False)
    if master.get("error"):
        console.print(f"  {master['error']}", style="red", highlight=False)
    media = [m for m in Medium if any(_usage(w["tiers"], m) for w in status["workers"])]
    table = Table(box=box.SIMPLE_HEAD, caption="tiers: used/capacity in bytes" if media else None)
    table.add_column("worker", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("address", no_wrap=True)
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("blocks", justify="right", no_wrap=True)
    for medium in media:
        table.add_column(medium.value, justify="right", no_wrap=True)
    for worker in status["workers"]:
        pid = "" if worker.get("pid") is None else str(worker["pid"])
        if pid and worker.get("alive") is False:
            pid += " (dead)"
        table.add_row(
            worker["id"],
            worker["state"],
            worker["address"],
            pid,
            "" if worker.get("blocks") is None else str(worker["blocks"]),
            *(_usage(worker["tiers"], medium) for medium in media),
        )
    console.print(table)


def run_status(args: argparse.Namespace) -> int:
    """Print the status (table or JSON); exit 69 when the master cannot be reached."""
    home = resolve_home(args.home)
    record = read_cluster_record(ClusterLayout(home))
    master_address = args.master or os.environ.get("CACHECLUSTER_MASTER") or None
    if master_address is None:
        if not record:
            raise Unavailable(
                f"no cluster found in {home} (run `cachecluster up`, or set CACHECLUSTER_MASTER)"
            )
        master_address = str(record.get("master"))
    elif record and record.get("master") != master_address:
        record = None  # another cluster than the local one: no local pids
    status = cluster_status(master_address, record)
    if args.output == "json":
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        _print_status(status)
    if not status["master"]["reachable"]:
        return to_exit_code(Unavailable(""))
    return 0


__all__ = ["cluster_from_args", "register", "run_down", "run_status", "run_up"]
