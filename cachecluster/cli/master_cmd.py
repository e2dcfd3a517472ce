"""``cachecluster master``: run the master in the foreground, as a pod runs it.

It binds port 0 by default and writes ``<home>/endpoint.json`` once it
listens; SIGTERM or SIGINT stops it cleanly (exit code 0).
"""

from __future__ import annotations

import argparse
from typing import Any

import uvloop

from cachecluster.cli.context import resolve_home, setup_service_logging
from cachecluster.master.config import MasterConfig


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``master`` subcommand."""
    parser = sub.add_parser(
        "master",
        help="run the master in the foreground",
        description="Run the cachecluster master (membership, ring, datasets, metadata) "
        "in the foreground until SIGTERM or SIGINT.",
    )
    parser.add_argument(
        "--home",
        default=None,
        help="folder for endpoint.json and datasets.json "
        "(default $CACHECLUSTER_HOME/master or ~/.cachecluster/master)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="gRPC port (0: any free port)")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="Prometheus metrics port (0: any free port)"
    )
    parser.add_argument(
        "--replicas", type=int, default=1, help="copies of each block, on distinct workers"
    )
    parser.add_argument("--block-size", default="4Mi", help="size of a cache block, e.g. 4Mi")
    parser.add_argument(
        "--vnodes", type=int, default=1000, help="ring points of a worker of weight 1.0"
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=1.0,
        help="seconds between worker heartbeats",
    )
    parser.add_argument(
        "--missed-heartbeats",
        type=int,
        default=3,
        help="heartbeats a worker may miss before it is lost",
    )
    parser.add_argument(
        "--metadata-sync-interval",
        type=float,
        default=30.0,
        help="seconds UFS listings stay cached (0: no cache)",
    )
    parser.add_argument(
        "--cluster-secret-file",
        default=None,
        help="file with the cluster secret (hex): every call then needs a token "
        "(`cachecluster token NS`); default none, open mode",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate the flags and run the master under uvloop until it is told to stop."""
    from cachecluster.common.server_process import prepare_server_process
    from cachecluster.master.server import run_master

    setup_service_logging("master", getattr(args, "verbose", False))
    config = MasterConfig.from_args(args, default_home=resolve_home(None) / "master")
    prepare_server_process()
    uvloop.run(run_master(config))
    return 0
