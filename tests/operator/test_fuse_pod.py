"""The FUSE DaemonSet's command, run for real against a running local cluster.

The container's ``sh -c`` script is taken from the reconciled DaemonSet and
run as it is, with only what Kubernetes provides swapped for local
equivalents: the host folder (``/runtime-mnt/...`` -> under tmp_path), the
mounted cluster Secret (-> the local cluster's secret file) and the master's
Service name (-> the local master's address). It must mint an admin token,
mount the view of every namespace, pass its readiness probe, serve each
dataset at the ``fusePath`` the Dataset reconciler writes into its PV (a
reference included), and its preStop hook must leave nothing mounted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cachecluster.operator import naming
from cachecluster.operator.dataset_objects import plan_dataset
from cachecluster.operator.runtime_objects import HOME_DIR, desired_runtime_objects
from tests.fuse.conftest import (  # the FUSE fixtures (they skip without FUSE)
    FILES_A,
    FuseCluster,
    cleanup,
    fuse_cluster,
    mount_entry,
    sha256,
    wait_until,
)

__all__ = ["fuse_cluster"]  # fixture used by name

RUNTIME = ("share", "rt")


def dataset(namespace: str, name: str, mount_point: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"mounts": [{"mountPoint": mount_point}]}
    if not mount_point.startswith("dataset://"):
        spec["runtimes"] = [{"namespace": RUNTIME[0], "name": RUNTIME[1]}]
    return {
        "apiVersion": naming.API_VERSION,
        "kind": "Dataset",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": spec,
    }


def fuse_path(body: dict[str, Any], source: dict[str, Any] | None = None) -> str:
    pv = plan_dataset(body, source=source).objects[0]
    assert pv["kind"] == "PersistentVolume"
    path: str = pv["spec"]["csi"]["volumeAttributes"][naming.CSI_CONTEXT_FUSE_PATH]
    return path


def test_fuse_pod_serves_each_dataset_at_its_pv_fuse_path(
    fuse_cluster: FuseCluster, tmp_path: Path
) -> None:
    cluster = fuse_cluster.cluster
    body = {
        "apiVersion": naming.API_VERSION,
        "kind": "CacheRuntime",
        "metadata": {"name": RUNTIME[1], "namespace": RUNTIME[0], "uid": "u"},
        "spec": {},
    }
    secret = cluster.secret_file.read_text().strip()
    daemonset = desired_runtime_objects(body, cluster_secret=secret)[-1]
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    host = tmp_path / "host"  # what / is on the node

    def local(text: str) -> str:
        """What the pod's volumes and DNS make of a path or address."""
        return (
            text.replace(naming.CLUSTER_SECRET_FILE, str(cluster.secret_file))
            .replace(naming.RUNTIME_MOUNT_ROOT, f"{host}{naming.RUNTIME_MOUNT_ROOT}")
            .replace(naming.master_address(RUNTIME[1], RUNTIME[0]), cluster.master_address)
        )

    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["CACHECLUSTER_HOME"] == HOME_DIR
    # The image has `cachecluster` on PATH; here it is next to this Python.
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"
    run_env = dict(os.environ, CACHECLUSTER_HOME=str(tmp_path / "pod-home"), PATH=path)
    run_env.pop("CACHECLUSTER_TOKEN", None)
    shell, flag, script = container["command"]
    root = Path(local(naming.fuse_mount_root(*RUNTIME)))
    root.parent.mkdir(parents=True)  # the hostPath volume (DirectoryOrCreate)
    log = (tmp_path / "fuse-pod.log").open("wb")
    process = subprocess.Popen(
        [shell, flag, local(script.replace("$$", "$"))],
        env=run_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ready = [local(a) for a in container["readinessProbe"]["exec"]["command"]]

        def is_ready() -> bool:
            assert process.poll() is None, (tmp_path / "fuse-pod.log").read_text()
            return subprocess.run(ready, check=False).returncode == 0

        wait_until(is_ready, 30, "the FUSE pod's readiness probe")
        assert mount_entry(root)

        source = dataset("ta", "data", f"local://{fuse_cluster.root / 'ufs' / 'ta' / 'data'}")
        reference = dataset("tb", "ref", "dataset://ta/data")
        for pv_path in (fuse_path(source), fuse_path(reference, source)):
            folder = Path(local(pv_path))
            for name, data in FILES_A.items():
                assert sha256((folder / name).read_bytes()) == sha256(data), (pv_path, name)
        assert {p.name for p in root.iterdir()} >= {"ta", "tb"}  # every namespace

        pre_stop = [local(a) for a in container["lifecycle"]["preStop"]["exec"]["command"]]
        done = subprocess.run(pre_stop, env=run_env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert process.wait(timeout=30) == 0
        assert not mount_entry(root)
    finally:
        cleanup(root, process.pid)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()
