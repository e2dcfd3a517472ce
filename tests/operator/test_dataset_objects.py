"""Dataset reconcile: the PV and PVC of the examples, references, and refusals."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from cachecluster.api import SecretDoc
from cachecluster.common.errors import ConfigError, NotFound
from cachecluster.operator import naming
from cachecluster.operator.dataset_objects import plan_dataset, secret_names
from tests.operator.schemas import validate_builtin

EXAMPLES = Path(__file__).resolve().parents[2] / "operator" / "examples"
SECRETS = {
    "dataset-secret": {"fs.oss.accessKeyId": "AK", "fs.oss.accessKeySecret": "SK", "other": "x"}
}


def _example(file: str, kind: str) -> dict[str, Any]:
    for obj in yaml.safe_load_all((EXAMPLES / file).read_text()):
        if obj and obj["kind"] == kind:
            obj["metadata"]["uid"] = f"uid-{obj['metadata']['name']}"
            return dict(obj)
    raise KeyError(kind)


@pytest.fixture
def shared() -> dict[str, Any]:
    return _example("10-share-dataset.yaml", "Dataset")


@pytest.fixture
def ref() -> dict[str, Any]:
    return _example("20-ref-dataset.yaml", "Dataset")


def test_shared_dataset_gets_a_pv_and_a_pvc_on_its_runtime(shared: dict[str, Any]) -> None:
    plan = plan_dataset(shared, secrets=SECRETS)
    assert plan.runtime == ("share", "shared-dataset")
    assert plan.master_address == "shared-dataset-master.share.svc:19998"
    pv, pvc = plan.objects
    for obj in plan.objects:
        validate_builtin(obj)
        assert obj["metadata"]["labels"][naming.LABEL_DATASET] == "shared-dataset"
        assert obj["metadata"]["labels"][naming.LABEL_DATASET_NAMESPACE] == "share"
        assert obj["metadata"]["labels"][naming.LABEL_RUNTIME] == "shared-dataset"
        assert obj["spec"]["accessModes"] == ["ReadOnlyMany"]
        assert obj["spec"]["storageClassName"] == ""
    assert pv["metadata"]["name"] == naming.pv_name("share", "shared-dataset")
    assert "namespace" not in pv["metadata"] and "ownerReferences" not in pv["metadata"]
    csi = pv["spec"]["csi"]
    assert csi["driver"] == naming.CSI_DRIVER
    assert csi["volumeHandle"] == "share/shared-dataset"
    assert csi["readOnly"] is True
    assert csi["volumeAttributes"] == {
        naming.CSI_CONTEXT_FUSE_PATH: naming.dataset_fuse_path(
            "share", "shared-dataset", "share", "shared-dataset"
        ),
        naming.CSI_CONTEXT_DATASET: "share/shared-dataset",
        naming.CSI_CONTEXT_RUNTIME: "share/shared-dataset",
    }
    assert pv["spec"]["claimRef"]["namespace"] == "share"
    assert pv["spec"]["claimRef"]["name"] == pvc["metadata"]["name"] == "shared-dataset"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pvc["metadata"]["namespace"] == "share"
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    (owner,) = pvc["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": naming.API_VERSION,
        "kind": "Dataset",
        "name": "shared-dataset",
        "uid": "uid-shared-dataset",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_the_named_secrets_go_to_the_master_and_nowhere_else(shared: dict[str, Any]) -> None:
    plan = plan_dataset(shared, secrets=SECRETS | {"unrelated": {"k": "v"}})
    (secret,) = plan.secrets
    assert secret == SecretDoc("share", "dataset-secret", SECRETS["dataset-secret"])
    assert secret_names(plan.spec) == ["dataset-secret"]
    assert "SK" not in repr(plan)
    assert "SK" not in yaml.safe_dump(list(plan.objects))


def test_reference_points_at_the_sources_runtime_and_has_no_workloads(
    shared: dict[str, Any], ref: dict[str, Any]
) -> None:
    plan = plan_dataset(ref, source=shared)
    assert plan.runtime == ("share", "shared-dataset")
    assert plan.secrets == ()
    pv, pvc = plan.objects
    assert [o["kind"] for o in plan.objects] == ["PersistentVolume", "PersistentVolumeClaim"]
    for obj in plan.objects:
        validate_builtin(obj)
    assert pvc["metadata"]["namespace"] == "ref" and pvc["metadata"]["name"] == "ref-dataset"
    assert pv["spec"]["csi"]["volumeAttributes"][naming.CSI_CONTEXT_FUSE_PATH] == (
        naming.dataset_fuse_path("share", "shared-dataset", "ref", "ref-dataset")
    )
    assert pv["spec"]["csi"]["volumeAttributes"][naming.CSI_CONTEXT_RUNTIME] == (
        "share/shared-dataset"
    )
    assert pv["spec"]["csi"]["volumeHandle"] == "ref/ref-dataset"
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == "uid-ref-dataset"


def test_reference_to_a_read_only_source_stays_read_only(
    shared: dict[str, Any], ref: dict[str, Any]
) -> None:
    ref["spec"]["accessModes"] = ["ReadWriteMany"]
    pv, pvc = plan_dataset(ref, source=shared).objects
    assert pv["spec"]["accessModes"] == pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert pv["spec"]["csi"]["readOnly"] is True
    shared["spec"]["accessModes"] = ["ReadWriteMany"]
    pv, _ = plan_dataset(ref, source=shared).objects
    assert pv["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["spec"]["csi"]["readOnly"] is False


def test_runtime_named_in_the_spec(shared: dict[str, Any]) -> None:
    shared["spec"]["runtimes"] = [{"name": "big-cache", "namespace": "caches"}]
    plan = plan_dataset(shared, secrets=SECRETS)
    assert plan.runtime == ("caches", "big-cache")
    pv, _ = plan.objects
    assert pv["spec"]["csi"]["volumeAttributes"][naming.CSI_CONTEXT_FUSE_PATH] == (
        naming.dataset_fuse_path("caches", "big-cache", "share", "shared-dataset")
    )


def _edit(body: dict[str, Any], mount_point: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["spec"]["mounts"][0]["mountPoint"] = mount_point
    return body


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda b: _edit(b, "ftp://host/dir"),
            r"^Dataset share/shared-dataset: spec.mounts\[0\].mountPoint: .*ftp",
        ),
        (
            lambda b: b["spec"].pop("mounts") and b,
            r"^Dataset share/shared-dataset: spec.mounts: must be a non-empty list$",
        ),
        (
            lambda b: (
                b["spec"]["mounts"][0]["encryptOptions"][0]["valueFrom"]["secretKeyRef"].pop("name")
                and b
            ),
            r"encryptOptions\[0\].valueFrom.secretKeyRef.name: is required$",
        ),
        (
            lambda b: b["spec"].update(accessModes=["ReadMostly"]) or b,
            r"spec.accessModes\[0\]: unknown access mode 'ReadMostly'",
        ),
    ],
)
def test_invalid_specs_are_refused_in_one_line(
    shared: dict[str, Any], change: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        plan_dataset(change(shared), secrets=SECRETS)
    assert "\n" not in str(caught.value)


def test_missing_secret_or_key_is_not_found_naming_the_field(shared: dict[str, Any]) -> None:
    with pytest.raises(NotFound, match=r"secretKeyRef: secret share/dataset-secret does not exist"):
        plan_dataset(shared, secrets={})
    with pytest.raises(NotFound, match=r"has no key 'fs.oss.accessKeySecret' \(keys: fs.oss"):
        plan_dataset(shared, secrets={"dataset-secret": {"fs.oss.accessKeyId": "AK"}})


def test_reference_refusals(shared: dict[str, Any], ref: dict[str, Any]) -> None:
    with pytest.raises(NotFound, match=r"references share/shared-dataset, which does not exist"):
        plan_dataset(ref)
    chained = _edit(ref, "dataset://ref/ref-dataset")
    chained["metadata"]["name"] = "ref2"
    with pytest.raises(ConfigError, match=r"is itself a reference \(to dataset://share/"):
        plan_dataset(chained, source=ref)
    with pytest.raises(ConfigError, match="cannot reference itself"):
        plan_dataset(_edit(ref, "dataset://ref/ref-dataset"), source=ref)
    with pytest.raises(ConfigError, match=r"dataset://<namespace>/<name>"):
        plan_dataset(_edit(ref, "dataset://share"), source=shared)


def test_immutable_pv_changes_are_refused_in_one_line(shared: dict[str, Any]) -> None:
    from cachecluster.operator.dataset_objects import pv_change_refused

    before = plan_dataset(shared, secrets=SECRETS).objects[0]
    assert pv_change_refused(shared, None, before) is None
    assert pv_change_refused(shared, before, before) is None
    moved = copy.deepcopy(shared)
    moved["spec"]["runtimes"] = [{"name": "other"}]
    refused = pv_change_refused(moved, before, plan_dataset(moved, secrets=SECRETS).objects[0])
    assert refused is not None
    assert str(refused).startswith(
        "Dataset share/shared-dataset: spec: moves the dataset from runtime "
        "share/shared-dataset to share/other"
    )
    writable = copy.deepcopy(shared)
    writable["spec"]["accessModes"] = ["ReadWriteMany"]
    refused = pv_change_refused(
        writable, before, plan_dataset(writable, secrets=SECRETS).objects[0]
    )
    assert refused is not None and "spec.accessModes: ['ReadWriteMany'] differs" in str(refused)
