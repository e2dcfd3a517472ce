"""The plugin process: Identity and info calls, requests refused with the CSI codes,
unpublish of nothing, clean SIGTERM, bad flags. No FUSE needed: nothing is mounted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from cachecluster import __version__
from cachecluster.operator.naming import CSI_DRIVER
from cachecluster.protos import csi_pb2
from tests.csi.conftest import NODE_ID, Mode, Plugin, mounts_under, publish_request

Code = grpc.StatusCode


async def test_identity_and_node_info(csi_plugin: Plugin) -> None:
    async with csi_plugin.stubs() as (identity, node):
        info = await identity.GetPluginInfo(csi_pb2.GetPluginInfoRequest())
        capabilities = await identity.GetPluginCapabilities(csi_pb2.GetPluginCapabilitiesRequest())
        probe = await identity.Probe(csi_pb2.ProbeRequest())
        node_info = await node.NodeGetInfo(csi_pb2.NodeGetInfoRequest())
        node_capabilities = await node.NodeGetCapabilities(csi_pb2.NodeGetCapabilitiesRequest())
    assert (info.name, info.vendor_version) == (CSI_DRIVER, __version__)
    assert list(capabilities.capabilities) == []  # node-only: no controller service
    assert probe.HasField("ready") and probe.ready.value
    assert node_info.node_id == NODE_ID
    assert list(node_capabilities.capabilities) == []  # no STAGE_UNSTAGE_VOLUME


def _bad_requests(
    plugin: Plugin,
) -> list[tuple[str, csi_pb2.NodePublishVolumeRequest, grpc.StatusCode, str]]:
    target = plugin.pods / "pod-1" / "volume"
    plain = plugin.fuse_root / "not-fuse" / "ds"  # exists, but no FUSE mount holds it
    plain.mkdir(parents=True)
    link = plugin.fuse_root / "linked"
    link.symlink_to("/etc")
    good = publish_request(target, str(plugin.fuse_root / "fuse" / "ta" / "data"))

    def changed(**fields: object) -> csi_pb2.NodePublishVolumeRequest:
        request = csi_pb2.NodePublishVolumeRequest()
        request.CopyFrom(good)
        for name, value in fields.items():
            if value is None:
                request.ClearField(name)
            else:
                setattr(request, name, value)
        return request

    block = changed()
    block.volume_capability.block.SetInParent()
    unknown_mode = changed()
    unknown_mode.volume_capability.access_mode.mode = Mode.UNKNOWN
    no_fuse_path = changed()
    del no_fuse_path.volume_context["fusePath"]
    outside = publish_request(target, "/etc")
    escaping = publish_request(target, str(plugin.fuse_root / "fuse" / ".." / ".." / "etc"))
    return [
        ("no volume id", changed(volume_id=""), Code.INVALID_ARGUMENT, "volume_id is required"),
        ("no target", changed(target_path=""), Code.INVALID_ARGUMENT, "target_path is required"),
        ("relative target", changed(target_path="pods/x"), Code.INVALID_ARGUMENT, "not absolute"),
        (
            "no capability",
            changed(volume_capability=None),
            Code.INVALID_ARGUMENT,
            "volume_capability is required",
        ),
        ("block", block, Code.INVALID_ARGUMENT, "block access is not supported"),
        ("unknown mode", unknown_mode, Code.INVALID_ARGUMENT, "access mode 0 is unknown"),
        ("no fusePath", no_fuse_path, Code.INVALID_ARGUMENT, "volume_context has no fusePath"),
        ("outside root", outside, Code.INVALID_ARGUMENT, "outside the FUSE root"),
        ("escaping root", escaping, Code.INVALID_ARGUMENT, "outside the FUSE root"),
        ("unknown fusePath", good, Code.NOT_FOUND, "does not exist"),
        (
            "symbolic link",
            publish_request(target, str(link)),
            Code.INVALID_ARGUMENT,
            "passes through a symbolic link (to /etc)",
        ),
        (
            "not on FUSE",
            publish_request(target, str(plain)),
            Code.UNAVAILABLE,
            "is not on a FUSE mount",
        ),
    ]


async def test_bad_publish_requests_get_the_spec_codes_and_one_line(csi_plugin: Plugin) -> None:
    async with csi_plugin.stubs() as (_, node):
        for what, request, code, message in _bad_requests(csi_plugin):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await node.NodePublishVolume(request)
            details = caught.value.details() or ""
            assert caught.value.code() == code, f"{what}: {details}"
            assert message in details, what
            assert "\n" not in details, what
            if request.volume_id:
                assert details.startswith(f"volume {request.volume_id}: "), what
    assert mounts_under(csi_plugin.dir) == []
    assert not (csi_plugin.pods / "pod-1" / "volume").exists()


async def test_unpublish_of_nothing_is_ok_and_bad_unpublish_is_refused(csi_plugin: Plugin) -> None:
    target = csi_plugin.pods / "pod-1" / "volume"
    async with csi_plugin.stubs() as (_, node):
        await node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id="ta/data", target_path=str(target))
        )
        target.mkdir(parents=True)  # left over by kubelet: removed, nothing to unmount
        await node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id="ta/data", target_path=str(target))
        )
        assert not target.exists()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await node.NodeUnpublishVolume(csi_pb2.NodeUnpublishVolumeRequest(volume_id="ta/data"))
    assert caught.value.code() == Code.INVALID_ARGUMENT
    assert caught.value.details() == "volume ta/data: target_path is required"


def test_sigterm_stops_cleanly_and_removes_the_socket(csi_plugin: Plugin) -> None:
    assert csi_plugin.socket.exists()
    assert csi_plugin.stop(signal.SIGTERM) == 0
    assert not csi_plugin.socket.exists()
    assert "stopped" in csi_plugin.log()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--endpoint", "tcp://127.0.0.1:1", "--node-id", "n"], "--endpoint: 'tcp://127.0.0.1:1'"),
        (["--endpoint", "unix://relative.sock", "--node-id", "n"], "--endpoint: 'unix://rel"),
        (["--node-id", " "], "--node-id: must not be empty"),
        (["--node-id", "n", "--rebind-interval", "0"], "--rebind-interval: 0.0 must be"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(
    flags: list[str], message: str, tmp_path: Path
) -> None:
    env = dict(os.environ, CSI_ENDPOINT=f"unix://{tmp_path}/csi.sock")
    env.pop("NODE_ID", None)
    done = subprocess.run(
        [sys.executable, "-m", "cachecluster", "csi", *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 64, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
