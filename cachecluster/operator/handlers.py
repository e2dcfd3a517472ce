"""kopf handlers for Dataset, CacheRuntime and DataLoad: thin shells around the reconcilers.

Each handler reads what its pure reconcile function needs from the API
server, calls it (:mod:`~cachecluster.operator.dataset_objects`,
:mod:`~cachecluster.operator.runtime_objects`,
:mod:`~cachecluster.operator.dataload_objects`), registers datasets on the
serving runtime's master (:mod:`~cachecluster.operator.master_calls`), and
server-side applies the desired objects (:class:`~cachecluster.operator.kube.KubeApi`,
in a thread: the loop never blocks). Timers copy status back
(:mod:`~cachecluster.operator.status`).

Errors (:func:`kopf_error`): an invalid spec is a ``kopf.PermanentError``
(status ``Failed`` with the one-line message; kopf tries again when the spec
changes); a missing Secret, source, dataset or runtime, or a master not
ready, is a ``kopf.TemporaryError`` retried after :data:`RETRY_DELAY_S`.
Deleting a dataset that references point at is refused by the master: the
delete handler retries (the Dataset stays, Terminating, with its PVC) until
the references are gone.

Handlers register in :data:`REGISTRY`, which ``cachecluster operator``
hands to ``kopf.run``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf

from cachecluster.common.errors import (
    CacheClusterError,
    ConfigError,
    ErrorKind,
    NotFound,
    Unavailable,
)
from cachecluster.operator import master_calls, naming, status
from cachecluster.operator.dataload_objects import (
    dataset_of,
    desired_dataload_objects,
    job_selector,
    parse_dataload,
)
from cachecluster.operator.dataset_objects import (
    parse_dataset,
    plan_dataset,
    pv_change_refused,
    secret_names,
    serving_runtime,
)
from cachecluster.operator.kube import KubeApi
from cachecluster.operator.runtime_objects import desired_runtime_objects

log = logging.getLogger(__name__)

REGISTRY = kopf.OperatorRegistry()
RETRY_DELAY_S = 15.0
DATASET_STATUS_INTERVAL_S = 30.0
RUNTIME_STATUS_INTERVAL_S = 15.0
DATALOAD_STATUS_INTERVAL_S = 10.0

G, V = naming.GROUP, naming.VERSION


@dataclasses.dataclass
class OperatorContext:
    """What every handler shares: the API client and the image of the pods it creates."""

    kube: KubeApi
    image: str = naming.DEFAULT_IMAGE
    pull_policy: str = "IfNotPresent"


def kopf_error(exc: CacheClusterError) -> kopf.PermanentError | kopf.TemporaryError:
    """``PermanentError`` for an invalid spec, ``TemporaryError`` for what may heal."""
    if exc.kind is ErrorKind.INVALID:
        return kopf.PermanentError(str(exc))
    return kopf.TemporaryError(str(exc), delay=RETRY_DELAY_S)


def _ctx(memo: Any) -> OperatorContext:
    context: OperatorContext = memo.context
    return context


async def _call(function: Any, *args: Any) -> Any:
    """A blocking API call, in a thread."""
    return await asyncio.to_thread(function, *args)


@kopf.on.startup(registry=REGISTRY)
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Progress and diff-base in annotations (our status schemas would prune kopf's fields)."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=G)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=G)
    settings.persistence.finalizer = f"{G}/finalizer"
    if getattr(memo, "context", None) is None:
        memo.context = operator_context()


def operator_context() -> OperatorContext:
    """The API client (in-cluster, else kubeconfig) and the image from the environment."""
    return OperatorContext(
        kube=KubeApi(),
        image=os.environ.get(naming.IMAGE_ENV, naming.DEFAULT_IMAGE),
        pull_policy=os.environ.get(naming.IMAGE_PULL_POLICY_ENV, "IfNotPresent"),
    )


async def runtime_master(kube: KubeApi, runtime: tuple[str, str]) -> tuple[str, str]:
    """``(address, admin token)`` of ``runtime``'s master; the token from its cluster Secret."""
    namespace, name = runtime
    data = await _call(kube.secret_data, namespace, naming.cluster_secret_name(name))
    if data is None or naming.CLUSTER_SECRET_KEY not in data:
        raise NotFound(
            f"runtime {namespace}/{name} is not ready: its Secret "
            f"{naming.cluster_secret_name(name)} does not exist (is the CacheRuntime applied?)"
        )
    token = master_calls.admin_token(data[naming.CLUSTER_SECRET_KEY], runtime)
    return naming.master_address(name, namespace), token


