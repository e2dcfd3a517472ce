"""Schema checks shared by the operator tests: Kubernetes' own schemas and our CRDs'.

Built-in objects validate with ``kubernetes_validate`` (strict: unknown fields
fail) against :data:`K8S_VERSION`; our custom objects validate with
``jsonschema`` against the openAPIV3Schema of our CRD, made strict
(:func:`strict`) so that a field the API server would silently prune fails.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate

from cachecluster.operator import crds

K8S_VERSION = "1.37.0"
"""The newest Kubernetes version the installed kubernetes_validate bundles."""


def validate_builtin(obj: dict[str, Any]) -> None:
    """Raise when ``obj`` (a Pod, PV, Job...) is not valid for :data:`K8S_VERSION`."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def crd_for(kind: str) -> dict[str, Any]:
    """Our CRD of ``kind`` (Dataset, CacheRuntime, DataLoad)."""
    for crd in crds.all_crds():
        if crd["spec"]["names"]["kind"] == kind:
            return crd
    raise KeyError(kind)


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever it lists ``properties``."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def validate_custom(obj: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``obj`` does not fit its CRD's schema."""
    schema = crd_for(obj["kind"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.Draft7Validator(strict(schema)).validate(obj)
