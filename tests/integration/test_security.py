"""Security between namespaces on a real local cluster with a cluster secret (``up --auth``).

One module cluster: 2 workers, 2 replicas, 1 MiB blocks; datasets ``a/ds`` and
``b/ds`` (local folders) and ``a/ref``, a reference to ``dataset://b/ds/sub``
applied by the admin. The last test kills a worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cachecluster.client.capabilities import _Held
from cachecluster.client.client import AsyncClient
from cachecluster.client.data_conn import DataConnection
from cachecluster.client.master_api import parse_dataset_path
from cachecluster.common import auth
from cachecluster.common.block_key import BlockKey
from cachecluster.common.errors import InvalidPath, NotFound, PermissionDenied
from cachecluster.common.frames import BlockRef
from cachecluster.local.cluster import LocalCluster
from cachecluster.local.cluster_calls import (
    apply_dataset_async,
    fetch_worker_stats,
    master_channel,
    run_sync,
)
from cachecluster.protos import worker_pb2, worker_pb2_grpc
from cachecluster.worker.tiers import Medium, TierConfig

BLOCK_SIZE = 1 << 20


def _data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


FILES = {
    "a/x.bin": _data(1, 3 * BLOCK_SIZE + 17),
    "b/top.bin": _data(2, 1000),
    "b/sub/y.bin": _data(3, BLOCK_SIZE + 5),
}


@pytest.fixture(scope="module")
def secure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("secure-cluster")
    for name, data in FILES.items():
        (root / "ufs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "ufs" / name).write_bytes(data)
    cluster = LocalCluster(
        root / "home",
        workers=2,
        tiers=[TierConfig(Medium.SSD, str(root / "ssd"), 256 << 20)],
        block_size=BLOCK_SIZE,
        replicas=2,
        master_args=["--heartbeat-interval", "0.5", "--missed-heartbeats", "4"],
        auth=True,
    )
    with cluster:
        cluster.apply_dataset("a", "ds", f"local://{root / 'ufs' / 'a'}")
        cluster.apply_dataset("b", "ds", f"local://{root / 'ufs' / 'b'}")
        reference = {"mounts": [{"mountPoint": "dataset://b/ds/sub", "name": "r"}]}
        run_sync(
            apply_dataset_async(
                cluster.master_address,
                "a",
                "ref",
                reference,
                token=cluster.token(auth.ADMIN_NAMESPACE),
            )
        )
        yield cluster


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token from the environment or a default home: each test says which it uses."""
    monkeypatch.delenv("CACHECLUSTER_TOKEN", raising=False)
    monkeypatch.setenv("CACHECLUSTER_HOME", str(tmp_path / "no-home"))


def test_secret_file_is_private(secure_cluster: LocalCluster) -> None:
    mode = stat.S_IMODE(os.stat(secure_cluster.secret_file).st_mode)
    assert mode == 0o600


async def test_no_token_is_refused(secure_cluster: LocalCluster) -> None:
    async with AsyncClient(secure_cluster.master_address) as client:
        assert client.token is None
        with pytest.raises(PermissionDenied, match="token"):
            await client.stat("a/ds/x.bin")
        with pytest.raises(PermissionDenied):
            await client.ls("a")
    forged = auth.issue_token(bytes(32), "a")
    async with AsyncClient(secure_cluster.master_address, token=forged) as client:
        with pytest.raises(PermissionDenied, match="signature"):
            await client.stat("a/ds/x.bin")


async def test_a_reads_its_own_data_through_the_workers(secure_cluster: LocalCluster) -> None:
    token = secure_cluster.token("a")
    async with AsyncClient(secure_cluster.master_address, token=token) as client:
        data = await client.cat("a/ds/x.bin")
        assert hashlib.sha256(data).digest() == hashlib.sha256(FILES["a/x.bin"]).digest()
        assert client.stats.worker_reads > 0 and client.stats.ufs_reads == 0
        assert await client.ls("") == ["a"]
        assert sorted(await client.ls("a")) == ["a/ds", "a/ref"]
    # The owner replicated every block to the other worker (LoadBlocks with the system token).
    admin = secure_cluster.token(auth.ADMIN_NAMESPACE)
    deadline = time.monotonic() + 15
    while True:
        counts = [
            (await fetch_worker_stats(w.grpc_address, token=admin)).block_count
            for w in secure_cluster.workers
        ]
        if all(count >= 4 for count in counts) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert counts == [4, 4]


