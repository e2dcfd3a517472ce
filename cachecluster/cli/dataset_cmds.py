"""``cachecluster dataset add|ls|rm``: the dataset registry of a running master.

* ``dataset add NS/NAME UFS_URI [--name m0] [--path /] [-o key=value ...]`` creates
  the dataset with that mount, or adds the mount to an existing dataset (a
  mount of the same name is replaced), so that a multi-mount dataset is built
  one ``add`` at a time;
* ``dataset ls [-n NS] [-o table|json]`` lists datasets;
* ``dataset rm NS/NAME`` deletes one.

``NAME`` alone means namespace ``default``, as in Kubernetes. The master is
found with ``--master``, ``$CACHECLUSTER_MASTER`` or the local cluster's
``cluster.json`` (:func:`cachecluster.cli.context.resolve_master`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
from rich.console import Console
from rich.table import Table

from cachecluster.cli.context import (
    add_master_argument,
    add_token_argument,
    master_channel,
)
from cachecluster.common.errors import InvalidArgument, NotFound
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.protos import master_pb2, master_pb2_grpc

RPC_TIMEOUT_S = 10.0
DEFAULT_NAMESPACE = "default"

_T = TypeVar("_T")


def parse_ref(text: str) -> tuple[str, str]:
    """``NS/NAME`` (or ``NAME``, in namespace ``default``) as ``(namespace, name)``."""
    namespace, sep, name = text.partition("/")
    if not sep:
        namespace, name = DEFAULT_NAMESPACE, text
    if not namespace or not name or "/" in name:
        raise InvalidArgument(f"dataset {text!r}: expected NAMESPACE/NAME or NAME")
    return namespace, name


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; an item without ``=`` is an ``InvalidArgument``."""
    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(
                f"-o {pair!r}: expected key=value, e.g. fs.s3.endpoint=http://..."
            )
        options[key] = value
    return options


def _run(call: Coroutine[Any, Any, _T]) -> _T:
    return asyncio.run(call)


def _channel(args: argparse.Namespace) -> grpc.aio.Channel:
    return master_channel(args)


