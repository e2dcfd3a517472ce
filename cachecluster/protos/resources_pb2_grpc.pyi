"""Typed stubs of resources_pb2_grpc for grpc.aio, by cachecluster.protos.generate. DO NOT EDIT."""

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from cachecluster.protos import resources_pb2

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Metadata = Sequence[tuple[str, str | bytes]]

class _UnaryUnary(Generic[_Request, _Response]):
    def __call__(
        self,
        request: _Request,
        *,
        timeout: float | None = ...,
        metadata: _Metadata | None = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> Awaitable[_Response]: ...

class _UnaryStream(Generic[_Request, _Response]):
    def __call__(
        self,
        request: _Request,
        *,
        timeout: float | None = ...,
        metadata: _Metadata | None = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> AsyncIterator[_Response]: ...

class _StreamUnary(Generic[_Request, _Response]):
    def __call__(
        self,
        request_iterator: AsyncIterable[_Request] | Iterable[_Request],
        *,
        timeout: float | None = ...,
        metadata: _Metadata | None = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> Awaitable[_Response]: ...

class _StreamStream(Generic[_Request, _Response]):
    def __call__(
        self,
        request_iterator: AsyncIterable[_Request] | Iterable[_Request],
        *,
        timeout: float | None = ...,
        metadata: _Metadata | None = ...,
        credentials: Any = ...,
        wait_for_ready: bool | None = ...,
        compression: Any = ...,
    ) -> AsyncIterator[_Response]: ...


class ResourceServiceStub:
    def __init__(self, channel: grpc.aio.Channel) -> None: ...
    PutSecret: _UnaryUnary[resources_pb2.PutSecretRequest, resources_pb2.PutSecretResponse]
    DeleteSecret: _UnaryUnary[resources_pb2.DeleteSecretRequest, resources_pb2.DeleteSecretResponse]
    ListSecrets: _UnaryUnary[resources_pb2.ListSecretsRequest, resources_pb2.ListSecretsResponse]
    ApplyRuntime: _UnaryUnary[resources_pb2.ApplyRuntimeRequest, resources_pb2.ApplyRuntimeResponse]
    GetRuntime: _UnaryUnary[resources_pb2.GetRuntimeRequest, resources_pb2.GetRuntimeResponse]
    ListRuntimes: _UnaryUnary[resources_pb2.ListRuntimesRequest, resources_pb2.ListRuntimesResponse]
    DeleteRuntime: _UnaryUnary[resources_pb2.DeleteRuntimeRequest, resources_pb2.DeleteRuntimeResponse]

class ResourceServiceServicer:
    async def PutSecret(
        self, request: resources_pb2.PutSecretRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.PutSecretResponse:
        """Create or replace a secret. Its values are stored on the master's disk (mode 0600) and used to resolve datasets' encryptOptions."""
        ...
    async def DeleteSecret(
        self, request: resources_pb2.DeleteSecretRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.DeleteSecretResponse:
        """Refused while a dataset's encryptOptions name the secret."""
        ...
    async def ListSecrets(
        self, request: resources_pb2.ListSecretsRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.ListSecretsResponse:
        """Names and keys only, never values."""
        ...
    async def ApplyRuntime(
        self, request: resources_pb2.ApplyRuntimeRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.ApplyRuntimeResponse:
        """Create or update a runtime; datasets bind to it (see Runtime.datasets)."""
        ...
    async def GetRuntime(
        self, request: resources_pb2.GetRuntimeRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.GetRuntimeResponse:
        ...
    async def ListRuntimes(
        self, request: resources_pb2.ListRuntimesRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.ListRuntimesResponse:
        ...
    async def DeleteRuntime(
        self, request: resources_pb2.DeleteRuntimeRequest, context: grpc.aio.ServicerContext
    ) -> resources_pb2.DeleteRuntimeResponse:
        ...

def add_ResourceServiceServicer_to_server(
    servicer: ResourceServiceServicer, server: grpc.aio.Server
) -> None: ...
