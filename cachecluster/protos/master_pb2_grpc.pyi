"""Typed stubs of master_pb2_grpc for grpc.aio, by cachecluster.protos.generate. DO NOT EDIT."""

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from cachecluster.protos import master_pb2

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


class MasterServiceStub:
    """Worker membership and placement."""
    def __init__(self, channel: grpc.aio.Channel) -> None: ...
    RegisterWorker: _UnaryUnary[master_pb2.RegisterWorkerRequest, master_pb2.RegisterWorkerResponse]
    ReportBlocks: _StreamUnary[master_pb2.ReportBlocksRequest, master_pb2.ReportBlocksResponse]
    Heartbeat: _UnaryUnary[master_pb2.HeartbeatRequest, master_pb2.HeartbeatResponse]
    GetRing: _UnaryUnary[master_pb2.GetRingRequest, master_pb2.GetRingResponse]
    ListWorkers: _UnaryUnary[master_pb2.ListWorkersRequest, master_pb2.ListWorkersResponse]

class MasterServiceServicer:
    """Worker membership and placement."""
    async def RegisterWorker(
        self, request: master_pb2.RegisterWorkerRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.RegisterWorkerResponse:
        """A worker joins, or rejoins after a restart or after the master lost it. Its blocks come inline when few, else in ReportBlocks right after."""
        ...
    async def ReportBlocks(
        self, request_iterator: AsyncIterator[master_pb2.ReportBlocksRequest], context: grpc.aio.ServicerContext
    ) -> master_pb2.ReportBlocksResponse:
        """The blocks a worker holds, in chunks: a full report after RegisterWorker, or deltas (added, removed) later."""
        ...
    async def Heartbeat(
        self, request: master_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.HeartbeatResponse:
        """Liveness and usage, every heartbeat_interval_ms. A worker missing several beats becomes SUSPECT, then LOST and leaves the ring."""
        ...
    async def GetRing(
        self, request: master_pb2.GetRingRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.GetRingResponse:
        """The ring readers compute block owners from; fetched again when the epoch changes."""
        ...
    async def ListWorkers(
        self, request: master_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.ListWorkersResponse:
        """Every worker with its usage, for `cachecluster status`."""
        ...

def add_MasterServiceServicer_to_server(
    servicer: MasterServiceServicer, server: grpc.aio.Server
) -> None: ...

class MetadataServiceStub:
    """File metadata of datasets, cached by the master from the UFS."""
    def __init__(self, channel: grpc.aio.Channel) -> None: ...
    GetStatus: _UnaryUnary[master_pb2.GetStatusRequest, master_pb2.GetStatusResponse]
    ListStatus: _UnaryUnary[master_pb2.ListStatusRequest, master_pb2.ListStatusResponse]
    GetMount: _UnaryUnary[master_pb2.GetMountRequest, master_pb2.GetMountResponse]
    WatchMounts: _UnaryStream[master_pb2.WatchMountsRequest, master_pb2.WatchMountsResponse]

class MetadataServiceServicer:
    """File metadata of datasets, cached by the master from the UFS."""
    async def GetStatus(
        self, request: master_pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.GetStatusResponse:
        """One file or directory; NOT_FOUND when the path does not exist."""
        ...
    async def ListStatus(
        self, request: master_pb2.ListStatusRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.ListStatusResponse:
        """The entries of a directory, one page at a time."""
        ...
    async def GetMount(
        self, request: master_pb2.GetMountRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.GetMountResponse:
        """Where a mount's bytes come from: workers resolve the mount id of a block request into a UFS backend with it. Options may hold credentials."""
        ...
    def WatchMounts(
        self, request: master_pb2.WatchMountsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[master_pb2.WatchMountsResponse]:
        """Every mount the master serves, at once and again after each change, until the call's deadline or the master stops: workers open the mounts' backends before the first read needs them. Options may hold credentials."""
        ...

def add_MetadataServiceServicer_to_server(
    servicer: MetadataServiceServicer, server: grpc.aio.Server
) -> None: ...

class DatasetServiceStub:
    """The dataset registry. Specs travel as JSON so that they can grow without changing this file; the master validates them."""
    def __init__(self, channel: grpc.aio.Channel) -> None: ...
    ApplyDataset: _UnaryUnary[master_pb2.ApplyDatasetRequest, master_pb2.ApplyDatasetResponse]
    GetDataset: _UnaryUnary[master_pb2.GetDatasetRequest, master_pb2.GetDatasetResponse]
    ListDatasets: _UnaryUnary[master_pb2.ListDatasetsRequest, master_pb2.ListDatasetsResponse]
    DeleteDataset: _UnaryUnary[master_pb2.DeleteDatasetRequest, master_pb2.DeleteDatasetResponse]

class DatasetServiceServicer:
    """The dataset registry. Specs travel as JSON so that they can grow without changing this file; the master validates them."""
    async def ApplyDataset(
        self, request: master_pb2.ApplyDatasetRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.ApplyDatasetResponse:
        """Create or update a dataset from its spec."""
        ...
    async def GetDataset(
        self, request: master_pb2.GetDatasetRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.GetDatasetResponse:
        ...
    async def ListDatasets(
        self, request: master_pb2.ListDatasetsRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.ListDatasetsResponse:
        ...
    async def DeleteDataset(
        self, request: master_pb2.DeleteDatasetRequest, context: grpc.aio.ServicerContext
    ) -> master_pb2.DeleteDatasetResponse:
        ...

def add_DatasetServiceServicer_to_server(
    servicer: DatasetServiceServicer, server: grpc.aio.Server
) -> None: ...
