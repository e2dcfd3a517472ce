"""Local mode: a master and N workers as background processes on this host (`cachecluster up`)."""

from cachecluster.local.cluster import ClusterRunning, LocalCluster, WorkerProcess
from cachecluster.local.layout import ClusterLayout, RuntimeSpec, load_runtime_file

__all__ = [
    "ClusterLayout",
    "ClusterRunning",
    "LocalCluster",
    "RuntimeSpec",
    "WorkerProcess",
    "load_runtime_file",
]