async def test_a_cannot_list_stat_or_read_b(secure_cluster: LocalCluster) -> None:
    token = secure_cluster.token("a")
    async with AsyncClient(secure_cluster.master_address, token=token) as client:
        with pytest.raises(NotFound):
            await client.ls("b")
        with pytest.raises(NotFound):
            await client.ls("b/ds")
        with pytest.raises(NotFound):
            await client.stat("b/ds/top.bin")
        with pytest.raises(NotFound):
            await client.cat("b/ds/top.bin")
        with pytest.raises(NotFound):
            await client.api.issue_capability(parse_dataset_path("b/ds"))


async def test_a_reads_b_only_through_its_subpath_reference(secure_cluster: LocalCluster) -> None:
    token = secure_cluster.token("a")
    async with AsyncClient(secure_cluster.master_address, token=token) as client:
        assert await client.cat("a/ref/y.bin") == FILES["b/sub/y.bin"]
        assert client.stats.ufs_reads == 0
        with pytest.raises(NotFound):
            await client.stat("a/ref/top.bin")
        with pytest.raises(InvalidPath):
            await client.stat("a/ref/../../b/ds/top.bin")
        with pytest.raises(InvalidPath):
            await client.cat("a/ref/../../top.bin")


async def test_workers_refuse_forged_expired_and_out_of_scope_capabilities(
    secure_cluster: LocalCluster,
) -> None:
    admin = secure_cluster.token(auth.ADMIN_NAMESPACE)
    async with AsyncClient(secure_cluster.master_address, token=admin) as client:
        top = await client.stat("b/ds/top.bin")
    async with AsyncClient(secure_cluster.master_address, token=secure_cluster.token("a")) as a:
        ref_cap, _ = await a.api.issue_capability(parse_dataset_path("a/ref"))
    secret = auth.load_secret(secure_cluster.secret_file)
    good, _ = auth.issue_capability(secret, "b", {top.mount_id: ""}, 60)
    expired, _ = auth.issue_capability(secret, "b", {top.mount_id: ""}, 60, now=1000.0)
    forged, _ = auth.issue_capability(bytes(32), "b", {top.mount_id: ""}, 60)
    key = BlockKey(top.mount_id, top.mount_path, top.version, 0)
    ref = BlockRef(top.mount_id, top.mount_path, top.version, 0)
    buf = bytearray(BLOCK_SIZE)
    for worker in secure_cluster.workers:
        conn = await DataConnection.connect(worker.host, worker.data_port)
        try:
            for cap, reason in (
                (None, "required"),
                (expired, "expired"),
                (forged, "signature"),
                (ref_cap, "outside"),  # a's reference covers b/ds/sub only
            ):
                with pytest.raises(PermissionDenied, match=reason):
                    await conn.read_block(key.id, ref, 0, top.size, buf, cap=cap)
            got = await conn.read_block(key.id, ref, 0, top.size, buf, cap=good)
            assert bytes(buf[:got]) == FILES["b/top.bin"]
        finally:
            await conn.close()


