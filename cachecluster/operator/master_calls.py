"""The operator's calls to a runtime's master, over the gRPC path ``cachecluster apply`` uses.

Registering a dataset sends its Secrets, then the Dataset, through
:func:`cachecluster.cli.apply_cmds.apply_document` (the one place that turns a
document into master calls); deleting goes through
:func:`~cachecluster.cli.apply_cmds.delete_one`. The token is an admin token
minted from the runtime's cluster secret (the hex value of its Secret),
valid a few minutes: the operator holds the secret, never a long-lived token.
"""

from __future__ import annotations

from cachecluster.api import Document, SecretDoc
from cachecluster.cli.apply_cmds import Stubs, apply_document, delete_one
from cachecluster.cli.load_cmds import open_channel
from cachecluster.common.auth import ADMIN_NAMESPACE, issue_token, parse_secret
from cachecluster.common.errors import NotFound
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.operator import naming
from cachecluster.operator.dataset_objects import DatasetPlan
from cachecluster.protos import dataload_pb2, master_pb2, status_pb2, status_pb2_grpc

TOKEN_TTL_S = 300.0
RPC_TIMEOUT_S = 15.0


def admin_token(secret_hex: str, runtime: tuple[str, str]) -> str:
    """A short-lived admin token signed with the runtime's cluster secret."""
    where = f"Secret {runtime[0]}/{naming.cluster_secret_name(runtime[1])}"
    return issue_token(parse_secret(secret_hex, where), ADMIN_NAMESPACE, TOKEN_TTL_S)


def _ignore(_: str) -> None:
    """``apply_document`` reports runtimes through a callback; datasets need none."""


async def register_dataset(address: str, token: str, plan: DatasetPlan) -> str:
    """Send the plan's Secrets then its Dataset; ``created``, ``configured`` or ``unchanged``.

    A reference waits (``NotFound``) until its source is registered on the
    same master: the master would refuse it otherwise.
    """
    async with open_channel(address, token) as channel:
        stubs = Stubs(channel)
        source = plan.spec.reference
        if source is not None and await stubs.dataset_spec(source.namespace, source.name) is None:
            raise NotFound(
                f"Dataset {plan.ref}: its source {source.namespace}/{source.name} is not "
                f"registered on the master {address} yet"
            )
        for secret in plan.secrets:
            await apply_document(stubs, _document("Secret", "v1", secret), _ignore, None)
        document = Document("Dataset", naming.API_VERSION, plan.namespace, plan.name, plan.spec)
        result, _ = await apply_document(stubs, document, _ignore, None)
    return result


def _document(kind: str, api_version: str, secret: SecretDoc) -> Document:
    return Document(kind, api_version, secret.namespace, secret.name, secret)


async def delete_dataset(address: str, token: str, namespace: str, name: str) -> bool:
    """Delete a dataset on the master (refused while references point at it)."""
    async with open_channel(address, token) as channel:
        return await delete_one(Stubs(channel), "Dataset", namespace, name)


async def delete_dataload(address: str, token: str, namespace: str, name: str) -> bool:
    """Forget a DataLoad's record (and stop its run) on the master."""
    async with open_channel(address, token) as channel:
        return await delete_one(Stubs(channel), "DataLoad", namespace, name)


async def dataset_status(
    address: str, token: str, namespace: str, name: str
) -> status_pb2.DatasetStatus:
    """The figures ``cachecluster get datasets`` prints for one dataset."""
    async with open_channel(address, token) as channel:
        stub = status_pb2_grpc.StatusServiceStub(channel)
        with rpc_errors():
            answer = await stub.GetDatasetStatus(
                status_pb2.GetDatasetStatusRequest(
                    ref=master_pb2.DatasetRef(namespace=namespace, name=name)
                ),
                timeout=RPC_TIMEOUT_S,
            )
    return answer.status


async def dataload_record(
    address: str, token: str, namespace: str, name: str
) -> dataload_pb2.DataLoad | None:
    """The master's record of a DataLoad's run, None before the first run registered it."""
    async with open_channel(address, token) as channel:
        stubs = Stubs(channel)
        try:
            with rpc_errors():
                answer = await stubs.dataloads.GetDataLoad(
                    dataload_pb2.GetDataLoadRequest(
                        ref=master_pb2.DatasetRef(namespace=namespace, name=name)
                    ),
                    timeout=RPC_TIMEOUT_S,
                )
        except NotFound:
            return None
    return answer.dataload
