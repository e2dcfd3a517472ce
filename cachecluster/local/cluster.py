"""A local cluster: one master and N workers as background processes on this host.

:class:`LocalCluster` is what ``cachecluster up`` / ``down`` run, and what the
integration tests, the demo and the cluster benchmark reuse::

    with LocalCluster(home, workers=3, block_size="1Mi") as cluster:
        client = AsyncClient(cluster.master_address)
        ...
        cluster.kill_worker(1, signal.SIGKILL)
        cluster.start_worker(1)
        cluster.restart_master()

Each process is ``python -m cachecluster master|worker ...`` started in a
session of its own (so a Ctrl-C in the terminal that ran ``up`` does not reach
it, and a whole process group can be killed), with stdout and stderr appended
to ``<home>/logs/<name>.log``. Ports are picked by the kernel (port 0) unless
given; the cluster learns them from each process's endpoint file. A process
that dies while starting fails :meth:`LocalCluster.start` at once, with the
last lines of its log. Everything started is stopped when start-up fails.

``cluster.json`` records pids together with each process's start time, so a
later ``down`` never signals an unrelated process that reuses a pid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from cachecluster.common.auth import (
    ADMIN_NAMESPACE,
    DEFAULT_TOKEN_TTL,
    SECRET_FILE,
    create_secret_file,
    issue_token,
    load_secret,
)
from cachecluster.common.endpoint_file import remove_endpoint_file, wait_endpoint_file
from cachecluster.common.errors import CacheClusterError, ConfigError, ErrorKind, Unavailable
from cachecluster.common.units import parse_size
from cachecluster.local.cluster_calls import apply_dataset, wait_workers_active
from cachecluster.local.layout import (
    RECORD_VERSION,
    ClusterLayout,
    check_tier_templates,
    live_processes,
    process_alive,
    process_start_ticks,
    read_cluster_record,
    recorded_processes,
    tail,
    tier_flag,
    write_cluster_record,
)
from cachecluster.worker.tiers import Medium, TierConfig, validate_tiers

DEFAULT_HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
LOG_LINES = 25


class ClusterRunning(CacheClusterError):
    """A live cluster already runs in this home folder."""

    kind = ErrorKind.CONFLICT


@dataclasses.dataclass
class ServiceProcess:
    """One process of the cluster (master or worker) and where it listens."""

    name: str
    home: Path
    log_path: Path
    host: str = DEFAULT_HOST
    pid: int = 0
    start_ticks: int | None = None
    process: subprocess.Popen[bytes] | None = dataclasses.field(default=None, repr=False)
    endpoint: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        if self.process is not None:
            return self.process.poll() is None
        return process_alive(self.pid, self.start_ticks)

    def port(self, field: str) -> int:
        """A port from the endpoint file (0 when unknown)."""
        return int(self.endpoint.get(field) or 0)


@dataclasses.dataclass
class WorkerProcess(ServiceProcess):
    """A worker of the local cluster."""

    index: int = 0
    worker_id: str = ""
    tiers: list[TierConfig] = dataclasses.field(default_factory=list)

    @property
    def data_port(self) -> int:
        """TCP port of the data protocol."""
        return self.port("data_port")

    @property
    def grpc_port(self) -> int:
        """Port of the WorkerService."""
        return self.port("grpc_port")

    @property
    def metrics_port(self) -> int:
        """Port of the Prometheus endpoint."""
        return self.port("metrics_port")

    @property
    def unix_socket(self) -> str:
        """Unix socket of the data protocol ("" when off)."""
        return str(self.endpoint.get("unix_socket") or "")

    @property
    def data_address(self) -> str:
        """``host:port`` of the data protocol."""
        return f"{self.host}:{self.data_port}"

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the WorkerService."""
        return f"{self.host}:{self.grpc_port}"

    def to_record(self) -> dict[str, Any]:
        """This worker as an entry of ``cluster.json``'s ``workers``."""
        return {
            "id": self.worker_id,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "home": str(self.home),
            "log": str(self.log_path),
            "data": self.data_address,
            "unix_socket": self.unix_socket,
            "grpc": self.grpc_address,
            "metrics_port": self.metrics_port,
            "tiers": [tier.to_dict() for tier in self.tiers],
        }


