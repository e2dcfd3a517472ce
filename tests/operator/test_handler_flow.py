"""The kopf handlers run as kopf calls them, against an in-memory stand-in for the
Kubernetes API (there is no API server here; the stand-in is not one of our parts).

What this shows: a bad spec becomes a ``kopf.PermanentError`` with its one-line
message (and a ``Failed`` status) before anything is created; what may heal (the
runtime's Secret not there yet, a dataset not created yet) is a
``kopf.TemporaryError`` retried later, again with nothing created; a runtime's
objects are applied in order and its cluster secret is made once.
"""

from __future__ import annotations

import asyncio
import base64
import copy
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
import yaml

from cachecluster.operator import handlers, naming
from cachecluster.operator.kube import KubeApi, decode_secret
from tests.operator.schemas import validate_builtin
from tests.operator.test_runtime_objects import runtime_object_names

EXAMPLES = Path(__file__).resolve().parents[2] / "operator" / "examples"


class MemoryKube:
    """The few calls of :class:`KubeApi`, over a dict: objects by (kind, namespace, name)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.applied: list[tuple[str, str]] = []
        self.statuses: list[tuple[str, str, dict[str, Any]]] = []

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        self.objects[(obj["kind"], meta.get("namespace", ""), meta["name"])] = copy.deepcopy(obj)
        self.applied.append((obj["kind"], meta["name"]))
        return obj

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        found = self.objects.get((kind, namespace or "", name))
        return copy.deepcopy(found) if found is not None else None

    def list(
        self, api_version: str, kind: str, namespace: str | None, label_selector: str
    ) -> list[dict[str, Any]]:
        wanted = dict(part.split("=", 1) for part in label_selector.split(","))
        return [
            copy.deepcopy(obj)
            for (k, ns, _), obj in self.objects.items()
            if k == kind
            and namespace in (None, ns)
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
        ]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        return self.objects.pop((kind, namespace or "", name), None) is not None

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str, status: dict[str, Any]
    ) -> None:
        self.statuses.append((kind, f"{namespace}/{name}", dict(status)))

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        secret = self.get("v1", "Secret", name, namespace)
        return None if secret is None else decode_secret(secret)


def _run(handler: Any, **kwargs: Any) -> None:
    """Call a handler as kopf would, with only the arguments it reads (kopf's own types
    describe every argument kopf passes)."""
    asyncio.run(handler(**kwargs))


def _memo(kube: MemoryKube) -> kopf.Memo:
    memo = kopf.Memo()
    memo.context = handlers.OperatorContext(kube=cast(KubeApi, kube), image="img:test")
    return memo


def _example(file: str, kind: str) -> dict[str, Any]:
    for doc in yaml.safe_load_all((EXAMPLES / file).read_text()):
        if doc and doc["kind"] == kind:
            doc["metadata"]["uid"] = f"uid-{kind}"
            return cast(dict[str, Any], doc)
    raise AssertionError(f"no {kind} in {file}")


def _secret_value(kube: MemoryKube, namespace: str, runtime: str) -> str:
    secret = kube.get("v1", "Secret", naming.cluster_secret_name(runtime), namespace)
    assert secret is not None
    encoded = secret["data"][naming.CLUSTER_SECRET_KEY]
    return base64.b64decode(encoded).decode()


def test_runtime_objects_applied_in_order_and_the_secret_made_once() -> None:
    kube = MemoryKube()
    body = _example("10-share-dataset.yaml", "CacheRuntime")
    _run(handlers.reconcile_runtime, body=body, memo=_memo(kube))
    name = body["metadata"]["name"]
    assert kube.applied == runtime_object_names(name)
    for obj in kube.objects.values():
        validate_builtin(obj)
    first = _secret_value(kube, "share", name)
    assert len(bytes.fromhex(first)) == 32
    body["spec"]["replicas"] = 3  # a scale: applied again, the secret kept
    _run(handlers.reconcile_runtime, body=body, memo=_memo(kube))
    assert _secret_value(kube, "share", name) == first
    workers = kube.get("apps/v1", "StatefulSet", naming.worker_name(name), "share")
    assert workers is not None and workers["spec"]["replicas"] == 3


def test_a_bad_runtime_is_permanent_and_creates_nothing() -> None:
    kube = MemoryKube()
    body = _example("10-share-dataset.yaml", "CacheRuntime")
    body["spec"]["worker"] = {"env": {"POD_IP": "1.2.3.4"}}
    with pytest.raises(kopf.PermanentError) as caught:
        _run(handlers.reconcile_runtime, body=body, memo=_memo(kube))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("kubernetes doc 1 (CacheRuntime share/shared-dataset): ")
    assert "spec.worker.env.POD_IP: is set by the operator" in message
    assert kube.objects == {}


def test_a_bad_dataset_fails_in_one_line_and_creates_nothing() -> None:
    kube = MemoryKube()
    body = _example("10-share-dataset.yaml", "Dataset")
    body["spec"]["mounts"][0]["mountPoint"] = "ftp://host/dir"
    with pytest.raises(kopf.PermanentError) as caught:
        _run(handlers.reconcile_dataset, body=body, memo=_memo(kube), patch=kopf.Patch())
    message = str(caught.value)
    assert "\n" not in message and "spec.mounts[0].mountPoint" in message
    assert kube.applied == []
    assert kube.statuses == [
        ("Dataset", "share/shared-dataset", {"phase": "Failed", "message": message})
    ]


def test_a_dataset_waits_for_its_secret_and_its_runtime_creating_nothing() -> None:
    kube = MemoryKube()
    body = _example("10-share-dataset.yaml", "Dataset")
    memo = _memo(kube)
    with pytest.raises(kopf.TemporaryError) as caught:
        _run(handlers.reconcile_dataset, body=body, memo=memo, patch=kopf.Patch())
    assert caught.value.delay == handlers.RETRY_DELAY_S
    assert "dataset-secret" in str(caught.value)  # the credentials' Secret is not there yet
    secret = _example("10-share-dataset.yaml", "Secret")
    secret["data"] = {  # as the API server stores stringData
        key: base64.b64encode(value.encode()).decode()
        for key, value in secret.pop("stringData").items()
    }
    kube.apply(secret)
    with pytest.raises(kopf.TemporaryError) as caught:
        _run(handlers.reconcile_dataset, body=body, memo=memo, patch=kopf.Patch())
    assert "is the CacheRuntime applied?" in str(caught.value)  # no runtime Secret yet
    assert kube.applied == [("Secret", "dataset-secret")]  # the test's own, nothing else
    phases = [status["phase"] for _, _, status in kube.statuses]
    assert phases == ["NotBound", "NotBound"]


def test_a_dataload_of_a_missing_dataset_waits_and_a_bad_one_fails() -> None:
    kube = MemoryKube()
    body = _example("30-dataload.yaml", "DataLoad")
    memo = _memo(kube)

    def create() -> None:
        _run(handlers.reconcile_dataload, body=body, memo=memo, reason=kopf.Reason.CREATE)

    with pytest.raises(kopf.TemporaryError, match="dataset share/shared-dataset does not exist"):
        create()
    body["spec"]["policy"] = "Cron"  # without a schedule
    with pytest.raises(kopf.PermanentError, match=r"spec\.schedule: is required with policy Cron"):
        create()
    assert kube.applied == []
    assert [status["phase"] for _, _, status in kube.statuses] == ["Failed"]
