"""``cachecluster worker``: run one worker in the foreground, as a pod runs it.

It binds port 0 by default, writes ``<home>/endpoint.json`` once it listens,
logs one line per event to stderr and exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cachecluster.cli.context import resolve_home, setup_service_logging
from cachecluster.worker.eviction import DEFAULT_POLICY, policy_names

if TYPE_CHECKING:
    from cachecluster.worker.config import WorkerConfig


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``worker`` subcommand."""
    parser = sub.add_parser(
        "worker",
        help="run a cache worker in the foreground",
        description=(
            "Run a cache worker: a tiered block store that serves blocks to readers and "
            "fetches missing ones from the UFS. Stops cleanly on SIGTERM."
        ),
    )
    parser.add_argument("--master", required=True, help="master address host:port")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="worker folder: endpoint file and worker id (default <CACHECLUSTER_HOME>/worker)",
    )
    parser.add_argument(
        "--id",
        dest="worker_id",
        default=None,
        help="stable worker id (default: kept in <home>/worker-id, generated once)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on and announce")
    parser.add_argument(
        "--advertise-host",
        default=None,
        help="address announced to the master instead of --host (a pod's IP when "
        "listening on 0.0.0.0; default --host, or the host name for a wildcard)",
    )
    parser.add_argument("--data-port", type=int, default=0, help="data protocol port (0: any)")
    parser.add_argument("--grpc-port", type=int, default=0, help="gRPC port (0: any)")
    parser.add_argument("--metrics-port", type=int, default=0, help="Prometheus port (0: any)")
    parser.add_argument(
        "--unix-socket",
        default="",
        metavar="PATH|none",
        help="data protocol Unix socket for same-host readers "
        "(default /tmp/cachecluster-<uid>/<id>-<random>.sock; 'none' for TCP only)",
    )
    parser.add_argument(
        "--tier",
        action="append",
        default=[],
        metavar="MEDIUM:PATH:QUOTA[:HIGH:LOW]",
        help="a cache tier, repeatable (default MEM:/dev/shm/cachecluster-<uid>/<id>:1Gi)",
    )
    parser.add_argument(
        "--eviction-policy",
        default=DEFAULT_POLICY,
        choices=policy_names(),
        help=f"eviction policy of every tier (default {DEFAULT_POLICY})",
    )
    parser.add_argument(
        "--cluster-secret-file",
        type=Path,
        default=None,
        help="file with the cluster secret (hex): data requests then need a capability "
        "signed with it (default: none, open mode)",
    )
    parser.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace, default_home: Path) -> WorkerConfig:
    """The worker's configuration from its parsed flags (``--unix-socket none``: no socket)."""
    from cachecluster.worker.config import build_worker_config

    home = args.home if args.home is not None else default_home
    unix_socket: str | None = args.unix_socket
    if unix_socket is not None and unix_socket.lower() == "none":
        unix_socket = None
    return build_worker_config(
        master=args.master,
        home=home,
        worker_id=args.worker_id,
        host=args.host,
        advertise_host=args.advertise_host,
        data_port=args.data_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        unix_socket=unix_socket,
        tier_flags=args.tier,
        eviction_policy=args.eviction_policy,
        cluster_secret_file=args.cluster_secret_file,
    )


def run(args: argparse.Namespace) -> int:
    """Build the configuration from the flags and run the worker on uvloop until stopped."""
    import uvloop

    from cachecluster.common.server_process import prepare_server_process
    from cachecluster.worker.server import run_worker

    setup_service_logging("worker", getattr(args, "verbose", False))
    config = config_from_args(args, resolve_home(None) / "worker")
    prepare_server_process()
    uvloop.run(run_worker(config))
    return 0
