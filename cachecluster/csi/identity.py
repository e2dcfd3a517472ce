"""The CSI Identity service: who the plugin is, and that it is ready."""

from __future__ import annotations

import grpc
from google.protobuf import wrappers_pb2

from cachecluster import __version__
from cachecluster.common.grpc_errors import grpc_servicer
from cachecluster.operator.naming import CSI_DRIVER
from cachecluster.protos import csi_pb2, csi_pb2_grpc


@grpc_servicer
class IdentityServicer(csi_pb2_grpc.IdentityServicer):
    """Name ``csi.cachecluster.io``, our version, no plugin-wide capabilities.

    A node-only plugin advertises no CONTROLLER_SERVICE: PVs are created by
    the operator, and kubelet calls only the Node service.
    """

    async def GetPluginInfo(
        self, request: csi_pb2.GetPluginInfoRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GetPluginInfoResponse:
        return csi_pb2.GetPluginInfoResponse(name=CSI_DRIVER, vendor_version=__version__)

    async def GetPluginCapabilities(
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.GetPluginCapabilitiesResponse:
        return csi_pb2.GetPluginCapabilitiesResponse()

    async def Probe(
        self, request: csi_pb2.ProbeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.ProbeResponse:
        # Serving means ready: the published targets are loaded before the server starts.
        return csi_pb2.ProbeResponse(ready=wrappers_pb2.BoolValue(value=True))
