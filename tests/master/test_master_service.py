"""The master's servicers over a real in-process grpc.aio server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cachecluster.common.ring import RING_SCHEME, HashRing, RingSnapshot, RingWorker
from cachecluster.master.config import MasterConfig
from cachecluster.master.datasets import DatasetRegistry
from cachecluster.master.membership import Membership
from cachecluster.master.metadata import MetadataCache
from cachecluster.master.service import DatasetServicer, MasterServicer, MetadataServicer
from cachecluster.protos import common_pb2, master_pb2, master_pb2_grpc
from tests.grpc_helpers import grpc_channel

HEARTBEAT_S = 0.1


@dataclasses.dataclass
class Master:
    """Stubs to the servicers, and the objects behind them."""

    master: master_pb2_grpc.MasterServiceStub
    metadata: master_pb2_grpc.MetadataServiceStub
    datasets: master_pb2_grpc.DatasetServiceStub
    registry: DatasetRegistry
    home: Path


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[Master]:
    config = MasterConfig(
        home=tmp_path / "master",
        replicas=2,
        block_size=1 << 20,
        vnodes=50,
        heartbeat_interval=HEARTBEAT_S,
        missed_heartbeats=3,
    )
    membership = Membership(
        heartbeat_interval=config.heartbeat_interval, missed_heartbeats=config.missed_heartbeats
    )
    registry = DatasetRegistry(config.home)
    metadata = MetadataCache(registry, sync_interval=30)
    liveness = asyncio.create_task(membership.run_liveness_checks())
    try:
        async with grpc_channel(
            (
                master_pb2_grpc.add_MasterServiceServicer_to_server,
                MasterServicer(membership, config),
            ),
            (master_pb2_grpc.add_MetadataServiceServicer_to_server, MetadataServicer(metadata)),
            (
                master_pb2_grpc.add_DatasetServiceServicer_to_server,
                DatasetServicer(registry, metadata),
            ),
        ) as channel:
            yield Master(
                master=master_pb2_grpc.MasterServiceStub(channel),
                metadata=master_pb2_grpc.MetadataServiceStub(channel),
                datasets=master_pb2_grpc.DatasetServiceStub(channel),
                registry=registry,
                home=config.home,
            )
    finally:
        liveness.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await liveness
        await metadata.close()


def endpoint(port: int) -> common_pb2.WorkerEndpoint:
    return common_pb2.WorkerEndpoint(
        host="127.0.0.1", data_port=port, grpc_port=port + 1, unix_socket=f"/tmp/w{port}.sock"
    )


def register_request(worker_id: str, port: int, **fields: Any) -> master_pb2.RegisterWorkerRequest:
    return master_pb2.RegisterWorkerRequest(
        worker_id=worker_id, incarnation=1, endpoint=endpoint(port), version="0.1.0", **fields
    )


def ref(namespace: str = "ns", name: str = "ds") -> master_pb2.DatasetRef:
    return master_pb2.DatasetRef(namespace=namespace, name=name)


def apply_request(spec: Any, name: str = "ds") -> master_pb2.ApplyDatasetRequest:
    return master_pb2.ApplyDatasetRequest(ref=ref(name=name), spec_json=json.dumps(spec).encode())


async def test_register_then_ring_as_clients_build_it(master: Master) -> None:
    first = await master.master.RegisterWorker(register_request("w1", 7000))
    assert (first.heartbeat_interval_ms, first.block_size) == (100, 1 << 20)
    second = await master.master.RegisterWorker(register_request("w0", 7100))
    assert second.epoch == first.epoch + 1

    ring = await master.master.GetRing(master_pb2.GetRingRequest())
    assert ring.epoch == second.epoch and not ring.unchanged
    assert (ring.vnodes, ring.replicas, ring.block_size, ring.scheme) == (
        50,
        2,
        1 << 20,
        RING_SCHEME,
    )
    assert [m.worker_id for m in ring.members] == ["w0", "w1"]
    assert ring.members[1].endpoint == endpoint(7000)
    assert ring.members[1].state == master_pb2.WORKER_STATE_ACTIVE

    snapshot = RingSnapshot(
        workers=tuple(
            RingWorker(m.worker_id, f"{m.endpoint.host}:{m.endpoint.data_port}", m.weight)
            for m in ring.members
        ),
        vnodes=ring.vnodes,
        scheme=ring.scheme,
    )
    owners = HashRing.from_snapshot(snapshot).owners("0" * 32, ring.replicas)
    assert sorted(owners) == ["w0", "w1"]

    same = await master.master.GetRing(master_pb2.GetRingRequest(known_epoch=ring.epoch))
    assert same.unchanged and same.epoch == ring.epoch and not same.members


async def test_heartbeat_usage_and_list_workers(master: Master) -> None:
    unknown = await master.master.Heartbeat(master_pb2.HeartbeatRequest(worker_id="w9"))
    assert unknown.reregister
    await master.master.RegisterWorker(register_request("w1", 7000, block_ids=["ab" * 16]))
    tier = common_pb2.TierUsage(
        medium=common_pb2.MEDIUM_MEM, path="/dev/shm/x", capacity_bytes=1 << 30, used_bytes=5
    )
    beat = await master.master.Heartbeat(
        master_pb2.HeartbeatRequest(
            worker_id="w1",
            incarnation=1,
            tiers=[tier],
            counters=common_pb2.WorkerCounters(hits=3, bytes_served=99),
            block_count=1,
        )
    )
    assert not beat.reregister
    listed = await master.master.ListWorkers(master_pb2.ListWorkersRequest())
    (worker,) = listed.workers
    assert (worker.worker_id, worker.state, worker.block_count) == (
        "w1",
        master_pb2.WORKER_STATE_ACTIVE,
        1,
    )
    assert worker.tiers[0].used_bytes == 5 and worker.counters.bytes_served == 99
    assert worker.version == "0.1.0" and worker.registered_at_ms > 0


async def test_lost_worker_leaves_ring_and_rejoins(master: Master) -> None:
    await master.master.RegisterWorker(register_request("w1", 7000))
    joined = await master.master.RegisterWorker(register_request("w2", 7100))
    deadline = asyncio.get_running_loop().time() + 5
    while True:  # w2 beats, w1 stays silent
        await master.master.Heartbeat(master_pb2.HeartbeatRequest(worker_id="w2", incarnation=1))
        ring = await master.master.GetRing(master_pb2.GetRingRequest())
        if [m.worker_id for m in ring.members] == ["w2"]:
            break
        assert asyncio.get_running_loop().time() < deadline, "w1 was never lost"
        await asyncio.sleep(HEARTBEAT_S / 2)
    assert ring.epoch == joined.epoch + 1
    everyone = await master.master.ListWorkers(master_pb2.ListWorkersRequest(include_lost=True))
    assert [(w.worker_id, w.state) for w in everyone.workers] == [
        ("w1", master_pb2.WORKER_STATE_LOST),
        ("w2", master_pb2.WORKER_STATE_ACTIVE),
    ]
    late = await master.master.Heartbeat(master_pb2.HeartbeatRequest(worker_id="w1", incarnation=1))
    assert late.reregister
    back = await master.master.RegisterWorker(register_request("w1", 7000))
    assert back.epoch == ring.epoch + 1


async def test_report_blocks_stream(master: Master) -> None:
    await master.master.RegisterWorker(register_request("w1", 7000, blocks_follow=True))
    ids = [f"{n:032x}" for n in range(25_000)]

    def chunks(full: bool, added: list[str], removed: list[str] = []) -> list[Any]:  # noqa: B006
        parts = [added[i : i + 10_000] for i in range(0, len(added), 10_000)] or [[]]
        return [
            master_pb2.ReportBlocksRequest(
                worker_id="w1", incarnation=1, full=full, added=part, removed=removed
            )
            for part in parts
        ]

    full = await master.master.ReportBlocks(iter(chunks(True, ids)))
    assert full.block_count == 25_000
    delta = await master.master.ReportBlocks(iter(chunks(False, [], ids[:5])))
    assert delta.block_count == 24_995

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await master.master.ReportBlocks(
            iter([master_pb2.ReportBlocksRequest(worker_id="w9", incarnation=1, full=True)])
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await master.master.ReportBlocks(iter([]))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await master.master.ReportBlocks(iter(chunks(False, ["XYZ"])))
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "block id" in (bad.value.details() or "")


async def test_register_with_bad_input_is_invalid_argument(master: Master) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await master.master.RegisterWorker(master_pb2.RegisterWorkerRequest(worker_id="w1"))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_dataset_lifecycle_and_persistence(master: Master, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "d").mkdir(parents=True)
    (data / "d" / "f.bin").write_bytes(b"x" * 300)
    spec = {"mounts": [{"mountPoint": f"local://{data}", "name": "m0"}]}
    applied = await master.datasets.ApplyDataset(apply_request(spec))
    assert applied.created and applied.dataset.generation == 1
    assert applied.dataset.phase == "Bound"
    assert json.loads(applied.dataset.spec_json) == spec
    (mount_status,) = json.loads(applied.dataset.status_json)["mounts"]

    got = await master.datasets.GetDataset(master_pb2.GetDatasetRequest(ref=ref()))
    assert got.dataset == applied.dataset
    again = await master.datasets.ApplyDataset(apply_request(spec))
    assert not again.created and again.dataset.generation == 1
    await master.datasets.ApplyDataset(apply_request(spec, name="other"))
    listed = await master.datasets.ListDatasets(master_pb2.ListDatasetsRequest(namespace="ns"))
    assert [d.ref.name for d in listed.datasets] == ["ds", "other"]
    assert not (
        await master.datasets.ListDatasets(master_pb2.ListDatasetsRequest(namespace="x"))
    ).datasets

    # Metadata and mounts of the dataset.
    status = await master.metadata.GetStatus(
        master_pb2.GetStatusRequest(dataset=ref(), path="d/f.bin")
    )
    assert (status.status.size, status.status.mount_path) == (300, "d/f.bin")
    assert status.status.mount_id == mount_status["mountId"]
    page = await master.metadata.ListStatus(master_pb2.ListStatusRequest(dataset=ref(), path="/"))
    assert [(e.path, e.is_dir) for e in page.entries] == [("d", True)]
    assert page.next_page_token == ""
    mount = await master.metadata.GetMount(
        master_pb2.GetMountRequest(mount_id=status.status.mount_id)
    )
    assert (mount.mount.uri, mount.mount.name, mount.mount.dataset) == (
        f"local://{data}",
        "m0",
        ref(),
    )

    # A second registry over the same home sees what was applied.
    reloaded = DatasetRegistry(master.home)
    assert reloaded.load() == 2

    deleted = await master.datasets.DeleteDataset(master_pb2.DeleteDatasetRequest(ref=ref()))
    assert deleted.deleted
    gone = await master.datasets.DeleteDataset(master_pb2.DeleteDatasetRequest(ref=ref()))
    assert not gone.deleted
    for call in (
        master.datasets.GetDataset(master_pb2.GetDatasetRequest(ref=ref())),
        master.metadata.GetMount(master_pb2.GetMountRequest(mount_id=status.status.mount_id)),
        master.metadata.GetStatus(master_pb2.GetStatusRequest(dataset=ref(), path="d/f.bin")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("spec_json", "message"),
    [
        (b"{nope", "not JSON"),
        (
            json.dumps({"mounts": [{"mountPoint": "gs://bucket"}]}).encode(),
            "unknown UFS scheme 'gs'",
        ),
        (
            json.dumps(
                {"mounts": [{"mountPoint": "local:///tmp", "options": {"fs.local.x": "1"}}]}
            ).encode(),
            "fs.local.x",
        ),
    ],
)
async def test_apply_errors_are_invalid_argument_and_change_nothing(
    master: Master, spec_json: bytes, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await master.datasets.ApplyDataset(
            master_pb2.ApplyDatasetRequest(ref=ref(), spec_json=spec_json)
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (error.value.details() or "")
    assert master.registry.datasets() == []


async def test_metadata_errors(master: Master, tmp_path: Path) -> None:
    spec = {"mounts": [{"mountPoint": f"local://{tmp_path}", "name": "m0"}]}
    await master.datasets.ApplyDataset(apply_request(spec))
    cases = [
        (master_pb2.GetStatusRequest(dataset=ref(), path="../x"), grpc.StatusCode.INVALID_ARGUMENT),
        (master_pb2.GetStatusRequest(dataset=ref(), path="missing"), grpc.StatusCode.NOT_FOUND),
        (master_pb2.GetStatusRequest(path="x"), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for request, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await master.metadata.GetStatus(request)
        assert error.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await master.metadata.GetMount(master_pb2.GetMountRequest(mount_id="0123456789abcdef"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_started_master_keeps_old_rings_in_place_during_its_grace(tmp_path: Path) -> None:
    """GetRing from a holder of an earlier master's ring: UNAVAILABLE until workers are back."""
    config = MasterConfig(home=tmp_path / "master", replicas=1, block_size=1 << 20, vnodes=20)
    now = [100.0]
    membership = Membership(heartbeat_interval=1.0, missed_heartbeats=3, clock=lambda: now[0])
    old_epoch = membership.first_epoch - 1  # what a client of the previous master holds
    async with grpc_channel(
        (master_pb2_grpc.add_MasterServiceServicer_to_server, MasterServicer(membership, config))
    ) as channel:
        stub = master_pb2_grpc.MasterServiceStub(channel)
        await stub.RegisterWorker(register_request("w0", 7000))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetRing(master_pb2.GetRingRequest(known_epoch=old_epoch))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "keep ring" in (refused.value.details() or "")
        # Nothing better to keep (no ring, or one of this master): served at once.
        fresh = await stub.GetRing(master_pb2.GetRingRequest(known_epoch=0))
        assert [m.worker_id for m in fresh.members] == ["w0"]
        again = await stub.GetRing(master_pb2.GetRingRequest(known_epoch=fresh.epoch))
        assert again.unchanged
        now[0] += 3.1
        later = await stub.GetRing(master_pb2.GetRingRequest(known_epoch=old_epoch))
        assert [m.worker_id for m in later.members] == ["w0"]