def _cli(
    home: Path, *args: str, token: str | None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CACHECLUSTER_TOKEN",)}
    env["CACHECLUSTER_HOME"] = str(home)
    if token is not None:
        env["CACHECLUSTER_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "cachecluster", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_cli_token_works_with_ls(secure_cluster: LocalCluster, tmp_path: Path) -> None:
    home = secure_cluster.home
    made = _cli(home, "token", "a", "--ttl", "1h", token=None)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert auth.verify_token(auth.load_secret(secure_cluster.secret_file), token) == "a"
    listed = _cli(home, "ls", "a/ds", token=token)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["x.bin"]
    hidden = _cli(home, "ls", "b/ds", token=token)
    assert hidden.returncode != 0 and "no dataset b/ds" in hidden.stderr
    # Another home has no secret: no admin token, so the master refuses.
    master = ["--master", secure_cluster.master_address]
    refused = _cli(tmp_path, "ls", "a/ds", *master, token=None)
    assert refused.returncode != 0 and "token" in refused.stderr
    # The admin of the cluster's home sees every namespace.
    admin = _cli(home, "ls", "", token=None)
    assert admin.returncode == 0 and admin.stdout.split() == ["a/", "b/"]
    bad_ttl = _cli(home, "token", "a", "--ttl", "soon", token=None)
    assert bad_ttl.returncode != 0 and "--ttl" in bad_ttl.stderr
    admin_token = _cli(home, "token", "--admin", token=None).stdout.strip()
    secret = auth.load_secret(secure_cluster.secret_file)
    assert auth.verify_token(secret, admin_token) == auth.ADMIN_NAMESPACE
    assert _cli(home, "token", token=None).returncode != 0
    status = _cli(home, "status", "-o", "json", token=None)
    assert status.returncode == 0 and json.loads(status.stdout)["master"]["reachable"]


async def test_a_refused_capability_is_asked_again_once(secure_cluster: LocalCluster) -> None:
    secret = auth.load_secret(secure_cluster.secret_file)
    async with AsyncClient(
        secure_cluster.master_address, token=secure_cluster.token("a")
    ) as client:
        caps = client.fetcher.capabilities
        assert caps is not None
        stale, _ = auth.issue_capability(secret, "a", {"0" * 16: ""}, 60)
        caps._held["a/ds"] = _Held(stale, time.time() + 3600)  # covers no mount of a/ds
        assert await client.cat("a/ds/x.bin") == FILES["a/x.bin"]
        assert await caps.get("a/ds") != stale
        assert client.stats.worker_failures == 0 and client.stats.ufs_reads == 0


async def test_worker_grpc_needs_the_system_token(secure_cluster: LocalCluster) -> None:
    worker = secure_cluster.workers[0]
    request = worker_pb2.LoadBlocksRequest(blocks=[])
    for token, code in (
        (None, grpc.StatusCode.UNAUTHENTICATED),
        (secure_cluster.token("a"), grpc.StatusCode.PERMISSION_DENIED),
        (secure_cluster.token(auth.ADMIN_NAMESPACE), grpc.StatusCode.PERMISSION_DENIED),
    ):
        async with master_channel(worker.grpc_address, token) as channel:
            stub = worker_pb2_grpc.WorkerServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.LoadBlocks(request, timeout=10)
            assert info.value.code() == code
            if token is None:
                with pytest.raises(grpc.aio.AioRpcError):
                    await stub.GetStats(worker_pb2.GetStatsRequest(), timeout=10)
    admin = secure_cluster.token(auth.ADMIN_NAMESPACE)
    stats = await fetch_worker_stats(worker.grpc_address, token=admin)
    assert stats.worker_id == worker.worker_id


def test_dataload_runs_with_auth_on(secure_cluster: LocalCluster) -> None:
    """The master sends LoadBlocks with the system token; a namespace loads its own dataset."""
    load = _cli(
        secure_cluster.home, "load", "a/ref", "-q", token=secure_cluster.token("a"), timeout=120
    )
    assert load.returncode == 0, load.stdout + load.stderr
    assert "Complete" in load.stdout + load.stderr, load.stdout + load.stderr
    refused = _cli(secure_cluster.home, "load", "b/ds", "-q", token=secure_cluster.token("a"))
    assert refused.returncode != 0


async def test_reads_survive_a_killed_worker_without_ufs_access(
    secure_cluster: LocalCluster,
) -> None:
    """With a token the client has no UFS credentials: another worker serves instead."""
    token = secure_cluster.token("a")
    async with AsyncClient(secure_cluster.master_address, token=token) as client:
        blocks = await client.blocks("a/ds/x.bin")
        owners = {b.owners[0] for b in blocks if b.owners}
        victim = next(w for w in secure_cluster.workers if w.worker_id in owners)
        secure_cluster.kill_worker(victim.index)
        data = await client.cat("a/ds/x.bin")
        assert data == FILES["a/x.bin"]
        assert client.stats.ufs_reads == 0
