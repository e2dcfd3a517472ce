"""DataLoad reconcile: a DataLoad body in, its Job (policy Once) or CronJob (Cron) out.

Choice: a Job, not a call from the operator. The Job's pod runs the same
path as a user at a terminal: it mints an admin token from the runtime's
cluster secret (mounted from ``<rt>-cluster-secret``), removes the master's
previous run of this DataLoad, then ``cachecluster apply -f - --wait`` with
the DataLoad as a ``policy: Once`` document, so the master runs it under the
DataLoad's own namespace and name and the pod exits 0 when it is Complete,
1 when it Failed. Kubernetes then gives what a Job gives: retries
(``backoffLimit``), ``ttlSecondsAfterFinished``, schedules (a CronJob with
``concurrencyPolicy: Forbid`` runs the same pod at each tick: the master's
own Cron scheduler is not used, so one schedule runs, the one Kubernetes
shows), and the phase and duration the operator copies from the Job
(:func:`cachecluster.operator.status.dataload_status`); the progress comes
from the master.

The Job runs in the runtime's namespace, where the cluster secret is; it is
owned by the DataLoad when that is the same namespace, else found by its
labels (:data:`naming.LABEL_DATALOAD`, ...) and deleted with the DataLoad.
"""

from __future__ import annotations

import copy
import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from cachecluster.api import DataLoadSpec
from cachecluster.common.errors import ConfigError
from cachecluster.operator import naming

COMPONENT = "dataload"
TOKEN_TTL = "2h"
"""Validity of the admin token a load pod mints (the pod re-mints on a retry)."""
BACKOFF_LIMIT = 2
MAX_JOB_NAME = 63
"""A Job's name becomes a label value of its pods."""
MAX_CRONJOB_NAME = 52
"""A CronJob adds 11 characters to name its Jobs."""
K8S_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def where_of(body: Mapping[str, Any]) -> str:
    """``DataLoad share/warmup``."""
    meta = body.get("metadata") or {}
    return f"DataLoad {meta.get('namespace', '?')}/{meta.get('name', '?')}"


def parse_dataload(body: Mapping[str, Any]) -> DataLoadSpec:
    """The validated spec; a schedule Kubernetes cannot run is refused too."""
    spec = DataLoadSpec.from_dict(body.get("spec"), where_of(body))
    if spec.schedule is not None:
        fields = spec.schedule.split()
        if len(fields) != 5 and spec.schedule.strip() not in K8S_CRON_MACROS:
            raise ConfigError(
                f"{where_of(body)}: spec.schedule",
                f"{spec.schedule!r}: a CronJob takes five fields (e.g. '0 2 * * *') or "
                f"one of {', '.join(K8S_CRON_MACROS)}",
            )
    return spec


def dataset_of(body: Mapping[str, Any], spec: DataLoadSpec) -> tuple[str, str]:
    """``(namespace, name)`` of the dataset a DataLoad loads."""
    return (spec.dataset.namespace or body["metadata"]["namespace"], spec.dataset.name)


def run_document(body: Mapping[str, Any], spec: DataLoadSpec) -> str:
    """The YAML the pod applies: this DataLoad as one run (policy Once, no schedule)."""
    dataset_namespace, dataset = dataset_of(body, spec)
    once = DataLoadSpec(
        dataset=type(spec.dataset)(dataset, dataset_namespace),
        targets=spec.targets,
        load_metadata=spec.load_metadata,
    )
    document = {
        "apiVersion": naming.API_VERSION,
        "kind": "DataLoad",
        "metadata": {"name": body["metadata"]["name"], "namespace": body["metadata"]["namespace"]},
        "spec": once.to_dict(),
    }
    return yaml.safe_dump(document, sort_keys=False)


def load_command(body: Mapping[str, Any], runtime: tuple[str, str]) -> list[str]:
    """The container's command (see the module docstring)."""
    runtime_namespace, runtime_name = runtime
    master = f"--master={naming.master_address(runtime_name, runtime_namespace)}"
    ref = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
    token = shlex.join(
        [
            "cachecluster",
            "token",
            "--admin",
            f"--secret-file={naming.CLUSTER_SECRET_FILE}",
            f"--ttl={TOKEN_TTL}",
        ]
    )
    forget = shlex.join(["cachecluster", "delete", "dataload", ref, master])
    apply = shlex.join(["cachecluster", "apply", "-f", "-", "--wait", master])
    # "$$" is how a pod spec writes "$" (Kubernetes expands $(NAME) itself).
    script = (
        f'CACHECLUSTER_TOKEN="$$({token})" && export CACHECLUSTER_TOKEN && '
        f"{{ {forget} >/dev/null 2>&1 || true; }} && "
        f'printf "%s" "$$DATALOAD" | {apply}'
    )
    return ["sh", "-c", script]


