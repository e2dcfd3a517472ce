"""Real clusters for the client tests: a master and workers as subprocesses on 127.0.0.1.

``cluster`` (one for the whole client suite) serves dataset ``team/data``, a
local folder of generated files around the 1 MiB block size. ``fresh_cluster``
is a cluster of its own for a test that kills processes. Every process runs in
its own process group and is stopped (SIGTERM, then SIGKILL) at the end, also
when a test fails; tier folders and leftover Unix sockets are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cachecluster.client.master_api import MasterApi
from cachecluster.client.short_circuit import FdChannel
from cachecluster.common.endpoint_file import wait_endpoint_file
from cachecluster.common.frames import BlockRef, FdGrant
from cachecluster.protos import master_pb2

BLOCK_SIZE = 1 << 20
NAMESPACE = "team"
DATASET = "data"
STOP_TIMEOUT = 5.0
FILE_SIZES = {
    "empty.bin": 0,
    "one.bin": 1,
    "block-1.bin": BLOCK_SIZE - 1,
    "block.bin": BLOCK_SIZE,
    "block+1.bin": BLOCK_SIZE + 1,
    "multi.bin": 5 * BLOCK_SIZE + 12345,
    "dir/a.txt": 4321,
    "dir/sub/b.bin": 2 * BLOCK_SIZE + 7,
}


@dataclass
class Service:
    """One process of the cluster and what its endpoint file says."""

    name: str
    home: Path
    process: subprocess.Popen[bytes]
    endpoint: dict[str, object] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.alive:
            self.send(sig)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT)
        socket_path = self.endpoint.get("unix_socket")
        if isinstance(socket_path, str) and socket_path:
            Path(socket_path).unlink(missing_ok=True)  # left behind by a SIGKILL


@dataclass
class Cluster:
    """A master, its workers and the dataset they serve."""

    base: Path
    shm: Path
    master: Service
    workers: dict[str, Service]
    dataset_dir: Path
    files: dict[str, bytes]

    @property
    def address(self) -> str:
        return str(self.master.endpoint["grpc"])

    def path(self, name: str) -> str:
        """The client path of a dataset file."""
        return f"{NAMESPACE}/{DATASET}/{name}" if name else f"{NAMESPACE}/{DATASET}"

    def env(self) -> dict[str, str]:
        """The environment of a CLI subprocess that talks to this cluster."""
        return {**os.environ, "CACHECLUSTER_MASTER": self.address}

    def kill_worker(self, worker_id: str, sig: int = signal.SIGKILL) -> None:
        """Signal a worker and wait for it to exit."""
        worker = self.workers[worker_id]
        worker.send(sig)
        worker.process.wait(STOP_TIMEOUT)
        worker.stop()

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.master.stop()
        shutil.rmtree(self.shm, ignore_errors=True)


def _spawn(name: str, home: Path, args: list[str], logs: Path) -> Service:
    home.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cachecluster", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, home, process)


def _wait_ready(service: Service, logs: Path) -> None:
    try:
        service.endpoint = wait_endpoint_file(
            service.home, pid=service.process.pid, timeout=30, alive=lambda: service.alive
        )
    except Exception:
        log = (logs / f"{service.name}.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{service.name} did not start:\n{log}") from None


async def _prepare(address: str, workers: int, dataset_dir: Path) -> None:
    """Wait until every worker is on the ring, then register the dataset."""
    api = MasterApi(address, timeout=5)
    try:
        deadline = time.monotonic() + 30
        while True:
            ring = await api.get_ring()
            if ring is not None and len(ring.members) == workers:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ring has not got {workers} workers after 30 s")
            await asyncio.sleep(0.05)
    finally:
        await api.close()
    await apply_dataset(address, DATASET, f"local://{dataset_dir}")


async def apply_dataset(
    address: str, name: str, mount_point: str, options: dict[str, str] | None = None
) -> None:
    """Register dataset ``team/<name>`` with one mount at its root."""
    mount = {"mountPoint": mount_point, "name": "m0", "path": "/", "options": options or {}}
    api = MasterApi(address, timeout=5)
    try:
        await api.datasets.ApplyDataset(
            master_pb2.ApplyDatasetRequest(
                ref=master_pb2.DatasetRef(namespace=NAMESPACE, name=name),
                spec_json=json.dumps({"mounts": [mount]}).encode(),
            ),
            timeout=5,
        )
    finally:
        await api.close()


def start_cluster(base: Path, workers: int = 3, *, replicas: int = 1) -> Cluster:
    """Generate the dataset, start a master and ``workers`` workers, register the dataset."""
    logs = base / "logs"
    logs.mkdir(parents=True)
    dataset_dir = base / "dataset"
    rng = random.Random(20261122)
    files: dict[str, bytes] = {}
    for name, size in FILE_SIZES.items():
        files[name] = rng.randbytes(size)
        (dataset_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (dataset_dir / name).write_bytes(files[name])
    shm_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    shm = Path(tempfile.mkdtemp(prefix="cc-client-it-", dir=shm_root))
    master = _spawn(
        "master",
        base / "master",
        [
            "master",
            *("--home", str(base / "master"), "--block-size", str(BLOCK_SIZE)),
            *("--replicas", str(replicas), "--heartbeat-interval", "0.5"),
            *("--missed-heartbeats", "3", "--vnodes", "200"),
        ],
        logs,
    )
    cluster = Cluster(base, shm, master, {}, dataset_dir, files)
    try:
        _wait_ready(master, logs)
        for n in range(workers):
            worker_id = f"w{n}"
            cluster.workers[worker_id] = _spawn(
                worker_id,
                base / worker_id,
                [
                    "worker",
                    *("--master", cluster.address, "--home", str(base / worker_id)),
                    *("--id", worker_id, "--tier", f"MEM:{shm / worker_id}:64Mi"),
                ],
                logs,
            )
        for worker in cluster.workers.values():
            _wait_ready(worker, logs)
        asyncio.run(_prepare(cluster.address, workers, dataset_dir))
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-worker cluster serving ``team/data`` for the whole client suite (do not kill it)."""
    running = start_cluster(tmp_path_factory.mktemp("client-cluster"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A 3-worker cluster of one test's own: kill what you like."""
    running = start_cluster(tmp_path / "cluster")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def no_ambient_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token from the environment or ``~/.cachecluster``: each test passes its own."""
    monkeypatch.delenv("CACHECLUSTER_TOKEN", raising=False)
    monkeypatch.setenv("CACHECLUSTER_HOME", str(tmp_path / "no-home"))


@dataclass
class FdAsk:
    """One ``open`` round trip of the real block-file channel: how many blocks, which kind."""

    blocks: int
    cached_only: bool


@pytest.fixture
def fd_asks(monkeypatch: pytest.MonkeyPatch) -> list[FdAsk]:
    """Every ``FdChannel.ask`` the test makes, in order (the real channel, only counted)."""
    asks: list[FdAsk] = []
    real_ask = FdChannel.ask

    async def counted_ask(
        self: FdChannel,
        blocks: list[tuple[str, BlockRef]],
        cap: bytes | None,
        *,
        cached_only: bool = False,
        file_blocks: int = 0,
    ) -> list[asyncio.Future[tuple[FdGrant, int | None]]]:
        asks.append(FdAsk(len(blocks), cached_only))
        return await real_ask(self, blocks, cap, cached_only=cached_only, file_blocks=file_blocks)

    monkeypatch.setattr(FdChannel, "ask", counted_ask)
    return asks
