"""Where a local cluster keeps its things, and what ``cachecluster up`` records about it.

A local cluster lives in one home folder (``~/.cachecluster`` by default)::

    <home>/cluster.json          what `up` started: addresses, pids, tiers (see ClusterRecord)
    <home>/.lock                 held while `up` or `down` runs, so that two never race
    <home>/logs/master.log       stderr of each process, appended across restarts
    <home>/logs/w<i>.log
    <home>/master/               the master's home: endpoint.json, datasets.json
    <home>/workers/w<i>/         a worker's home: endpoint.json, worker-id
    <home>/tiers/w<i>/ssd/       the default SSD tier of worker i

The default MEM tier of worker ``i`` is ``/dev/shm/cachecluster-<uid>-<hash>/w<i>``,
where ``<hash>`` is a short hash of the home folder, so that two local clusters
of one user never share a tmpfs folder. Tiers given with ``--tier`` (or by a
runtime YAML) are templates: each worker gets its own ``w<i>`` subfolder of
each tier path, as a pod on its own node would.

This module also reads the runtime YAML of ``cachecluster up -f`` (a
CacheRuntime, JindoRuntime, ... document: ``spec.replicas`` and
``spec.tieredstore.levels``) and tells whether a recorded process still runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cachecluster.common.errors import ConfigError
from cachecluster.worker.tiers import Medium, TierConfig, tiers_from_levels, validate_tiers

DEFAULT_MEM_QUOTA = 2 << 30
"""Default MEM tier of each local worker: 2 GiB of tmpfs."""
DEFAULT_SSD_QUOTA = 8 << 30
"""Default SSD tier of each local worker: 8 GiB under the home folder."""
CLUSTER_FILE = "cluster.json"
"""The record of a running local cluster (``cachecluster.cli.context`` reads it too)."""
SHM_ROOT = Path("/dev/shm")
LOCK_FILE = ".lock"
RECORD_VERSION = 1


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterLayout:
    """The paths of one local cluster, all derived from its home folder."""

    home: Path

    @property
    def cluster_file(self) -> Path:
        """``<home>/cluster.json``: the record of the running cluster."""
        return self.home / CLUSTER_FILE

    @property
    def lock_file(self) -> Path:
        """``<home>/.lock``: held by ``up`` and ``down`` while they run."""
        return self.home / LOCK_FILE

    @property
    def logs_dir(self) -> Path:
        """``<home>/logs``: one log file a process."""
        return self.home / "logs"

    @property
    def master_home(self) -> Path:
        """The master's own home folder (endpoint file, datasets)."""
        return self.home / "master"

    @property
    def master_log(self) -> Path:
        """Where the master's stderr goes."""
        return self.logs_dir / "master.log"

    @property
    def shm_root(self) -> Path:
        """The tmpfs folder holding the default MEM tiers of this cluster's workers."""
        digest = hashlib.blake2b(str(self.home).encode(), digest_size=4).hexdigest()
        base = SHM_ROOT if SHM_ROOT.is_dir() else Path(tempfile.gettempdir())
        return base / f"cachecluster-{os.getuid()}-{digest}"

    @staticmethod
    def worker_id(index: int) -> str:
        """The stable id of local worker ``index``: ``w0``, ``w1``..."""
        return f"w{index}"

    def worker_home(self, index: int) -> Path:
        """The home folder of worker ``index`` (endpoint file, worker-id)."""
        return self.home / "workers" / self.worker_id(index)

    def worker_log(self, index: int) -> Path:
        """Where worker ``index``'s stderr goes."""
        return self.logs_dir / f"{self.worker_id(index)}.log"

    def default_tiers(self, index: int) -> list[TierConfig]:
        """Worker ``index``'s tiers when none are given: MEM 2 GiB on tmpfs + SSD 8 GiB on disk."""
        worker = self.worker_id(index)
        return [
            TierConfig(Medium.MEM, str(self.shm_root / worker), DEFAULT_MEM_QUOTA),
            TierConfig(Medium.SSD, str(self.home / "tiers" / worker / "ssd"), DEFAULT_SSD_QUOTA),
        ]

    def worker_tiers(self, templates: Sequence[TierConfig] | None, index: int) -> list[TierConfig]:
        """Worker ``index``'s tiers: its own ``w<i>`` subfolder of each template's path."""
        if not templates:
            return self.default_tiers(index)
        worker = self.worker_id(index)
        return [
            dataclasses.replace(tier, path=os.path.join(tier.path, worker)) for tier in templates
        ]


def tier_flag(tier: TierConfig) -> str:
    """The worker's ``--tier`` form of a tier: ``MEDIUM:PATH:QUOTA:HIGH:LOW``."""
    if ":" in tier.path:
        raise ConfigError(f"tier {tier.medium.value}.path", f"{tier.path!r} may not contain ':'")
    return f"{tier.medium.value}:{tier.path}:{tier.quota}:{tier.high}:{tier.low}"


