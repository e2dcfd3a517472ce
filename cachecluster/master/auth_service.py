"""``AuthService``: the master hands out read capabilities (see :mod:`cachecluster.common.auth`).

A caller gets a capability for a dataset it may see (:mod:`~cachecluster.master.access`);
it covers the mounts that serve the dataset, with a path prefix per mount for
a subpath reference. Without a cluster secret the answer says none is needed.
"""

from __future__ import annotations

import grpc

from cachecluster.common.auth import DEFAULT_CAPABILITY_TTL, issue_capability
from cachecluster.common.errors import InvalidArgument
from cachecluster.common.grpc_errors import grpc_servicer
from cachecluster.master import access
from cachecluster.master.datasets import DatasetRegistry
from cachecluster.protos import auth_pb2, auth_pb2_grpc


@grpc_servicer
class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """Issues capabilities signed with the cluster secret (``None``: open mode)."""

    def __init__(
        self,
        registry: DatasetRegistry,
        secret: bytes | None,
        *,
        ttl: float = DEFAULT_CAPABILITY_TTL,
    ) -> None:
        self._registry = registry
        self._secret = secret
        self._ttl = ttl

    async def IssueCapability(
        self, request: auth_pb2.IssueCapabilityRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.IssueCapabilityResponse:
        namespace, name = request.dataset.namespace, request.dataset.name
        if not namespace or not name:
            raise InvalidArgument("dataset: namespace and name are required")
        access.check_visible(namespace, name)
        record = self._registry.get(namespace, name)
        if self._secret is None:
            return auth_pb2.IssueCapabilityResponse(required=False)
        who = access.caller() or namespace
        mounts = access.capability_mounts(self._registry, record)
        capability, expires = issue_capability(self._secret, who, mounts, self._ttl)
        return auth_pb2.IssueCapabilityResponse(
            capability=capability,
            expires_at_ms=int(expires * 1000),
            required=True,
            namespace=who,
        )
