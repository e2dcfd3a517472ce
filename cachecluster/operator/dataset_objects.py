"""Dataset reconcile: a Dataset body in, its plan out (no I/O).

A Dataset ``<ns>/<name>`` becomes a PersistentVolume :func:`naming.pv_name`
using our CSI driver and a PVC ``<name>`` in ``<ns>`` bound to it, and is
registered on the master of the runtime serving it (the handler does that,
with the :class:`DatasetPlan` this module computes).

* The runtime is the one ``spec.runtimes[0]`` names, else the CacheRuntime of
  the same namespace and name (Fluid's rule; the master binds the same way).
* A reference dataset (``dataset://src-ns/src-name[/sub]``) has no runtime of
  its own: it is served by its source's runtime, and its PV points at that
  runtime's FUSE view of the reference itself (``<root>/<ns>/<name>``, which
  the master restricts to the subpath). It is read-only when its source is.
* UFS credentials: the Secrets its ``encryptOptions`` name (in its own
  namespace) go to the master only
  (:attr:`DatasetPlan.secrets`); nothing holding them is created anywhere.

Everything is checked before anything is created: an invalid spec, an
unknown scheme, a reference to a reference or to itself are
:class:`~cachecluster.common.errors.ConfigError` (permanent: the spec must
change); a missing source, Secret or Secret key is
:class:`~cachecluster.common.errors.NotFound` (it may appear later: retry).
Each is one line naming the Dataset and the field.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from cachecluster.api import DatasetSpec, SecretDoc
from cachecluster.common.errors import ConfigError, NotFound
from cachecluster.operator import naming

PV_CAPACITY = "100Pi"
"""Capacity written on PVs and PVCs: a dataset has no fixed size (Fluid writes the same)."""

COMPONENT = "dataset"


@dataclasses.dataclass(frozen=True, slots=True)
class DatasetPlan:
    """What a Dataset needs: where to register it, with which secrets, and its objects."""

    namespace: str
    name: str
    spec: DatasetSpec
    runtime: tuple[str, str]
    """``(namespace, name)`` of the runtime whose master registers it and whose FUSE serves it."""
    secrets: tuple[SecretDoc, ...]
    """UFS credentials for the master (the Secrets named); empty for a reference."""
    objects: tuple[dict[str, Any], ...]
    """The PV, then the PVC."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def master_address(self) -> str:
        """``host:port`` of the serving runtime's master."""
        runtime_namespace, runtime = self.runtime
        return naming.master_address(runtime, runtime_namespace)


def where_of(body: Mapping[str, Any]) -> str:
    """How errors name an object: ``Dataset share/shared-dataset``."""
    meta = body.get("metadata") or {}
    return f"{body.get('kind', 'Dataset')} {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def parse_dataset(body: Mapping[str, Any]) -> DatasetSpec:
    """The validated spec of a Dataset body (``ConfigError`` naming the field otherwise)."""
    return DatasetSpec.from_dict(body.get("spec"), where_of(body))


def runtime_of(namespace: str, name: str, spec: DatasetSpec) -> tuple[str, str]:
    """The runtime serving a non-reference dataset (see the module docstring)."""
    if spec.runtimes:
        first = spec.runtimes[0]
        return (first.namespace or namespace, first.name)
    return (namespace, name)


def serving_runtime(
    body: Mapping[str, Any], source: Mapping[str, Any] | None
) -> tuple[DatasetSpec, tuple[str, str], DatasetSpec | None]:
    """``(spec, runtime, source spec)`` of a Dataset; ``source`` is the referenced Dataset's
    body for a reference (None when it does not exist), ignored otherwise."""
    spec = parse_dataset(body)
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    reference = spec.reference
    if reference is None:
        return spec, runtime_of(namespace, name, spec), None
    field = f"{where_of(body)}: spec.mounts[0].mountPoint"
    if (reference.namespace, reference.name) == (namespace, name):
        raise ConfigError(field, "a dataset cannot reference itself")
    if spec.mounts[0].encrypt_options or spec.shared_encrypt_options:
        raise ConfigError(field, "a reference takes no credentials (its source has them)")
    if source is None:
        raise NotFound(
            f"{field}: references {reference.namespace}/{reference.name}, "
            "which does not exist (create the source first)"
        )
    source_spec = parse_dataset(source)
    inner = source_spec.reference
    if inner is not None:
        raise ConfigError(
            field,
            f"references {reference.namespace}/{reference.name}, which is itself a reference "
            f"(to {source_spec.mounts[0].mount_point}): references cannot chain; "
            "reference the source dataset directly",
        )
    runtime = runtime_of(reference.namespace, reference.name, source_spec)
    return spec, runtime, source_spec


def credentials(
    body: Mapping[str, Any], spec: DatasetSpec, secrets: Mapping[str, Mapping[str, str]]
) -> tuple[SecretDoc, ...]:
    """The Secrets ``spec``'s encrypt options name, checked to hold the keys they name.

    ``secrets`` maps a Secret name of the dataset's namespace to its decoded
    data (what the handler could read); a missing Secret or key is ``NotFound``.
    A Secret goes whole, as ``cachecluster apply`` sends it: two datasets of a
    namespace may use different keys of one Secret.
    """
    namespace = body["metadata"]["namespace"]
    wanted: dict[str, Mapping[str, str]] = {}
    for field, secret, key in spec.secret_refs():
        where = f"{where_of(body)}: {field}.valueFrom.secretKeyRef"
        data = secrets.get(secret)
        if data is None:
            raise NotFound(f"{where}: secret {namespace}/{secret} does not exist (create it)")
        if key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise NotFound(
                f"{where}: secret {namespace}/{secret} has no key {key!r} (keys: {keys})"
            )
        wanted[secret] = data
    return tuple(SecretDoc(namespace, name, dict(data)) for name, data in sorted(wanted.items()))


