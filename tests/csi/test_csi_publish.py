"""NodePublishVolume against a real FUSE mount of a running local cluster.

The FUSE mount is ``cachecluster mount`` with no view flags (``<ns>/<dataset>/...``,
as the runtime's FUSE DaemonSet mounts it); the plugin binds
``<mount>/ta/data`` onto a pod's target path. Reads through the target are
compared with the UFS bytes; writes are refused; unpublish leaves nothing
mounted; a FUSE process killed and mounted again is re-bound by the plugin,
also by a plugin restarted meanwhile (it reads its state file).
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path
from typing import Any

import grpc
import pytest

from cachecluster.common import auth
from cachecluster.common.mountinfo import STALE_ERRNOS, mount_at
from cachecluster.fuse.mount import _alive
from cachecluster.operator.dataset_objects import persistent_volume
from cachecluster.operator.naming import (
    CSI_CONTEXT_FUSE_PATH,
    CSI_DRIVER,
    RUNTIME_MOUNT_ROOT,
    fuse_mount_root,
)
from cachecluster.protos import csi_pb2
from tests.csi.conftest import Mode, Plugin, mounts_under, publish_request
from tests.fuse.conftest import (  # the FUSE fixtures (they skip without FUSE)
    FILES_A,
    FuseCluster,
    Mount,
    Mounter,
    fuse_cluster,
    mounter,
    sha256,
    wait_until,
)

__all__ = ["fuse_cluster", "mounter"]  # fixtures used by name

if os.geteuid() != 0:  # bind mounts need CAP_SYS_ADMIN, as the plugin's privileged pod has
    if os.environ.get("CACHECLUSTER_REQUIRE_FUSE") == "1":
        raise RuntimeError("CSI publish tests required but not running as root")
    pytest.skip("bind mounts need root", allow_module_level=True)


def mount_view(fuse_cluster: FuseCluster, mounter: Mounter, plugin: Plugin) -> Mount:
    """The FUSE mount of every namespace, under the plugin's FUSE root."""
    token = fuse_cluster.cluster.token(auth.ADMIN_NAMESPACE)
    return mounter.mount(plugin.fuse_root / "fuse", token=token)


def assert_reads_dataset(target: Path) -> None:
    """Every file of ta/data reads through ``target`` with the UFS's sha256."""
    for name, data in FILES_A.items():
        assert sha256((target / name).read_bytes()) == sha256(data), name
    listed = {str(path.relative_to(target)) for path in target.rglob("*") if path.is_file()}
    assert listed == set(FILES_A)


def assert_write_refused(target: Path) -> None:
    with pytest.raises(OSError) as caught:
        (target / "new.txt").write_bytes(b"x")
    assert caught.value.errno == errno.EROFS


async def test_publish_read_only_reads_the_dataset_and_unpublish_leaves_nothing(
    fuse_cluster: FuseCluster, mounter: Mounter, csi_plugin: Plugin
) -> None:
    view = mount_view(fuse_cluster, mounter, csi_plugin)
    target = csi_plugin.pods / "pod-1" / "volumes" / "ta-data" / "mount"
    request = publish_request(target, str(view.path / "ta" / "data"))  # ReadOnlyMany
    async with csi_plugin.stubs() as (_, node):
        await node.NodePublishVolume(request)
        entry = mount_at(target)
        assert entry is not None and entry.read_only and entry.is_fuse
        assert_reads_dataset(target)
        assert_write_refused(target)
        await node.NodePublishVolume(request)  # kubelet retries: same answer, one mount
        assert mounts_under(csi_plugin.pods) == [str(target)]
        assert str(target) in (csi_plugin.dir / "published.json").read_text()

        await node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id="ta/data", target_path=str(target))
        )
        assert mounts_under(csi_plugin.pods) == []
        assert not target.exists()
        assert str(target) not in (csi_plugin.dir / "published.json").read_text()
        await node.NodeUnpublishVolume(  # again: still OK
            csi_pb2.NodeUnpublishVolumeRequest(volume_id="ta/data", target_path=str(target))
        )
    assert view.path.exists() and (view.path / "ta" / "data" / "one.bin").exists()