def merge_mount(spec: dict[str, Any], mount: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with ``mount`` added, replacing a mount of the same name."""
    mounts = [
        existing
        for existing in spec.get("mounts", [])
        if isinstance(existing, dict) and existing.get("name") != mount["name"]
    ]
    return {**spec, "mounts": [*mounts, mount]}


async def _add(args: argparse.Namespace) -> master_pb2.ApplyDatasetResponse:
    namespace, name = parse_ref(args.dataset)
    mount: dict[str, Any] = {"mountPoint": args.uri, "name": args.name, "path": args.path}
    options = parse_options(args.option)
    if options:
        mount["options"] = options
    ref = master_pb2.DatasetRef(namespace=namespace, name=name)
    async with _channel(args) as channel:
        stub = master_pb2_grpc.DatasetServiceStub(channel)
        spec: dict[str, Any] = {}
        try:
            with rpc_errors():
                found = await stub.GetDataset(
                    master_pb2.GetDatasetRequest(ref=ref), timeout=RPC_TIMEOUT_S
                )
            spec = json.loads(found.dataset.spec_json or b"{}")
        except NotFound:
            pass
        request = master_pb2.ApplyDatasetRequest(
            ref=ref, spec_json=json.dumps(merge_mount(spec, mount)).encode("utf-8")
        )
        with rpc_errors():
            return await stub.ApplyDataset(request, timeout=RPC_TIMEOUT_S)


def _mount_lines(dataset: master_pb2.Dataset) -> list[str]:
    status = json.loads(dataset.status_json or b"{}")
    return [
        f"{mount.get('name')}: {mount.get('mountPoint')} at {mount.get('path')}"
        for mount in status.get("mounts", [])
    ]


def cmd_add(args: argparse.Namespace) -> int:
    """``dataset add``."""
    answer = _run(_add(args))
    dataset = answer.dataset
    verb = "created" if answer.created else "updated"
    console = Console()
    console.print(
        f"dataset {dataset.ref.namespace}/{dataset.ref.name} {verb} "
        f"(generation {dataset.generation})",
        highlight=False,
    )
    for line in _mount_lines(dataset):
        console.print(f"  {line}", highlight=False, markup=False)
    return 0


async def _list(args: argparse.Namespace) -> master_pb2.ListDatasetsResponse:
    async with _channel(args) as channel:
        stub = master_pb2_grpc.DatasetServiceStub(channel)
        with rpc_errors():
            return await stub.ListDatasets(
                master_pb2.ListDatasetsRequest(namespace=args.namespace or ""),
                timeout=RPC_TIMEOUT_S,
            )


def cmd_ls(args: argparse.Namespace) -> int:
    """``dataset ls``."""
    answer = _run(_list(args))
    if args.output == "json":
        rows = [
            {
                "namespace": dataset.ref.namespace,
                "name": dataset.ref.name,
                "phase": dataset.phase,
                "generation": dataset.generation,
                "mounts": json.loads(dataset.status_json or b"{}").get("mounts", []),
            }
            for dataset in answer.datasets
        ]
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(box=None, header_style="bold")
    for column in ("NAMESPACE", "NAME", "MOUNTS", "PHASE", "GENERATION"):
        table.add_column(column)
    for dataset in answer.datasets:
        table.add_row(
            dataset.ref.namespace,
            dataset.ref.name,
            "\n".join(_mount_lines(dataset)),
            dataset.phase,
            str(dataset.generation),
        )
    Console().print(table)
    return 0


async def _delete(args: argparse.Namespace) -> bool:
    namespace, name = parse_ref(args.dataset)
    async with _channel(args) as channel:
        stub = master_pb2_grpc.DatasetServiceStub(channel)
        with rpc_errors():
            answer = await stub.DeleteDataset(
                master_pb2.DeleteDatasetRequest(
                    ref=master_pb2.DatasetRef(namespace=namespace, name=name)
                ),
                timeout=RPC_TIMEOUT_S,
            )
    return bool(answer.deleted)


def cmd_rm(args: argparse.Namespace) -> int:
    """``dataset rm``: NOT_FOUND's exit code when there was no such dataset."""
    namespace, name = parse_ref(args.dataset)
    if not _run(_delete(args)):
        raise NotFound(f"no dataset {namespace}/{name}")
    print(f"dataset {namespace}/{name} deleted")
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``dataset add|ls|rm``."""
    parser = sub.add_parser("dataset", help="add, list and remove datasets")
    commands = parser.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND")
    commands.required = True

    add = commands.add_parser(
        "add",
        help="create a dataset, or add a mount to one",
        description="Create dataset NS/NAME with a mount of UFS_URI, or add (replace, "
        "by name) that mount in an existing dataset.",
    )
    add.add_argument("dataset", metavar="NS/NAME")
    add.add_argument("uri", metavar="UFS_URI", help="s3://bucket/dir, oss://..., local:///dir")
    add.add_argument("--name", default="m0", help="mount name (default m0)")
    add.add_argument(
        "--path", default="/", help="where the mount appears in the dataset (default /: the root)"
    )
    add.add_argument(
        "-o",
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="UFS option, e.g. fs.s3.endpoint=http://127.0.0.1:8333 (repeatable)",
    )
    add_master_argument(add)
    add_token_argument(add)
    add.set_defaults(handler=cmd_add)

    ls = commands.add_parser("ls", help="list datasets")
    ls.add_argument("-n", "--namespace", default="", help="only this namespace")
    ls.add_argument("-o", "--output", choices=("table", "json"), default="table")
    add_master_argument(ls)
    add_token_argument(ls)
    ls.set_defaults(handler=cmd_ls)

    rm = commands.add_parser("rm", help="delete a dataset")
    rm.add_argument("dataset", metavar="NS/NAME")
    add_master_argument(rm)
    add_token_argument(rm)
    rm.set_defaults(handler=cmd_rm)