async def _patch_status(kube: KubeApi, body: Mapping[str, Any], value: dict[str, Any]) -> None:
    meta = body["metadata"]
    try:
        await _call(
            kube.patch_status,
            naming.API_VERSION,
            body["kind"],
            meta["name"],
            meta["namespace"],
            value,
        )
    except CacheClusterError as exc:
        log.warning("%s", exc)


# ------------------------------------------------------------------ Dataset


async def dataset_plan(kube: KubeApi, body: Mapping[str, Any]) -> Any:
    """Read the source and the Secrets a Dataset needs, then plan it (no change made)."""
    spec = parse_dataset(body)
    namespace = body["metadata"]["namespace"]
    source = None
    if spec.reference is not None:
        source = await _call(
            kube.get, naming.API_VERSION, "Dataset", spec.reference.name, spec.reference.namespace
        )
    secrets: dict[str, dict[str, str]] = {}
    for name in secret_names(spec):
        data = await _call(kube.secret_data, namespace, name)
        if data is not None:
            secrets[name] = data
    return plan_dataset(body, source=source, secrets=secrets)


@kopf.on.resume(G, V, "datasets", registry=REGISTRY)
@kopf.on.create(G, V, "datasets", registry=REGISTRY)
@kopf.on.update(G, V, "datasets", field="spec", registry=REGISTRY)
async def reconcile_dataset(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any) -> None:
    """Register the dataset on its runtime's master, then apply its PV and PVC."""
    kube = _ctx(memo).kube
    try:
        plan = await dataset_plan(kube, body)
        pv = plan.objects[0]
        existing = await _call(kube.get, "v1", "PersistentVolume", pv["metadata"]["name"])
        refused = pv_change_refused(body, existing, pv)
        if refused is not None:
            raise refused
        address, token = await runtime_master(kube, plan.runtime)
        result = await master_calls.register_dataset(address, token, plan)
        for obj in plan.objects:
            await _call(kube.apply, obj)
    except CacheClusterError as exc:
        failed = exc.kind is ErrorKind.INVALID
        value = status.dataset_failed(str(exc)) if failed else status.dataset_not_bound(str(exc))
        await _patch_status(kube, body, value)
        raise kopf_error(exc) from None
    log.info("dataset %s %s on %s", plan.ref, result, plan.master_address)
    patch.status["message"] = ""  # the figures follow with the status timer


def _runtime_of_pv(pv: Mapping[str, Any] | None) -> tuple[str, str] | None:
    attributes = (((pv or {}).get("spec") or {}).get("csi") or {}).get("volumeAttributes") or {}
    namespace, _, name = str(attributes.get(naming.CSI_CONTEXT_RUNTIME, "")).partition("/")
    return (namespace, name) if namespace and name else None


