"""Typed stubs of csi_pb2_grpc for grpc.aio, by cachecluster.protos.generate. DO NOT EDIT."""

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from cachecluster.protos import csi_pb2

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


class IdentityStub:
    """Who the plugin is and whether it is ready."""
    def __init__(self, channel: grpc.aio.Channel) -> None: ...
    GetPluginInfo: _UnaryUnary[csi_pb2.GetPluginInfoRequest, csi_pb2.GetPluginInfoResponse]
    GetPluginCapabilities: _UnaryUnary[csi_pb2.GetPluginCapabilitiesRequest, csi_pb2.GetPluginCapabilitiesResponse]
    Probe: _UnaryUnary[csi_pb2.ProbeRequest, csi_pb2.ProbeResponse]

class IdentityServicer:
    """Who the plugin is and whether it is ready."""
    async def GetPluginInfo(
        self, request: csi_pb2.GetPluginInfoRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GetPluginInfoResponse:
        """Driver name (csi.cachecluster.io) and version."""
        ...
    async def GetPluginCapabilities(
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GetPluginCapabilitiesResponse:
        """Plugin-wide capabilities; a node-only plugin advertises none."""
        ...
    async def Probe(
        self, request: csi_pb2.ProbeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.ProbeResponse:
        """Readiness of the plugin."""
        ...

def add_IdentityServicer_to_server(
    servicer: IdentityServicer, server: grpc.aio.Server
) -> None: ...

class NodeStub:
    """Node-side volume operations. NodeStageVolume, NodeUnstageVolume, NodeExpandVolume and NodeGetVolumeStats are not served (not advertised)."""
    def __init__(self, channel: grpc.aio.Channel) -> None: ...
    NodePublishVolume: _UnaryUnary[csi_pb2.NodePublishVolumeRequest, csi_pb2.NodePublishVolumeResponse]
    NodeUnpublishVolume: _UnaryUnary[csi_pb2.NodeUnpublishVolumeRequest, csi_pb2.NodeUnpublishVolumeResponse]
    NodeGetCapabilities: _UnaryUnary[csi_pb2.NodeGetCapabilitiesRequest, csi_pb2.NodeGetCapabilitiesResponse]
    NodeGetInfo: _UnaryUnary[csi_pb2.NodeGetInfoRequest, csi_pb2.NodeGetInfoResponse]

class NodeServicer:
    """Node-side volume operations. NodeStageVolume, NodeUnstageVolume, NodeExpandVolume and NodeGetVolumeStats are not served (not advertised)."""
    async def NodePublishVolume(
        self, request: csi_pb2.NodePublishVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodePublishVolumeResponse:
        """Bind-mount a dataset's FUSE path onto the pod's target path."""
        ...
    async def NodeUnpublishVolume(
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        """Unmount the target path and remove it."""
        ...
    async def NodeGetCapabilities(
        self, request: csi_pb2.NodeGetCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeGetCapabilitiesResponse:
        """The node service's optional RPCs: none."""
        ...
    async def NodeGetInfo(
        self, request: csi_pb2.NodeGetInfoRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeGetInfoResponse:
        """The node id given on the command line."""
        ...

def add_NodeServicer_to_server(
    servicer: NodeServicer, server: grpc.aio.Server
) -> None: ...