def secret_names(spec: DatasetSpec) -> list[str]:
    """The Secrets (of the dataset's namespace) its encrypt options name."""
    return sorted({secret for _, secret, _ in spec.secret_refs()})


def access_modes(spec: DatasetSpec, source_spec: DatasetSpec | None) -> list[str]:
    """The PV's and PVC's modes: the spec's, read-only for a reference to a read-only source."""
    if source_spec is not None and source_spec.read_only and not spec.read_only:
        return ["ReadOnlyMany"]
    return list(spec.access_modes)


def dataset_labels(namespace: str, name: str, runtime: str) -> dict[str, str]:
    """Labels of a dataset's PV and PVC."""
    return naming.labels(runtime, COMPONENT) | {
        naming.LABEL_DATASET: name,
        naming.LABEL_DATASET_NAMESPACE: namespace,
    }


def persistent_volume(
    namespace: str, name: str, runtime: tuple[str, str], modes: list[str]
) -> dict[str, Any]:
    """The PV: our CSI driver, bind source the dataset's path in the runtime's FUSE view."""
    runtime_namespace, runtime_name = runtime
    read_only = not any(mode.startswith("ReadWrite") for mode in modes)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": naming.pv_name(namespace, name),
            "labels": dataset_labels(namespace, name, runtime_name),
        },
        "spec": {
            "capacity": {"storage": PV_CAPACITY},
            "accessModes": list(modes),
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "volumeMode": "Filesystem",
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": namespace,
                "name": name,
            },
            "csi": {
                "driver": naming.CSI_DRIVER,
                "volumeHandle": naming.volume_handle(namespace, name),
                "readOnly": read_only,
                "volumeAttributes": {
                    naming.CSI_CONTEXT_FUSE_PATH: naming.dataset_fuse_path(
                        runtime_namespace, runtime_name, namespace, name
                    ),
                    naming.CSI_CONTEXT_DATASET: f"{namespace}/{name}",
                    naming.CSI_CONTEXT_RUNTIME: f"{runtime_namespace}/{runtime_name}",
                },
            },
        },
    }


def persistent_volume_claim(
    body: Mapping[str, Any], runtime: tuple[str, str], modes: list[str]
) -> dict[str, Any]:
    """The PVC named after the dataset, bound to its PV, owned by the Dataset."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": dataset_labels(namespace, name, runtime[1]),
            "ownerReferences": [naming.owner_reference(dict(body))],
        },
        "spec": {
            "accessModes": list(modes),
            "storageClassName": "",
            "volumeMode": "Filesystem",
            "volumeName": naming.pv_name(namespace, name),
            "resources": {"requests": {"storage": PV_CAPACITY}},
        },
    }


def plan_dataset(
    body: Mapping[str, Any],
    *,
    source: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> DatasetPlan:
    """Everything a Dataset needs, checked (see the module docstring for the errors).

    ``source``: the referenced Dataset's body, for a reference. ``secrets``: the
    decoded Secrets of the dataset's namespace its encrypt options name.
    """
    body = copy.deepcopy(dict(body))
    spec, runtime, source_spec = serving_runtime(body, source)
    found = credentials(body, spec, secrets or {}) if spec.reference is None else ()
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    modes = access_modes(spec, source_spec)
    objects = (
        persistent_volume(namespace, name, runtime, modes),
        persistent_volume_claim(body, runtime, modes),
    )
    return DatasetPlan(namespace, name, spec, runtime, found, objects)


def pv_change_refused(
    body: Mapping[str, Any], existing: Mapping[str, Any] | None, desired: Mapping[str, Any]
) -> ConfigError | None:
    """Why an existing PV cannot become ``desired`` (Kubernetes keeps a PV's source and a
    bound claim's access modes as created), or None when nothing immutable changes."""
    if existing is None:
        return None
    old_spec, new_spec = existing.get("spec") or {}, desired["spec"]
    old_csi = old_spec.get("csi") or {}
    old_attributes = old_csi.get("volumeAttributes") or {}
    new_attributes = new_spec["csi"]["volumeAttributes"]
    if old_attributes.get(naming.CSI_CONTEXT_RUNTIME) != new_attributes[naming.CSI_CONTEXT_RUNTIME]:
        return ConfigError(
            f"{where_of(body)}: spec",
            f"moves the dataset from runtime {old_attributes.get(naming.CSI_CONTEXT_RUNTIME)} to "
            f"{new_attributes[naming.CSI_CONTEXT_RUNTIME]}; a PersistentVolume cannot change its "
            "source: delete the Dataset and create it again",
        )
    if list(old_spec.get("accessModes") or []) != list(new_spec["accessModes"]):
        return ConfigError(
            f"{where_of(body)}: spec.accessModes",
            f"{new_spec['accessModes']} differs from {old_spec.get('accessModes')} of the bound "
            "PersistentVolume and PVC; delete the Dataset and create it again",
        )
    return None
