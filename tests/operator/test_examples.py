"""operator/examples/: every object is valid for Kubernetes, for our CRDs and for our models."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cachecluster.api import parse_documents
from cachecluster.common.errors import ConfigError
from cachecluster.operator.naming import API_VERSION, FLUID_GROUP
from tests.operator.schemas import validate_builtin, validate_custom
from tests.operator.test_runtime_objects import COMPONENTS

EXAMPLES = Path(__file__).resolve().parents[2] / "operator" / "examples"
FILES = sorted(EXAMPLES.rglob("*.yaml"))


def _objects(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_the_examples_mirror_the_seeds() -> None:
    found = {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
        for path in FILES
        for o in _objects(path)
        if o["apiVersion"] in (API_VERSION, "v1")
    }
    assert ("Dataset", "share", "shared-dataset") in found
    assert ("CacheRuntime", "share", "shared-dataset") in found
    assert ("Secret", "share", "dataset-secret") in found
    ref = found[("Dataset", "ref", "ref-dataset")]
    assert ref["spec"]["mounts"] == [{"mountPoint": "dataset://share/shared-dataset"}]
    policies = {
        o["spec"].get("policy", "Once") for (k, _, _), o in found.items() if k == "DataLoad"
    }
    assert policies == {"Once", "Cron"}
    pod = found[("Pod", "ref", "reader")]
    (volume,) = pod["spec"]["volumes"]
    assert volume["persistentVolumeClaim"] == {"claimName": "ref-dataset", "readOnly": True}
    fluid_kinds = {
        o["kind"] for path in FILES for o in _objects(path) if FLUID_GROUP in o["apiVersion"]
    }
    assert "JindoRuntime" in fluid_kinds


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_validates(path: Path) -> None:
    objects = _objects(path)
    assert objects
    for obj in objects:
        if obj["apiVersion"] == API_VERSION:
            validate_custom(obj)
        elif obj["apiVersion"].startswith(FLUID_GROUP):
            continue  # Fluid's kinds: checked by the models below, not served by the operator
        else:
            validate_builtin(obj)
    ours = [o for o in objects if o["kind"] not in ("Namespace", "Pod")]
    if ours:
        documents = parse_documents(path.read_text(), str(path))
        assert len(documents) == len(ours)


def test_custom_schema_refuses_what_the_api_server_would() -> None:
    (load,) = _objects(EXAMPLES / "30-dataload.yaml")
    load["spec"]["policy"] = "Twice"
    with pytest.raises(jsonschema.ValidationError, match="Twice"):
        validate_custom(load)
    (ref,) = _objects(EXAMPLES / "20-ref-dataset.yaml")
    ref["spec"]["mounts"][0]["mountpoint"] = "typo"  # pruned by the server: refused here
    with pytest.raises(jsonschema.ValidationError, match="mountpoint"):
        validate_custom(ref)


def test_models_refuse_what_the_schema_lets_through() -> None:
    """The finer rules live in the models: the operator applies them to every object."""
    text = (EXAMPLES / "20-ref-dataset.yaml").read_text().replace("dataset://share/", "dataset://")
    obj = yaml.safe_load(text)
    validate_custom(obj)
    with pytest.raises(ConfigError, match=r"spec.mounts\[0\].mountPoint"):
        parse_documents(text, "ref.yaml")


def test_runtime_components_pass_the_crd_in_both_env_forms_and_typos_fail() -> None:
    """The API server keeps what the model reads under master/worker/fuse (nothing pruned)."""
    (runtime,) = [
        o for o in _objects(EXAMPLES / "10-share-dataset.yaml") if o["kind"] == "CacheRuntime"
    ]
    # master: env as a mapping; worker: env as a list with valueFrom (copied: shared)
    runtime["spec"].update(copy.deepcopy(COMPONENTS))
    validate_custom(runtime)
    parse_documents(yaml.safe_dump(runtime), "runtime.yaml")
    runtime["spec"]["worker"]["nodeSelecter"] = {"a": "b"}
    with pytest.raises(jsonschema.ValidationError, match="nodeSelecter"):
        validate_custom(runtime)
    del runtime["spec"]["worker"]["nodeSelecter"]
    runtime["spec"]["fuse"]["tolerations"][0]["operator"] = "In"
    with pytest.raises(jsonschema.ValidationError, match="'In'"):
        validate_custom(runtime)
