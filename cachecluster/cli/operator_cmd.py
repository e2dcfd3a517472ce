"""``cachecluster operator``: run the Kubernetes operator (kopf) in the foreground.

::

    cachecluster operator --all-namespaces
    cachecluster operator --namespace share --namespace ref

It reconciles Dataset, CacheRuntime and DataLoad objects of
``cachecluster.io/v1alpha1`` (see docs/operator.md) with the handlers of
:mod:`cachecluster.operator.handlers`, talking to the API server of the
in-cluster service account, else of ``~/.kube/config``. The pods it creates
use the image of ``$CACHECLUSTER_IMAGE`` (pull policy
``$CACHECLUSTER_IMAGE_PULL_POLICY``).
"""

from __future__ import annotations

import argparse
from typing import Any

from cachecluster.cli.context import setup_service_logging


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``operator``."""
    parser = sub.add_parser(
        "operator",
        help="run the Kubernetes operator (Dataset, CacheRuntime, DataLoad)",
        description="Reconcile cachecluster.io objects into workloads, PVs and PVCs.",
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run kopf until it is stopped (SIGTERM/SIGINT)."""
    import kopf

    from cachecluster.operator.handlers import REGISTRY, operator_context

    setup_service_logging("operator", bool(getattr(args, "verbose", False)))
    context = operator_context()  # no API server configured: one line and an exit code
    kopf.run(
        registry=REGISTRY,
        memo=kopf.Memo(context=context),
        standalone=True,
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
    )
    return 0
