"""``cachecluster token NS``: print a token that lets a client act for namespace NS.

The token is signed with the local cluster's secret (``<home>/cluster-secret``,
written by ``cachecluster up --auth``) or with ``--secret-file``. Use it as
``CACHECLUSTER_TOKEN=... cachecluster ls NS/dataset`` or ``AsyncClient(token=...)``.
``--admin`` prints the cluster admin's token (every namespace, no credentials).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from cachecluster.cli.context import add_home_argument, resolve_home
from cachecluster.common.auth import ADMIN_NAMESPACE, SECRET_FILE, issue_token, load_secret
from cachecluster.common.errors import ConfigError

_TTL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def parse_ttl(text: str) -> float:
    """``"24h"``, ``"30m"``, ``"90s"``, ``"7d"`` or plain seconds, as seconds (> 0)."""
    match = _TTL_RE.match(text)
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise ConfigError("--ttl", f"{text!r} is not a duration like 24h, 30m, 90s or 7d")
    return seconds


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``token``."""
    parser = sub.add_parser(
        "token",
        help="print a token for a namespace (signed with the cluster secret)",
        description="Print a token that lets a client read the datasets of NAMESPACE.",
    )
    parser.add_argument("namespace", nargs="?", help="the namespace the token acts for")
    parser.add_argument(
        "--admin",
        action="store_true",
        help="a cluster admin token instead (every namespace; for apply, get, load)",
    )
    parser.add_argument("--ttl", default="24h", help="validity, e.g. 24h, 30m, 7d (default 24h)")
    parser.add_argument(
        "--secret-file",
        type=Path,
        default=None,
        help=f"the cluster secret (default <home>/{SECRET_FILE} of the local cluster)",
    )
    add_home_argument(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the token on stdout."""
    namespace: str | None = args.namespace
    if args.admin:
        if namespace:
            raise ConfigError("--admin", "give either a namespace or --admin, not both")
        namespace = ADMIN_NAMESPACE
    elif not namespace or not _NAMESPACE_RE.match(namespace):
        raise ConfigError("namespace", f"{namespace!r} is not a namespace name (a DNS label)")
    secret_file = args.secret_file or resolve_home(args.home) / SECRET_FILE
    if not secret_file.exists():
        raise ConfigError(
            "--secret-file",
            f"no cluster secret at {secret_file} (start the cluster with `cachecluster up --auth`)",
        )
    token = issue_token(load_secret(secret_file), namespace, parse_ttl(args.ttl))
    sys.stdout.write(token + "\n")
    return 0