@kopf.on.delete(G, V, "datasets", retries=40, registry=REGISTRY)
async def delete_dataset(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Remove the dataset from its master (refused while referenced), then its PV."""
    kube = _ctx(memo).kube
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    pv_name = naming.pv_name(namespace, name)
    try:
        pv = await _call(kube.get, "v1", "PersistentVolume", pv_name)
        runtime = _runtime_of_pv(pv)
        if runtime is not None:
            try:
                address, token = await runtime_master(kube, runtime)
            except NotFound:
                pass  # the runtime is gone, and its master with it
            else:
                await master_calls.delete_dataset(address, token, namespace, name)
        await _call(kube.delete, "v1", "PersistentVolume", pv_name)
    except CacheClusterError as exc:
        # Referenced (the master refuses), or the master is not reachable: keep the
        # Dataset and its PVC, and try again.
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_S) from None


@kopf.timer(G, V, "datasets", interval=DATASET_STATUS_INTERVAL_S, registry=REGISTRY)
async def dataset_status_timer(
    body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any
) -> None:
    """Copy the master's figures into the Dataset's status."""
    kube = _ctx(memo).kube
    meta = body["metadata"]
    try:
        pv = await _call(
            kube.get, "v1", "PersistentVolume", naming.pv_name(meta["namespace"], meta["name"])
        )
        runtime = _runtime_of_pv(pv)
        if runtime is None:
            return  # not reconciled yet: its handler writes why
        address, token = await runtime_master(kube, runtime)
        try:
            figures = await master_calls.dataset_status(
                address, token, meta["namespace"], meta["name"]
            )
        except NotFound:
            # A restarted master (its home is not kept) lost the dataset: register it again.
            plan = await dataset_plan(kube, body)
            await master_calls.register_dataset(address, token, plan)
            log.info("dataset %s registered again on %s", plan.ref, address)
            figures = await master_calls.dataset_status(
                address, token, meta["namespace"], meta["name"]
            )
    except CacheClusterError as exc:
        log.debug("status of Dataset %s/%s: %s", meta["namespace"], meta["name"], exc)
        return
    patch.status.update(status.dataset_status(figures, meta.get("generation")))


# ------------------------------------------------------------------ CacheRuntime


@kopf.on.resume(G, V, "cacheruntimes", registry=REGISTRY)
@kopf.on.create(G, V, "cacheruntimes", registry=REGISTRY)
@kopf.on.update(G, V, "cacheruntimes", field="spec", registry=REGISTRY)
async def reconcile_runtime(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Apply the runtime's Secret (kept once made), master, workers and FUSE DaemonSet."""
    context = _ctx(memo)
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        existing = await _call(
            context.kube.secret_data, namespace, naming.cluster_secret_name(name)
        )
        objects = desired_runtime_objects(
            body,
            image=context.image,
            image_pull_policy=context.pull_policy,
            cluster_secret=(existing or {}).get(naming.CLUSTER_SECRET_KEY),
        )
        for obj in objects:
            await _call(context.kube.apply, obj)
    except CacheClusterError as exc:
        raise kopf_error(exc) from None


@kopf.timer(G, V, "cacheruntimes", interval=RUNTIME_STATUS_INTERVAL_S, registry=REGISTRY)
async def runtime_status_timer(
    body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any
) -> None:
    """MASTER/WORKER/FUSE PHASE from the workloads' ready counts."""
    kube = _ctx(memo).kube
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        master = await _call(kube.get, "apps/v1", "Deployment", naming.master_name(name), namespace)
        workers = await _call(
            kube.get, "apps/v1", "StatefulSet", naming.worker_name(name), namespace
        )
        fuse = await _call(kube.get, "apps/v1", "DaemonSet", naming.fuse_name(name), namespace)
    except CacheClusterError as exc:
        log.debug("status of CacheRuntime %s/%s: %s", namespace, name, exc)
        return
    patch.status.update(status.runtime_status(name, master=master, workers=workers, fuse=fuse))


# ------------------------------------------------------------------ DataLoad


async def dataload_runtime(kube: KubeApi, body: Mapping[str, Any]) -> tuple[str, str]:
    """The runtime serving a DataLoad's dataset (its source's, for a reference)."""
    spec = parse_dataload(body)
    dataset_namespace, dataset = dataset_of(body, spec)
    found = await _call(kube.get, naming.API_VERSION, "Dataset", dataset, dataset_namespace)
    if found is None:
        raise NotFound(
            f"DataLoad {body['metadata']['namespace']}/{body['metadata']['name']}: spec.dataset: "
            f"dataset {dataset_namespace}/{dataset} does not exist (create it first)"
        )
    dataset_spec = parse_dataset(found)
    source = None
    if dataset_spec.reference is not None:
        ref = dataset_spec.reference
        source = await _call(kube.get, naming.API_VERSION, "Dataset", ref.name, ref.namespace)
    _, runtime, _ = serving_runtime(found, source)
    return runtime


async def _delete_jobs(kube: KubeApi, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Delete the DataLoad's Jobs and CronJob (in whichever namespace); what was deleted."""
    gone = []
    for kind in ("CronJob", "Job"):
        for obj in await _call(kube.list, "batch/v1", kind, None, job_selector(body)):
            if (
                kind == "Job"
                and (obj["metadata"].get("ownerReferences") or [{}])[0].get("kind") == "CronJob"
            ):
                continue  # removed with its CronJob
            meta = obj["metadata"]
            await _call(kube.delete, "batch/v1", kind, meta["name"], meta["namespace"])
            gone.append(obj)
    return gone


@kopf.on.resume(G, V, "dataloads", registry=REGISTRY)
@kopf.on.create(G, V, "dataloads", registry=REGISTRY)
@kopf.on.update(G, V, "dataloads", field="spec", registry=REGISTRY)
async def reconcile_dataload(body: kopf.Body, memo: kopf.Memo, reason: str, **_: Any) -> None:
    """Apply the DataLoad's Job (Once) or CronJob (Cron); a changed spec replaces them."""
    context = _ctx(memo)
    finished = (body.get("status") or {}).get("phase") in (status.COMPLETE, status.FAILED)
    if reason == kopf.Reason.RESUME and finished and "schedule" not in body["spec"]:
        return  # ran once already; its Job may be gone (ttlSecondsAfterFinished)
    try:
        runtime = await dataload_runtime(context.kube, body)
        objects = desired_dataload_objects(
            body, runtime, image=context.image, pull_policy=context.pull_policy
        )
        if reason == kopf.Reason.UPDATE:
            await _delete_jobs(context.kube, body)  # a Job's template cannot change
        for obj in objects:
            existing = await _call(
                context.kube.get, "batch/v1", obj["kind"], obj["metadata"]["name"], runtime[0]
            )
            if existing is None or obj["kind"] == "CronJob":
                await _call(context.kube.apply, obj)
    except CacheClusterError as exc:
        if exc.kind is ErrorKind.INVALID:
            await _patch_status(context.kube, body, {"phase": "Failed", "message": str(exc)})
        raise kopf_error(exc) from None


@kopf.on.delete(G, V, "dataloads", retries=10, registry=REGISTRY)
async def delete_dataload(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Delete its Jobs (also those in another namespace) and the master's record."""
    kube = _ctx(memo).kube
    meta = body["metadata"]
    try:
        gone = await _delete_jobs(kube, body)
    except CacheClusterError as exc:
        raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_S) from None
    for obj in gone[:1]:
        runtime = (obj["metadata"]["namespace"], obj["metadata"]["labels"][naming.LABEL_RUNTIME])
        try:
            address, token = await runtime_master(kube, runtime)
            await master_calls.delete_dataload(address, token, meta["namespace"], meta["name"])
        except CacheClusterError as exc:  # the record only feeds status: not worth a retry
            log.info("DataLoad %s/%s: master record left: %s", meta["namespace"], meta["name"], exc)


@kopf.timer(G, V, "dataloads", interval=DATALOAD_STATUS_INTERVAL_S, registry=REGISTRY)
async def dataload_status_timer(
    body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, **_: Any
) -> None:
    """Phase and duration from the (last) Job, progress from the master."""
    kube = _ctx(memo).kube
    meta = body["metadata"]
    selector = job_selector(body)
    try:
        cron_jobs = await _call(kube.list, "batch/v1", "CronJob", None, selector)
        jobs = await _call(kube.list, "batch/v1", "Job", None, selector)
    except CacheClusterError as exc:
        log.debug("status of DataLoad %s/%s: %s", meta["namespace"], meta["name"], exc)
        return
    job = status.latest_job(jobs)
    record = None
    if job is not None:
        runtime = (job["metadata"]["namespace"], job["metadata"]["labels"][naming.LABEL_RUNTIME])
        try:
            address, token = await runtime_master(kube, runtime)
            record = await master_calls.dataload_record(
                address,
                token,
                meta["namespace"],
                meta["name"],
            )
        except (NotFound, Unavailable, ConfigError) as exc:
            log.debug("progress of DataLoad %s/%s: %s", meta["namespace"], meta["name"], exc)
    patch.status.update(
        status.dataload_status(
            job,
            previous=body.get("status"),
            master=record,
            cron_job=cron_jobs[0] if cron_jobs else None,
        )
    )
