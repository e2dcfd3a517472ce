"""DataLoads on the master: specs, schedules, status, and their file under the home.

A DataLoad warms a dataset's blocks into the cache. Its spec uses Fluid's
field names (``dataset``, ``target[].path``, ``target[].replicas``,
``loadMetadata``, ``policy`` Once|Cron, ``schedule``,
``ttlSecondsAfterFinished``); :func:`parse_dataload_spec` validates it. The
work itself is :mod:`cachecluster.master.dataload_runner`'s.

Schedules (policy Cron): a cron expression as croniter reads it (five fields,
or six with seconds LAST, e.g. ``*/2 * * * * *`` every two seconds), or
``@every <n><unit>`` with unit ``ms``, ``s``, ``m`` or ``h`` (``@every 2s``),
or croniter's ``@hourly``, ``@daily``...

:class:`DataLoadRegistry` keeps every DataLoad with its spec and last status
in ``<home>/dataloads.json`` (mode 0600), written at apply, delete and at the
start and end of each run (not at every batch). A master restarted while a
load was Pending or Executing runs it again from the start: blocks already
cached cost one ``already_cached`` answer each, so the rerun is cheap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from croniter import croniter

from cachecluster.common.errors import ConfigError, InvalidArgument, NotFound
from cachecluster.common.paths import normalize_path
from cachecluster.common.private_file import write_private_json
from cachecluster.master.datasets import check_ref
from cachecluster.protos import dataload_pb2, master_pb2

log = logging.getLogger(__name__)

FILE_NAME = "dataloads.json"
PENDING, EXECUTING, COMPLETE, FAILED = "Pending", "Executing", "Complete", "Failed"
FINISHED = frozenset({COMPLETE, FAILED})
POLICIES = ("Once", "Cron")
MAX_REPORTED_FAILURES = 20
"""Failures kept in status; ``failed_files`` counts them all."""

_EVERY_RE = re.compile(r"^@every\s+(\d+(?:\.\d+)?)\s*(ms|s|m|h)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SPEC_KEYS = frozenset(
    {"dataset", "target", "loadMetadata", "policy", "schedule", "ttlSecondsAfterFinished"}
)


def now_ms() -> int:
    """Unix time in milliseconds."""
    return int(time.time() * 1000)


@dataclasses.dataclass(frozen=True, slots=True)
class LoadTarget:
    """A dataset path to load (``""`` is the whole dataset) and its copies (0: the cluster's)."""

    path: str
    replicas: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class LoadSpec:
    """A validated DataLoad spec."""

    dataset_namespace: str
    dataset_name: str
    targets: tuple[LoadTarget, ...]
    load_metadata: bool = False
    policy: str = "Once"
    schedule: str = ""
    ttl_seconds_after_finished: float | None = None


def parse_schedule(text: str) -> Callable[[float], float]:
    """The function giving the next run time (Unix seconds) after a time, for ``text``."""
    match = _EVERY_RE.match(text.strip())
    if match:
        period = float(match.group(1)) * _UNIT_S[match.group(2)]
        if period < 0.1:
            raise ConfigError("spec.schedule", f"{text!r}: the period must be at least 100ms")
        return lambda after: after + period
    if not croniter.is_valid(text):
        raise ConfigError(
            "spec.schedule",
            f"{text!r}: not a cron expression (5 fields, or 6 with seconds last) nor '@every <n>s'",
        )

    def next_after(after: float) -> float:
        return float(croniter(text, after).get_next(float))

    return next_after


def _int_field(where: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(where, f"{value!r} must be an integer >= {minimum}")
    return value


def parse_dataload_spec(namespace: str, name: str, spec: Any) -> LoadSpec:
    """Validate a DataLoad ``spec`` (Fluid names); errors name the field and the reason."""
    check_ref(namespace, name)
    if not isinstance(spec, dict):
        raise ConfigError("spec", "must be a mapping")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ConfigError(
            f"spec.{unknown[0]}", f"unknown field (known: {', '.join(sorted(_SPEC_KEYS))})"
        )
    dataset = spec.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str):
        raise ConfigError("spec.dataset.name", "is required")
    ds_namespace = dataset.get("namespace") or namespace
    if not isinstance(ds_namespace, str):
        raise ConfigError("spec.dataset.namespace", f"{ds_namespace!r} must be a string")
    try:
        check_ref(ds_namespace, dataset["name"])
    except InvalidArgument as exc:
        raise ConfigError("spec.dataset", str(exc)) from None
    raw_targets = spec.get("target") or []
    if not isinstance(raw_targets, list):
        raise ConfigError("spec.target", "must be a list of {path, replicas}")
    targets: list[LoadTarget] = []
    for index, item in enumerate(raw_targets):
        where = f"spec.target[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("path", ""), str):
            raise ConfigError(f"{where}.path", "must be a string")
        try:
            path = normalize_path(item.get("path", ""))
        except InvalidArgument as exc:
            raise ConfigError(f"{where}.path", str(exc)) from None
        replicas = _int_field(f"{where}.replicas", item.get("replicas", 0), 0)
        targets.append(LoadTarget(path, replicas))
    load_metadata = spec.get("loadMetadata", False)
    if not isinstance(load_metadata, bool):
        raise ConfigError("spec.loadMetadata", f"{load_metadata!r} must be true or false")
    policy = spec.get("policy") or "Once"
    if policy not in POLICIES:
        raise ConfigError("spec.policy", f"{policy!r} must be one of {', '.join(POLICIES)}")
    schedule = spec.get("schedule") or ""
    if not isinstance(schedule, str):
        raise ConfigError("spec.schedule", f"{schedule!r} must be a string")
    if policy == "Cron":
        if not schedule:
            raise ConfigError("spec.schedule", "is required with policy Cron")
        parse_schedule(schedule)
    elif schedule:
        raise ConfigError("spec.schedule", "is only meaningful with policy Cron")
    ttl = spec.get("ttlSecondsAfterFinished")
    if ttl is not None:
        ttl = _int_field("spec.ttlSecondsAfterFinished", ttl, 0)
    return LoadSpec(
        dataset_namespace=ds_namespace,
        dataset_name=dataset["name"],
        targets=tuple(targets) or (LoadTarget(""),),
        load_metadata=load_metadata,
        policy=policy,
        schedule=schedule,
        ttl_seconds_after_finished=None if ttl is None else float(ttl),
    )


@dataclasses.dataclass(slots=True)
class LoadStatus:
    """Progress and outcome of the current or last run (``DataLoadStatus`` in dataload.proto)."""

    phase: str = PENDING
    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    blocks_total: int = 0
    blocks_done: int = 0
    bytes_fetched: int = 0
    start_time_ms: int = 0
    end_time_ms: int = 0
    failures: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    failed_files: int = 0
    message: str = ""
    last_schedule_time_ms: int = 0
    runs: int = 0

    @property
    def percentage(self) -> float:
        """Bytes done over bytes total, x 100; 100 for a finished load of nothing."""
        if self.bytes_total:
            return 100.0 * self.bytes_done / self.bytes_total
        if self.blocks_total:
            return 100.0 * self.blocks_done / self.blocks_total
        return 100.0 if self.phase == COMPLETE else 0.0

    @property
    def duration_ms(self) -> int:
        """Length of the current run so far, or of the last run."""
        if not self.start_time_ms:
            return 0
        end = self.end_time_ms if self.phase in FINISHED and self.end_time_ms else now_ms()
        return max(0, end - self.start_time_ms)

    def begin_run(self) -> None:
        """Reset the progress for a new run (schedule time and run count stay)."""
        runs, scheduled = self.runs + 1, self.last_schedule_time_ms
        fresh = LoadStatus(phase=EXECUTING, start_time_ms=now_ms(), runs=runs)
        fresh.last_schedule_time_ms = scheduled
        for field in dataclasses.fields(LoadStatus):
            setattr(self, field.name, getattr(fresh, field.name))

    def add_failure(self, path: str, message: str) -> None:
        """Count a file that could not be loaded; keep the first few."""
        self.failed_files += 1
        if len(self.failures) < MAX_REPORTED_FAILURES:
            self.failures.append((path, message))

    def failure_summary(self) -> str:
        """One line naming the first failed paths and the count."""
        shown = ", ".join(f"{path or '/'} ({message})" for path, message in self.failures[:3])
        more = self.failed_files - min(3, len(self.failures))
        tail = f" and {more} more" if more > 0 else ""
        return f"{self.failed_files} file(s) not loaded: {shown}{tail}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form."""
        data = dataclasses.asdict(self)
        data["failures"] = [list(item) for item in self.failures]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadStatus:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {field.name for field in dataclasses.fields(cls)}
        status = cls(**{key: value for key, value in data.items() if key in names})
        status.failures = [(str(path), str(message)) for path, message in status.failures]
        return status


@dataclasses.dataclass(slots=True)
class DataLoadRecord:
    """One DataLoad: its spec (as applied and parsed) and status."""

    namespace: str
    name: str
    spec: dict[str, Any]
    parsed: LoadSpec
    created_ms: int
    generation: int = 1
    status: LoadStatus = dataclasses.field(default_factory=LoadStatus)

    @property
    def ref(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """The persisted form."""
        return {
            "namespace": self.namespace,
            "name": self.name,
            "spec": self.spec,
            "created_ms": self.created_ms,
            "generation": self.generation,
            "status": self.status.to_dict(),
        }


def status_proto(status: LoadStatus) -> dataload_pb2.DataLoadStatus:
    """The ``DataLoadStatus`` message of ``status``."""
    return dataload_pb2.DataLoadStatus(
        phase=status.phase,
        files_total=status.files_total,
        files_done=status.files_done,
        bytes_total=status.bytes_total,
        bytes_done=status.bytes_done,
        blocks_total=status.blocks_total,
        blocks_done=status.blocks_done,
        percentage=status.percentage,
        start_time_ms=status.start_time_ms,
        end_time_ms=status.end_time_ms,
        duration_ms=status.duration_ms,
        failures=[
            dataload_pb2.DataLoadFailure(path=path, message=message)
            for path, message in status.failures
        ],
        failed_files=status.failed_files,
        message=status.message,
        last_schedule_time_ms=status.last_schedule_time_ms,
        runs=status.runs,
        bytes_fetched=status.bytes_fetched,
    )


def dataload_proto(record: DataLoadRecord) -> dataload_pb2.DataLoad:
    """The ``DataLoad`` message of ``record``."""
    return dataload_pb2.DataLoad(
        ref=master_pb2.DatasetRef(namespace=record.namespace, name=record.name),
        dataset=master_pb2.DatasetRef(
            namespace=record.parsed.dataset_namespace, name=record.parsed.dataset_name
        ),
        spec_json=json.dumps(record.spec, sort_keys=True).encode(),
        status=status_proto(record.status),
        created_ms=record.created_ms,
        generation=record.generation,
    )


class DataLoadRegistry:
    """Every DataLoad, kept in memory and in ``<home>/dataloads.json`` (0600)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home
        self._records: dict[tuple[str, str], DataLoadRecord] = {}

    @property
    def path(self) -> Path | None:
        """The file the registry persists to (None: memory only)."""
        return None if self.home is None else self.home / FILE_NAME

    def get(self, namespace: str, name: str) -> DataLoadRecord:
        """The DataLoad ``namespace/name``; ``NotFound`` when there is none."""
        record = self._records.get((namespace, name))
        if record is None:
            raise NotFound(f"dataload {namespace}/{name}: not found")
        return record

    def find(self, namespace: str, name: str) -> DataLoadRecord | None:
        """The DataLoad ``namespace/name`` or None."""
        return self._records.get((namespace, name))

    def records(self, namespace: str = "") -> list[DataLoadRecord]:
        """DataLoads sorted by namespace and name, of one namespace or all."""
        return [
            self._records[key]
            for key in sorted(self._records)
            if not namespace or key[0] == namespace
        ]

    def put(self, record: DataLoadRecord) -> None:
        """Add or replace a record (in memory; call :meth:`snapshot` + :meth:`write`)."""
        self._records[(record.namespace, record.name)] = record

    def remove(self, namespace: str, name: str) -> DataLoadRecord | None:
        """Drop a record (in memory); the one dropped or None."""
        return self._records.pop((namespace, name), None)

    def snapshot(self) -> dict[str, Any]:
        """The file's document for the current state (taken on the event loop: deep copies)."""
        return {"version": 1, "dataloads": [r.to_dict() for r in self.records()]}

    def write(self, document: dict[str, Any]) -> None:
        """Write a snapshot atomically with mode 0600 (call it in a thread)."""
        if self.path is not None:
            write_private_json(self.path, document)

    def load(self) -> int:
        """Read the file, if any; the number of DataLoads loaded.

        A run that was Pending or Executing when the master stopped is marked
        Pending: the controller runs it again from the start.
        """
        path = self.path
        if path is None or not path.exists():
            return 0
        data = json.loads(path.read_text(encoding="utf-8"))
        for item in data.get("dataloads", []):
            namespace, name = item["namespace"], item["name"]
            try:
                parsed = parse_dataload_spec(namespace, name, item["spec"])
            except InvalidArgument as exc:
                log.warning("dataload %s/%s in %s skipped: %s", namespace, name, path, exc)
                continue
            status = LoadStatus.from_dict(item.get("status", {}))
            if status.phase not in FINISHED:
                status.phase = PENDING
                status.message = "the master restarted during the run; it runs again"
            self.put(
                DataLoadRecord(
                    namespace=namespace,
                    name=name,
                    spec=item["spec"],
                    parsed=parsed,
                    created_ms=int(item.get("created_ms", 0)),
                    generation=int(item.get("generation", 1)),
                    status=status,
                )
            )
        return len(self._records)