def job_labels(body: Mapping[str, Any], runtime: tuple[str, str]) -> dict[str, str]:
    """Labels of a DataLoad's Job, CronJob and pods (the delete handler selects by them)."""
    return naming.labels(runtime[1], COMPONENT) | {
        naming.LABEL_DATALOAD: body["metadata"]["name"],
        naming.LABEL_DATALOAD_NAMESPACE: body["metadata"]["namespace"],
    }


def job_selector(body: Mapping[str, Any]) -> str:
    """Label selector of a DataLoad's Jobs and CronJob."""
    meta = body["metadata"]
    return (
        f"{naming.LABEL_DATALOAD}={meta['name']},"
        f"{naming.LABEL_DATALOAD_NAMESPACE}={meta['namespace']}"
    )


def job_spec(
    body: Mapping[str, Any],
    spec: DataLoadSpec,
    runtime: tuple[str, str],
    *,
    image: str,
    pull_policy: str,
) -> dict[str, Any]:
    """The ``spec`` of the Job (also the CronJob's ``jobTemplate.spec``)."""
    # Kubernetes expands $(NAME) in env values too: "$$" keeps a literal "$".
    document = run_document(body, spec).replace("$", "$$")
    container = {
        "name": "load",
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": load_command(body, runtime),
        "env": [{"name": "DATALOAD", "value": document}],
        "volumeMounts": [
            {"name": "cluster-secret", "mountPath": naming.CLUSTER_SECRET_DIR, "readOnly": True}
        ],
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
    }
    out: dict[str, Any] = {
        "backoffLimit": BACKOFF_LIMIT,
        "template": {
            "metadata": {"labels": job_labels(body, runtime)},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "containers": [container],
                "volumes": [
                    {
                        "name": "cluster-secret",
                        "secret": {
                            "secretName": naming.cluster_secret_name(runtime[1]),
                            "defaultMode": 0o400,
                            "items": [
                                {
                                    "key": naming.CLUSTER_SECRET_KEY,
                                    "path": naming.CLUSTER_SECRET_KEY,
                                }
                            ],
                        },
                    }
                ],
            },
        },
    }
    if spec.ttl_seconds_after_finished is not None:
        out["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    return out


def desired_dataload_objects(
    body: Mapping[str, Any],
    runtime: tuple[str, str],
    *,
    image: str = naming.DEFAULT_IMAGE,
    pull_policy: str = "IfNotPresent",
) -> list[dict[str, Any]]:
    """The Job (policy Once) or CronJob (policy Cron) of a DataLoad served by ``runtime``.

    ``runtime`` is the ``(namespace, name)`` serving the DataLoad's dataset
    (for a reference dataset, its source's: see
    :func:`cachecluster.operator.dataset_objects.serving_runtime`).
    """
    body = copy.deepcopy(dict(body))
    spec = parse_dataload(body)
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    runtime_namespace = runtime[0]
    job_name = naming.dataload_job_name(namespace, name, runtime_namespace)
    limit = MAX_JOB_NAME if spec.policy == "Once" else MAX_CRONJOB_NAME
    if len(job_name) > limit:
        raise ConfigError(
            f"{where_of(body)}: metadata.name",
            f"its {'Job' if spec.policy == 'Once' else 'CronJob'} {job_name!r} would be longer "
            f"than {limit} characters; choose a shorter name",
        )
    metadata: dict[str, Any] = {
        "name": job_name,
        "namespace": runtime_namespace,
        "labels": job_labels(body, runtime),
    }
    if namespace == runtime_namespace:
        metadata["ownerReferences"] = [naming.owner_reference(dict(body))]
    spec_of_job = job_spec(body, spec, runtime, image=image, pull_policy=pull_policy)
    if spec.policy == "Once":
        return [
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec_of_job}
        ]
    cron_job = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata,
        "spec": {
            "schedule": spec.schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {
                "metadata": {"labels": job_labels(body, runtime)},
                "spec": spec_of_job,
            },
        },
    }
    return [cron_job]
