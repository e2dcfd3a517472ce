"""How CLI commands find the local cluster: its home folder and master address.

Home: ``--home``, else ``$CACHECLUSTER_HOME``, else ``~/.cachecluster``.
Master: ``--master``, else ``$CACHECLUSTER_MASTER`` (``host:port``), else the
``master`` field of ``<home>/cluster.json`` that ``cachecluster up`` writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import grpc

CLUSTER_FILE = "cluster.json"


def add_home_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--home`` to a subcommand."""
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="local cluster folder (default $CACHECLUSTER_HOME or ~/.cachecluster)",
    )


def add_master_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--home`` and ``--master`` to a subcommand that talks to a cluster."""
    add_home_argument(parser)
    parser.add_argument(
        "--master",
        default=None,
        help="master address host:port (default $CACHECLUSTER_MASTER or the local cluster's)",
    )


def resolve_home(value: Path | None) -> Path:
    """The home folder for ``--home`` (may be None)."""
    if value is not None:
        return value.expanduser().resolve()
    env = os.environ.get("CACHECLUSTER_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return (Path.home() / ".cachecluster").resolve()


def read_cluster_file(home: Path) -> dict[str, Any] | None:
    """``<home>/cluster.json`` as written by ``cachecluster up``, or None."""
    try:
        data: dict[str, Any] = json.loads((home / CLUSTER_FILE).read_text())
    except FileNotFoundError:
        return None
    return data


def resolve_master(args: argparse.Namespace) -> str:
    """The master address (``host:port``) a command should talk to."""
    from cachecluster.client.master_api import resolve_master_address

    home = resolve_home(getattr(args, "home", None))
    return resolve_master_address(getattr(args, "master", None), home)


def add_token_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--token`` (a namespace token) to a subcommand that talks to a cluster."""
    parser.add_argument(
        "--token",
        default=None,
        help="namespace token (default $CACHECLUSTER_TOKEN, else the local cluster admin's)",
    )


def resolve_cli_token(args: argparse.Namespace) -> str | None:
    """The token a command sends: ``--token``, ``$CACHECLUSTER_TOKEN``, else the local admin's."""
    from cachecluster.client.master_api import resolve_token

    return resolve_token(getattr(args, "token", None), resolve_home(getattr(args, "home", None)))


def master_channel(args: argparse.Namespace) -> grpc.aio.Channel:
    """A channel to the command's master that sends the command's token on every call."""
    from cachecluster.common.grpc_auth import auth_interceptors

    token = resolve_cli_token(args)
    return grpc.aio.insecure_channel(
        resolve_master(args), interceptors=auth_interceptors(lambda: token)
    )


def setup_service_logging(component: str, verbose: bool) -> None:
    """One line a record, ``<time> <level> <component> <message>``, for a foreground service.

    The SDKs' own loggers (botocore, boto3, urllib3, oss2) stay at WARNING: at
    INFO they log every credential lookup and connection.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s %(levelname)s {component} %(message)s",
        force=True,
    )
    for noisy in ("botocore", "boto3", "urllib3", "oss2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
