"""Typed stubs of worker_pb2_grpc for grpc.aio, by cachecluster.protos.generate. DO NOT EDIT."""

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from cachecluster.protos import worker_pb2

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


class WorkerServiceStub:
    """Called by the master (DataLoad, eviction) and by `cachecluster status`."""
    def __init__(self, channel: grpc.aio.Channel) -> None: ...
    LoadBlocks: _UnaryUnary[worker_pb2.LoadBlocksRequest, worker_pb2.LoadBlocksResponse]
    EvictBlocks: _UnaryUnary[worker_pb2.EvictBlocksRequest, worker_pb2.EvictBlocksResponse]
    GetStats: _UnaryUnary[worker_pb2.GetStatsRequest, worker_pb2.GetStatsResponse]

class WorkerServiceServicer:
    """Called by the master (DataLoad, eviction) and by `cachecluster status`."""
    async def LoadBlocks(
        self, request: worker_pb2.LoadBlocksRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.LoadBlocksResponse:
        """Fetch blocks from the UFS into the cache. One result per block, in request order; a failed block does not fail the call."""
        ...
    async def EvictBlocks(
        self, request: worker_pb2.EvictBlocksRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.EvictBlocksResponse:
        """Drop blocks from every tier. Unknown ids are counted, not errors."""
        ...
    async def GetStats(
        self, request: worker_pb2.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.GetStatsResponse:
        """Tiers, counters and block count, now."""
        ...

def add_WorkerServiceServicer_to_server(
    servicer: WorkerServiceServicer, server: grpc.aio.Server
) -> None: ...