async def test_readonly_flag_and_writer_modes(
    fuse_cluster: FuseCluster, mounter: Mounter, csi_plugin: Plugin
) -> None:
    view = mount_view(fuse_cluster, mounter, csi_plugin)
    source = str(view.path / "ta" / "data")
    flagged = csi_plugin.pods / "pod-1" / "mount"
    writer = csi_plugin.pods / "pod-2" / "mount"
    async with csi_plugin.stubs() as (_, node):
        await node.NodePublishVolume(
            publish_request(flagged, source, mode=Mode.SINGLE_NODE_WRITER, readonly=True)
        )
        await node.NodePublishVolume(
            publish_request(writer, source, mode=Mode.MULTI_NODE_MULTI_WRITER)
        )
        flagged_entry, writer_entry = mount_at(flagged), mount_at(writer)
        assert flagged_entry is not None and flagged_entry.read_only
        # a writer mode binds without forcing read-only: the FUSE view's own flags show
        view_entry = mount_at(view.path)
        assert writer_entry is not None and view_entry is not None
        assert writer_entry.read_only == view_entry.read_only
        assert_write_refused(flagged)
        await node.NodePublishVolume(  # kubelet retries: same answer
            publish_request(writer, source, mode=Mode.MULTI_NODE_MULTI_WRITER)
        )
        assert sha256((writer / "big" / "seven.bin").read_bytes()) == sha256(
            FILES_A["big/seven.bin"]
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:  # same target, other dataset
            await node.NodePublishVolume(publish_request(flagged, str(view.path / "tb" / "data")))
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "already mounted" in (caught.value.details() or "")
        for target in (flagged, writer):
            await node.NodeUnpublishVolume(
                csi_pb2.NodeUnpublishVolumeRequest(volume_id="ta/data", target_path=str(target))
            )
    assert mounts_under(csi_plugin.pods) == []


async def test_a_dead_fuse_is_re_bound_when_it_comes_back_also_after_a_plugin_restart(
    fuse_cluster: FuseCluster, mounter: Mounter, csi_plugin: Plugin
) -> None:
    view = mount_view(fuse_cluster, mounter, csi_plugin)
    source = str(view.path / "ta" / "data")
    target = csi_plugin.pods / "pod-1" / "mount"
    other = csi_plugin.pods / "pod-2" / "mount"
    deleted = csi_plugin.pods / "pod-3" / "mount"  # its pod goes away while the FUSE is down
    async with csi_plugin.stubs() as (_, node):
        await node.NodePublishVolume(publish_request(target, source))
        await node.NodePublishVolume(publish_request(deleted, source))
    assert_reads_dataset(target)

    os.kill(view.pid, signal.SIGKILL)  # the FUSE process dies
    wait_until(lambda: not _alive(view.pid), 10, "the FUSE process dies")
    with pytest.raises(OSError) as caught:
        os.statvfs(target)  # stat may answer from the kernel's cache for a while
    assert caught.value.errno in STALE_ERRNOS
    async with csi_plugin.stubs() as (_, node):
        with pytest.raises(grpc.aio.AioRpcError) as refused:  # a new publish waits
            await node.NodePublishVolume(publish_request(other, source))
        await node.NodeUnpublishVolume(  # a stale target is unmounted all the same
            csi_pb2.NodeUnpublishVolumeRequest(volume_id="ta/data", target_path=str(deleted))
        )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "not connected" in (refused.value.details() or "")
    assert mounts_under(csi_plugin.pods) == [str(target)]
    assert not deleted.exists() and not other.exists()

    assert csi_plugin.stop(signal.SIGTERM) == 0  # the plugin restarts while the FUSE is down
    csi_plugin.start()
    mount_view(fuse_cluster, mounter, csi_plugin)  # the FUSE pod mounts again, same path

    def reads_again() -> bool:
        try:
            return (target / "one.bin").read_bytes() == FILES_A["one.bin"]
        except OSError:
            return False

    wait_until(reads_again, 20, f"the plugin re-binds {target}\n{csi_plugin.log()}")
    assert_reads_dataset(target)
    entry = mount_at(target)
    assert entry is not None and entry.read_only
    assert mounts_under(csi_plugin.pods) == [str(target)]
    assert "binding" in csi_plugin.log() and "again" in csi_plugin.log()
    async with csi_plugin.stubs() as (_, node):
        await node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id="ta/data", target_path=str(target))
        )
    assert mounts_under(csi_plugin.pods) == []


KUBELET_MODES = {
    "ReadOnlyMany": Mode.MULTI_NODE_READER_ONLY,
    "ReadWriteOnce": Mode.SINGLE_NODE_WRITER,
    "ReadWriteMany": Mode.MULTI_NODE_MULTI_WRITER,
}
"""How kubelet turns a PV's first access mode into a CSI access mode."""


def kubelet_request(
    pv: dict[str, Any], target: Path, host_root: Path
) -> csi_pb2.NodePublishVolumeRequest:
    """What kubelet sends to publish ``pv``, with the host root moved to ``host_root``."""
    spec = pv["spec"]
    assert spec["csi"]["driver"] == CSI_DRIVER
    context = dict(spec["csi"]["volumeAttributes"])
    fuse_path = context[CSI_CONTEXT_FUSE_PATH]
    assert fuse_path.startswith(RUNTIME_MOUNT_ROOT + "/")
    context[CSI_CONTEXT_FUSE_PATH] = str(host_root) + fuse_path[len(RUNTIME_MOUNT_ROOT) :]
    return csi_pb2.NodePublishVolumeRequest(
        volume_id=spec["csi"]["volumeHandle"],
        target_path=str(target),
        volume_capability=csi_pb2.VolumeCapability(
            mount=csi_pb2.VolumeCapability.MountVolume(),
            access_mode=csi_pb2.VolumeCapability.AccessMode(
                mode=KUBELET_MODES[spec["accessModes"][0]]
            ),
        ),
        readonly=spec["csi"]["readOnly"],
        volume_context=context,
    )


async def test_the_operators_pvs_publish_their_datasets_and_references(
    fuse_cluster: FuseCluster, mounter: Mounter, csi_plugin: Plugin
) -> None:
    host_root = csi_plugin.fuse_root / "runtime-mnt"  # stands for RUNTIME_MOUNT_ROOT
    fuse_at = fuse_mount_root("share", "rt")[len(RUNTIME_MOUNT_ROOT) :]
    mounter.mount(
        host_root / fuse_at.lstrip("/"),
        token=fuse_cluster.cluster.token(auth.ADMIN_NAMESPACE),
    )
    runtime = ("share", "rt")
    volumes = {  # tb/ref is a reference to ta/data: its PV points at the source's runtime
        "ta/data": persistent_volume("ta", "data", runtime, ["ReadOnlyMany"]),
        "tb/ref": persistent_volume("tb", "ref", runtime, ["ReadOnlyMany"]),
    }
    async with csi_plugin.stubs() as (_, node):
        for index, (volume_id, pv) in enumerate(volumes.items()):
            target = csi_plugin.pods / f"pod-{index}" / "mount"
            request = kubelet_request(pv, target, host_root)
            assert request.volume_id == volume_id
            await node.NodePublishVolume(request)
            assert_reads_dataset(target)
            assert_write_refused(target)
            await node.NodeUnpublishVolume(
                csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target))
            )
    assert mounts_under(csi_plugin.pods) == []
