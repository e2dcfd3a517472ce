"""The CSI plugin as a real process: ``cachecluster csi`` on a Unix socket under tmp_path.

:class:`Plugin` starts and stops it and opens channels to it. Every target a
test publishes lives under ``<dir>/pods``; the fixture detaches whatever is
still mounted there and stops the process, also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from cachecluster.common.mountinfo import read_mounts
from cachecluster.protos import csi_pb2, csi_pb2_grpc

NODE_ID = "node-a"
REBIND_INTERVAL = 0.3
START_TIMEOUT_S = 20.0
SOCKET_PATH_MAX = 107
"""sun_path holds 108 bytes with the terminating NUL."""

Mode = csi_pb2.VolumeCapability.AccessMode.Mode


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below ``folder``, as the kernel lists them."""
    root = str(folder)
    return [
        entry.mount_point
        for entry in read_mounts()
        if entry.mount_point == root or entry.mount_point.startswith(root + "/")
    ]


def publish_request(
    target: Path,
    fuse_path: str,
    *,
    mode: int = Mode.MULTI_NODE_READER_ONLY,
    readonly: bool = False,
    volume_id: str = "ta/data",
) -> csi_pb2.NodePublishVolumeRequest:
    """A NodePublishVolumeRequest as kubelet sends it for one of our PVs."""
    return csi_pb2.NodePublishVolumeRequest(
        volume_id=volume_id,
        target_path=str(target),
        volume_capability=csi_pb2.VolumeCapability(
            mount=csi_pb2.VolumeCapability.MountVolume(),
            access_mode=csi_pb2.VolumeCapability.AccessMode(mode=mode),  # type: ignore[arg-type]
        ),
        readonly=readonly,
        volume_context={"fusePath": fuse_path, "dataset": volume_id, "runtime": "share/rt"},
    )


@dataclass
class Plugin:
    """One ``cachecluster csi`` process serving ``unix://<dir>/csi.sock``."""

    dir: Path
    fuse_root: Path
    process: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.dir / "csi.sock"

    @property
    def pods(self) -> Path:
        """Where tests put their target paths."""
        return self.dir / "pods"

    def log(self) -> str:
        """Every run's log, for failure messages."""
        return "".join(path.read_text(errors="replace") for path in self.logs if path.exists())

    def start(self) -> None:
        """Start the process and wait until the socket answers Probe."""
        if len(str(self.socket)) > SOCKET_PATH_MAX:
            pytest.fail(f"{self.socket}: too long for a Unix socket; shorten the test name")
        log_path = self.dir / f"csi-{len(self.logs)}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cachecluster",
                    "csi",
                    "--endpoint",
                    f"unix://{self.socket}",
                    "--node-id",
                    NODE_ID,
                    "--fuse-root",
                    str(self.fuse_root),
                    "--rebind-interval",
                    str(REBIND_INTERVAL),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self.process.poll() is not None:
                pytest.fail(f"cachecluster csi exited {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"cachecluster csi: no answer in {START_TIMEOUT_S:.0f}s\n{self.log()}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        with grpc.insecure_channel(f"unix://{self.socket}") as channel:
            probe = channel.unary_unary(
                "/csi.v1.Identity/Probe",
                request_serializer=csi_pb2.ProbeRequest.SerializeToString,
                response_deserializer=csi_pb2.ProbeResponse.FromString,
            )
            try:
                return bool(probe(csi_pb2.ProbeRequest(), timeout=2).ready.value)
            except grpc.RpcError:
                return False

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Signal the process and wait for it; its exit code."""
        process = self.process
        if process is None:
            return 0
        self.process = None
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            return process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait()

    @contextlib.asynccontextmanager
    async def stubs(self) -> AsyncIterator[tuple[csi_pb2_grpc.IdentityStub, csi_pb2_grpc.NodeStub]]:
        """Identity and Node stubs on a fresh channel to the socket."""
        async with grpc.aio.insecure_channel(f"unix://{self.socket}") as channel:
            yield csi_pb2_grpc.IdentityStub(channel), csi_pb2_grpc.NodeStub(channel)

    def close(self) -> None:
        """Detach every mount under ``pods`` and stop the process."""
        for point in reversed(mounts_under(self.pods)):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@pytest.fixture
def csi_plugin(tmp_path: Path) -> Iterator[Plugin]:
    """A started plugin whose FUSE root is ``tmp_path``; stopped and cleaned up after the test."""
    plugin = Plugin(tmp_path / "csi", fuse_root=tmp_path)
    plugin.dir.mkdir()
    try:
        plugin.start()
        yield plugin
    finally:
        plugin.close()
