"""Names, labels, ports and paths the operator, the chart and the CSI plugin agree on.

Every object the operator creates is named and labelled through these functions,
so the reconcilers, the Helm chart and the CSI node plugin never spell them twice.
"""

from __future__ import annotations

from typing import Any

GROUP = "cachecluster.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
FLUID_GROUP = "data.fluid.io"

CSI_DRIVER = "csi.cachecluster.io"
"""Name of our CSI driver (the PV's ``spec.csi.driver``)."""

DEFAULT_IMAGE = "ghcr.io/cachecluster/cachecluster:latest"
"""One image runs every component (master, worker, fuse, csi, operator)."""
IMAGE_ENV = "CACHECLUSTER_IMAGE"
"""Environment variable of the operator pod naming the image its workloads run
(the Helm chart sets it to the chart's image; unset: :data:`DEFAULT_IMAGE`)."""
IMAGE_PULL_POLICY_ENV = "CACHECLUSTER_IMAGE_PULL_POLICY"
"""Environment variable of the operator pod: the pull policy of its workloads' image
(the Helm chart sets it to ``image.pullPolicy``; unset: ``IfNotPresent``)."""

MASTER_PORT = 19998
"""Master gRPC port inside the cluster."""
MASTER_METRICS_PORT = 19999
WORKER_GRPC_PORT = 29999
WORKER_DATA_PORT = 29998
WORKER_METRICS_PORT = 29997

RUNTIME_MOUNT_ROOT = "/runtime-mnt/cachecluster"
"""Host folder under which each runtime's FUSE DaemonSet mounts its view."""

CLUSTER_SECRET_KEY = "cluster-secret"
"""Key of the cluster secret (hex) inside the runtime's Secret."""

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUNTIME = f"{GROUP}/runtime"
LABEL_DATASET = f"{GROUP}/dataset"
LABEL_DATASET_NAMESPACE = f"{GROUP}/dataset-namespace"
"""On a dataset's PV (cluster-scoped: no ownerReference to the namespaced Dataset)."""
LABEL_DATALOAD = f"{GROUP}/dataload"
LABEL_DATALOAD_NAMESPACE = f"{GROUP}/dataload-namespace"

CLUSTER_SECRET_DIR = "/etc/cachecluster/secret"
"""Where pods (master, workers, FUSE, DataLoad jobs) mount the runtime's cluster Secret."""
CLUSTER_SECRET_FILE = f"{CLUSTER_SECRET_DIR}/{CLUSTER_SECRET_KEY}"


def labels(runtime: str, component: str) -> dict[str, str]:
    """The labels of an object of ``component`` (master, worker, fuse, ...) of ``runtime``."""
    return {
        LABEL_NAME: "cachecluster",
        LABEL_INSTANCE: runtime,
        LABEL_COMPONENT: component,
        LABEL_MANAGED_BY: "cachecluster-operator",
        LABEL_RUNTIME: runtime,
    }


def selector(runtime: str, component: str) -> dict[str, str]:
    """The stable subset of :func:`labels` used in selectors (never changes after creation)."""
    return {LABEL_INSTANCE: runtime, LABEL_COMPONENT: component}


def master_name(runtime: str) -> str:
    """Deployment and Service of the runtime's master."""
    return f"{runtime}-master"


def worker_name(runtime: str) -> str:
    """StatefulSet (and its headless Service) of the runtime's workers."""
    return f"{runtime}-worker"


def fuse_name(runtime: str) -> str:
    """DaemonSet of the runtime's FUSE mounts."""
    return f"{runtime}-fuse"


def cluster_secret_name(runtime: str) -> str:
    """Secret holding the runtime's cluster secret (signs tokens and capabilities)."""
    return f"{runtime}-cluster-secret"


def ufs_secret_name(runtime: str) -> str:
    """Secret with the UFS credentials given to master and workers only."""
    return f"{runtime}-ufs-credentials"


def master_address(runtime: str, namespace: str) -> str:
    """``host:port`` of the runtime's master from inside the cluster."""
    return f"{master_name(runtime)}.{namespace}.svc:{MASTER_PORT}"


def fuse_mount_root(runtime_namespace: str, runtime: str) -> str:
    """Host path where the runtime's FUSE DaemonSet mounts ``<ns>/<dataset>/...``."""
    return f"{RUNTIME_MOUNT_ROOT}/{runtime_namespace}/{runtime}/fuse"


def dataset_fuse_path(runtime_namespace: str, runtime: str, namespace: str, dataset: str) -> str:
    """Host path of one dataset inside its runtime's FUSE mount (the CSI bind source)."""
    return f"{fuse_mount_root(runtime_namespace, runtime)}/{namespace}/{dataset}"


def pv_name(namespace: str, dataset: str) -> str:
    """Cluster-scoped PersistentVolume of a dataset (PVCs are named after the dataset)."""
    return f"{namespace}-{dataset}"


def volume_handle(namespace: str, dataset: str) -> str:
    """The PV's ``csi.volumeHandle`` of a dataset: ``NS/NAME``."""
    return f"{namespace}/{dataset}"


def dataload_job_name(namespace: str, dataload: str, runtime_namespace: str) -> str:
    """Job (or CronJob) of a DataLoad; it runs in the runtime's namespace (the cluster
    secret lives there), prefixed with the DataLoad's namespace when that differs."""
    if namespace == runtime_namespace:
        return f"{dataload}-load"
    return f"{namespace}-{dataload}-load"


def owner_reference(body: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to the custom object ``body`` (garbage-collects what it owns)."""
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", API_VERSION),
        "kind": body["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


CSI_CONTEXT_FUSE_PATH = "fusePath"
"""PV ``volumeAttributes`` key: host path the CSI plugin bind-mounts into the pod."""
CSI_CONTEXT_DATASET = "dataset"
"""PV ``volumeAttributes`` key: ``NS/NAME`` of the dataset (for logs and checks)."""
CSI_CONTEXT_RUNTIME = "runtime"
"""PV ``volumeAttributes`` key: ``NS/NAME`` of the runtime whose FUSE mount serves it."""
