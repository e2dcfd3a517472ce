"""cachecluster itself: a ``LocalCluster`` on the bucket, read by the client or the FUSE mount.

A master and two workers (processes, one MEM tier each on tmpfs) serve the
bucket as dataset ``bench/s3``. ``cachecluster-client`` reads through the
blocking :class:`~cachecluster.client.sync_client.Client`;
``cachecluster-fuse`` through ``cachecluster mount --dataset bench/s3`` (the
CLI, in the foreground, in its own session), with default options. Cold: the
cluster stopped, its tiers removed, and started again (metadata cold too).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

from bench.peers.base import MountSystem, RangeReader, System, UfsEnv
from bench.peers.processes import fuse_missing, start_mount, stop_mount

if TYPE_CHECKING:
    from cachecluster.client.sync_client import Client, File
    from cachecluster.local.cluster import LocalCluster

NAMESPACE = "bench"
DATASET = "s3"
WORKERS = 2
TIER_QUOTA = 16 << 30


class _Cluster:
    """The local cluster one cachecluster system reads."""

    def __init__(self, env: UfsEnv, tag: str) -> None:
        self.env = env
        self.root = env.workdir / tag
        self.cluster: LocalCluster | None = None

    def start(self) -> str:
        """Start the cluster with empty tiers, register the dataset; the master address."""
        from cachecluster.local.cluster import LocalCluster
        from cachecluster.worker.tiers import Medium, TierConfig

        tier = TierConfig(Medium.MEM, str(self.root / "mem"), TIER_QUOTA)
        self.cluster = LocalCluster(self.root / "home", workers=WORKERS, tiers=[tier])
        self.cluster.start()
        env = self.env
        options = {
            "fs.s3.endpoint": env.endpoint,
            "fs.s3.region": env.region,
            "fs.s3.accessKeyId": env.access_key,
            "fs.s3.accessKeySecret": env.secret_key,
            "fs.s3.pathStyle": "true",
        }
        self.cluster.apply_dataset(NAMESPACE, DATASET, f"s3://{env.bucket}", options)
        return self.cluster.master_address

    def stop(self) -> None:
        """Stop every process and remove the tiers and the home."""
        if self.cluster is not None:
            self.cluster.stop(purge=True)
            self.cluster = None
        shutil.rmtree(self.root, ignore_errors=True)


class _ClientFile:
    """A file of the client read with ``pread_into``."""

    def __init__(self, file: File) -> None:
        self._file = file

    def read_at(self, offset: int, buffer: memoryview) -> int:
        """``File.pread_into``: straight into the buffer."""
        return self._file.pread_into(offset, buffer)

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class ClusterClient(System):
    """Reads with ``cachecluster.client.sync_client.Client`` (default options)."""

    name = "cachecluster-client"
    label = "cachecluster, Python client"
    cold_how = "cluster restarted with empty tiers"

    def __init__(self) -> None:
        self._cluster: _Cluster | None = None
        self._client: Client | None = None
        self._master = ""

    @property
    def client(self) -> Client:
        """The current client."""
        assert self._client is not None, "start() first"
        return self._client

    def _new_client(self) -> None:
        from cachecluster.client.sync_client import Client

        if self._client is not None:
            self._client.close()
        self._client = Client(self._master)

    def start(self, env: UfsEnv) -> None:
        """Start the cluster and a client."""
        self._cluster = _Cluster(env, "cc-client")
        self._master = self._cluster.start()
        self._new_client()

    def stop(self) -> None:
        """Close the client, stop the cluster."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.stop()

    def reset_cold(self) -> None:
        """Restart the cluster with empty tiers; a new client."""
        assert self._cluster is not None
        if self._client is not None:
            self._client.close()
            self._client = None
        self._cluster.stop()
        self._master = self._cluster.start()
        self._new_client()

    def fresh(self) -> None:
        """A new client."""
        self._new_client()

    def read_whole(self, key: str, buffer: memoryview) -> int:
        """``open`` and ``readinto`` to the end."""
        total = 0
        with self.client.open(f"{NAMESPACE}/{DATASET}/{key}") as file:
            while got := file.readinto(buffer):
                total += got
        return total

    def open_reader(self, key: str) -> RangeReader:
        """``open``."""
        return _ClientFile(self.client.open(f"{NAMESPACE}/{DATASET}/{key}"))

    def list_tree(self, prefix: str) -> int:
        """``walk_files``: every file under the prefix with its status."""
        return len(self.client.walk_files(f"{NAMESPACE}/{DATASET}/{prefix}"))

    def stat(self, key: str) -> int:
        """``stat``."""
        return self.client.stat(f"{NAMESPACE}/{DATASET}/{key}").size


class ClusterFuse(MountSystem):
    """Reads through ``cachecluster mount --dataset bench/s3`` (default options)."""

    name = "cachecluster-fuse"
    label = "cachecluster, FUSE mount"
    cold_how = "cluster restarted with empty tiers, new mount"

    def __init__(self) -> None:
        self._cluster: _Cluster | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._master = ""

    def available(self) -> str | None:
        """pyfuse3 and FUSE must be there."""
        try:
            import pyfuse3  # noqa: F401
        except ImportError:
            return "pyfuse3 is not installed (needs fuse3 libfuse3-dev, then pip install '.[fuse]')"
        return fuse_missing()

    def _mount(self) -> None:
        assert self._cluster is not None
        env = dict(os.environ, CACHECLUSTER_HOME=str(self._cluster.root / "home"))
        env.pop("CACHECLUSTER_TOKEN", None)
        log = self._cluster.env.workdir / "cachecluster-mount.log"
        command = [
            sys.executable, "-m", "cachecluster", "mount", str(self.root), "--foreground",
            "--dataset", f"{NAMESPACE}/{DATASET}", "--master", self._master,
            "--log-file", str(log),
        ]  # fmt: skip
        self._process = start_mount(command, self.root, log, env)

    def _unmount(self) -> None:
        stop_mount(self._process, self.root)
        self._process = None

    def start(self, env: UfsEnv) -> None:
        """Start the cluster and mount."""
        self.root = env.workdir / "cc-mnt"
        self._cluster = _Cluster(env, "cc-fuse")
        self._master = self._cluster.start()
        self._mount()

    def stop(self) -> None:
        """Unmount, stop the cluster."""
        if self._cluster is None:
            return
        self._unmount()
        self._cluster.stop()

    def reset_cold(self) -> None:
        """Unmount, restart the cluster with empty tiers, mount again."""
        assert self._cluster is not None
        self._unmount()
        self._cluster.stop()
        self._master = self._cluster.start()
        self._mount()

    def fresh(self) -> None:
        """Unmount and mount again (the cluster keeps its cache)."""
        self._unmount()
        self._mount()
