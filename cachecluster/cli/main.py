"""The ``cachecluster`` command: parses arguments and dispatches to one module a command.

Errors reach the user as one line on stderr and an exit code from
:mod:`cachecluster.common.error_map`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from cachecluster.common.error_map import to_exit_code
from cachecluster.common.errors import CacheClusterError

Handler = Callable[[argparse.Namespace], int]

# One module a group of commands; each has ``register(subparsers)`` that adds
# its subcommands with ``set_defaults(handler=...)``.
COMMAND_MODULES = (
    "local_cmds",  # up, down, status
    "master_cmd",  # master (foreground, as a pod runs it)
    "worker_cmd",  # worker (foreground, as a pod runs it)
    "dataset_cmds",  # dataset add/ls/rm
    "read_cmds",  # ls, stat, cat, cp
    "load_cmds",  # load (DataLoad with progress)
    "get_cmds",  # get datasets|runtimes|dataloads (status as Fluid prints it)
    "token_cmds",  # token NS (namespace tokens when the cluster has a secret)
    "apply_cmds",  # apply -f FILE, delete (Secret, Dataset, runtime, DataLoad YAML)
    "mount_cmds",  # mount, unmount (FUSE)
    "csi_cmd",  # csi (the CSI node plugin, foreground)
    "operator_cmd",  # operator (kopf: Dataset, CacheRuntime, DataLoad on Kubernetes)
    "demo",  # the main job
)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand registered."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="cachecluster",
        description="A distributed dataset cache for OSS, S3 and local datasets.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cachecluster.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except (CacheClusterError, OSError) as exc:
        print(f"cachecluster {args.command}: {exc}", file=sys.stderr)
        return to_exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
