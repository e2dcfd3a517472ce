"""Status mapping: master figures -> Dataset, workloads -> CacheRuntime, Job -> DataLoad."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from cachecluster.operator import crds, status
from cachecluster.protos import dataload_pb2, master_pb2, status_pb2
from tests.operator.schemas import validate_custom

NOW = datetime.datetime(2026, 11, 22, 18, 10, 0, tzinfo=datetime.UTC)
GIB = 1 << 30


def _with_status(kind: str, value: dict[str, Any]) -> dict[str, Any]:
    """A minimal object of ``kind`` carrying ``value`` as status, for schema checks."""
    specs: dict[str, dict[str, Any]] = {
        "Dataset": {"mounts": [{"mountPoint": "s3://b/d"}]},
        "CacheRuntime": {"replicas": 1},
        "DataLoad": {"dataset": {"name": "d"}},
    }
    spec = specs[kind]
    return {
        "apiVersion": "cachecluster.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "n"},
        "spec": spec,
        "status": value,
    }


def test_dataset_status_is_what_get_prints() -> None:
    figures = status_pb2.DatasetStatus(
        ref=master_pb2.DatasetRef(namespace="share", name="shared-dataset"),
        phase="Bound",
        ufs_total_bytes=int(1.16 * GIB),
        cached_bytes=int(1.16 * GIB),
        cache_capacity_bytes=4 * GIB,
        cached_percentage=100.0,
        file_count=3,
        cache_hit_ratio=0.5,
        runtime="share/shared-dataset",
    )
    got = status.dataset_status(figures, generation=2)
    assert got["phase"] == "Bound"
    assert (got["ufsTotal"], got["cached"], got["cacheCapacity"]) == (
        "1.16GiB",
        "1.16GiB",
        "4.00GiB",
    )
    assert got["cachedPercentage"] == "100.0%"
    assert got["fileNum"] == "3" and got["hitRatio"] == "50.0%"
    assert got["cacheCapacityBytes"] == 4 * GIB and got["observedGeneration"] == 2
    assert got["runtime"] == "share/shared-dataset"
    validate_custom(_with_status("Dataset", got))


def test_dataset_figures_not_computed_yet_print_as_dashes() -> None:
    figures = status_pb2.DatasetStatus(
        phase="NotBound",
        ufs_total_bytes=-1,
        cached_bytes=-1,
        cached_percentage=-1,
        file_count=-1,
        cache_hit_ratio=-1,
        message="listing the UFS",
    )
    got = status.dataset_status(figures)
    assert (got["ufsTotal"], got["cached"], got["cachedPercentage"]) == ("-", "-", "-")
    assert (got["fileNum"], got["hitRatio"], got["phase"]) == ("-", "-", "NotBound")
    assert "observedGeneration" not in got
    validate_custom(_with_status("Dataset", got))
    for other in (status.dataset_failed("bad spec"), status.dataset_not_bound("waiting")):
        validate_custom(_with_status("Dataset", other))


@pytest.mark.parametrize(
    ("ready", "desired", "expected"),
    [
        (0, 0, "NotReady"),
        (0, 3, "NotReady"),
        (1, 3, "PartialReady"),
        (3, 3, "Ready"),
        (4, 3, "Ready"),
    ],
)
def test_phase(ready: int, desired: int, expected: str) -> None:
    assert status.phase(ready, desired) == expected


def test_runtime_status_from_workloads() -> None:
    master = {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    workers = {"spec": {"replicas": 3}, "status": {"replicas": 3, "readyReplicas": 2}}
    fuse = {"status": {"desiredNumberScheduled": 2, "numberReady": 2}}
    got = status.runtime_status("rt", master=master, workers=workers, fuse=fuse)
    assert (got["masterPhase"], got["workerPhase"], got["fusePhase"]) == (
        "Ready",
        "PartialReady",
        "Ready",
    )
    assert (got["replicas"], got["readyWorkers"], got["desiredWorkers"]) == (3, 2, 3)
    assert got["selector"] == "app.kubernetes.io/component=worker,app.kubernetes.io/instance=rt"
    validate_custom(_with_status("CacheRuntime", got))
    nothing = status.runtime_status("rt", master=None, workers=None, fuse=None)
    assert {nothing[k] for k in ("masterPhase", "workerPhase", "fusePhase")} == {"NotReady"}
    fresh = status.runtime_status("rt", master={"spec": {"replicas": 1}}, workers=None, fuse={})
    assert fresh["masterPhase"] == "NotReady" and fresh["replicas"] == 0


def _job(**job_status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "warm-load", "creationTimestamp": "2026-11-22T18:00:00Z"},
        "status": job_status,
    }


def test_dataload_pending_executing_complete_failed() -> None:
    assert status.dataload_status(None, now=NOW)["phase"] == "Pending"
    assert status.dataload_status(_job(), now=NOW)["phase"] == "Pending"
    running = status.dataload_status(_job(active=1, startTime="2026-11-22T18:09:15Z"), now=NOW)
    assert (running["phase"], running["duration"]) == ("Executing", "45s")
    complete = status.dataload_status(
        _job(
            startTime="2026-11-22T18:00:00Z",
            completionTime="2026-11-22T18:02:49Z",
            conditions=[{"type": "Complete", "status": "True"}],
        ),
        now=NOW,
    )
    assert complete["phase"] == "Complete" and complete["duration"] == "2m49s"
    assert complete["completionTime"] == "2026-11-22T18:02:49Z"
    assert complete["progress"] == "100.0%" and complete["job"] == "warm-load"
    failed = status.dataload_status(
        _job(
            startTime="2026-11-22T18:00:00Z",
            conditions=[
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "lastTransitionTime": "2026-11-22T18:00:30Z",
                }
            ],
        ),
        now=NOW,
    )
    assert (failed["phase"], failed["duration"], failed["message"]) == (
        "Failed",
        "30s",
        "BackoffLimitExceeded",
    )
    for got in (running, complete, failed):
        validate_custom(_with_status("DataLoad", got))


def test_dataload_progress_and_reason_from_the_master() -> None:
    record = dataload_pb2.DataLoad(
        status=dataload_pb2.DataLoadStatus(percentage=42.57, message="3 files failed: a, b, c")
    )
    job = _job(
        startTime="2026-11-22T18:00:00Z",
        conditions=[
            {"type": "Failed", "status": "True", "lastTransitionTime": "2026-11-22T18:01:00Z"}
        ],
    )
    got = status.dataload_status(job, master=record, now=NOW)
    assert got["progress"] == "42.5%" and got["message"] == "3 files failed: a, b, c"


def test_finished_load_keeps_its_status_after_the_job_ttl() -> None:
    before = {"phase": "Complete", "duration": "45s", "progress": "100.0%", "job": "warm-load"}
    assert status.dataload_status(None, previous=before, now=NOW) == before
    assert status.dataload_status(None, previous={"phase": "Executing"}, now=NOW)["phase"] == (
        "Pending"
    )


def test_cron_load_reports_its_last_run_and_schedule() -> None:
    older = _job(conditions=[{"type": "Failed", "status": "True"}])
    newer = _job(active=1, startTime="2026-11-22T18:09:00Z")
    newer["metadata"] = {
        "name": "nightly-load-29400000",
        "creationTimestamp": "2026-11-22T18:09:00Z",
    }
    cron_job = {"status": {"lastScheduleTime": "2026-11-22T18:09:00Z"}}
    last = status.latest_job([older, newer])
    assert last is newer and status.latest_job([]) is None
    got = status.dataload_status(last, cron_job=cron_job, now=NOW)
    assert got["phase"] == "Executing" and got["lastScheduleTime"] == "2026-11-22T18:09:00Z"
    assert got["job"] == "nightly-load-29400000"
    validate_custom(_with_status("DataLoad", got))


def test_every_status_field_written_is_in_the_crd() -> None:
    phases = set(crds.DATALOAD_PHASES)
    assert {status.PENDING, status.EXECUTING, status.COMPLETE, status.FAILED} == phases
    assert {status.NOT_READY, status.PARTIAL_READY, status.READY} == set(crds.RUNTIME_PHASES)
