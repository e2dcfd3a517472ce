"""Typed stubs of status_pb2_grpc for grpc.aio, by cachecluster.protos.generate. DO NOT EDIT."""

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from cachecluster.protos import status_pb2

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


class StatusServiceStub:
    def __init__(self, channel: grpc.aio.Channel) -> None: ...
    GetDatasetStatus: _UnaryUnary[status_pb2.GetDatasetStatusRequest, status_pb2.GetDatasetStatusResponse]
    ListDatasetStatus: _UnaryUnary[status_pb2.ListDatasetStatusRequest, status_pb2.ListDatasetStatusResponse]
    ListRuntimeStatus: _UnaryUnary[status_pb2.ListRuntimeStatusRequest, status_pb2.ListRuntimeStatusResponse]

class StatusServiceServicer:
    async def GetDatasetStatus(
        self, request: status_pb2.GetDatasetStatusRequest, context: grpc.aio.ServicerContext
    ) -> status_pb2.GetDatasetStatusResponse:
        """One dataset's figures; a reference dataset mirrors its source's, restricted to its subpath."""
        ...
    async def ListDatasetStatus(
        self, request: status_pb2.ListDatasetStatusRequest, context: grpc.aio.ServicerContext
    ) -> status_pb2.ListDatasetStatusResponse:
        """Figures of every dataset of a namespace ("" = every namespace the caller may see)."""
        ...
    async def ListRuntimeStatus(
        self, request: status_pb2.ListRuntimeStatusRequest, context: grpc.aio.ServicerContext
    ) -> status_pb2.ListRuntimeStatusResponse:
        """Runtimes with their master, worker and FUSE phases."""
        ...

def add_StatusServiceServicer_to_server(
    servicer: StatusServiceServicer, server: grpc.aio.Server
) -> None: ...
