"""The CustomResourceDefinitions of Dataset, CacheRuntime and DataLoad, written as YAML.

The schemas mirror the models of :mod:`cachecluster.api` field by field
(``tests/operator/test_crds.py`` checks that every field a model knows is in
its schema and the other way round); they state structure and types, while
the finer rules (schemes, quotas, watermarks, cron syntax) stay in the models,
which the operator applies to every object so that kubectl users get the same
one-line errors as ``cachecluster apply``.

Run ``python -m cachecluster.operator.crds`` after changing a schema and
commit ``operator/crds/*.yaml``; ``--check`` exits 1 naming the stale files
(the test suite runs it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cachecluster.api.models import ACCESS_MODES, POLICIES
from cachecluster.operator.naming import GROUP, VERSION

CRD_DIR = Path(__file__).resolve().parents[2] / "operator" / "crds"
CATEGORY = "cachecluster"
DATASET_PHASES = ("NotBound", "Bound", "Failed")
RUNTIME_PHASES = ("NotReady", "PartialReady", "Ready")
DATALOAD_PHASES = ("Pending", "Executing", "Complete", "Failed")
VOLUME_TYPES = ("hostPath", "emptyDir")

Schema = dict[str, Any]


def _string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _integer(description: str, **extra: Any) -> Schema:
    return {"type": "integer", "description": description, **extra}


def _object(description: str, properties: Schema, required: Sequence[str] = ()) -> Schema:
    schema: Schema = {"type": "object", "description": description, "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _array(description: str, items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "description": description, "items": items, **extra}


def _string_map(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string"},
    }


def _kept(description: str) -> Schema:
    """A Fluid field accepted and kept but not used: any content."""
    return {"description": description, "x-kubernetes-preserve-unknown-fields": True}


def _encrypt_options(description: str) -> Schema:
    ref = _object(
        "The Secret (in the dataset's namespace) and key holding the value.",
        {"name": _string("Secret name."), "key": _string("Key in the Secret.")},
        required=("name", "key"),
    )
    item = _object(
        "An option whose value comes from a Secret.",
        {
            "name": _string("The option it sets, e.g. fs.oss.accessKeyId."),
            "valueFrom": _object(
                "Where the value comes from.", {"secretKeyRef": ref}, ["secretKeyRef"]
            ),
        },
        required=("name", "valueFrom"),
    )
    return _array(description, item)


def dataset_spec_schema() -> Schema:
    """``spec`` of a Dataset (:class:`cachecluster.api.DatasetSpec`)."""
    mount = _object(
        "One under file system mounted into the dataset.",
        {
            "mountPoint": _string(
                "oss://bucket/dir, s3://bucket/dir, local:///dir, or dataset://NS/NAME[/sub] "
                "for a reference to another dataset (then the only mount)."
            ),
            "name": _string("Mount name (default: the last element of mountPoint)."),
            "path": _string("Where the mount appears in the dataset (default / for one mount)."),
            "options": _string_map("UFS options, e.g. fs.oss.endpoint."),
            "encryptOptions": _encrypt_options("UFS credentials from Secrets."),
            "readOnly": {"type": "boolean", "description": "Mount read-only."},
        },
        required=("mountPoint",),
    )
    runtime = _object(
        "A runtime to serve this dataset (default: the CacheRuntime of the same name).",
        {
            "name": _string("CacheRuntime name."),
            "namespace": _string("CacheRuntime namespace (default: the dataset's)."),
            "category": _string("Fluid's runtime category (kept, not used)."),
            "type": _string("Fluid's runtime type (kept, not used)."),
            "masterReplicas": _integer("Fluid's master replicas (kept, not used)."),
        },
        required=("name",),
    )
    properties: Schema = {
        "mounts": _array("The dataset's mounts.", mount, minItems=1),
        "sharedOptions": _string_map("Options every mount shares."),
        "sharedEncryptOptions": _encrypt_options("Credentials every mount shares."),
        "accessModes": _array(
            "Access modes of the PersistentVolume (default ReadOnlyMany).",
            _string("An access mode.", enum=list(ACCESS_MODES)),
            minItems=1,
        ),
        "runtimes": _array("The runtime serving the dataset (the first one counts).", runtime),
    }
    for name in ("owner", "nodeAffinity", "tolerations", "placement", "dataRestoreLocation"):
        properties[name] = _kept(f"Fluid's {name}: accepted and kept, not used.")
    return _object("What the dataset holds.", properties, required=("mounts",))


def dataset_status_schema() -> Schema:
    """``status`` of a Dataset: the figures ``cachecluster get datasets`` prints."""
    return _object(
        "Figures copied from the runtime's master.",
        {
            "phase": _string("NotBound, Bound or Failed.", enum=list(DATASET_PHASES)),
            "ufsTotal": _string("Total size of the dataset's files, e.g. 1.16GiB (- unknown)."),
            "cached": _string("Bytes of the dataset held in the cache."),
            "cacheCapacity": _string("Capacity of the runtime's tiers."),
            "cachedPercentage": _string("cached / ufsTotal, e.g. 100.0%."),
            "fileNum": _string("Number of files (- unknown)."),
            "hitRatio": _string("Cache hit ratio of the runtime's workers."),
            "ufsTotalBytes": _integer("ufsTotal in bytes (-1 unknown).", format="int64"),
            "cachedBytes": _integer("cached in bytes (-1 unknown).", format="int64"),
            "cacheCapacityBytes": _integer("cacheCapacity in bytes.", format="int64"),
            "runtime": _string("NS/NAME of the runtime serving the dataset."),
            "reference": _string("The dataset:// mount point of a reference dataset."),
            "message": _string("Why the phase is Failed or figures are missing."),
            "observedGeneration": _integer("metadata.generation registered on the master."),
        },
    )


def runtime_spec_schema() -> Schema:
    """``spec`` of a CacheRuntime (:class:`cachecluster.api.CacheRuntimeSpec`)."""
    level = _object(
        "One cache tier of every worker.",
        {
            "mediumtype": _string("MEM, SSD or HDD."),
            "path": _string(
                "Absolute path of the tier inside the worker (and on the host for hostPath)."
            ),
            "quota": {
                "description": "Size of the tier, e.g. 4Gi.",
                "x-kubernetes-int-or-string": True,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
            },
            "high": _string('Evict above this fraction of the quota, e.g. "0.95".'),
            "low": _string('Evict down to this fraction of the quota, e.g. "0.7".'),
            "volumeType": _string(
                "hostPath (default for SSD/HDD) or emptyDir (MEM: always memory-backed).",
                enum=list(VOLUME_TYPES),
            ),
        },
        required=("mediumtype", "path", "quota"),
    )
    return _object(
        "The cache cluster: workers and their tiers, and how each component's pods run.",
        {
            "replicas": _integer("Number of workers.", minimum=1, default=1),
            "tieredstore": _object(
                "Cache tiers, fastest first.",
                {"levels": _array("The tiers.", level, minItems=1)},
                required=("levels",),
            ),
            "master": component_schema("The master's pod."),
            "worker": component_schema("Each worker's pod."),
            "fuse": component_schema("Each node's FUSE pod (default: tolerates every taint)."),
        },
    )


def component_schema(description: str) -> Schema:
    """``spec.master``/``worker``/``fuse`` (:class:`cachecluster.api.ComponentSpec`)."""
    quantities = {
        "type": "object",
        "additionalProperties": {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
        },
    }
    toleration = _object(
        "A Kubernetes toleration.",
        {
            "key": _string("Taint key (empty with Exists: every taint)."),
            "operator": _string("Exists or Equal (default).", enum=["Exists", "Equal"]),
            "value": _string("Taint value (Equal)."),
            "effect": _string(
                "NoSchedule, PreferNoSchedule or NoExecute (empty: all).",
                enum=["", "NoSchedule", "PreferNoSchedule", "NoExecute"],
            ),
            "tolerationSeconds": _integer(
                "How long a NoExecute taint is tolerated.", format="int64"
            ),
        },
    )
    return _object(
        description,
        {
            "resources": _object(
                "Compute resources of the container, as in a pod.",
                {
                    "requests": {**quantities, "description": "e.g. cpu: 500m, memory: 1Gi."},
                    "limits": {**quantities, "description": "e.g. memory: 8Gi."},
                },
            ),
            "nodeSelector": _string_map("Node labels the pods must run on."),
            "env": {
                "description": "Environment of the container: a NAME: value mapping (Fluid's "
                "Jindo/Alluxio form) or a list of EnvVars (name with value or valueFrom).",
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "tolerations": _array("Taints the pods tolerate.", toleration),
            "podMetadata": _object(
                "Labels and annotations added to the pods.",
                {
                    "labels": _string_map("Pod labels (the operator's own cannot be replaced)."),
                    "annotations": _string_map("Pod annotations, e.g. sidecar.istio.io/inject."),
                },
            ),
        },
    )


def runtime_status_schema() -> Schema:
    """``status`` of a CacheRuntime: phases from the workloads' ready counts."""
    phase = list(RUNTIME_PHASES)
    return _object(
        "Phases of the runtime's workloads.",
        {
            "masterPhase": _string("Master Deployment readiness.", enum=phase),
            "workerPhase": _string("Worker StatefulSet readiness.", enum=phase),
            "fusePhase": _string("FUSE DaemonSet readiness.", enum=phase),
            "replicas": _integer("Workers that exist (the scale subresource reads it)."),
            "readyWorkers": _integer("Workers ready."),
            "desiredWorkers": _integer("Workers asked for."),
            "selector": _string("Label selector of the workers (for autoscalers)."),
        },
    )


