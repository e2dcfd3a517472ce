"""``cachecluster apply -f FILE|- [--wait]`` and ``cachecluster delete``: the user's YAML.

``apply -f`` reads every document of the file (Secret, Dataset, CacheRuntime
or Fluid's JindoRuntime..., DataLoad; see :mod:`cachecluster.api`) and
**validates all of them before applying any**: the documents themselves,
then what needs the master (the secrets a dataset's encryptOptions name
exist with those keys, a reference's source exists and is not a reference
itself, a DataLoad's dataset exists). One error line names the document, the
field and the reason, and nothing changes. Then secrets are applied first,
the other documents in file order, each printed as kubectl does::

    secret/dataset-secret created
    dataset.data.fluid.io/shared-dataset created
    jindoruntime.data.fluid.io/shared-dataset created

(``configured`` when it changed, ``unchanged`` when not). Secret values are
never printed. In local mode (the master is the one ``cachecluster up``
started in ``--home``) a runtime document also scales the running cluster to
``replicas`` and applies its ``tieredstore``, restarting workers one at a
time (:mod:`cachecluster.local.runtime_sync`). ``--wait`` follows each
DataLoad of the file with a progress bar until it finished.

``delete -f FILE`` deletes the file's documents (DataLoads, datasets,
runtimes, then secrets); ``delete dataset|runtime|dataload|secret NS/NAME``
deletes one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from cachecluster.api import (
    CacheRuntimeSpec,
    DataLoadSpec,
    DatasetSpec,
    Document,
    SecretDoc,
    parse_documents,
)
from cachecluster.cli.context import (
    add_master_argument,
    add_token_argument,
    read_cluster_file,
    resolve_cli_token,
    resolve_home,
    resolve_master,
)
from cachecluster.cli.dataset_cmds import parse_ref
from cachecluster.cli.load_cmds import open_channel, outcome_line, wait_for_dataload
from cachecluster.common.error_map import to_exit_code
from cachecluster.common.errors import (
    CacheClusterError,
    ConfigError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.protos import (
    dataload_pb2,
    dataload_pb2_grpc,
    master_pb2,
    master_pb2_grpc,
    resources_pb2,
    resources_pb2_grpc,
)

RPC_TIMEOUT_S = 30.0
Say = Callable[[str], None]


def read_source(path: str) -> tuple[str, str]:
    """``(text, name for errors)`` of ``-f PATH`` (``-`` is stdin)."""
    if path == "-":
        return sys.stdin.read(), "-"
    try:
        return Path(path).read_text(), path
    except OSError as exc:
        raise ConfigError(path, exc.strerror or str(exc)) from None


def _ref(namespace: str, name: str) -> master_pb2.DatasetRef:
    return master_pb2.DatasetRef(namespace=namespace, name=name)


class Stubs:
    """The master's services on one channel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.datasets = master_pb2_grpc.DatasetServiceStub(channel)
        self.resources = resources_pb2_grpc.ResourceServiceStub(channel)
        self.dataloads = dataload_pb2_grpc.DataLoadServiceStub(channel)

    async def dataset_spec(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The spec of an existing dataset (credentials masked), None when there is none."""
        try:
            with rpc_errors():
                found = await self.datasets.GetDataset(
                    master_pb2.GetDatasetRequest(ref=_ref(namespace, name)), timeout=RPC_TIMEOUT_S
                )
        except NotFound:
            return None
        spec: dict[str, Any] = json.loads(found.dataset.spec_json or b"{}")
        return spec

    async def secret_keys(self, namespace: str) -> dict[str, set[str]]:
        """Secret name -> keys, of ``namespace`` (no values travel)."""
        with rpc_errors():
            answer = await self.resources.ListSecrets(
                resources_pb2.ListSecretsRequest(namespace=namespace), timeout=RPC_TIMEOUT_S
            )
        return {s.ref.name: set(s.keys) for s in answer.secrets if s.ref.namespace == namespace}


# ------------------------------------------------------------------ checks


def _is_reference(spec: dict[str, Any]) -> str | None:
    mounts = spec.get("mounts") or []
    if len(mounts) == 1 and str(mounts[0].get("mountPoint", "")).startswith("dataset://"):
        return str(mounts[0]["mountPoint"])
    return None


async def check_documents(stubs: Stubs, documents: list[Document]) -> None:
    """What needs the master, for every document, before anything is applied."""
    file_secrets: dict[tuple[str, str], set[str]] = {}
    file_datasets: dict[tuple[str, str], DatasetSpec] = {}
    for doc in documents:
        if isinstance(doc.spec, SecretDoc):
            file_secrets[(doc.namespace, doc.name)] = set(doc.spec.data)
        elif isinstance(doc.spec, DatasetSpec):
            file_datasets[(doc.namespace, doc.name)] = doc.spec
    known: dict[str, dict[str, set[str]]] = {}
    for doc in documents:
        if isinstance(doc.spec, DatasetSpec):
            for field, secret, key in doc.spec.secret_refs():
                keys = file_secrets.get((doc.namespace, secret))
                if keys is None:
                    if doc.namespace not in known:
                        known[doc.namespace] = await stubs.secret_keys(doc.namespace)
                    keys = known[doc.namespace].get(secret)
                where = f"{doc.where}: {field}.valueFrom.secretKeyRef"
                if keys is None:
                    raise ConfigError(
                        where, f"secret {doc.namespace}/{secret} does not exist (apply it first)"
                    )
                if key not in keys:
                    raise ConfigError(
                        where,
                        f"secret {doc.namespace}/{secret} has no key {key!r} "
                        f"(keys: {', '.join(sorted(keys)) or 'none'})",
                    )
            source = doc.spec.reference
            if source is not None:
                await _check_source(stubs, doc, source.namespace, source.name, file_datasets)
        elif isinstance(doc.spec, DataLoadSpec):
            namespace = doc.spec.dataset.namespace or doc.namespace
            name = doc.spec.dataset.name
            in_file = (namespace, name) in file_datasets
            if not in_file and await stubs.dataset_spec(namespace, name) is None:
                raise ConfigError(
                    f"{doc.where}: spec.dataset",
                    f"dataset {namespace}/{name} does not exist (apply it first)",
                )


async def _check_source(
    stubs: Stubs,
    doc: Document,
    namespace: str,
    name: str,
    file_datasets: dict[tuple[str, str], DatasetSpec],
) -> None:
    where = f"{doc.where}: spec.mounts[0].mountPoint"
    if (namespace, name) == (doc.namespace, doc.name):
        raise ConfigError(where, "a dataset cannot reference itself")
    in_file = file_datasets.get((namespace, name))
    if in_file is not None:
        inner = None if in_file.reference is None else in_file.mounts[0].mount_point
    else:
        try:
            spec = await stubs.dataset_spec(namespace, name)
        except PermissionDenied:
            return  # the master decides
        if spec is None:
            raise ConfigError(
                where,
                f"references {namespace}/{name}, which does not exist (apply the source first)",
            )
        inner = _is_reference(spec)
    if inner is not None:
        raise ConfigError(
            where,
            f"references {namespace}/{name}, which is itself a reference (to {inner}): "
            "references cannot chain; reference the source dataset directly",
        )


# ------------------------------------------------------------------ apply


def _local_cluster(args: argparse.Namespace, master: str) -> Path | None:
    """The home of the local cluster whose master is ``master``, else None."""
    home = resolve_home(getattr(args, "home", None))
    try:
        record = read_cluster_file(home)
    except (OSError, ValueError):
        return None
    if record and record.get("master") == master:
        return home
    return None


def _sync_local(home: Path, spec: CacheRuntimeSpec, say: Say) -> None:
    from cachecluster.local.cluster import LocalCluster
    from cachecluster.local.runtime_sync import sync_runtime

    cluster = LocalCluster.attach(home)
    sync_runtime(
        cluster,
        spec.replicas,
        list(spec.tiers),
        say=say,
        written_tiers=spec.describe_tiers() if spec.tiers else "",
    )


async def apply_document(
    stubs: Stubs, doc: Document, say: Say, local_home: Path | None
) -> tuple[str, int]:
    """Apply one validated document; return what happened and the DataLoad run to wait after."""
    spec = doc.spec
    ref = _ref(doc.namespace, doc.name)
    if isinstance(spec, SecretDoc):
        with rpc_errors():
            put = await stubs.resources.PutSecret(
                resources_pb2.PutSecretRequest(ref=ref, data=dict(spec.data)),
                timeout=RPC_TIMEOUT_S,
            )
        return put.result, 0
    if isinstance(spec, DatasetSpec):
        before: master_pb2.GetDatasetResponse | None = None
        try:
            with rpc_errors():
                before = await stubs.datasets.GetDataset(
                    master_pb2.GetDatasetRequest(ref=ref), timeout=RPC_TIMEOUT_S
                )
        except NotFound:
            pass
        with rpc_errors():
            answer = await stubs.datasets.ApplyDataset(
                master_pb2.ApplyDatasetRequest(
                    ref=ref, spec_json=json.dumps(spec.to_dict()).encode("utf-8")
                ),
                timeout=RPC_TIMEOUT_S,
            )
        if answer.created:
            return "created", 0
        changed = before is None or before.dataset.generation != answer.dataset.generation
        return ("configured" if changed else "unchanged"), 0
    if isinstance(spec, CacheRuntimeSpec):
        with rpc_errors():
            runtime = await stubs.resources.ApplyRuntime(
                resources_pb2.ApplyRuntimeRequest(
                    ref=ref,
                    kind=doc.kind,
                    api_version=doc.api_version,
                    spec_json=json.dumps(spec.to_dict()).encode("utf-8"),
                ),
                timeout=RPC_TIMEOUT_S,
            )
        say(f"{doc.resource} {runtime.result}")
        if local_home is not None:
            await asyncio.to_thread(_sync_local, local_home, spec, say)
        return "", 0
    assert isinstance(spec, DataLoadSpec)
    runs = 0
    previous: dict[str, Any] | None = None
    try:
        with rpc_errors():
            found = await stubs.dataloads.GetDataLoad(
                dataload_pb2.GetDataLoadRequest(ref=ref), timeout=RPC_TIMEOUT_S
            )
        runs = found.dataload.status.runs
        previous = json.loads(found.dataload.spec_json or b"{}")
    except NotFound:
        pass
    body = spec.to_dict()
    with rpc_errors():
        answer_dl = await stubs.dataloads.ApplyDataLoad(
            dataload_pb2.ApplyDataLoadRequest(ref=ref, spec_json=json.dumps(body).encode("utf-8")),
            timeout=RPC_TIMEOUT_S,
        )
    if answer_dl.created:
        return "created", 0
    if previous is not None and _same_dataload(previous, spec):
        return "unchanged", max(runs - 1, 0)
    return "configured", runs


def _same_dataload(previous: dict[str, Any], spec: DataLoadSpec) -> bool:
    try:
        return DataLoadSpec.from_dict(previous) == spec
    except ConfigError:
        return False


async def _apply(args: argparse.Namespace) -> int:
    text, source = read_source(args.filename)
    documents = parse_documents(text, source)
    master = resolve_master(args)
    token = resolve_cli_token(args)
    local_home = _local_cluster(args, master)
    loads: list[tuple[Document, int]] = []
    ordered = [d for d in documents if isinstance(d.spec, SecretDoc)]
    ordered += [d for d in documents if not isinstance(d.spec, SecretDoc)]

    def say(line: str) -> None:
        print(line, flush=True)

    async with open_channel(master, token) as channel:
        stubs = Stubs(channel)
        await check_documents(stubs, documents)
        for doc in ordered:
            try:
                result, since_run = await apply_document(stubs, doc, say, local_home)
            except ConfigError:
                raise
            except CacheClusterError as exc:  # name the document in the master's answer
                raise type(exc)(f"{doc.where}: {exc}") from None
            if result:
                say(f"{doc.resource} {result}")
            if isinstance(doc.spec, DataLoadSpec):
                loads.append((doc, since_run))
    if not args.wait:
        return 0
    code = 0
    for doc, since_run in loads:
        load = await wait_for_dataload(
            master, doc.namespace, doc.name, token=token, since_run=since_run
        )
        print(outcome_line(load), flush=True)
        if load.status.phase != "Complete":
            code = 1
    return code


def cmd_apply(args: argparse.Namespace) -> int:
    """``apply -f``."""
    return asyncio.run(_apply(args))


# ------------------------------------------------------------------ delete


async def delete_one(stubs: Stubs, category: str, namespace: str, name: str) -> bool:
    """Delete one object of ``category``; False when it did not exist."""
    ref = _ref(namespace, name)
    with rpc_errors():
        if category == "Dataset":
            return (
                await stubs.datasets.DeleteDataset(
                    master_pb2.DeleteDatasetRequest(ref=ref), timeout=RPC_TIMEOUT_S
                )
            ).deleted
        if category == "CacheRuntime":
            return (
                await stubs.resources.DeleteRuntime(
                    resources_pb2.DeleteRuntimeRequest(ref=ref), timeout=RPC_TIMEOUT_S
                )
            ).deleted
        if category == "DataLoad":
            return (
                await stubs.dataloads.DeleteDataLoad(
                    dataload_pb2.DeleteDataLoadRequest(ref=ref), timeout=RPC_TIMEOUT_S
                )
            ).deleted
        if category == "Secret":
            return (
                await stubs.resources.DeleteSecret(
                    resources_pb2.DeleteSecretRequest(ref=ref), timeout=RPC_TIMEOUT_S
                )
            ).deleted
    raise InvalidArgument(f"cannot delete a {category}")


async def _runtime_resource(stubs: Stubs, namespace: str, name: str, default: str) -> str:
    """``jindoruntime.data.fluid.io/NAME`` for a runtime applied as a JindoRuntime."""
    try:
        with rpc_errors():
            found = await stubs.resources.GetRuntime(
                resources_pb2.GetRuntimeRequest(ref=_ref(namespace, name)), timeout=RPC_TIMEOUT_S
            )
    except NotFound:
        return default
    group = found.runtime.api_version.rpartition("/")[0]
    return f"{found.runtime.kind.lower()}.{group}/{name}"


_DELETE_ORDER = {"DataLoad": 0, "Dataset": 1, "CacheRuntime": 2, "Secret": 3}
_KINDS = {
    "dataset": ("Dataset", "dataset.data.fluid.io"),
    "runtime": ("CacheRuntime", "cacheruntime.cachecluster.io"),
    "dataload": ("DataLoad", "dataload.data.fluid.io"),
    "secret": ("Secret", "secret"),
}


async def _delete(args: argparse.Namespace) -> int:
    targets: list[tuple[str, str, str, str]] = []  # category, namespace, name, resource
    if args.filename:
        if args.kind or args.ref:
            raise InvalidArgument("give either -f FILE or KIND NS/NAME, not both")
        text, source = read_source(args.filename)
        documents = parse_documents(text, source)
        documents.sort(key=lambda d: (_DELETE_ORDER[d.category], d.index))
        targets = [(d.category, d.namespace, d.name, d.resource) for d in documents]
    else:
        if not args.kind or not args.ref:
            raise InvalidArgument("expected -f FILE, or dataset|runtime|dataload|secret NS/NAME")
        category, resource = _KINDS[args.kind]
        namespace, name = parse_ref(args.ref)
        targets = [(category, namespace, name, f"{resource}/{name}")]
    missing = 0
    async with open_channel(resolve_master(args), resolve_cli_token(args)) as channel:
        stubs = Stubs(channel)
        for category, namespace, name, resource in targets:
            if category == "CacheRuntime" and not args.filename:
                resource = await _runtime_resource(stubs, namespace, name, resource)
            if await delete_one(stubs, category, namespace, name):
                print(f"{resource} deleted", flush=True)
            else:
                print(f"{resource} not found (namespace {namespace})", file=sys.stderr)
                missing += 1
    return to_exit_code(NotFound("")) if missing else 0


def cmd_delete(args: argparse.Namespace) -> int:
    """``delete``."""
    return asyncio.run(_delete(args))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``apply`` and ``delete``."""
    apply = sub.add_parser(
        "apply",
        help="apply Secret, Dataset, runtime and DataLoad documents (Fluid's YAML)",
        description="Validate every document of FILE, then apply them (secrets first).",
    )
    apply.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    apply.add_argument(
        "--wait", action="store_true", help="follow the file's DataLoads until they finish"
    )
    add_token_argument(apply)
    add_master_argument(apply)
    apply.set_defaults(handler=cmd_apply)

    delete = sub.add_parser(
        "delete",
        help="delete the documents of a file, or one object",
        description="delete -f FILE, or delete dataset|runtime|dataload|secret NS/NAME",
    )
    delete.add_argument("kind", nargs="?", choices=sorted(_KINDS), help="what to delete")
    delete.add_argument("ref", nargs="?", help="NS/NAME (NAME alone: namespace default)")
    delete.add_argument("-f", "--filename", default=None, help="YAML file, or - for stdin")
    add_token_argument(delete)
    add_master_argument(delete)
    delete.set_defaults(handler=cmd_delete)