# ------------------------------------------------------------------ runtime YAML


@dataclasses.dataclass(frozen=True, slots=True)
class RuntimeSpec:
    """What ``cachecluster up -f FILE`` takes from a runtime document."""

    kind: str
    name: str
    workers: int | None
    """``spec.replicas``; None when the document does not say."""
    tiers: list[TierConfig] | None
    """``spec.tieredstore.levels`` (validated, fastest first); None when absent."""


def load_runtime_file(path: Path) -> RuntimeSpec:
    """Read the runtime document of a YAML file (other documents, e.g. a Dataset, are skipped).

    Accepts any ``kind`` ending in ``Runtime`` (CacheRuntime, JindoRuntime,
    AlluxioRuntime...). Errors name the file and the field.
    """
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(str(path), error.strerror or str(error)) from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        reason = " ".join(str(error).split())
        raise ConfigError(str(path), f"not valid YAML: {reason}") from None
    runtimes = [
        doc
        for doc in documents
        if isinstance(doc, Mapping) and str(doc.get("kind", "")).endswith("Runtime")
    ]
    if len(runtimes) != 1:
        kinds = ", ".join(
            str(doc.get("kind")) if isinstance(doc, Mapping) else type(doc).__name__
            for doc in documents
        )
        found = f"found {len(runtimes)} (documents: {kinds or 'none'})"
        raise ConfigError(f"{path}: kind", f"expected one CacheRuntime document, {found}")
    return runtime_spec_from_document(runtimes[0], str(path))


def runtime_spec_from_document(document: Mapping[str, Any], source: str = "runtime") -> RuntimeSpec:
    """The worker count and tiers of one runtime document (already parsed)."""
    kind = str(document.get("kind", ""))
    metadata = document.get("metadata") or {}
    name = str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""
    spec = document.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{source}: spec", f"expected a mapping, got {type(spec).__name__}")
    workers: int | None = None
    if "replicas" in spec:
        replicas = spec["replicas"]
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ConfigError(f"{source}: spec.replicas", f"{replicas!r} is not an integer >= 1")
        workers = replicas
    tiers: list[TierConfig] | None = None
    tieredstore = spec.get("tieredstore")
    if tieredstore is not None:
        if not isinstance(tieredstore, Mapping):
            raise ConfigError(f"{source}: spec.tieredstore", "expected a mapping with levels")
        levels = tieredstore.get("levels")
        if not isinstance(levels, list) or not levels:
            raise ConfigError(f"{source}: spec.tieredstore.levels", "expected a non-empty list")
        try:
            tiers = tiers_from_levels(levels)
        except ConfigError as error:
            raise ConfigError(f"{source}: spec.{error.field}", error.reason) from None
    return RuntimeSpec(kind=kind, name=name, workers=workers, tiers=tiers)


def check_tier_templates(tiers: Sequence[TierConfig]) -> list[TierConfig]:
    """Validate ``--tier`` templates together (one tier per medium, no nesting)."""
    return validate_tiers(list(tiers), field="--tier")


# ------------------------------------------------------------------ processes


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if it is gone.

    A zombie counts as gone. Recording this next to a pid tells a live process
    from a new one that reuses the pid.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def process_alive(pid: int, start_ticks: int | None) -> bool:
    """True while ``pid`` runs and (when ``start_ticks`` is known) is the same process."""
    if pid <= 0:
        return False
    ticks = process_start_ticks(pid)
    if ticks is None:
        return False
    return start_ticks is None or ticks == start_ticks


# ------------------------------------------------------------------ cluster.json


def read_cluster_record(layout: ClusterLayout) -> dict[str, Any] | None:
    """``<home>/cluster.json``, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(layout.cluster_file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cluster_record(layout: ClusterLayout, record: Mapping[str, Any]) -> None:
    """Write ``<home>/cluster.json`` atomically."""
    layout.home.mkdir(parents=True, exist_ok=True)
    tmp = layout.cluster_file.with_name(f".{CLUSTER_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(record), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, layout.cluster_file)


def recorded_processes(record: Mapping[str, Any]) -> list[tuple[str, int, int | None]]:
    """``(name, pid, start ticks)`` of every process a cluster record lists."""
    processes: list[tuple[str, int, int | None]] = []
    if record.get("master_pid"):
        processes.append(("master", int(record["master_pid"]), record.get("master_start_ticks")))
    for worker in record.get("workers") or []:
        if isinstance(worker, Mapping) and worker.get("pid"):
            processes.append(
                (str(worker.get("id", "?")), int(worker["pid"]), worker.get("start_ticks"))
            )
    return processes


def live_processes(record: Mapping[str, Any]) -> list[tuple[str, int]]:
    """``(name, pid)`` of the recorded processes that still run."""
    return [
        (name, pid)
        for name, pid, ticks in recorded_processes(record)
        if process_alive(pid, ticks if isinstance(ticks, int) else None)
    ]


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ("" if it cannot be read)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - 16384))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