def dataload_spec_schema() -> Schema:
    """``spec`` of a DataLoad (:class:`cachecluster.api.DataLoadSpec`)."""
    target = _object(
        "A path of the dataset to load.",
        {
            "path": _string("Path inside the dataset (default /)."),
            "replicas": _integer("Copies to keep in the cache.", minimum=1),
        },
    )
    return _object(
        "What to load into the cache, once or on a schedule.",
        {
            "dataset": _object(
                "The dataset to load.",
                {
                    "name": _string("Dataset name."),
                    "namespace": _string("Dataset namespace (default: the DataLoad's)."),
                },
                required=("name",),
            ),
            "target": _array("Paths to load (default: the whole dataset).", target),
            "loadMetadata": {"type": "boolean", "description": "Refresh the listing first."},
            "policy": _string("Once or Cron.", enum=list(POLICIES), default="Once"),
            "schedule": _string("Cron schedule (policy Cron), e.g. '0 2 * * *'."),
            "ttlSecondsAfterFinished": _integer(
                "Remove the finished Job after this many seconds.", minimum=0
            ),
        },
        required=("dataset",),
    )


def dataload_status_schema() -> Schema:
    """``status`` of a DataLoad: phase, progress and duration of its (last) run."""
    return _object(
        "The load's progress.",
        {
            "phase": _string("Pending, Executing, Complete or Failed.", enum=list(DATALOAD_PHASES)),
            "duration": _string("How long the (last) run took, e.g. 45s."),
            "progress": _string("Percentage of the bytes loaded."),
            "startTime": _string("When the run started.", format="date-time"),
            "completionTime": _string("When the run finished.", format="date-time"),
            "lastScheduleTime": _string("When a Cron load last started a run.", format="date-time"),
            "job": _string("Name of the Job of the (last) run."),
            "message": _string("Why it failed."),
        },
    )


