"""Status of our three kinds, from what the master and the workloads report (no I/O).

* Dataset: the figures ``cachecluster get datasets`` prints, formatted by the
  same functions (:func:`cachecluster.cli.get_cmds.dataset_document`), from
  the master's ``DatasetStatus``.
* CacheRuntime: MASTER/WORKER/FUSE PHASE from the ready counts of the master
  Deployment, the worker StatefulSet and the FUSE DaemonSet (``NotReady``,
  ``PartialReady``, ``Ready``), plus ``replicas`` and ``selector`` for the
  scale subresource.
* DataLoad: phase, start, completion and duration from its (last) Job;
  progress from the master's record of the run.

Inputs are the objects as the Kubernetes API returns them (dicts, e.g.
kopf's bodies or ``ApiClient.sanitize_for_serialization`` of a model).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from cachecluster.cli.get_cmds import dataset_document, human_duration, percentage
from cachecluster.operator import naming
from cachecluster.protos import dataload_pb2, status_pb2

NOT_READY, PARTIAL_READY, READY = "NotReady", "PartialReady", "Ready"
PENDING, EXECUTING, COMPLETE, FAILED = "Pending", "Executing", "Complete", "Failed"
UNKNOWN = "-"


# ------------------------------------------------------------------ Dataset


def dataset_status(
    status: status_pb2.DatasetStatus, generation: int | None = None
) -> dict[str, Any]:
    """A Dataset's ``status`` from the master's figures (phase NotBound/Bound/Failed)."""
    doc = dataset_document(status)
    out: dict[str, Any] = {
        "phase": status.phase or "NotBound",
        "ufsTotal": doc["ufsTotal"],
        "cached": doc["cached"],
        "cacheCapacity": doc["cacheCapacity"],
        "cachedPercentage": doc["cachedPercentage"],
        "fileNum": UNKNOWN if status.file_count < 0 else str(status.file_count),
        "hitRatio": doc["cacheHitRatio"],
        "ufsTotalBytes": status.ufs_total_bytes,
        "cachedBytes": status.cached_bytes,
        "cacheCapacityBytes": status.cache_capacity_bytes,
        "runtime": status.runtime,
        "reference": status.reference,
        "message": status.message,
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def dataset_failed(message: str) -> dict[str, Any]:
    """A Dataset's ``status`` when it cannot be registered (an invalid spec)."""
    return {"phase": "Failed", "message": message}


def dataset_not_bound(message: str) -> dict[str, Any]:
    """A Dataset's ``status`` while it waits (master not ready, a Secret missing...)."""
    return {"phase": "NotBound", "message": message}


# ------------------------------------------------------------------ CacheRuntime


def phase(ready: int, desired: int) -> str:
    """``Ready`` when every desired pod is ready, ``PartialReady`` when some, else ``NotReady``."""
    if desired <= 0 or ready <= 0:
        return NOT_READY
    return READY if ready >= desired else PARTIAL_READY


def _count(obj: Mapping[str, Any] | None, *path: str, default: int = 0) -> int:
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return default
        node = node.get(key)
    return int(node) if isinstance(node, int) else default


def runtime_status(
    runtime: str,
    *,
    master: Mapping[str, Any] | None,
    workers: Mapping[str, Any] | None,
    fuse: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A CacheRuntime's ``status`` from its Deployment, StatefulSet and DaemonSet (None: absent)."""
    master_desired = _count(master, "spec", "replicas", default=1) if master else 0
    worker_desired = _count(workers, "spec", "replicas", default=1) if workers else 0
    ready_workers = _count(workers, "status", "readyReplicas")
    selector = naming.selector(runtime, "worker")
    return {
        "masterPhase": phase(_count(master, "status", "readyReplicas"), master_desired),
        "workerPhase": phase(ready_workers, worker_desired),
        "fusePhase": phase(
            _count(fuse, "status", "numberReady"), _count(fuse, "status", "desiredNumberScheduled")
        ),
        "replicas": _count(workers, "status", "replicas"),
        "readyWorkers": ready_workers,
        "desiredWorkers": worker_desired,
        "selector": ",".join(f"{key}={value}" for key, value in sorted(selector.items())),
    }


# ------------------------------------------------------------------ DataLoad


def parse_time(value: Any) -> datetime.datetime | None:
    """A Kubernetes timestamp (``2026-11-22T18:00:00Z`` or a datetime) as an aware datetime."""
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _iso(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            found: Mapping[str, Any] = condition
            return found
    return None


def latest_job(jobs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recently created of ``jobs`` (a CronJob's runs), None when there is none."""
    if not jobs:
        return None
    epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return max(
        jobs,
        key=lambda job: parse_time((job.get("metadata") or {}).get("creationTimestamp")) or epoch,
    )


def dataload_status(
    job: Mapping[str, Any] | None,
    *,
    previous: Mapping[str, Any] | None = None,
    master: dataload_pb2.DataLoad | None = None,
    cron_job: Mapping[str, Any] | None = None,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A DataLoad's ``status`` from its (last) Job.

    ``previous`` is the status written before: a finished run whose Job was
    removed (``ttlSecondsAfterFinished``) keeps its phase and duration.
    ``master`` (the master's record, when it answered) gives the progress and
    a failure's reason; ``cron_job`` the last schedule time.
    """
    previous = previous or {}
    now = now or datetime.datetime.now(datetime.UTC)
    out: dict[str, Any] = {}
    if cron_job is not None:
        scheduled = parse_time((cron_job.get("status") or {}).get("lastScheduleTime"))
        if scheduled is not None:
            out["lastScheduleTime"] = _iso(scheduled)
    if job is None:
        if previous.get("phase") in (COMPLETE, FAILED) and cron_job is None:
            kept = ("phase", "duration", "progress", "startTime", "completionTime", "job")
            return {key: previous[key] for key in kept if key in previous} | out
        return {"phase": PENDING, "duration": "", "progress": UNKNOWN} | out
    status = job.get("status") or {}
    started = parse_time(status.get("startTime"))
    done = _condition(job, "Complete")
    failed = _condition(job, "Failed")
    finished: datetime.datetime | None = None
    if done is not None:
        out["phase"] = COMPLETE
        finished = parse_time(status.get("completionTime")) or parse_time(
            done.get("lastTransitionTime")
        )
    elif failed is not None:
        out["phase"] = FAILED
        finished = parse_time(failed.get("lastTransitionTime"))
        out["message"] = failed.get("message") or failed.get("reason") or "the load failed"
    elif started is not None or _count(job, "status", "active") > 0:
        out["phase"] = EXECUTING
    else:
        out["phase"] = PENDING
    out["job"] = (job.get("metadata") or {}).get("name", "")
    if started is not None:
        out["startTime"] = _iso(started)
        end = finished or now
        out["duration"] = human_duration((end - started).total_seconds())
    else:
        out["duration"] = ""
    if finished is not None:
        out["completionTime"] = _iso(finished)
    out["progress"] = UNKNOWN
    if master is not None:
        out["progress"] = percentage(master.status.percentage)
        if out["phase"] == FAILED and master.status.message:
            out["message"] = master.status.message
    elif out["phase"] == COMPLETE:
        out["progress"] = "100.0%"
    return out
