"""``cachecluster worker`` as a real process next to a real ``cachecluster master`` process.

Covers what a pod sees: flags, the endpoint file, health and metrics ports,
registration, cold and warm reads over TCP and the Unix socket, SIGTERM ->
exit 0 with the endpoint file and socket removed, and a restart with the same
home that keeps the worker id and serves its disk-tier blocks without a UFS
fetch (also after SIGKILL). Every process runs in its own process group,
killed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cachecluster.client.data_conn import DataConnection
from cachecluster.common.block_key import BlockKey
from cachecluster.common.endpoint_file import read_endpoint_file, wait_endpoint_file
from cachecluster.common.errors import ConfigError
from cachecluster.common.frames import BlockRef
from cachecluster.protos import master_pb2, master_pb2_grpc, worker_pb2, worker_pb2_grpc
from cachecluster.worker.config import build_worker_config
from tests.metrics import metrics_text

BLOCK = 64 * 1024
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) worker ")


@dataclass
class Process:
    """A child process in its own group, its home and its log file."""

    popen: subprocess.Popen[bytes]
    home: Path
    log: Path

    def endpoint(self, timeout: float = 20.0) -> dict[str, Any]:
        return wait_endpoint_file(
            self.home, pid=self.popen.pid, timeout=timeout, alive=lambda: self.popen.poll() is None
        )

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; the exit code."""
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=timeout)

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class Processes:
    """Starts ``python -m cachecluster ...`` children and kills whatever is left at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Process] = []

    def start(self, name: str, *args: str, home: Path) -> Process:
        log = self.tmp / f"{name}-{len(self.started)}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "cachecluster", *args, "--home", str(home)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(popen, home, log)
        self.started.append(process)
        return process

    def master(self, *extra: str) -> Process:
        return self.start(
            "master",
            "master",
            "--block-size",
            str(BLOCK),
            "--heartbeat-interval",
            "0.2",
            "--metadata-sync-interval",
            "0",
            *extra,
            home=self.tmp / "master",
        )

    def worker(self, master: str, home: Path, *extra: str) -> Process:
        return self.start("worker", "worker", "--master", master, *extra, home=home)

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


@contextlib.asynccontextmanager
async def channel_to(address: str) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(address)
    try:
        yield channel
    finally:
        await channel.close()


async def apply_local_dataset(master: str, ufs: Path) -> None:
    spec = {"mounts": [{"mountPoint": f"local://{ufs}", "name": "m0", "path": "/"}]}
    async with channel_to(master) as channel:
        await master_pb2_grpc.DatasetServiceStub(channel).ApplyDataset(
            master_pb2.ApplyDatasetRequest(
                ref=master_pb2.DatasetRef(namespace="ns", name="ds"),
                spec_json=json.dumps(spec).encode(),
            ),
            timeout=10,
        )


async def file_status(master: str, path: str) -> master_pb2.FileStatus:
    async with channel_to(master) as channel:
        reply = await master_pb2_grpc.MetadataServiceStub(channel).GetStatus(
            master_pb2.GetStatusRequest(
                dataset=master_pb2.DatasetRef(namespace="ns", name="ds"), path=path
            ),
            timeout=10,
        )
    return reply.status


async def read_file(conn: DataConnection, status: master_pb2.FileStatus) -> bytes:
    """Every block of a file through one data connection, in parallel (pipelined)."""
    count = (status.size + BLOCK - 1) // BLOCK
    buffers = [bytearray(BLOCK) for _ in range(count)]

    async def one(index: int) -> int:
        key = BlockKey(status.mount_id, status.mount_path, status.version, index)
        ref = BlockRef(status.mount_id, status.mount_path, status.version, index)
        return await conn.read_block(key.id, ref, 0, BLOCK, buffers[index])

    sizes = await asyncio.gather(*(one(i) for i in range(count)))
    return b"".join(bytes(buf[:n]) for buf, n in zip(buffers, sizes, strict=True))


async def worker_stats(endpoint: dict[str, Any]) -> worker_pb2.GetStatsResponse:
    async with channel_to(f"{endpoint['host']}:{endpoint['grpc_port']}") as channel:
        return await worker_pb2_grpc.WorkerServiceStub(channel).GetStats(
            worker_pb2.GetStatsRequest(), timeout=5
        )


async def master_view(master: str, worker_id: str) -> master_pb2.WorkerStatus | None:
    async with channel_to(master) as channel:
        reply = await master_pb2_grpc.MasterServiceStub(channel).ListWorkers(
            master_pb2.ListWorkersRequest(), timeout=5
        )
    status: master_pb2.WorkerStatus
    for status in reply.workers:
        if status.worker_id == worker_id and status.state == master_pb2.WORKER_STATE_ACTIVE:
            return status
    return None


async def wait_master_view(
    master: str, worker_id: str, incarnation: int, block_count: int, timeout: float = 10.0
) -> master_pb2.WorkerStatus:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await master_view(master, worker_id)
        if (
            status is not None
            and status.incarnation == incarnation
            and status.block_count == block_count
        ):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"master shows {status} for {worker_id}")
        await asyncio.sleep(0.1)


async def test_worker_process_serves_stops_and_restarts_with_its_disk_blocks(
    processes: Processes, tmp_path: Path
) -> None:
    ufs = tmp_path / "ufs"
    ufs.mkdir()
    data = random.Random(3).randbytes(3 * BLOCK + 999)
    (ufs / "f.bin").write_bytes(data)
    master = await asyncio.to_thread(processes.master().endpoint)
    address = master["grpc"]
    await apply_local_dataset(address, ufs)
    status = await file_status(address, "f.bin")

    home = tmp_path / "w"
    tier = f"SSD:{tmp_path / 'ssd'}:16Mi"
    worker = processes.worker(address, home, "--tier", tier)
    endpoint = await asyncio.to_thread(worker.endpoint)
    worker_id = endpoint["worker_id"]
    assert (home / "worker-id").read_text().strip() == worker_id
    assert endpoint["unix_socket"] and os.path.exists(endpoint["unix_socket"])
    async with channel_to(f"127.0.0.1:{endpoint['grpc_port']}") as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="cachecluster.v1.WorkerService"), timeout=5
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    await wait_master_view(address, worker_id, endpoint["incarnation"], 0)

    # Cold over TCP: every block fetched from the UFS once.
    async with await DataConnection.connect("127.0.0.1", endpoint["data_port"]) as conn:
        assert await read_file(conn, status) == data
    # Warm over the Unix socket: all hits.
    async with await DataConnection.connect_unix(endpoint["unix_socket"]) as conn:
        assert await read_file(conn, status) == data
    stats = await worker_stats(endpoint)
    assert (stats.counters.misses, stats.counters.hits) == (4, 4)
    assert stats.counters.bytes_fetched == len(data)
    assert stats.block_count == 4 and stats.tiers[0].used_bytes > len(data)
    metrics = await asyncio.to_thread(metrics_text, endpoint["metrics_port"])
    assert "cachecluster_worker_data_requests_total 8.0" in metrics
    assert f"cachecluster_worker_bytes_fetched_total {float(len(data))}" in metrics
    await wait_master_view(address, worker_id, endpoint["incarnation"], 4)

    assert await asyncio.to_thread(worker.terminate) == 0
    assert read_endpoint_file(home) is None
    assert not os.path.exists(endpoint["unix_socket"])
    lines = [line for line in worker.log_text().splitlines() if line.strip()]
    assert lines and all(LOG_LINE.match(line) for line in lines), lines

    # Restart with the same home: same id, blocks found on the SSD tier and reported.
    again = processes.worker(address, home, "--tier", tier)
    endpoint2 = await asyncio.to_thread(again.endpoint)
    assert endpoint2["worker_id"] == worker_id
    assert endpoint2["incarnation"] != endpoint["incarnation"]
    await wait_master_view(address, worker_id, endpoint2["incarnation"], 4)
    async with await DataConnection.connect("127.0.0.1", endpoint2["data_port"]) as conn:
        assert await read_file(conn, status) == data
    stats = await worker_stats(endpoint2)
    assert (stats.counters.misses, stats.counters.hits, stats.counters.bytes_fetched) == (0, 4, 0)

    # SIGKILL leaves the socket behind; the next start removes it and still has the blocks.
    again.kill()
    assert os.path.exists(endpoint2["unix_socket"])
    third = processes.worker(address, home, "--tier", tier)
    endpoint3 = await asyncio.to_thread(third.endpoint)
    assert not os.path.exists(endpoint2["unix_socket"])
    await wait_master_view(address, worker_id, endpoint3["incarnation"], 4)
    async with await DataConnection.connect_unix(endpoint3["unix_socket"]) as conn:
        assert await read_file(conn, status) == data
    assert (await worker_stats(endpoint3)).counters.bytes_fetched == 0
    assert await asyncio.to_thread(third.terminate) == 0


async def test_worker_started_before_the_master_registers_when_it_comes(
    processes: Processes, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a free port for the master-to-be
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    home = tmp_path / "w"
    tier = f"MEM:{tmp_path / 'mem'}:64Mi"  # not the default under /dev/shm: nothing left behind
    worker = processes.worker(
        address, home, "--id", "early", "--unix-socket", "none", "--tier", tier
    )
    endpoint = await asyncio.to_thread(worker.endpoint)
    assert endpoint["worker_id"] == "early" and endpoint["unix_socket"] == ""
    assert not (home / "worker-id").exists()
    await asyncio.to_thread(processes.master("--port", str(port)).endpoint)
    await wait_master_view(address, "early", endpoint["incarnation"], 0)
    assert await asyncio.to_thread(worker.terminate) == 0


def test_bad_flags_are_one_line_errors(processes: Processes, tmp_path: Path) -> None:
    worker = processes.worker("127.0.0.1:1", tmp_path / "w", "--tier", "MEM:/dev/shm/x")
    assert worker.popen.wait(timeout=30) == 64
    output = worker.log_text().strip().splitlines()
    assert len(output) == 1 and "--tier" in output[0], output
    worker = processes.worker("nohostport", tmp_path / "w")
    assert worker.popen.wait(timeout=30) == 64
    assert "--master" in worker.log_text()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        tier = f"MEM:{tmp_path / 'mem'}:1Mi"
        worker = processes.worker(
            "127.0.0.1:1", tmp_path / "w", "--data-port", port, "--tier", tier
        )
        assert worker.popen.wait(timeout=30) == 64
    assert f"--data-port/--unix-socket: cannot listen on 127.0.0.1:{port}" in worker.log_text()
    assert read_endpoint_file(tmp_path / "w") is None


# ---------------------------------------------------------------- flags -> WorkerConfig


def test_config_keeps_a_generated_id_and_makes_a_new_incarnation(tmp_path: Path) -> None:
    first = build_worker_config(master="127.0.0.1:1", home=tmp_path / "w")
    again = build_worker_config(master="127.0.0.1:1", home=tmp_path / "w")
    assert first.worker_id == again.worker_id
    assert (tmp_path / "w" / "worker-id").read_text().strip() == first.worker_id
    assert first.incarnation != again.incarnation
    assert first.unix_socket is not None and len(first.unix_socket.encode()) <= 100
    assert first.unix_socket != again.unix_socket
    assert [t.medium.value for t in first.tiers] == ["MEM"]
    assert first.tiers[0].path.endswith(f"/{first.worker_id}")
    explicit = build_worker_config(
        master="127.0.0.1:1", home=tmp_path / "x", worker_id="w" * 63, unix_socket=None
    )
    assert explicit.unix_socket is None and not (tmp_path / "x" / "worker-id").exists()
    long_id = build_worker_config(master="127.0.0.1:1", home=tmp_path / "y", worker_id="w" * 63)
    assert long_id.unix_socket is not None and len(long_id.unix_socket.encode()) <= 100


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [
        ({"master": "localhost"}, "--master"),
        ({"master": "h:70000"}, "--master"),
        ({"worker_id": "../evil"}, "--id"),
        ({"data_port": -1}, "--data-port"),
        ({"grpc_port": 70000}, "--grpc-port"),
        ({"unix_socket": "relative.sock"}, "--unix-socket"),
        ({"unix_socket": "/tmp/" + "s" * 120}, "--unix-socket"),
        ({"tier_flags": ["MEM:/dev/shm/a:1Gi", "MEM:/dev/shm/b:1Gi"]}, "--tier"),
        ({"tier_flags": ["SSD:rel/path:1Gi"]}, "--tier"),
        ({"eviction_policy": "fifo"}, "--eviction-policy"),
    ],
)
def test_config_errors_name_the_flag(tmp_path: Path, overrides: dict[str, Any], flag: str) -> None:
    arguments: dict[str, Any] = {"master": "127.0.0.1:1", "home": tmp_path, "worker_id": "w1"}
    arguments.update(overrides)
    with pytest.raises(ConfigError) as raised:
        build_worker_config(**arguments)
    assert str(raised.value).startswith(flag), str(raised.value)


def test_a_grpc_port_in_use_is_refused(processes: Processes, tmp_path: Path) -> None:
    first = processes.worker(
        "127.0.0.1:1", tmp_path / "a", "--id", "a", "--tier", f"MEM:{tmp_path / 'ma'}:1Mi"
    )
    port = str(first.endpoint()["grpc_port"])
    second = processes.worker(
        "127.0.0.1:1",
        tmp_path / "b",
        "--id",
        "b",
        "--grpc-port",
        port,
        "--tier",
        f"MEM:{tmp_path / 'mb'}:1Mi",
    )
    assert second.popen.wait(timeout=30) == 64
    assert f"--grpc-port: cannot listen on 127.0.0.1:{port}" in second.log_text()
    assert first.terminate() == 0
