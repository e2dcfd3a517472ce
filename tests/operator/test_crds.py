"""The CRDs: fresh on disk, valid for Kubernetes, structural, in step with the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cachecluster.api import models
from cachecluster.cli import get_cmds
from cachecluster.operator import crds
from cachecluster.operator.naming import GROUP, VERSION
from cachecluster.worker import tiers
from tests.operator.schemas import crd_for, validate_builtin


def _root(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crds_are_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    assert crds.main(["--check"]) == 0, capsys.readouterr().err


def test_check_names_changed_missing_and_orphaned_files(tmp_path: Path) -> None:
    assert crds.sync(tmp_path) == sorted(crds.file_name(crd) for crd in crds.all_crds())
    assert crds.sync(tmp_path, write=False) == []
    (tmp_path / "datasets.cachecluster.io.yaml").write_text("# edited by hand\n")
    (tmp_path / "dataloads.cachecluster.io.yaml").unlink()
    (tmp_path / "gone.yaml").write_text("")
    stale = ["dataloads.cachecluster.io.yaml", "datasets.cachecluster.io.yaml", "gone.yaml"]
    assert crds.main(["--check", "--dir", str(tmp_path)]) == 1
    assert crds.sync(tmp_path, write=False) == stale
    assert crds.sync(tmp_path) == stale
    assert crds.sync(tmp_path, write=False) == []


@pytest.mark.parametrize("path", sorted(crds.CRD_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_committed_crd_validates_as_apiextensions_v1(path: Path) -> None:
    crd = yaml.safe_load(path.read_text())
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["spec"]["group"] == GROUP
    assert [v["name"] for v in crd["spec"]["versions"]] == [VERSION]
    validate_builtin(crd)


def test_a_broken_crd_fails_validation() -> None:
    crd = crd_for("Dataset")
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["propertiez"] = {}
    with pytest.raises(Exception, match="propertiez"):
        validate_builtin(crd)


def _structural_problems(node: dict[str, Any], where: str) -> list[str]:
    """Kubernetes' structural-schema rule: every node has a type unless it opts out."""
    problems = []
    opted_out = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields"
    )
    if "type" not in node and not opted_out:
        problems.append(where)
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where} (properties and additionalProperties)")
    for name, child in (node.get("properties") or {}).items():
        problems += _structural_problems(child, f"{where}.{name}")
    if isinstance(node.get("items"), dict):
        problems += _structural_problems(node["items"], f"{where}[]")
    if isinstance(node.get("additionalProperties"), dict):
        problems += _structural_problems(node["additionalProperties"], f"{where}{{}}")
    return problems


@pytest.mark.parametrize("kind", ["Dataset", "CacheRuntime", "DataLoad"])
def test_schemas_are_structural_with_status_subresource(kind: str) -> None:
    assert _structural_problems(_root(kind), kind) == []
    version = crd_for(kind)["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert crd_for(kind)["spec"]["scope"] == "Namespaced"


def test_runtime_has_the_scale_subresource() -> None:
    scale = crd_for("CacheRuntime")["spec"]["versions"][0]["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.replicas"
    assert scale["statusReplicasPath"] == ".status.replicas"
    assert "replicas" in _root("CacheRuntime")["properties"]["status"]["properties"]


def _props(node: dict[str, Any]) -> set[str]:
    return set(node["properties"])


def test_schema_fields_are_the_models_fields() -> None:
    """Every field a model accepts is in the schema (or the API server would prune it)
    and the schema declares nothing the model refuses."""
    dataset = _root("Dataset")["properties"]["spec"]
    assert _props(dataset) == models._DATASET_FIELDS | models._DATASET_IGNORED
    mount = dataset["properties"]["mounts"]["items"]
    assert _props(mount) == models._MOUNT_FIELDS
    encrypt = mount["properties"]["encryptOptions"]["items"]
    assert _props(encrypt) == {"name", "valueFrom"}
    assert _props(encrypt["properties"]["valueFrom"]["properties"]["secretKeyRef"]) == {
        "name",
        "key",
    }
    shared = dataset["properties"]["sharedEncryptOptions"]["items"]
    assert shared == mount["properties"]["encryptOptions"]["items"]
    assert _props(dataset["properties"]["runtimes"]["items"]) == models._RUNTIME_REF_FIELDS
    modes = dataset["properties"]["accessModes"]["items"]["enum"]
    assert tuple(modes) == models.ACCESS_MODES

    runtime = _root("CacheRuntime")["properties"]["spec"]
    assert _props(runtime) == models._RUNTIME_FIELDS
    level = runtime["properties"]["tieredstore"]["properties"]["levels"]["items"]
    assert _props(level) == set(tiers._LEVEL_KEYS)
    for component in models._COMPONENTS:
        section = runtime["properties"][component]
        assert _props(section) == models._COMPONENT_FIELDS
        assert _props(section["properties"]["resources"]) == set(models._RESOURCE_KEYS)
        toleration = section["properties"]["tolerations"]["items"]
        assert _props(toleration) == models._TOLERATION_FIELDS
        assert _props(section["properties"]["podMetadata"]) == models._POD_METADATA_FIELDS

    dataload = _root("DataLoad")["properties"]["spec"]
    assert _props(dataload) == models._DATALOAD_FIELDS
    assert _props(dataload["properties"]["dataset"]) == {"name", "namespace"}
    assert _props(dataload["properties"]["target"]["items"]) == {"path", "replicas"}
    assert tuple(dataload["properties"]["policy"]["enum"]) == models.POLICIES


def _headers(kind: str) -> list[str]:
    columns = crd_for(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    return [c["name"].upper() for c in columns]


def _headers_default(kind: str) -> list[str]:
    columns = crd_for(kind)["spec"]["versions"][0]["additionalPrinterColumns"]
    return [c["name"].upper() for c in columns if not c.get("priority")]


def test_printer_columns_are_what_cachecluster_get_prints() -> None:
    for rows, kind in (
        (get_cmds.dataset_rows, "Dataset"),
        (get_cmds.runtime_rows, "CacheRuntime"),
        (get_cmds.dataload_rows, "DataLoad"),
    ):
        header, _ = rows([], wide=False, all_namespaces=False)
        assert ["NAME", *_headers_default(kind)] == header, kind
    wide, _ = get_cmds.dataset_rows([], wide=True, all_namespaces=False)
    assert ["NAME", *_headers("Dataset")] == wide
