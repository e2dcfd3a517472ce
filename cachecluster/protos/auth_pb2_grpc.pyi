"""Typed stubs of auth_pb2_grpc for grpc.aio, by cachecluster.protos.generate. DO NOT EDIT."""

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from cachecluster.protos import auth_pb2

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


class AuthServiceStub:
    def __init__(self, channel: grpc.aio.Channel) -> None: ...
    IssueCapability: _UnaryUnary[auth_pb2.IssueCapabilityRequest, auth_pb2.IssueCapabilityResponse]

class AuthServiceServicer:
    async def IssueCapability(
        self, request: auth_pb2.IssueCapabilityRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.IssueCapabilityResponse:
        """A signed, expiring read capability for the mounts of one dataset (a reference dataset: its source's mounts, limited to its subpath). NotFound for a dataset the caller's namespace cannot see."""
        ...

def add_AuthServiceServicer_to_server(
    servicer: AuthServiceServicer, server: grpc.aio.Server
) -> None: ...
