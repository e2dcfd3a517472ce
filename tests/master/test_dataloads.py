"""DataLoad specs, schedules, status figures, the dataloads.json file and the CLI rows.

Runs against real workers (splitting, placement, retry, Cron, TTL, restart)
are in ``tests/integration/test_dataload.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import stat
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from cachecluster.cli.load_cmds import dataload_rows, format_age, outcome_line
from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import ConfigError, NotFound
from cachecluster.common.ring import HashRing, RingWorker
from cachecluster.master import dataload_runner
from cachecluster.master.config import MasterConfig
from cachecluster.master.dataload_runner import DataLoadController, LoadRun
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
from cachecluster.master.datasets import DatasetRegistry
from cachecluster.master.membership import Membership
from cachecluster.master.metadata import MetadataCache
from cachecluster.protos import common_pb2, worker_pb2, worker_pb2_grpc

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


# -- runs against in-process fake workers: splitting, retry, next owner, progress ----------


@dataclasses.dataclass
class _FakeMember:
    worker_id: str
    endpoint: common_pb2.WorkerEndpoint
    weight: float = 1.0

    @property
    def address(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.data_port}"


class _FakeMembership:
    def __init__(self, members: list[_FakeMember]) -> None:
        self.members = members

    def ring_members(self) -> list[_FakeMember]:
        return self.members

    def startup_grace_left(self) -> float:
        return 0.0


class _FakeWorker(worker_pb2_grpc.WorkerServiceServicer):
    """Records the blocks it is asked for; fails some; may hold calls until a gate opens."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.fail_times: dict[str, int] = {}  # block id -> failures left (-1: always)
        self.fail_all = False
        self.gate: asyncio.Event | None = None
        self.gated_block = ""  # only calls with this block wait for the gate ("" : all)

    async def LoadBlocks(
        self, request: worker_pb2.LoadBlocksRequest, context: grpc.aio.ServicerContext
    ) -> worker_pb2.LoadBlocksResponse:
        gated = not self.gated_block or any(
            ref.block_id == self.gated_block for ref in request.blocks
        )
        if self.gate is not None and gated:
            await self.gate.wait()
        results = []
        for ref in request.blocks:
            self.received.append(ref.block_id)
            left = self.fail_times.get(ref.block_id, 0)
            if self.fail_all or left:
                self.fail_times[ref.block_id] = left - 1 if left > 0 else left
                error = common_pb2.ItemError(kind=common_pb2.ERROR_KIND_UNAVAILABLE, message="boom")
                results.append(worker_pb2.BlockResult(block_id=ref.block_id, ok=False, error=error))
            else:
                results.append(
                    worker_pb2.BlockResult(block_id=ref.block_id, ok=True, bytes_fetched=ref.length)
                )
        return worker_pb2.LoadBlocksResponse(results=results)


BS = 64 * 1024  # the smallest block size a master takes


