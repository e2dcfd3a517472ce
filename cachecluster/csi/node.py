"""The CSI Node service: checks each request, then lets :class:`VolumePublisher` act.

Codes, as the CSI spec asks: a missing or malformed field, block access or
an unknown access mode is INVALID_ARGUMENT; a ``fusePath`` that does not exist
is NOT_FOUND ("volume does not exist"); a target already mounted otherwise is
ALREADY_EXISTS ("published but incompatible"); a FUSE mount that is down is
UNAVAILABLE (kubelet retries). All of them go through the one error map.
"""

from __future__ import annotations

import os

import grpc

from cachecluster.common.errors import InvalidArgument
from cachecluster.common.grpc_errors import grpc_servicer
from cachecluster.csi.publisher import VolumePublisher
from cachecluster.operator.naming import CSI_CONTEXT_FUSE_PATH
from cachecluster.protos import csi_pb2, csi_pb2_grpc

Mode = csi_pb2.VolumeCapability.AccessMode.Mode

READER_ONLY_MODES = frozenset({Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY})
"""Access modes that publish read-only whatever ``readonly`` says (ReadOnlyMany is one)."""

KNOWN_MODES = frozenset(Mode.values()) - {Mode.UNKNOWN}


def _require_target(volume_id: str, target: str) -> str:
    if not volume_id:
        raise InvalidArgument("volume_id is required")
    if not target:
        raise InvalidArgument(f"volume {volume_id}: target_path is required")
    if not os.path.isabs(target):
        raise InvalidArgument(f"volume {volume_id}: target_path {target!r} is not absolute")
    return os.path.normpath(target)


def _read_only(request: csi_pb2.NodePublishVolumeRequest) -> bool:
    """Whether the request publishes read-only; refuses capabilities we cannot serve."""
    volume_id = request.volume_id
    if not request.HasField("volume_capability"):
        raise InvalidArgument(f"volume {volume_id}: volume_capability is required")
    capability = request.volume_capability
    access = capability.WhichOneof("access_type")
    if access == "block":
        raise InvalidArgument(
            f"volume {volume_id}: block access is not supported, cachecluster volumes "
            "are file systems (volumeMode: Filesystem)"
        )
    if access != "mount":
        raise InvalidArgument(f"volume {volume_id}: volume_capability names no access type")
    mode = capability.access_mode.mode
    if mode not in KNOWN_MODES:
        raise InvalidArgument(f"volume {volume_id}: access mode {mode} is unknown or unset")
    return request.readonly or mode in READER_ONLY_MODES


@grpc_servicer
class NodeServicer(csi_pb2_grpc.NodeServicer):
    """Publish, unpublish, capabilities (none) and info of the node ``node_id``."""

    def __init__(self, node_id: str, publisher: VolumePublisher) -> None:
        self.node_id = node_id
        self.publisher = publisher

    async def NodePublishVolume(
        self, request: csi_pb2.NodePublishVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodePublishVolumeResponse:
        target = _require_target(request.volume_id, request.target_path)
        read_only = _read_only(request)
        source = request.volume_context.get(CSI_CONTEXT_FUSE_PATH, "")
        if not source:
            raise InvalidArgument(
                f"volume {request.volume_id}: volume_context has no {CSI_CONTEXT_FUSE_PATH} "
                "(the PV's spec.csi.volumeAttributes)"
            )
        await self.publisher.publish(request.volume_id, target, source, read_only=read_only)
        return csi_pb2.NodePublishVolumeResponse()

    async def NodeUnpublishVolume(
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        target = _require_target(request.volume_id, request.target_path)
        await self.publisher.unpublish(request.volume_id, target)
        return csi_pb2.NodeUnpublishVolumeResponse()

    async def NodeGetCapabilities(
        self, request: csi_pb2.NodeGetCapabilitiesRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeGetCapabilitiesResponse:
        return csi_pb2.NodeGetCapabilitiesResponse()  # no staging, no stats, no expansion

    async def NodeGetInfo(
        self, request: csi_pb2.NodeGetInfoRequest, context: grpc.aio.ServicerContext
    ) -> csi_pb2.NodeGetInfoResponse:
        return csi_pb2.NodeGetInfoResponse(node_id=self.node_id)
