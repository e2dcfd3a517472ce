"""``cachecluster csi``: run the CSI node plugin in the foreground, as its DaemonSet does.

kubelet reaches it through node-driver-registrar on the Unix socket of
``--endpoint``; SIGTERM or SIGINT stops it cleanly (exit code 0) and leaves
published volumes mounted. See docs/csi.md.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import uvloop

from cachecluster.cli.context import setup_service_logging
from cachecluster.csi.config import DEFAULT_ENDPOINT, DEFAULT_REBIND_INTERVAL_S, CsiConfig
from cachecluster.operator.naming import RUNTIME_MOUNT_ROOT


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the ``csi`` subcommand."""
    parser = sub.add_parser(
        "csi",
        help="run the CSI node plugin in the foreground",
        description="Serve the CSI Identity and Node services on a Unix socket: "
        "NodePublishVolume bind-mounts a dataset's path of its runtime's FUSE mount "
        "into the pod, read-only for ReadOnlyMany; broken binds are re-bound when "
        "the FUSE mount comes back.",
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("CSI_ENDPOINT", DEFAULT_ENDPOINT),
        help="unix:///path of the socket to serve ($CSI_ENDPOINT, default %(default)s)",
    )
    parser.add_argument(
        "--node-id",
        default=os.environ.get("NODE_ID"),
        help="this node's id, the Kubernetes node name ($NODE_ID)",
    )
    parser.add_argument(
        "--state-dir",
        default=None,
        help="folder of the published-targets file (default: the socket's folder)",
    )
    parser.add_argument(
        "--fuse-root",
        default=RUNTIME_MOUNT_ROOT,
        help="only FUSE paths under this folder are bound (default %(default)s)",
    )
    parser.add_argument(
        "--rebind-interval",
        type=float,
        default=DEFAULT_REBIND_INTERVAL_S,
        help="seconds between checks for broken binds (default %(default)s)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate the flags and serve under uvloop until told to stop."""
    from cachecluster.csi.server import run_csi

    setup_service_logging("csi", getattr(args, "verbose", False))
    config = CsiConfig.from_args(args)
    uvloop.run(run_csi(config))
    return 0