@dataclasses.dataclass
class _Rig:
    run: Callable[[dict[str, Any], LoadStatus | None], Coroutine[Any, Any, LoadStatus]]
    workers: dict[str, _FakeWorker]
    metadata: MetadataCache
    ring: HashRing


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[_Rig]:
    sizes = {"a.bin": 3 * BS + 5, "dir/b.bin": BS, "dir/c.bin": 1, "dir/empty.bin": 0}
    for name, size in sizes.items():
        (tmp_path / "ufs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "ufs" / name).write_bytes(b"x" * size)
    registry = DatasetRegistry(None)
    registry.apply("ns", "ds", {"mounts": [{"mountPoint": f"local://{tmp_path / 'ufs'}"}]})
    metadata = MetadataCache(registry)
    workers: dict[str, _FakeWorker] = {}
    servers: list[grpc.aio.Server] = []
    members: list[_FakeMember] = []
    for worker_id in ("w0", "w1", "w2"):
        server = grpc.aio.server()
        fake = _FakeWorker()
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(fake, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        workers[worker_id] = fake
        members.append(
            _FakeMember(worker_id, common_pb2.WorkerEndpoint(host="127.0.0.1", grpc_port=port))
        )
    config = MasterConfig(home=tmp_path / "home", replicas=2, block_size=BS)
    ring = HashRing([RingWorker(m.worker_id, m.address) for m in members])

    async def run(spec: dict[str, Any], status: LoadStatus | None = None) -> LoadStatus:
        status = status or LoadStatus()
        status.begin_run()
        load = LoadRun(
            parse_dataload_spec("ns", "load", spec),
            status,
            metadata=metadata,
            membership=cast(Membership, _FakeMembership(members)),
            config=config,
        )
        await load.run()
        return status

    yield _Rig(run, workers, metadata, ring)
    for server in servers:
        await server.stop(None)
    await metadata.close()


async def _keys(rig: _Rig, path: str) -> list[BlockKey]:
    entry = await rig.metadata.get_status("ns", "ds", path)
    count = (entry.size + BS - 1) // BS
    return [BlockKey(entry.mount_id, entry.mount_path, entry.version, i) for i in range(count)]


async def _blocks(rig: _Rig, path: str) -> list[str]:
    return [key.id for key in await _keys(rig, path)]


def _owners(rig: _Rig, key: BlockKey, count: int) -> list[str]:
    """The ring owners of block ``key`` (placed by its group, as the runner places it)."""
    return rig.ring.owners(key.placement_key(BS), count)


async def test_each_block_goes_to_its_two_ring_owners(rig: _Rig) -> None:
    status = await rig.run({"dataset": {"name": "ds"}}, None)
    assert status.phase == COMPLETE, status.message
    assert (status.files_total, status.files_done) == (4, 4)
    assert status.bytes_done == status.bytes_total == 4 * BS + 6
    expected: dict[str, list[str]] = {worker_id: [] for worker_id in rig.workers}
    total = 0
    for path in ("a.bin", "dir/b.bin", "dir/c.bin"):
        for key in await _keys(rig, path):
            total += 1
            for owner in _owners(rig, key, 2):
                expected[owner].append(key.id)
    assert status.blocks_total == status.blocks_done == total == 6
    for worker_id, fake in rig.workers.items():
        assert sorted(fake.received) == sorted(expected[worker_id]), worker_id
    assert status.bytes_fetched == 2 * (4 * BS + 6)


async def test_a_target_subtree_and_a_failed_block_retried_on_the_same_worker(rig: _Rig) -> None:
    [key] = await _keys(rig, "dir/b.bin")
    block_id = key.id
    owner = _owners(rig, key, 2)[0]
    rig.workers[owner].fail_times[block_id] = 1
    status = await rig.run({"dataset": {"name": "ds"}, "target": [{"path": "/dir"}]}, None)
    assert status.phase == COMPLETE, status.message
    assert status.files_total == 3
    assert rig.workers[owner].received.count(block_id) == 2


async def test_a_failing_worker_hands_its_blocks_to_the_next_owner(rig: _Rig) -> None:
    keys = await _keys(rig, "a.bin")
    bad = _owners(rig, keys[0], 2)[0]
    rig.workers[bad].fail_all = True
    status = await rig.run({"dataset": {"name": "ds"}, "target": [{"path": "a.bin"}]}, None)
    assert status.phase == COMPLETE, status.message
    for key in keys:
        three = _owners(rig, key, 3)
        if bad in three[:2]:
            assert key.id in rig.workers[three[2]].received  # the spare got the copy


async def test_a_block_no_worker_can_load_fails_the_load_naming_the_file(rig: _Rig) -> None:
    ids = await _blocks(rig, "a.bin")
    for fake in rig.workers.values():
        fake.fail_times[ids[1]] = -1
    status = await rig.run({"dataset": {"name": "ds"}}, None)
    assert status.phase == FAILED
    [(path, message)] = status.failures
    assert path == "a.bin" and message.startswith("worker w") and message.endswith(": boom")
    assert status.message.startswith("1 file(s) not loaded: a.bin (worker ")
    assert status.files_done == 3 and status.bytes_done == status.bytes_total - BS


async def test_progress_shows_while_a_block_is_still_loading(
    rig: _Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataload_runner, "BATCH_BLOCKS", 1)  # one block a call
    first = (await _keys(rig, "a.bin"))[0]
    held = first.id
    owner = _owners(rig, first, 2)[0]
    gate = asyncio.Event()
    rig.workers[owner].gate = gate
    rig.workers[owner].gated_block = held
    status = LoadStatus()
    task = asyncio.create_task(rig.run({"dataset": {"name": "ds"}}, status))
    for _ in range(200):
        await asyncio.sleep(0.02)
        if status.blocks_done == 5:
            break
    assert not task.done() and status.phase == EXECUTING
    assert (status.blocks_done, status.blocks_total) == (5, 6)
    assert status.bytes_done == status.bytes_total - BS
    assert 0 < status.percentage < 100.0 and status.files_done == 3
    gate.set()
    await asyncio.wait_for(task, 10)
    assert status.phase == COMPLETE and status.percentage == 100.0


class _SlowRegistry(DataLoadRegistry):
    """A registry whose file writes take a while and record when they start and end."""

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.events: list[str] = []

    def write(self, document: dict[str, Any]) -> None:
        self.events.append("start")
        time.sleep(0.3)
        super().write(document)
        self.events.append("end")


async def test_a_cancelled_save_keeps_the_file_lock_until_its_write_ends(tmp_path: Path) -> None:
    registry = _SlowRegistry(tmp_path)
    controller = DataLoadController(
        registry, metadata=cast(Any, None), membership=cast(Any, None), config=cast(Any, None)
    )
    first = asyncio.create_task(controller.save())
    await asyncio.sleep(0.1)  # its write is running in a thread now
    first.cancel()
    second = asyncio.create_task(controller.save())
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    # The second write started only after the first one ended: never two at once.
    assert registry.events == ["start", "end", "start", "end"]
    assert (tmp_path / "dataloads.json").exists()