class LocalCluster:
    """A master and ``workers`` workers as background processes (see the module doc).

    ``tiers`` are templates: worker ``i`` gets ``<path>/w<i>`` of each (default:
    MEM 2 GiB on tmpfs + SSD 8 GiB under the home). ``block_size`` and
    ``replicas`` go to the master (its defaults when None). ``master_port`` 0
    lets the kernel pick; ``worker_port_base`` fixes worker ``i``'s data, gRPC
    and metrics ports at ``base + 3i``, ``+1``, ``+2``. ``master_args`` and
    ``worker_args`` are extra flags passed through (e.g. a short heartbeat).
    ``start`` returns once the master lists every worker as ACTIVE (unless
    ``wait_until_active`` is False).
    """

    def __init__(
        self,
        home: Path | str,
        *,
        workers: int = 2,
        tiers: Sequence[TierConfig] | None = None,
        block_size: int | str | None = None,
        replicas: int | None = None,
        host: str = DEFAULT_HOST,
        master_port: int = 0,
        worker_port_base: int | None = None,
        master_args: Sequence[str] = (),
        worker_args: Sequence[str] = (),
        start_timeout: float = START_TIMEOUT_S,
        wait_until_active: bool = True,
        env: Mapping[str, str] | None = None,
        auth: bool = False,
    ) -> None:
        if workers < 1:
            raise ConfigError("--workers", f"{workers}: a cluster needs at least one worker")
        self.layout = ClusterLayout(Path(home).expanduser().resolve())
        self.tier_templates = check_tier_templates(tiers) if tiers else None
        self.block_size = parse_size(block_size, "--block-size") if block_size else None
        if replicas is not None and replicas < 1:
            raise ConfigError("--replicas", f"{replicas}: must be >= 1")
        self.replicas = replicas
        self.host = host
        self.master_port = master_port
        self.worker_port_base = worker_port_base
        self.master_args = list(master_args)
        self.worker_args = list(worker_args)
        self.start_timeout = start_timeout
        self.wait_until_active = wait_until_active
        self.env = dict(env) if env is not None else None
        self.auth = auth
        """Run with a cluster secret (``<home>/cluster-secret``): every call needs a token."""
        self.started_at: float | None = None
        """Unix time of the last :meth:`start`."""
        self.master = ServiceProcess("master", self.layout.master_home, self.layout.master_log)
        self.workers: list[WorkerProcess] = [self._new_worker(i) for i in range(workers)]
        for worker in self.workers:
            validate_tiers(worker.tiers, field=f"{worker.worker_id} tiers")

    # ------------------------------------------------------------- properties

    @property
    def home(self) -> Path:
        """The cluster's home folder."""
        return self.layout.home

    @property
    def master_address(self) -> str:
        """``host:port`` of the master's gRPC services."""
        return f"{self.host}:{self.master.port('grpc_port')}"

    @property
    def master_pid(self) -> int:
        """Pid of the master process (0 when not started)."""
        return self.master.pid

    # ------------------------------------------------------------- start, stop

    def start(self) -> Self:
        """Start the master, then every worker; write ``cluster.json``.

        Refuses with :class:`ClusterRunning` when a live cluster is recorded in
        the home; leftovers of a dead one are cleaned first.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        self.layout.logs_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._check_not_running()
            self.started_at = time.time()
            if self.auth:
                create_secret_file(self.secret_file)
            try:
                self.start_master()
                for worker in self.workers:
                    self._spawn_worker(worker, keep_ports=False)
                for worker in self.workers:
                    self._wait_ready(worker)
                self.write_record()
                if self.wait_until_active:
                    self.wait_active()
            except BaseException:
                self._stop_processes(STOP_TIMEOUT_S)
                raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S, *, purge: bool = False) -> None:
        """Stop every process (SIGTERM, SIGKILL after ``timeout``), remove ``cluster.json``.

        MEM tiers (tmpfs) are removed; disk tiers are kept for the next
        ``up`` unless ``purge``.
        """
        with self._locked():
            self._stop_strays(timeout)
            self._stop_processes(timeout)
            self.layout.cluster_file.unlink(missing_ok=True)
            self._remove_tiers(purge=purge)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------- one process

    def start_master(self) -> None:
        """Start the master (on the port it had before, if it ran already) and wait for it."""
        port = self.master.port("grpc_port") or self.master_port
        metrics_port = self.master.port("metrics_port")
        args = [
            "master",
            "--home",
            str(self.master.home),
            "--host",
            self.host,
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
        ]
        if self.block_size is not None:
            args += ["--block-size", str(self.block_size)]
        if self.replicas is not None:
            args += ["--replicas", str(self.replicas)]
        args += self._secret_args()
        self._spawn(self.master, [*args, *self.master_args])
        self._wait_ready(self.master)

    def stop_master(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> None:
        """Send ``sig`` to the master and wait until it exited."""
        self._signal_and_wait([self.master], sig, timeout)

    def restart_master(self, sig: int = signal.SIGTERM) -> None:
        """Stop the master with ``sig`` and start it again on the same port."""
        self.stop_master(sig)
        self.start_master()
        self.write_record()

    def kill_worker(
        self, index: int, sig: int = signal.SIGKILL, timeout: float = STOP_TIMEOUT_S
    ) -> None:
        """Send ``sig`` to worker ``index`` and wait until it exited."""
        self._signal_and_wait([self.workers[index]], sig, timeout)

    def start_worker(self, index: int) -> WorkerProcess:
        """(Re)start worker ``index`` with the same id, home and tiers; wait until it listens.

        A restarted worker asks for the ports it had, so readers holding the
        old address reach it again; if one was taken meanwhile it starts on
        fresh ports.
        """
        worker = self.workers[index]
        if worker.alive:
            raise CacheClusterError(f"worker {worker.worker_id} is already running")
        reused_ports = self.worker_port_base is None and worker.data_port != 0
        self._spawn_worker(worker, keep_ports=True)
        try:
            self._wait_ready(worker)
        except Unavailable:
            if not reused_ports:
                raise
            self._signal_and_wait([worker], signal.SIGKILL, STOP_TIMEOUT_S)
            self._spawn_worker(worker, keep_ports=False)
            self._wait_ready(worker)
        self.write_record()
        return worker

    def add_worker(self, tiers: Sequence[TierConfig] | None = None) -> WorkerProcess:
        """Start one more worker (the next index) and wait until it listens; record it.

        ``tiers`` are the worker's own (default: its ``w<i>`` folder of each
        tier template). A worker that fails to start is stopped and forgotten.
        """
        index = len(self.workers)
        worker = self._new_worker(index)
        if tiers is not None:
            worker.tiers = list(tiers)
        validate_tiers(worker.tiers, field=f"{worker.worker_id} tiers")
        self.workers.append(worker)
        try:
            self._spawn_worker(worker, keep_ports=False)
            self._wait_ready(worker)
        except BaseException:
            self.workers.pop()
            self._retire(worker)
            raise
        self.write_record()
        return worker

    def remove_worker(self, timeout: float = STOP_TIMEOUT_S) -> WorkerProcess:
        """Stop the last worker (SIGTERM), drop its MEM tiers and record the smaller cluster."""
        if len(self.workers) < 2:
            raise ConfigError("replicas", "a cluster needs at least one worker")
        worker = self.workers.pop()
        self._retire(worker, timeout)
        self.write_record()
        return worker

    def restart_worker(
        self, index: int, tiers: Sequence[TierConfig] | None = None
    ) -> WorkerProcess:
        """Stop worker ``index`` and start it again, on ``tiers`` when given (its old MEM
        tiers are dropped then); wait until it listens."""
        worker = self.workers[index]
        if tiers is not None:
            validate_tiers(list(tiers), field=f"{worker.worker_id} tiers")
        self._retire(worker, drop_mem=tiers is not None)
        if tiers is not None:
            worker.tiers = list(tiers)
        return self.start_worker(index)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the home's lock (as ``up`` and ``down`` do) while changing the cluster."""
        with self._locked():
            yield

    def wait_active(self, timeout: float | None = None) -> None:
        """Wait until the master lists every worker of this cluster as ACTIVE."""
        wait_workers_active(
            self.master_address,
            [worker.worker_id for worker in self.workers],
            timeout=self.start_timeout if timeout is None else timeout,
            token=self.token(ADMIN_NAMESPACE) if self.auth else None,
        )

    def apply_dataset(
        self, namespace: str, name: str, mount_point: str, options: Mapping[str, str] | None = None
    ) -> None:
        """Register dataset ``namespace/name`` whose root is ``mount_point`` (one mount)."""
        token = self.token(ADMIN_NAMESPACE) if self.auth else None
        apply_dataset(self.master_address, namespace, name, mount_point, options, token=token)

    @property
    def secret_file(self) -> Path:
        """``<home>/cluster-secret``: the cluster secret when :attr:`auth` is on."""
        return self.home / SECRET_FILE

    def token(self, namespace: str, ttl: float = DEFAULT_TOKEN_TTL) -> str:
        """A token for ``namespace`` (``ADMIN_NAMESPACE``: the cluster admin's)."""
        return issue_token(load_secret(self.secret_file), namespace, ttl)

    def _secret_args(self) -> list[str]:
        return ["--cluster-secret-file", str(self.secret_file)] if self.auth else []

    # ------------------------------------------------------------- record

    def record(self) -> dict[str, Any]:
        """What ``cluster.json`` holds for this cluster."""
        return {
            "version": RECORD_VERSION,
            "home": str(self.home),
            "started_at": self.started_at,
            "master": self.master_address,
            "master_pid": self.master.pid,
            "master_start_ticks": self.master.start_ticks,
            "master_home": str(self.master.home),
            "master_log": str(self.master.log_path),
            "master_metrics_port": self.master.port("metrics_port"),
            "block_size": self.block_size,
            "replicas": self.replicas,
            "shm_root": str(self.layout.shm_root),
            "workers": [worker.to_record() for worker in self.workers],
            "auth": self.auth,
        }

    def write_record(self) -> None:
        """Write ``<home>/cluster.json`` (atomically)."""
        write_cluster_record(self.layout, self.record())

    @classmethod
    def attach(cls, home: Path | str) -> LocalCluster:
        """The cluster recorded in ``<home>/cluster.json`` (to stop it or inspect it).

        Raises :class:`~cachecluster.common.errors.Unavailable` when there is no record.
        """
        layout = ClusterLayout(Path(home).expanduser().resolve())
        record = read_cluster_record(layout)
        if not record:
            raise Unavailable(f"no cluster recorded in {layout.home} (run `cachecluster up`)")
        workers = [w for w in record.get("workers") or [] if isinstance(w, Mapping)]
        cluster = cls(layout.home, workers=max(1, len(workers)))
        cluster.started_at = record.get("started_at")
        cluster.block_size = record.get("block_size")
        cluster.replicas = record.get("replicas")
        cluster.auth = bool(record.get("auth"))
        host, _, port = str(record.get("master", "")).rpartition(":")
        cluster.host = host or DEFAULT_HOST
        cluster.master.host = cluster.host
        cluster.master.pid = int(record.get("master_pid") or 0)
        cluster.master.start_ticks = record.get("master_start_ticks")
        cluster.master.endpoint = {
            "grpc_port": int(port or 0),
            "metrics_port": record.get("master_metrics_port", 0),
        }
        for worker, entry in zip(cluster.workers, workers, strict=False):
            worker.pid = int(entry.get("pid") or 0)
            worker.start_ticks = entry.get("start_ticks")
            worker.home = Path(entry.get("home") or worker.home)
            worker.worker_id = str(entry.get("id") or worker.worker_id)
            data_host, _, data_port = str(entry.get("data", "")).rpartition(":")
            worker.host = data_host or cluster.host
            worker.endpoint = {
                "data_port": int(data_port or 0),
                "grpc_port": int(str(entry.get("grpc", "")).rpartition(":")[2] or 0),
                "metrics_port": entry.get("metrics_port", 0),
                "unix_socket": entry.get("unix_socket", ""),
            }
            worker.tiers = [TierConfig.from_dict(t) for t in entry.get("tiers") or []]
        return cluster

    # ------------------------------------------------------------- internals

    def _new_worker(self, index: int) -> WorkerProcess:
        return WorkerProcess(
            name=self.layout.worker_id(index),
            home=self.layout.worker_home(index),
            log_path=self.layout.worker_log(index),
            host=self.host,
            index=index,
            worker_id=self.layout.worker_id(index),
            tiers=self.layout.worker_tiers(self.tier_templates, index),
        )

    def _spawn_worker(self, worker: WorkerProcess, *, keep_ports: bool) -> None:
        if self.worker_port_base is not None:
            base = self.worker_port_base + 3 * worker.index
            ports = (base, base + 1, base + 2)
        elif keep_ports:
            ports = (worker.data_port, worker.grpc_port, worker.metrics_port)
        else:
            ports = (0, 0, 0)
        stale_socket = worker.unix_socket
        if stale_socket and not worker.alive:
            with contextlib.suppress(OSError):
                os.unlink(stale_socket)
        args = [
            "worker",
            "--master",
            self.master_address,
            "--home",
            str(worker.home),
            "--id",
            worker.worker_id,
            "--host",
            self.host,
            "--data-port",
            str(ports[0]),
            "--grpc-port",
            str(ports[1]),
            "--metrics-port",
            str(ports[2]),
        ]
        for tier in worker.tiers:
            args += ["--tier", tier_flag(tier)]
        args += self._secret_args()
        self._spawn(worker, [*args, *self.worker_args])

    def _spawn(self, service: ServiceProcess, args: list[str]) -> None:
        """Start ``python -m cachecluster <args>`` detached, logging to the service's log."""
        service.home.mkdir(parents=True, exist_ok=True)
        service.log_path.parent.mkdir(parents=True, exist_ok=True)
        remove_endpoint_file(service.home)
        service.endpoint = {k: v for k, v in service.endpoint.items() if k.endswith("port")}
        command = [sys.executable, "-m", "cachecluster", *args]
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(service.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- {stamp} starting: {' '.join(command)}\n".encode())
            log.flush()
            service.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                close_fds=True,
            )
        service.pid = service.process.pid
        service.start_ticks = process_start_ticks(service.pid)

    def _wait_ready(self, service: ServiceProcess) -> None:
        """Wait for the endpoint file of ``service``; on death or timeout, raise with its log."""
        try:
            endpoint = wait_endpoint_file(
                service.home,
                pid=service.pid,
                timeout=self.start_timeout,
                alive=lambda: service.alive,
            )
        except Unavailable as error:
            code = service.process.poll() if service.process is not None else None
            how = f"exited with code {code}" if code is not None else str(error)
            log_tail = tail(service.log_path, LOG_LINES)
            raise Unavailable(
                f"{service.name} did not start ({how}); last lines of {service.log_path}:\n"
                f"{log_tail}"
            ) from None
        service.endpoint = endpoint
        if endpoint.get("host"):
            service.host = str(endpoint["host"])

    def _signal_and_wait(
        self, services: Sequence[ServiceProcess], sig: int, timeout: float
    ) -> None:
        """Send ``sig`` to each live service, wait up to ``timeout``, then SIGKILL the rest."""
        running = [service for service in services if service.alive]
        for service in running:
            _send(service, sig)
        deadline = time.monotonic() + timeout
        for service in running:
            if not _wait_exit(service, deadline):
                _send(service, signal.SIGKILL, group=True)
                _wait_exit(service, time.monotonic() + STOP_TIMEOUT_S)

    def _retire(
        self, worker: WorkerProcess, timeout: float = STOP_TIMEOUT_S, *, drop_mem: bool = True
    ) -> None:
        """Stop one worker and remove its socket, endpoint file and (``drop_mem``) MEM tiers."""
        self._signal_and_wait([worker], signal.SIGTERM, timeout)
        if worker.unix_socket:
            with contextlib.suppress(OSError):
                os.unlink(worker.unix_socket)
        remove_endpoint_file(worker.home)
        if drop_mem:
            for tier in worker.tiers:
                if tier.medium is Medium.MEM:
                    shutil.rmtree(tier.path, ignore_errors=True)

    def _stop_strays(self, timeout: float) -> None:
        """Stop recorded processes this object did not start.

        Another ``LocalCluster`` on the same home (``cachecluster apply`` scaling
        or restarting workers) may have replaced processes and rewritten
        ``cluster.json``; the record is the truth about what runs.
        """
        record = read_cluster_record(self.layout)
        if not record:
            return
        known = {service.pid for service in (*self.workers, self.master)}
        strays = [
            (pid, ticks if isinstance(ticks, int) else None)
            for _, pid, ticks in recorded_processes(record)
            if pid not in known
        ]
        strays = [(pid, ticks) for pid, ticks in strays if process_alive(pid, ticks)]
        for pid, _ in strays:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for pid, ticks in strays:
            while process_alive(pid, ticks) and time.monotonic() < deadline:
                time.sleep(0.05)
            if process_alive(pid, ticks):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def _stop_processes(self, timeout: float) -> None:
        self._signal_and_wait([*self.workers, self.master], signal.SIGTERM, timeout)
        for worker in self.workers:
            if worker.unix_socket:
                with contextlib.suppress(OSError):
                    os.unlink(worker.unix_socket)
            remove_endpoint_file(worker.home)
        remove_endpoint_file(self.master.home)

    def _remove_tiers(self, *, purge: bool) -> None:
        for worker in self.workers:
            for tier in worker.tiers:
                if tier.medium is Medium.MEM or purge:
                    shutil.rmtree(tier.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.layout.shm_root.rmdir()  # only when empty: it may hold other tiers

    def _check_not_running(self) -> None:
        record = read_cluster_record(self.layout)
        if record is None:
            return
        running = live_processes(record)
        if running:
            names = ", ".join(f"{name} (pid {pid})" for name, pid in running)
            raise ClusterRunning(
                f"a cluster is already running in {self.home}: {names}; master at "
                f"{record.get('master')}. Stop it first: cachecluster down --home {self.home}"
            )
        _clean_stale(self.layout, record, {t.path for w in self.workers for t in w.tiers})

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold ``<home>/.lock`` so that two ``up``/``down`` never run at once in a home."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.layout.lock_file, "a") as lock:
            deadline = time.monotonic() + self.start_timeout
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ClusterRunning(
                            f"another `cachecluster up/down` holds {self.layout.lock_file}"
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _clean_stale(layout: ClusterLayout, record: Mapping[str, Any], keep: set[str]) -> None:
    """Remove what a dead cluster left: its record, endpoint files, Unix sockets, and
    its MEM tiers unless a path is in ``keep`` (the new cluster's tiers: the new
    workers rescan them and start warm).
    """
    for worker in record.get("workers") or []:
        if not isinstance(worker, Mapping):
            continue
        if worker.get("unix_socket"):
            with contextlib.suppress(OSError):
                os.unlink(str(worker["unix_socket"]))
        if worker.get("home"):
            remove_endpoint_file(Path(str(worker["home"])))
        for tier in worker.get("tiers") or []:
            if isinstance(tier, Mapping) and str(tier.get("mediumtype")) == Medium.MEM.value:
                path = str(tier.get("path") or "")
                if path and path not in keep:
                    shutil.rmtree(path, ignore_errors=True)
    remove_endpoint_file(layout.master_home)
    layout.cluster_file.unlink(missing_ok=True)


def stop_recorded_cluster(
    home: Path | str, *, timeout: float = STOP_TIMEOUT_S, purge: bool = False
) -> list[tuple[str, int]]:
    """Stop the cluster recorded in ``<home>/cluster.json``; return ``(name, pid)`` stopped.

    Processes that already died are skipped; the record and the MEM tiers are
    removed either way.
    """
    cluster = LocalCluster.attach(home)
    record = read_cluster_record(cluster.layout) or {}
    stopped = live_processes(record)
    cluster.stop(timeout, purge=purge)
    return stopped


def _send(service: ServiceProcess, sig: int, *, group: bool = False) -> None:
    if not service.alive:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(service.pid, sig)  # its own session: the group id is its pid
        else:
            os.kill(service.pid, sig)


def _wait_exit(service: ServiceProcess, deadline: float) -> bool:
    """Wait until ``service`` exited (reaping it when it is our child); False on timeout."""
    if service.process is not None:
        try:
            service.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True
    while process_alive(service.pid, service.start_ticks):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


__all__ = [
    "ClusterRunning",
    "LocalCluster",
    "ServiceProcess",
    "WorkerProcess",
    "recorded_processes",
    "stop_recorded_cluster",
]
