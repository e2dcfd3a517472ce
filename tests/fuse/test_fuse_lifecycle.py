"""Background mounts: SIGTERM unmounts, a SIGKILLed mount is cleaned and mounted again,
datasets applied or deleted while mounted appear and vanish, a worker killed
during a read does not change the bytes read."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cachecluster.common import auth
from cachecluster.common.mountinfo import STALE_ERRNOS
from cachecluster.fuse.mount import _alive
from cachecluster.local.cluster_calls import master_channel, run_sync
from cachecluster.protos import master_pb2, master_pb2_grpc
from tests.fuse.conftest import (
    FILES_A,
    METADATA_TTL,
    FuseCluster,
    Mounter,
    generate,
    mount_entry,
    sha256,
    start_cluster,
    wait_until,
    write_tree,
)

BIG = "big/seven.bin"


def test_sigterm_unmounts_and_the_log_tells(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    mount = mounter.mount(
        tmp_path / "m", "--dataset", "ta/data", token=fuse_cluster.cluster.token("ta")
    )
    assert (mount.path / "one.bin").read_bytes() == FILES_A["one.bin"]
    os.kill(mount.pid, signal.SIGTERM)
    wait_until(lambda: not _alive(mount.pid), 10, "the mount process exits on SIGTERM")
    assert not mount_entry(mount.path), mount.log()
    assert "unmounted" in mount.log()


def test_unmount_command(fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path) -> None:
    mount = mounter.mount(tmp_path / "m", "-n", "ta", token=fuse_cluster.cluster.token("ta"))
    mounter.cli("unmount", str(mount.path))
    assert not mount_entry(mount.path)
    wait_until(lambda: not _alive(mount.pid), 10, "the mount process exits")


def test_sigkill_then_mount_again_at_the_same_path(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    token = fuse_cluster.cluster.token("ta")
    first = mounter.mount(tmp_path / "m", "--dataset", "ta/data", token=token)
    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: not _alive(first.pid), 10, "the mount process dies")
    with pytest.raises(OSError) as caught:
        os.stat(first.path / "one.bin")
    assert caught.value.errno in STALE_ERRNOS  # ENOTCONN, or ECONNABORTED at first
    second = mounter.mount(first.path, "--dataset", "ta/data", token=token)
    assert sha256((second.path / BIG).read_bytes()) == sha256(FILES_A[BIG])


def _delete_dataset(fuse_cluster: FuseCluster, namespace: str, name: str) -> None:
    cluster = fuse_cluster.cluster

    async def call() -> None:
        async with master_channel(
            cluster.master_address, cluster.token(auth.ADMIN_NAMESPACE)
        ) as channel:
            stub = master_pb2_grpc.DatasetServiceStub(channel)
            await stub.DeleteDataset(
                master_pb2.DeleteDatasetRequest(
                    ref=master_pb2.DatasetRef(namespace=namespace, name=name)
                ),
                timeout=10,
            )

    run_sync(call())


def test_datasets_appear_and_vanish_while_mounted(
    fuse_cluster: FuseCluster, mounter: Mounter, tmp_path: Path
) -> None:
    fuse_cluster.apply("tdyn", "first", {"f.txt": b"first"})
    mount = mounter.mount(tmp_path / "m", "-n", "tdyn", token=fuse_cluster.cluster.token("tdyn"))
    assert os.listdir(mount.path) == ["first"]
    fuse_cluster.apply("tdyn", "second", {"s.txt": b"second"})
    took = wait_until(
        lambda: "second" in os.listdir(mount.path), 5 * METADATA_TTL, "a new dataset appears"
    )
    assert took <= 2 * METADATA_TTL + 0.5
    assert (mount.path / "second" / "s.txt").read_bytes() == b"second"
    _delete_dataset(fuse_cluster, "tdyn", "second")
    wait_until(
        lambda: os.listdir(mount.path) == ["first"], 5 * METADATA_TTL, "a deleted dataset vanishes"
    )
    wait_until(lambda: not (mount.path / "second").exists(), 5 * METADATA_TTL, "its path is gone")


def test_worker_killed_during_a_read(mounter: Mounter, tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "kill", workers=3)
    try:
        data = generate({"big.bin": 48 << 20}, seed=3)["big.bin"]
        folder = tmp_path / "kill" / "ufs"
        write_tree(folder, {"big.bin": data})
        cluster.apply_dataset("tk", "data", f"local://{folder}")
        mounter.cluster = cluster
        # direct_io: every read reaches the mount, none is served by the page cache.
        mount = mounter.mount(
            tmp_path / "m", "--dataset", "tk/data", "--direct-io", token=cluster.token("tk")
        )
        # Warm the cache so every worker holds blocks, then read again and kill one midway.
        assert sha256((mount.path / "big.bin").read_bytes()) == sha256(data)
        started = threading.Event()

        def killer() -> None:
            started.wait(10)
            cluster.kill_worker(0)

        thread = threading.Thread(target=killer)
        thread.start()
        chunks: list[bytes] = []
        with open(mount.path / "big.bin", "rb", buffering=0) as file:
            while chunk := file.read(1 << 20):
                chunks.append(chunk)
                if len(chunks) == 4:
                    started.set()
                    time.sleep(0.3)
        thread.join(15)
        assert not cluster.workers[0].alive
        assert sha256(b"".join(chunks)) == sha256(data)
    finally:
        mounter.close()
        cluster.stop(purge=True)
