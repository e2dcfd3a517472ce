"""DataLoad specs, schedules, status figures, the dataloads.json file and the CLI rows.

Runs against real workers (splitting, placement, retry, Cron, TTL, restart)
are in ``tests/integration/test_dataload.py``.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from cachecluster.cli.load_cmds import dataload_rows, format_age, outcome_line
from cachecluster.common.errors import ConfigError, NotFound
from cachecluster.master.dataloads import (
    COMPLETE,
    EXECUTING,
    FAILED,
    PENDING,
    DataLoadRecord,
    DataLoadRegistry,
    LoadStatus,
    LoadTarget,
    dataload_proto,
    parse_dataload_spec,
    parse_schedule,
)

SEED_SPEC = {"dataset": {"name": "serverless-data", "namespace": "default"}, "loadMetadata": True}


def test_seed_spec_loads_the_whole_dataset_once() -> None:
    spec = parse_dataload_spec("default", "serverless-data-warmup", SEED_SPEC)
    assert (spec.dataset_namespace, spec.dataset_name) == ("default", "serverless-data")
    assert spec.targets == (LoadTarget(""),)
    assert spec.load_metadata and spec.policy == "Once" and spec.ttl_seconds_after_finished is None


def test_targets_are_normalised_and_dataset_namespace_defaults_to_the_loads() -> None:
    spec = parse_dataload_spec(
        "ns",
        "l",
        {
            "dataset": {"name": "ds"},
            "target": [{"path": "/train/"}, {"path": "a/./b", "replicas": 2}],
            "policy": "Cron",
            "schedule": "@every 2s",
            "ttlSecondsAfterFinished": 30,
        },
    )
    assert spec.dataset_namespace == "ns"
    assert spec.targets == (LoadTarget("train"), LoadTarget("a/b", 2))
    assert spec.ttl_seconds_after_finished == 30.0


@pytest.mark.parametrize(
    ("spec", "field", "reason"),
    [
        ("x", "spec", "mapping"),
        ({}, "spec.dataset.name", "required"),
        ({"dataset": {"name": "ds"}, "targets": []}, "spec.targets", "unknown field"),
        ({"dataset": {"name": "Bad_Name"}}, "spec.dataset", ""),
        ({"dataset": {"name": "ds"}, "target": [{"path": "../x"}]}, "spec.target[0].path", ".."),
        ({"dataset": {"name": "ds"}, "target": "/"}, "spec.target", "list"),
        (
            {"dataset": {"name": "ds"}, "target": [{"path": "/", "replicas": -1}]},
            "spec.target[0].replicas",
            ">= 0",
        ),
        ({"dataset": {"name": "ds"}, "loadMetadata": "yes"}, "spec.loadMetadata", "true or"),
        ({"dataset": {"name": "ds"}, "policy": "OnEvent"}, "spec.policy", "Once, Cron"),
        ({"dataset": {"name": "ds"}, "policy": "Cron"}, "spec.schedule", "required"),
        (
            {"dataset": {"name": "ds"}, "policy": "Cron", "schedule": "every day"},
            "spec.schedule",
            "not a cron",
        ),
        ({"dataset": {"name": "ds"}, "schedule": "* * * * *"}, "spec.schedule", "policy Cron"),
        (
            {"dataset": {"name": "ds"}, "ttlSecondsAfterFinished": -1},
            "spec.ttlSecondsAfterFinished",
            ">= 0",
        ),
    ],
)
def test_bad_specs_name_the_field(spec: Any, field: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_dataload_spec("ns", "load", spec)
    assert caught.value.field == field
    assert reason in str(caught.value)


def test_schedules_every_cron_and_cron_with_seconds() -> None:
    start = 1_800_000_000.0  # a whole minute (divisible by 60)
    assert parse_schedule("@every 2s")(start) == start + 2
    assert parse_schedule("@every 500ms")(start) == start + 0.5
    assert parse_schedule("@every 1m")(start) == start + 60
    assert parse_schedule("*/1 * * * *")(start + 1) == start + 60
    # croniter's sixth field is seconds: every two seconds
    assert parse_schedule("* * * * * */2")(start + 0.5) == start + 2
    with pytest.raises(ConfigError, match="100ms"):
        parse_schedule("@every 10ms")


def test_status_percentage_summary_and_run_reset() -> None:
    status = LoadStatus()
    assert status.percentage == 0.0
    status.begin_run()
    assert status.phase == EXECUTING and status.runs == 1 and status.start_time_ms > 0
    status.bytes_total, status.bytes_done = 400, 100
    assert status.percentage == 25.0
    for index in range(5):
        status.add_failure(f"dir/f{index}", "worker w0: NOT_FOUND")
    summary = status.failure_summary()
    assert summary.startswith("5 file(s) not loaded: dir/f0 (worker w0: NOT_FOUND)")
    assert summary.endswith("and 2 more")
    status.last_schedule_time_ms = 7
    status.begin_run()
    assert (status.runs, status.failed_files, status.bytes_done) == (2, 0, 0)
    assert status.last_schedule_time_ms == 7
    empty = LoadStatus(phase=COMPLETE)
    assert empty.percentage == 100.0


def _record(name: str, phase: str) -> DataLoadRecord:
    spec = {"dataset": {"name": "ds"}}
    return DataLoadRecord(
        namespace="ns",
        name=name,
        spec=spec,
        parsed=parse_dataload_spec("ns", name, spec),
        created_ms=1000,
        status=LoadStatus(phase=phase, runs=1, start_time_ms=2000, end_time_ms=47000),
    )


def test_registry_file_is_private_and_a_run_cut_by_a_restart_runs_again(tmp_path: Path) -> None:
    registry = DataLoadRegistry(tmp_path)
    registry.put(_record("done", COMPLETE))
    registry.put(_record("cut", EXECUTING))
    failed = _record("failed", FAILED)
    failed.status.add_failure("x.bin", "gone")
    registry.put(failed)
    registry.write(registry.snapshot())
    assert registry.path is not None
    assert stat.S_IMODE(registry.path.stat().st_mode) == 0o600

    again = DataLoadRegistry(tmp_path)
    assert again.load() == 3
    assert again.get("ns", "done").status.phase == COMPLETE
    assert again.get("ns", "done").status.duration_ms == 45000
    cut = again.get("ns", "cut").status
    assert cut.phase == PENDING and "restarted" in cut.message
    assert again.get("ns", "failed").status.failures == [("x.bin", "gone")]
    assert [r.name for r in again.records("ns")] == ["cut", "done", "failed"]
    with pytest.raises(NotFound):
        again.get("ns", "nope")


def test_rows_for_get_dataloads_and_the_outcome_line() -> None:
    record = _record("warmup", COMPLETE)
    record.status.files_total = record.status.files_done = 3
    record.status.bytes_total = record.status.bytes_done = 1246382817
    proto = dataload_proto(record)
    [row] = dataload_rows([proto], now_ms=1000 + 169_000)
    assert row == {
        "NAMESPACE": "ns",
        "NAME": "warmup",
        "DATASET": "ds",
        "PHASE": "Complete",
        "AGE": "2m49s",
        "DURATION": "45s",
        "PROGRESS": "100.0%",
    }
    line = outcome_line(proto)
    assert "ns/warmup Complete: 3/3 files, 1.16GiB of 1.16GiB (100.0%) in 45.0s" in line
    assert [format_age(s) for s in (0, 59, 60, 3600, 3660, 90000)] == [
        "0s",
        "59s",
        "1m",
        "1h",
        "1h1m",
        "1d1h",
    ]
