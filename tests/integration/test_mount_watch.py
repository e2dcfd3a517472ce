"""Workers open the UFS backends of the master's mounts before any read (``WatchMounts``).

Real processes: a master and workers (``LocalCluster``, with a cluster secret,
so the watch passes the system-token check) over a SeaweedFS bucket. What a
worker holds is read from its Prometheus endpoint
(``cachecluster_worker_mount_backend_open``, ``..._ufs_backends_closed_total``,
``..._bytes_fetched_total``), the surface an operator has too.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from cachecluster.client.client import AsyncClient
from cachecluster.common.auth import ADMIN_NAMESPACE
from cachecluster.local.cluster import LocalCluster, WorkerProcess
from cachecluster.local.cluster_calls import master_channel
from cachecluster.protos import master_pb2, master_pb2_grpc
from cachecluster.worker.tiers import Medium, TierConfig
from tests.integration.conftest import wait_for
from tests.metrics import metric_samples
from tests.servers.seaweed import SeaweedS3

NAMESPACE = "mw"
BUCKET = "mount-watch"
BLOCK_SIZE = 1 << 20
DATA = random.Random(7).randbytes(3 * BLOCK_SIZE + 123)


def metrics(worker: WorkerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, scraped from the worker's metrics port."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for sample in metric_samples(worker.metrics_port)
    }


def open_mounts(worker: WorkerProcess) -> set[str]:
    """The mount ids whose backend the worker holds open."""
    return {
        dict(labels)["mount_id"]
        for (name, labels), value in metrics(worker).items()
        if name == "cachecluster_worker_mount_backend_open" and value == 1
    }


def counter(worker: WorkerProcess, name: str) -> float:
    return metrics(worker).get((name, ()), 0.0)


@pytest.fixture
def cluster(tmp_path: Path, s3_server: SeaweedS3) -> Iterator[LocalCluster]:
    """2 workers with a cluster secret, and an S3 bucket holding one file."""
    s3_server.create_bucket(BUCKET)
    s3_server.client().put_object(Bucket=BUCKET, Key="data/file.bin", Body=DATA)
    tier = TierConfig(Medium.MEM, str(tmp_path / "mem"), 64 << 20)
    local = LocalCluster(
        tmp_path / "home",
        workers=2,
        tiers=[tier],
        block_size=BLOCK_SIZE,
        master_args=["--heartbeat-interval", "0.5"],
        auth=True,
    )
    with local:
        yield local


async def mount_id_of(cluster: LocalCluster, name: str) -> str:
    """The mount id of dataset ``name``'s root, from the master (no worker is asked)."""
    async with master_channel(cluster.master_address, cluster.token(ADMIN_NAMESPACE)) as channel:
        reply = await master_pb2_grpc.MetadataServiceStub(channel).GetStatus(
            master_pb2.GetStatusRequest(
                dataset=master_pb2.DatasetRef(namespace=NAMESPACE, name=name), path="file.bin"
            ),
            timeout=10,
        )
    assert reply.status.mount_id
    return reply.status.mount_id


async def delete_dataset(cluster: LocalCluster, name: str) -> None:
    async with master_channel(cluster.master_address, cluster.token(ADMIN_NAMESPACE)) as channel:
        reply = await master_pb2_grpc.DatasetServiceStub(channel).DeleteDataset(
            master_pb2.DeleteDatasetRequest(
                ref=master_pb2.DatasetRef(namespace=NAMESPACE, name=name)
            ),
            timeout=10,
        )
    assert reply.deleted


async def wait_open(workers: list[WorkerProcess], mount_id: str, *, is_open: bool) -> None:
    async def reached() -> bool:
        return all((mount_id in open_mounts(worker)) == is_open for worker in workers)

    state = "open" if is_open else "closed"
    await wait_for(
        reached,
        20.0,
        lambda: (
            f"mount {mount_id} {state} on every worker "
            f"(open: {[sorted(open_mounts(w)) for w in workers]})"
        ),
    )


async def test_workers_open_the_backend_before_any_read_and_close_it_on_delete(
    cluster: LocalCluster, s3_server: SeaweedS3
) -> None:
    cluster.apply_dataset(NAMESPACE, "s3", f"s3://{BUCKET}/data", s3_server.backend_options())
    mount_id = await mount_id_of(cluster, "s3")
    await wait_open(cluster.workers, mount_id, is_open=True)
    for worker in cluster.workers:
        assert counter(worker, "cachecluster_worker_bytes_fetched_total") == 0  # no read yet
        assert counter(worker, "cachecluster_worker_mount_backends_prepared_total") == 1

    # The backends opened ahead serve the right bytes.
    token = cluster.token(NAMESPACE)
    async with AsyncClient(cluster.master_address, token=token) as client:
        got = await client.cat(f"{NAMESPACE}/s3/file.bin")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(DATA).hexdigest()
    fetched = sum(counter(w, "cachecluster_worker_bytes_fetched_total") for w in cluster.workers)
    assert fetched >= len(DATA)

    await delete_dataset(cluster, "s3")
    await wait_open(cluster.workers, mount_id, is_open=False)

    async def all_closed() -> bool:
        return all(
            counter(w, "cachecluster_worker_ufs_backends_closed_total") == 1
            and counter(w, "cachecluster_worker_ufs_backends_retired") == 0
            for w in cluster.workers
        )

    await wait_for(all_closed, 20.0, "the deleted dataset's backend closed on every worker")
    for worker in cluster.workers:
        text = worker.log_path.read_text(errors="replace")
        assert f"mount {mount_id} opened ahead" in text
        assert s3_server.secret_key not in text  # the options travelled, never logged


async def test_a_worker_started_while_the_master_is_down_starts_then_opens_the_mounts(
    cluster: LocalCluster, s3_server: SeaweedS3
) -> None:
    cluster.apply_dataset(NAMESPACE, "s3", f"s3://{BUCKET}/data", s3_server.backend_options())
    mount_id = await mount_id_of(cluster, "s3")
    cluster.stop_master()
    cluster.restart_worker(0)  # returns once the worker listens: the master is not needed
    worker = cluster.workers[0]
    await asyncio.sleep(1.0)  # the watch is failing and retrying meanwhile
    assert worker.alive and open_mounts(worker) == set()
    cluster.start_master()
    await wait_open([worker], mount_id, is_open=True)
    assert counter(worker, "cachecluster_worker_bytes_fetched_total") == 0
