"""DataLoad reconcile: the Job and CronJob of the examples, and refusals."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from cachecluster.api import DataLoadSpec, parse_documents
from cachecluster.common.errors import ConfigError
from cachecluster.operator import naming
from cachecluster.operator.dataload_objects import (
    desired_dataload_objects,
    job_selector,
    parse_dataload,
    run_document,
)
from tests.operator.schemas import validate_builtin

EXAMPLES = Path(__file__).resolve().parents[2] / "operator" / "examples"
RUNTIME = ("share", "shared-dataset")


def _example(file: str) -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load((EXAMPLES / file).read_text())
    obj["metadata"]["uid"] = "uid-1"
    return obj


@pytest.fixture
def once() -> dict[str, Any]:
    return _example("30-dataload.yaml")


@pytest.fixture
def cron() -> dict[str, Any]:
    return _example("31-dataload-cron.yaml")


def _pod(job_spec: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job_spec["template"]["spec"]
    return pod


def test_once_is_a_job_in_the_runtime_namespace(once: dict[str, Any]) -> None:
    (job,) = desired_dataload_objects(once, RUNTIME, image="img:1", pull_policy="Always")
    validate_builtin(job)
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == "shared-dataset-warmup-load"
    assert job["metadata"]["namespace"] == "share"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "DataLoad"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    labels = job["metadata"]["labels"]
    assert labels[naming.LABEL_DATALOAD] == "shared-dataset-warmup"
    assert labels[naming.LABEL_DATALOAD_NAMESPACE] == "share"
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert job_selector(once) == (
        f"{naming.LABEL_DATALOAD}=shared-dataset-warmup,{naming.LABEL_DATALOAD_NAMESPACE}=share"
    )
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    pod = _pod(job["spec"])
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "img:1" and container["imagePullPolicy"] == "Always"
    (volume,) = pod["volumes"]
    assert volume["secret"]["secretName"] == naming.cluster_secret_name("shared-dataset")
    assert container["volumeMounts"][0]["mountPath"] == naming.CLUSTER_SECRET_DIR
    assert container["volumeMounts"][0]["readOnly"] is True


def test_the_pod_mints_a_token_and_applies_one_run(once: dict[str, Any]) -> None:
    (job,) = desired_dataload_objects(once, RUNTIME)
    (container,) = _pod(job["spec"])["containers"]
    assert container["command"][:2] == ["sh", "-c"]
    script = container["command"][2]
    master = f"--master={naming.master_address('shared-dataset', 'share')}"
    assert f"--secret-file={naming.CLUSTER_SECRET_FILE}" in script
    assert shlex.join(["cachecluster", "apply", "-f", "-", "--wait", master]) in script
    assert "delete dataload share/shared-dataset-warmup" in script
    assert '"$$DATALOAD"' in script and '"$$(cachecluster token --admin' in script
    (env,) = container["env"]
    documents = parse_documents(env["value"].replace("$$", "$"), "env DATALOAD")
    (document,) = documents
    assert (document.kind, document.ref) == ("DataLoad", "share/shared-dataset-warmup")
    assert document.spec == DataLoadSpec.from_dict(
        {"dataset": {"name": "shared-dataset", "namespace": "share"}, "loadMetadata": True}
    )


def test_cron_is_a_cronjob_running_one_run_per_tick(cron: dict[str, Any]) -> None:
    (cron_job,) = desired_dataload_objects(cron, RUNTIME)
    validate_builtin(cron_job)
    assert cron_job["kind"] == "CronJob"
    assert cron_job["metadata"]["name"] == "shared-dataset-nightly-load"
    assert cron_job["spec"]["schedule"] == "0 2 * * *"
    assert cron_job["spec"]["concurrencyPolicy"] == "Forbid"
    template = cron_job["spec"]["jobTemplate"]
    assert template["metadata"]["labels"][naming.LABEL_DATALOAD] == "shared-dataset-nightly"
    document = yaml.safe_load(_pod(template["spec"])["containers"][0]["env"][0]["value"])
    assert "policy" not in document["spec"] and "schedule" not in document["spec"]
    assert document["spec"]["target"] == [{"path": "/wwm_uncased_L-24_H-1024_A-16"}]


def test_a_dataload_of_another_namespace_runs_beside_the_runtime(once: dict[str, Any]) -> None:
    once["metadata"]["namespace"] = "ref"
    once["spec"]["dataset"] = {"name": "ref-dataset"}
    (job,) = desired_dataload_objects(once, RUNTIME)
    validate_builtin(job)
    assert job["metadata"]["namespace"] == "share"
    assert job["metadata"]["name"] == "ref-shared-dataset-warmup-load"
    assert "ownerReferences" not in job["metadata"]  # no owner across namespaces
    assert job["metadata"]["labels"][naming.LABEL_DATALOAD_NAMESPACE] == "ref"
    text = run_document(once, parse_dataload(once))
    assert yaml.safe_load(text)["spec"]["dataset"] == {"name": "ref-dataset", "namespace": "ref"}


def test_dollars_in_paths_survive_kubernetes_expansion(once: dict[str, Any]) -> None:
    once["spec"]["target"] = [{"path": "/a$(HOME)b"}]
    (job,) = desired_dataload_objects(once, RUNTIME)
    value = _pod(job["spec"])["containers"][0]["env"][0]["value"]
    assert "/a$$(HOME)b" in value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda b: b["spec"].update(policy="Cron"),
            r"^DataLoad share/shared-dataset-warmup: spec.schedule: is required with policy Cron$",
        ),
        (
            lambda b: b["spec"].update(policy="Cron", schedule="*/2 * * * * *"),
            r"spec.schedule: '\*/2 \* \* \* \* \*': a CronJob takes five fields",
        ),
        (lambda b: b["spec"].pop("dataset"), r"spec.dataset.name: is required"),
        (lambda b: b["spec"].update(ttlSecondsAfterFinished=-1), r"ttlSecondsAfterFinished"),
        (lambda b: b["metadata"].update(name="x" * 60), r"metadata.name: its Job 'x+-load' would"),
    ],
)
def test_bad_dataloads_are_refused_in_one_line(
    once: dict[str, Any], change: Any, message: str
) -> None:
    change(once)
    with pytest.raises(ConfigError, match=message) as caught:
        desired_dataload_objects(once, RUNTIME)
    assert "\n" not in str(caught.value)
