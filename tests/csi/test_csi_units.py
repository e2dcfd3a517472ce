"""The plugin's parts that need no process: the wire contract with kubelet, mountinfo
parsing, the state file, the flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cachecluster.common.errors import ConfigError
from cachecluster.common.mountinfo import mount_at, mount_holding, parse_line, read_mounts
from cachecluster.csi.config import CsiConfig, socket_path
from cachecluster.csi.state import Published, PublishedTargets
from cachecluster.protos import csi_pb2

# Field numbers of the CSI v1 spec's csi.proto (container-storage-interface/spec):
# a kubelet encodes by number, so these must never drift.
SPEC_FIELDS = {
    "GetPluginInfoResponse": {"name": 1, "vendor_version": 2, "manifest": 3},
    "ProbeResponse": {"ready": 1},
    "NodePublishVolumeRequest": {
        "volume_id": 1,
        "publish_context": 2,
        "staging_target_path": 3,
        "target_path": 4,
        "volume_capability": 5,
        "readonly": 6,
        "secrets": 7,
        "volume_context": 8,
    },
    "NodeUnpublishVolumeRequest": {"volume_id": 1, "target_path": 2},
    "VolumeCapability": {"block": 1, "mount": 2, "access_mode": 3},
    "VolumeCapability.MountVolume": {"fs_type": 1, "mount_flags": 2, "volume_mount_group": 3},
    "VolumeCapability.AccessMode": {"mode": 1},
    "NodeGetInfoResponse": {"node_id": 1, "max_volumes_per_node": 2, "accessible_topology": 3},
    "NodeServiceCapability": {"rpc": 1},
    "PluginCapability": {"service": 1},
}
SPEC_ACCESS_MODES = {
    "UNKNOWN": 0,
    "SINGLE_NODE_WRITER": 1,
    "SINGLE_NODE_READER_ONLY": 2,
    "MULTI_NODE_READER_ONLY": 3,
    "MULTI_NODE_SINGLE_WRITER": 4,
    "MULTI_NODE_MULTI_WRITER": 5,
    "SINGLE_NODE_SINGLE_WRITER": 6,
    "SINGLE_NODE_MULTI_WRITER": 7,
}


@pytest.mark.parametrize("message", sorted(SPEC_FIELDS))
def test_field_numbers_are_the_specs(message: str) -> None:
    descriptor = csi_pb2.DESCRIPTOR.message_types_by_name[message.split(".")[0]]
    for nested in message.split(".")[1:]:
        descriptor = descriptor.nested_types_by_name[nested]
    assert descriptor.full_name == f"csi.v1.{message}"
    numbers = {field.name: field.number for field in descriptor.fields}
    assert numbers == SPEC_FIELDS[message]


def test_service_and_method_names_are_the_specs() -> None:
    services = {
        service.full_name: [method.name for method in service.methods]
        for service in csi_pb2.DESCRIPTOR.services_by_name.values()
    }
    assert services == {
        "csi.v1.Identity": ["GetPluginInfo", "GetPluginCapabilities", "Probe"],
        "csi.v1.Node": [
            "NodePublishVolume",
            "NodeUnpublishVolume",
            "NodeGetCapabilities",
            "NodeGetInfo",
        ],
    }
    modes = csi_pb2.VolumeCapability.AccessMode.Mode
    assert dict(modes.items()) == SPEC_ACCESS_MODES


def test_mountinfo_lines_with_optional_fields_and_escapes(tmp_path: Path) -> None:
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "40 22 0:43 / /mnt/fuse ro,nosuid,nodev shared:7 - fuse.cachecluster cachecluster ro\n"
        "41 22 0:43 /ta/data /pods/my\\040pod/mount ro,relatime - fuse.cachecluster cc ro\n"
        "42 41 0:50 / /pods/my\\040pod/mount rw - tmpfs tmpfs rw\n"
    )
    mounts = read_mounts(table)
    stacked = mount_at("/pods/my pod/mount", mounts)
    assert stacked is not None and stacked.fstype == "tmpfs"  # the top of the stack
    bind = mounts[2]
    assert (bind.root, bind.device, bind.read_only, bind.is_fuse) == (
        "/ta/data",
        "0:43",
        True,
        True,
    )
    holder = mount_holding("/mnt/fuse/ta/data/x", mounts)
    assert holder is not None and holder.mount_point == "/mnt/fuse"
    assert mount_holding("/mnt/fusey", mounts) == mounts[0]  # a prefix is not a parent
    with pytest.raises(ValueError, match="not a mountinfo line"):
        parse_line("garbage - x")


def test_state_file_round_trip_and_unreadable_file(tmp_path: Path) -> None:
    targets = PublishedTargets(tmp_path / "state")
    assert targets.load() == 0
    first = Published("ta/data", "/pods/1/mount", "/mnt/fuse/ta/data", True)
    second = Published("tb/ref", "/pods/2/mount", "/mnt/fuse/tb/ref", False)
    targets.put(second)
    targets.put(first)
    targets.remove("/pods/unknown")
    again = PublishedTargets(tmp_path / "state")
    assert again.load() == 2
    assert again.all() == [first, second]
    again.remove(first.target)
    assert [item["target"] for item in json.loads(again.path.read_text())["published"]] == [
        second.target
    ]
    again.path.write_text("{not json")
    broken = PublishedTargets(tmp_path / "state")
    assert broken.load() == 0 and broken.all() == []
    assert list((tmp_path / "state").iterdir()) == [again.path]  # no temporary files left


def _args(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "endpoint": "unix:///csi/csi.sock",
        "node_id": "node-a",
        "state_dir": None,
        "fuse_root": "/runtime-mnt/cachecluster",
        "rebind_interval": 5.0,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def test_config_defaults_and_refusals() -> None:
    config = CsiConfig.from_args(_args())
    assert (config.socket, config.state_dir) == (Path("/csi/csi.sock"), Path("/csi"))
    assert socket_path("/var/lib/kubelet/plugins/x/csi.sock") == Path(
        "/var/lib/kubelet/plugins/x/csi.sock"
    )
    refusals: list[tuple[dict[str, object], str]] = [
        ({"endpoint": "unix://csi.sock"}, "--endpoint"),
        ({"endpoint": "tcp://127.0.0.1:9000"}, "--endpoint"),
        ({"node_id": None}, "--node-id"),
        ({"fuse_root": "relative"}, "--fuse-root"),
        ({"rebind_interval": float("nan")}, "--rebind-interval"),
    ]
    for overrides, flag in refusals:
        with pytest.raises(ConfigError) as caught:
            CsiConfig.from_args(_args(**overrides))
        assert caught.value.field == flag
