"""Typed stubs of dataload_pb2_grpc for grpc.aio, by cachecluster.protos.generate. DO NOT EDIT."""

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from cachecluster.protos import dataload_pb2

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


class DataLoadServiceStub:
    def __init__(self, channel: grpc.aio.Channel) -> None: ...
    ApplyDataLoad: _UnaryUnary[dataload_pb2.ApplyDataLoadRequest, dataload_pb2.ApplyDataLoadResponse]
    GetDataLoad: _UnaryUnary[dataload_pb2.GetDataLoadRequest, dataload_pb2.GetDataLoadResponse]
    ListDataLoads: _UnaryUnary[dataload_pb2.ListDataLoadsRequest, dataload_pb2.ListDataLoadsResponse]
    DeleteDataLoad: _UnaryUnary[dataload_pb2.DeleteDataLoadRequest, dataload_pb2.DeleteDataLoadResponse]

class DataLoadServiceServicer:
    async def ApplyDataLoad(
        self, request: dataload_pb2.ApplyDataLoadRequest, context: grpc.aio.ServicerContext
    ) -> dataload_pb2.ApplyDataLoadResponse:
        """Create a DataLoad, or replace one whose spec changed (it runs again). Applying the same spec again changes nothing."""
        ...
    async def GetDataLoad(
        self, request: dataload_pb2.GetDataLoadRequest, context: grpc.aio.ServicerContext
    ) -> dataload_pb2.GetDataLoadResponse:
        ...
    async def ListDataLoads(
        self, request: dataload_pb2.ListDataLoadsRequest, context: grpc.aio.ServicerContext
    ) -> dataload_pb2.ListDataLoadsResponse:
        ...
    async def DeleteDataLoad(
        self, request: dataload_pb2.DeleteDataLoadRequest, context: grpc.aio.ServicerContext
    ) -> dataload_pb2.DeleteDataLoadResponse:
        """Delete a DataLoad; a run in progress is cancelled."""
        ...

def add_DataLoadServiceServicer_to_server(
    servicer: DataLoadServiceServicer, server: grpc.aio.Server
) -> None: ...