def _column(name: str, path: str, kind: str = "string", priority: int = 0) -> Schema:
    column: Schema = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", "date")


def _crd(
    kind: str,
    plural: str,
    spec: Schema,
    status: Schema,
    columns: list[Schema],
    *,
    scale: bool = False,
    description: str,
) -> Schema:
    subresources: Schema = {"status": {}}
    if scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    root = _object(
        description,
        {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        required=("spec",),
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def dataset_crd() -> Schema:
    """The Dataset CRD; columns as ``cachecluster get datasets`` (wide: file count, hit ratio)."""
    columns = [
        _column("Ufs Total Size", ".status.ufsTotal"),
        _column("Cached", ".status.cached"),
        _column("Cache Capacity", ".status.cacheCapacity"),
        _column("Cached Percentage", ".status.cachedPercentage"),
        _column("Phase", ".status.phase"),
        _column("File Count", ".status.fileNum", priority=1),
        _column("Cache Hit Ratio", ".status.hitRatio", priority=1),
        _AGE,
    ]
    return _crd(
        "Dataset",
        "datasets",
        dataset_spec_schema(),
        dataset_status_schema(),
        columns,
        description="A set of UFS mounts (or a reference to another dataset) served as a PVC.",
    )


def runtime_crd() -> Schema:
    """The CacheRuntime CRD, with the scale subresource on ``replicas``."""
    columns = [
        _column("Master Phase", ".status.masterPhase"),
        _column("Worker Phase", ".status.workerPhase"),
        _column("Fuse Phase", ".status.fusePhase"),
        _column("Ready Workers", ".status.readyWorkers", "integer", priority=1),
        _column("Desired Workers", ".spec.replicas", "integer", priority=1),
        _AGE,
    ]
    return _crd(
        "CacheRuntime",
        "cacheruntimes",
        runtime_spec_schema(),
        runtime_status_schema(),
        columns,
        scale=True,
        description="A cache cluster (master, workers, FUSE) serving datasets.",
    )


def dataload_crd() -> Schema:
    """The DataLoad CRD; columns as ``cachecluster get dataloads``."""
    columns = [
        _column("Dataset", ".spec.dataset.name"),
        _column("Phase", ".status.phase"),
        _AGE,
        _column("Duration", ".status.duration"),
        _column("Progress", ".status.progress", priority=1),
    ]
    return _crd(
        "DataLoad",
        "dataloads",
        dataload_spec_schema(),
        dataload_status_schema(),
        columns,
        description="Warms a dataset's cache, once or on a cron schedule.",
    )


def all_crds() -> list[Schema]:
    """Every CRD of the operator."""
    return [dataset_crd(), runtime_crd(), dataload_crd()]


HEADER = "# Generated by `python -m cachecluster.operator.crds`; do not edit by hand.\n"


def render(crd: Schema) -> str:
    """The YAML text of one CRD as committed."""
    return HEADER + yaml.safe_dump(crd, sort_keys=False, width=100)


def file_name(crd: Schema) -> str:
    """``datasets.cachecluster.io.yaml``."""
    return f"{crd['metadata']['name']}.yaml"


def sync(directory: Path = CRD_DIR, *, write: bool = True) -> list[str]:
    """Write (or only compare, ``write=False``) every CRD file; the names that differed.

    A ``*.yaml`` file in ``directory`` that no CRD produces counts as stale
    (and is removed when writing).
    """
    wanted = {file_name(crd): render(crd) for crd in all_crds()}
    stale: list[str] = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            stale.append(name)
            if write:
                directory.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if directory.is_dir():
        for path in directory.glob("*.yaml"):
            if path.name not in wanted:
                stale.append(path.name)
                if write:
                    path.unlink()
    return sorted(stale)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cachecluster.operator.crds [--check] [--dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m cachecluster.operator.crds")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    parser.add_argument("--dir", type=Path, default=CRD_DIR, help="where the YAML files live")
    args = parser.parse_args(argv)
    stale = sync(args.dir, write=not args.check)
    if args.check and stale:
        print(
            f"stale CRD files in {args.dir}: {', '.join(stale)} "
            "(run python -m cachecluster.operator.crds)",
            file=sys.stderr,
        )
        return 1
    for name in stale:
        print(f"wrote {args.dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
