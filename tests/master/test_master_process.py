"""`cachecluster master` as a real process: endpoint file, gRPC, health, metrics, SIGTERM.

The `dataset` commands of the CLI are checked against that process too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cachecluster.cli.main import main
from cachecluster.common.endpoint_file import ENDPOINT_FILE, wait_endpoint_file
from cachecluster.protos import common_pb2, master_pb2, master_pb2_grpc
from tests.metrics import metrics_text

REPO = Path(__file__).resolve().parents[2]


class MasterProcess:
    """One ``cachecluster master`` subprocess in its own process group."""

    def __init__(self, home: Path, log: Path, *extra: str, fd_soft_limit: int = 0) -> None:
        self.home = home
        self.log = log
        self._log_file = log.open("ab")

        def limit_fds() -> None:  # in the child, before exec
            if fd_soft_limit:
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (fd_soft_limit, hard))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cachecluster", "master", "--home", str(home), *extra],
            cwd=REPO,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=limit_fds,
        )
        self.endpoint: dict[str, object] = {}

    def wait_ready(self) -> dict[str, object]:
        try:
            self.endpoint = wait_endpoint_file(
                self.home, pid=self.proc.pid, timeout=30, alive=lambda: self.proc.poll() is None
            )
        except Exception as exc:
            raise AssertionError(f"master did not start:\n{self.log.read_text()}") from exc
        return self.endpoint

    def terminate(self, timeout: float = 10.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log_file.close()


@pytest.fixture
def start_master(tmp_path: Path) -> Iterator[type[MasterProcess]]:
    started: list[MasterProcess] = []

    class Tracked(MasterProcess):
        def __init__(self, home: Path, log: Path, *extra: str, fd_soft_limit: int = 0) -> None:
            super().__init__(home, log, *extra, fd_soft_limit=fd_soft_limit)
            started.append(self)

    try:
        yield Tracked
    finally:
        for process in started:
            process.kill()


async def cli(argv: list[str]) -> int:
    """Run ``cachecluster ARGV`` in this process (in a thread: it runs its own event loop)."""
    return await asyncio.to_thread(main, argv)


async def test_master_process_serves_and_stops_on_sigterm(
    start_master: type[MasterProcess], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.bin").write_bytes(b"123")
    # The registered worker never beats: a long interval keeps it active through the
    # calls below however loaded the machine is (lost after 3 x 10 s).
    first = start_master(home, tmp_path / "master.log", "--heartbeat-interval", "10")
    endpoint = await asyncio.to_thread(first.wait_ready)
    assert endpoint["host"] == "127.0.0.1"
    assert endpoint["grpc"] == f"127.0.0.1:{endpoint['grpc_port']}"

    async with grpc.aio.insecure_channel(str(endpoint["grpc"])) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "cachecluster.v1.MasterService", "cachecluster.v1.MetadataService"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        master = master_pb2_grpc.MasterServiceStub(channel)
        ring = await master.GetRing(master_pb2.GetRingRequest(), timeout=5)
        assert (ring.replicas, ring.vnodes, ring.block_size) == (1, 1000, 4 << 20)
        assert not ring.members
        await master.RegisterWorker(
            master_pb2.RegisterWorkerRequest(
                worker_id="w0",
                incarnation=1,
                endpoint=common_pb2.WorkerEndpoint(host="127.0.0.1", data_port=9),
            ),
            timeout=5,
        )
        epoch = (await master.GetRing(master_pb2.GetRingRequest(), timeout=5)).epoch
        datasets = master_pb2_grpc.DatasetServiceStub(channel)
        spec = {"mounts": [{"mountPoint": f"local://{data}", "name": "m0"}]}
        await datasets.ApplyDataset(
            master_pb2.ApplyDatasetRequest(
                ref=master_pb2.DatasetRef(namespace="ns", name="ds"),
                spec_json=json.dumps(spec).encode(),
            ),
            timeout=5,
        )

        with pytest.raises(grpc.aio.AioRpcError):
            await master_pb2_grpc.MetadataServiceStub(channel).GetMount(
                master_pb2.GetMountRequest(mount_id="0123456789abcdef"), timeout=5
            )

    # The dataset commands of the CLI against this master.
    address = str(endpoint["grpc"])
    assert await cli(["dataset", "add", "ns/cli", f"local://{data}", "--master", address]) == 0
    assert "dataset ns/cli created" in capsys.readouterr().out
    sub = ["dataset", "add", "ns/cli", f"local://{data}", "--name", "b", "--path", "/b"]
    assert await cli([*sub, "--master", address]) == 64  # '/' must stay the only mount
    assert "must be the only mount" in capsys.readouterr().err
    assert await cli(["dataset", "ls", "-n", "ns", "-o", "json", "--master", address]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(row["name"], len(row["mounts"])) for row in listed] == [("cli", 1), ("ds", 1)]
    assert await cli(["dataset", "rm", "ns/cli", "--master", address]) == 0
    assert await cli(["dataset", "rm", "ns/cli", "--master", address]) == 66
    capsys.readouterr()

    metrics = await asyncio.to_thread(metrics_text, endpoint["metrics_port"])
    assert 'cachecluster_master_rpcs_total{code="NOT_FOUND",method="GetMount"} 1.0' in metrics
    assert 'cachecluster_master_rpcs_total{code="OK",method="GetRing"} 2.0' in metrics
    assert 'cachecluster_master_workers{state="active"} 1.0' in metrics
    assert "cachecluster_master_datasets 1.0" in metrics

    assert await asyncio.to_thread(first.terminate) == 0
    assert not (home / ENDPOINT_FILE).exists()
    assert "stopped" in first.log.read_text()

    # A restarted master reloads its datasets and never reuses an epoch.
    second = start_master(home, tmp_path / "master2.log")
    endpoint = await asyncio.to_thread(second.wait_ready)
    async with grpc.aio.insecure_channel(str(endpoint["grpc"])) as channel:
        listed = await master_pb2_grpc.DatasetServiceStub(channel).ListDatasets(
            master_pb2.ListDatasetsRequest(), timeout=5
        )
        assert [(d.ref.namespace, d.ref.name) for d in listed.datasets] == [("ns", "ds")]
        status = await master_pb2_grpc.MetadataServiceStub(channel).GetStatus(
            master_pb2.GetStatusRequest(
                dataset=master_pb2.DatasetRef(namespace="ns", name="ds"), path="f.bin"
            ),
            timeout=5,
        )
        assert status.status.size == 3
        stub = master_pb2_grpc.MasterServiceStub(channel)
        # A holder of the old ring keeps it while workers come back (start-up grace)...
        with pytest.raises(grpc.aio.AioRpcError) as withheld:
            await stub.GetRing(master_pb2.GetRingRequest(known_epoch=epoch), timeout=5)
        assert withheld.value.code() == grpc.StatusCode.UNAVAILABLE
        # ... a reader with no ring gets the new one, under a new epoch.
        ring = await stub.GetRing(master_pb2.GetRingRequest(known_epoch=0), timeout=5)
        assert not ring.unchanged and ring.epoch > epoch
    assert await asyncio.to_thread(second.terminate) == 0


def _open_file_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-file limit in /proc/{pid}/limits")


def test_the_master_raises_its_soft_open_file_limit(
    start_master: type[MasterProcess], tmp_path: Path
) -> None:
    """Started with a soft limit of 256 (as a shell with ``ulimit -n 256`` would start it)."""
    master = start_master(tmp_path / "home", tmp_path / "master.log", fd_soft_limit=256)
    master.wait_ready()
    soft, hard = _open_file_limits(master.proc.pid)
    assert soft == hard > 256


def test_bad_flag_is_one_line_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cachecluster",
            "master",
            "--home",
            str(tmp_path),
            "--block-size",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 64, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("cachecluster master: --block-size:")
    assert not (tmp_path / ENDPOINT_FILE).exists()
