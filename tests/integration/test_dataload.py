"""DataLoad and metadata sync on a local cluster of real processes, S3 (SeaweedFS) and local UFS.

One cluster for the module: 3 workers, 2 replicas, 1 MiB blocks, metadata
sync interval :data:`SYNC_S`. Datasets ``dl/s3`` (a SeaweedFS bucket) and
``dl/local`` (a folder) hold the same files; ``dl/sync-*`` hold files the
tests overwrite.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from cachecluster.cli.load_cmds import dataload_rows, wait_for_dataload
from cachecluster.client.client import AsyncClient
from cachecluster.common.errors import NotFound, VersionChanged
from cachecluster.common.grpc_errors import rpc_errors
from cachecluster.local.cluster import LocalCluster
from cachecluster.protos import dataload_pb2, dataload_pb2_grpc, master_pb2
from tests.integration.conftest import (
    BLOCK_SIZE,
    generate,
    held_blocks,
    sha256,
    source_sizes,
    wait_for,
    worker_stats,
    write_tree,
)
from tests.servers.seaweed import SeaweedS3

pytestmark = pytest.mark.timeout(180)

NS = "dl"
BUCKET = "dl-data"
SYNC_S = 2.0
REPLICAS = 2


@dataclass
class LoadCluster:
    cluster: LocalCluster
    root: Path
    files: dict[str, bytes]
    s3: SeaweedS3


@pytest.fixture(scope="module")
def load_cluster(
    tmp_path_factory: pytest.TempPathFactory, s3_server: SeaweedS3
) -> Iterator[LoadCluster]:
    root = tmp_path_factory.mktemp("dataload")
    files = generate(source_sizes(), seed=4)
    write_tree(root / "ufs", files)
    (root / "sync").mkdir()
    s3_server.create_bucket(BUCKET)
    client = s3_server.client()
    for name, data in files.items():
        client.put_object(Bucket=BUCKET, Key=f"data/{name}", Body=data)
    cluster = LocalCluster(
        root / "home",
        workers=3,
        block_size=BLOCK_SIZE,
        replicas=REPLICAS,
        master_args=["--metadata-sync-interval", str(SYNC_S)],
    )
    with cluster:
        options = s3_server.backend_options()
        cluster.apply_dataset(NS, "s3", f"s3://{BUCKET}/data", options)
        cluster.apply_dataset(NS, "local", f"local://{root / 'ufs'}")
        cluster.apply_dataset(NS, "sync-local", f"local://{root / 'sync'}")
        cluster.apply_dataset(NS, "sync-s3", f"s3://{BUCKET}/sync", options)
        yield LoadCluster(cluster, root, files, s3_server)


@pytest.fixture
async def stub(load_cluster: LoadCluster) -> AsyncIterator[dataload_pb2_grpc.DataLoadServiceStub]:
    async with grpc.aio.insecure_channel(load_cluster.cluster.master_address) as channel:
        yield dataload_pb2_grpc.DataLoadServiceStub(channel)


def _ref(name: str) -> master_pb2.DatasetRef:
    return master_pb2.DatasetRef(namespace=NS, name=name)


async def apply(
    stub: dataload_pb2_grpc.DataLoadServiceStub, name: str, spec: dict[str, Any]
) -> dataload_pb2.ApplyDataLoadResponse:
    request = dataload_pb2.ApplyDataLoadRequest(ref=_ref(name), spec_json=json.dumps(spec).encode())
    with rpc_errors():
        return await stub.ApplyDataLoad(request, timeout=10)


async def run_load(
    load_cluster: LoadCluster,
    stub: dataload_pb2_grpc.DataLoadServiceStub,
    name: str,
    spec: dict[str, Any],
) -> dataload_pb2.DataLoad:
    await apply(stub, name, spec)
    return await wait_for_dataload(
        load_cluster.cluster.master_address, NS, name, show_progress=False, timeout=60
    )


async def test_dataload_puts_every_block_on_its_owners(
    load_cluster: LoadCluster, stub: dataload_pb2_grpc.DataLoadServiceStub
) -> None:
    load = await run_load(
        load_cluster, stub, "s3-all", {"dataset": {"name": "s3"}, "loadMetadata": True}
    )
    status = load.status
    assert status.phase == "Complete", status.message
    total = sum(len(data) for data in load_cluster.files.values())
    assert (status.files_done, status.files_total) == (
        len(load_cluster.files),
        len(load_cluster.files),
    )
    assert (status.bytes_done, status.bytes_total) == (total, total)
    assert status.percentage == 100.0
    assert status.duration_ms > 0 and status.end_time_ms >= status.start_time_ms > 0
    assert not status.failures and not status.message

    workers = {worker.worker_id: worker for worker in load_cluster.cluster.workers}
    held = {worker_id: held_blocks(worker) for worker_id, worker in workers.items()}
    async with AsyncClient(load_cluster.cluster.master_address) as client:
        blocks = 0
        for name in load_cluster.files:
            for block in await client.blocks(f"{NS}/s3/{name}"):
                assert len(block.owners) == REPLICAS
                for owner in block.owners:
                    assert block.block_id in held[owner], (
                        f"{name} block {block.index} not on {owner}"
                    )
                blocks += 1
        assert status.blocks_total == status.blocks_done == blocks
        # Served from the cache now: worker hits rise, UFS fetches (misses) do not.
        before = [(await worker_stats(w)).counters for w in workers.values()]
        for name, data in load_cluster.files.items():
            assert sha256(await client.cat(f"{NS}/s3/{name}")) == sha256(data)
        after = [(await worker_stats(w)).counters for w in workers.values()]
        assert client.stats.ufs_reads == 0
        assert sum(c.misses for c in after) == sum(c.misses for c in before)
        assert sum(c.hits for c in after) >= sum(c.hits for c in before) + blocks - 2

    # A second load of the same files fetches nothing.
    again = await run_load(load_cluster, stub, "s3-again", {"dataset": {"name": "s3"}})
    assert again.status.phase == "Complete" and again.status.bytes_fetched == 0

    with rpc_errors():
        listed = await stub.ListDataLoads(
            dataload_pb2.ListDataLoadsRequest(namespace=NS), timeout=5
        )
    rows = {row["NAME"]: row for row in dataload_rows(listed.dataloads)}
    assert rows["s3-all"]["PHASE"] == "Complete" and rows["s3-all"]["DATASET"] == "s3"
    assert rows["s3-all"]["DURATION"].endswith("s")


async def test_a_target_path_and_a_missing_path_fail_naming_the_path(
    load_cluster: LoadCluster, stub: dataload_pb2_grpc.DataLoadServiceStub
) -> None:
    spec = {"dataset": {"name": "local"}, "target": [{"path": "/dir"}, {"path": "/no/such"}]}
    load = await run_load(load_cluster, stub, "local-missing", spec)
    status = load.status
    assert status.phase == "Failed"
    assert [failure.path for failure in status.failures] == ["no/such"]
    assert "no/such" in status.message and status.message.startswith("1 file(s) not loaded")
    dir_files = [name for name in load_cluster.files if name.startswith("dir/")]
    assert status.files_done == status.files_total == len(dir_files)
    assert status.bytes_done == sum(len(load_cluster.files[name]) for name in dir_files)


async def test_a_ufs_failure_is_retried_then_reported_with_the_path(
    load_cluster: LoadCluster, stub: dataload_pb2_grpc.DataLoadServiceStub, tmp_path: Path
) -> None:
    folder = tmp_path / "vanishing"
    write_tree(folder, {"keep.bin": b"k" * 3000, "late.bin": b"l" * (2 * BLOCK_SIZE)})
    load_cluster.cluster.apply_dataset(NS, "vanishing", f"local://{folder}")
    async with AsyncClient(load_cluster.cluster.master_address) as client:
        await client.stat(f"{NS}/vanishing/late.bin")  # the master caches its status for SYNC_S
    (folder / "late.bin").unlink()  # the workers will not find it: every attempt fails
    spec = {
        "dataset": {"name": "vanishing"},
        "target": [{"path": "late.bin"}, {"path": "keep.bin"}],
    }
    load = await run_load(load_cluster, stub, "vanish", spec)
    status = load.status
    assert status.phase == "Failed"
    assert [failure.path for failure in status.failures] == ["late.bin"]
    assert "late.bin" in status.message
    assert "worker" in status.failures[0].message, status.failures[0].message  # a fetch failed
    assert status.files_done == 1 and status.files_total == 2  # keep.bin was loaded


async def test_metadata_sync_reads_new_bytes_never_a_mix(
    load_cluster: LoadCluster,
) -> None:
    old = generate({"f": 3 * BLOCK_SIZE + 10}, seed=1)["f"]
    new = generate({"f": 3 * BLOCK_SIZE + 10}, seed=2)["f"]
    s3 = load_cluster.s3.client()
    (load_cluster.root / "sync" / "model.bin").write_bytes(old)
    s3.put_object(Bucket=BUCKET, Key="sync/model.bin", Body=old)
    async with AsyncClient(
        load_cluster.cluster.master_address, metadata_ttl=0.5, readahead_blocks=0
    ) as client:
        for dataset, overwrite in (
            (
                "sync-local",
                lambda data: (load_cluster.root / "sync" / "model.bin").write_bytes(data),
            ),
            ("sync-s3", lambda data: s3.put_object(Bucket=BUCKET, Key="sync/model.bin", Body=data)),
        ):
            path = f"{NS}/{dataset}/model.bin"
            pinned = await client.open(path, readahead_blocks=0)
            first = bytearray(BLOCK_SIZE)
            assert await pinned.pread_into(0, first) == BLOCK_SIZE  # block 0 cached, old version
            assert bytes(first) == old[:BLOCK_SIZE]
            overwrite(new)

            # A reader pinned to the old version never gets new bytes in an old file:
            # a block not cached yet fails with VersionChanged (the worker checks the version).
            rest = bytearray(2 * BLOCK_SIZE)
            with pytest.raises(VersionChanged):
                await pinned.pread_into(BLOCK_SIZE, rest)
            await pinned.close()

            async def reads_new(path: str = path, dataset: str = dataset) -> bool:
                try:
                    data = await client.cat(path)
                except VersionChanged:  # the master still lists the old version
                    return False
                assert data in (old, new), f"{dataset}: a mix of old and new bytes"
                return data == new

            waited = await wait_for(reads_new, SYNC_S + 10, f"{dataset}: new bytes after a sync")
            assert waited <= SYNC_S + 5
            assert sha256(await client.cat(path)) == sha256(new)


async def test_load_metadata_refreshes_at_once(
    load_cluster: LoadCluster, stub: dataload_pb2_grpc.DataLoadServiceStub
) -> None:
    folder = load_cluster.root / "sync"
    (folder / "fresh.bin").write_bytes(b"a" * 100)
    first = await run_load(load_cluster, stub, "meta-1", {"dataset": {"name": "sync-local"}})
    assert first.status.phase == "Complete", first.status.message
    listed_at = time.monotonic()
    (folder / "fresh-2.bin").write_bytes(b"b" * 200)  # not in the master's listing yet
    stale = await run_load(load_cluster, stub, "meta-2", {"dataset": {"name": "sync-local"}})
    if time.monotonic() - listed_at < SYNC_S:  # the listing was still fresh: it missed the file
        assert stale.status.files_total == first.status.files_total
    load = await run_load(
        load_cluster, stub, "meta-3", {"dataset": {"name": "sync-local"}, "loadMetadata": True}
    )
    assert load.status.phase == "Complete", load.status.message
    assert load.status.files_total == first.status.files_total + 1


async def test_cron_runs_again_and_ttl_deletes_a_finished_load(
    load_cluster: LoadCluster, stub: dataload_pb2_grpc.DataLoadServiceStub
) -> None:
    spec = {"dataset": {"name": "local"}, "policy": "Cron", "schedule": "@every 1s"}
    await apply(stub, "cron", spec)

    async def runs() -> int:
        with rpc_errors():
            got = await stub.GetDataLoad(
                dataload_pb2.GetDataLoadRequest(ref=_ref("cron")), timeout=5
            )
        return got.dataload.status.runs

    async def ran_twice() -> bool:
        return await runs() >= 2

    await wait_for(ran_twice, 20, "a Cron DataLoad running twice")
    with rpc_errors():
        got = await stub.GetDataLoad(dataload_pb2.GetDataLoadRequest(ref=_ref("cron")), timeout=5)
    assert got.dataload.status.last_schedule_time_ms > 0
    with rpc_errors():
        deleted = await stub.DeleteDataLoad(
            dataload_pb2.DeleteDataLoadRequest(ref=_ref("cron")), timeout=5
        )
    assert deleted.deleted

    load = await run_load(
        load_cluster, stub, "ttl", {"dataset": {"name": "local"}, "ttlSecondsAfterFinished": 1}
    )
    assert load.status.phase == "Complete"

    async def gone() -> bool:
        try:
            with rpc_errors():
                await stub.GetDataLoad(dataload_pb2.GetDataLoadRequest(ref=_ref("ttl")), timeout=5)
        except NotFound:
            return True
        return False

    await wait_for(gone, 10, "a finished DataLoad deleted after its TTL")


async def test_unknown_dataset_is_refused_and_loads_survive_a_master_restart(
    load_cluster: LoadCluster, stub: dataload_pb2_grpc.DataLoadServiceStub
) -> None:
    with pytest.raises(NotFound, match="nope"):
        await apply(stub, "bad", {"dataset": {"name": "nope"}})
    before = await run_load(load_cluster, stub, "survivor", {"dataset": {"name": "local"}})
    assert before.status.phase == "Complete"
    await asyncio.to_thread(load_cluster.cluster.restart_master)
    async with grpc.aio.insecure_channel(load_cluster.cluster.master_address) as channel:
        fresh = dataload_pb2_grpc.DataLoadServiceStub(channel)
        with rpc_errors():
            got = await fresh.GetDataLoad(
                dataload_pb2.GetDataLoadRequest(ref=_ref("survivor")), timeout=5
            )
    after = got.dataload.status
    assert after.phase == "Complete" and after.duration_ms == before.status.duration_ms
    mode = (load_cluster.cluster.master.home / "dataloads.json").stat().st_mode & 0o777
    assert mode == 0o600


async def test_a_dead_worker_blocks_go_to_the_next_owner(
    load_cluster: LoadCluster, stub: dataload_pb2_grpc.DataLoadServiceStub, tmp_path: Path
) -> None:
    folder = tmp_path / "retry"
    write_tree(folder, generate({f"r{i}.bin": BLOCK_SIZE * 2 + i for i in range(6)}, seed=9))
    load_cluster.cluster.apply_dataset(NS, "retry", f"local://{folder}")
    load_cluster.cluster.kill_worker(0)  # SIGKILL: still on the ring for a few heartbeats
    try:
        load = await run_load(load_cluster, stub, "retry", {"dataset": {"name": "retry"}})
        status = load.status
        assert status.phase == "Complete", status.message
        assert status.files_done == 6
        # the dead worker's copies landed on the third worker
        survivors = [w for w in load_cluster.cluster.workers[1:]]
        async with AsyncClient(load_cluster.cluster.master_address) as client:
            for name in (f"r{i}.bin" for i in range(6)):
                for block in await client.blocks(f"{NS}/retry/{name}"):
                    holders = [w.worker_id for w in survivors if block.block_id in held_blocks(w)]
                    assert len(holders) >= 1
    finally:
        await asyncio.to_thread(load_cluster.cluster.start_worker, 0)


async def test_cli_load_prints_the_duration_and_fails_naming_the_path(
    load_cluster: LoadCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from cachecluster.cli.main import main

    address = load_cluster.cluster.master_address
    code = await asyncio.to_thread(main, ["load", f"{NS}/local", "--master", address, "-q"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"dataload {NS}/local-load-" in out and " Complete: " in out and "s/s" not in out
    assert "(100.0%) in " in out

    argv = ["load", f"{NS}/local", "--path", "dir", "--path", "/no/such", "--name", "cli-bad"]
    code = await asyncio.to_thread(main, [*argv, "--master", address, "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert "cli-bad Failed" in err and "no/such" in err

    code = await asyncio.to_thread(main, ["load", f"{NS}/nope", "--master", address, "-q"])
    assert code != 0 and "nope" in capsys.readouterr().err
