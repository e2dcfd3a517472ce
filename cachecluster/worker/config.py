"""The worker's configuration: one validated dataclass built from the ``worker`` flags.

:func:`build_worker_config` turns the command-line values into a
:class:`WorkerConfig`, with a one-line :class:`ConfigError` naming the flag for
anything wrong. It also settles the two facts a worker must keep stable or
fresh across restarts:

* the **worker id**: ``--id``, else the content of ``<home>/worker-id``, else a
  new random id written there, so that a restarted worker keeps its place on
  the ring (and its disk-tier blocks stay where readers look for them);
* the **incarnation**: a new number at every start (nanoseconds since the
  epoch), so that the master tells a restart from a reconnect.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cachecluster
from cachecluster.common.auth import load_secret
from cachecluster.common.errors import ConfigError
from cachecluster.worker.eviction import DEFAULT_POLICY, policy_names
from cachecluster.worker.tiers import Medium, TierConfig, parse_tier_flag, validate_tiers

WORKER_ID_FILE = "worker-id"
"""The file in the worker's home that keeps its id across restarts."""

DEFAULT_MEM_QUOTA = 1 << 30
"""Quota of the default MEM tier (1 GiB)."""

DEFAULT_LOAD_PARALLELISM = 4
"""UFS fetches in flight for one LoadBlocks call when the caller does not say."""

MAX_LOAD_PARALLELISM = 64

UNIX_SOCKET_PATH_MAX = 100
"""Unix socket paths must fit ``sun_path`` (108 bytes on Linux); keep a margin."""

_WORKER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_SHM = "/dev/shm"


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a worker process needs to run, validated.

    ``master`` is ``host:port`` of the master's gRPC service. Ports 0 let the
    kernel choose. ``unix_socket`` is the data server's Unix socket path, or
    ``None`` for TCP only. ``tiers`` are sorted fastest first.
    """

    master: str
    home: Path
    worker_id: str
    incarnation: int
    tiers: tuple[TierConfig, ...]
    host: str = "127.0.0.1"
    advertise_host: str | None = None
    """The address announced to the master (a pod's IP); ``None``: ``host``, or the
    host name when ``host`` is a wildcard such as ``0.0.0.0``."""
    data_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    unix_socket: str | None = None
    eviction_policy: str = DEFAULT_POLICY
    load_parallelism: int = DEFAULT_LOAD_PARALLELISM
    """Default UFS fetches in flight per LoadBlocks call."""
    replication_parallelism: int = 4
    """LoadBlocks calls to other workers in flight at once (replication)."""
    replication_queue: int = 10_000
    """Blocks waiting for replication at most; more are dropped (best effort)."""
    mount_resolve_timeout: float = 10.0
    """How long a miss waits for the master to resolve an unknown mount id."""
    mount_refresh_interval: float = 60.0
    """Age after which a cached mount is fetched again (in the background)."""
    stop_grace: float = 2.0
    """Seconds gRPC calls in progress get to finish on SIGTERM."""
    version: str = cachecluster.__version__
    cluster_secret: bytes | None = dataclasses.field(default=None, repr=False)
    """The cluster secret (``--cluster-secret-file``): data requests need a capability
    it signed, and the master is called with a system token. ``None``: open mode."""

    def __post_init__(self) -> None:
        check_address(self.master, "--master")
        check_worker_id(self.worker_id, "--id")
        for flag, port in (
            ("--data-port", self.data_port),
            ("--grpc-port", self.grpc_port),
            ("--metrics-port", self.metrics_port),
        ):
            if not 0 <= port <= 65535:
                raise ConfigError(flag, f"{port} is not a port (0..65535; 0 picks a free one)")
        if not self.host:
            raise ConfigError("--host", "is required")
        if self.advertise_host is not None:
            check_advertise_host(self.advertise_host)
        if self.eviction_policy not in policy_names():
            known = ", ".join(policy_names())
            raise ConfigError(
                "--eviction-policy", f"unknown policy {self.eviction_policy!r} (known: {known})"
            )
        if self.unix_socket is not None:
            check_unix_socket_path(self.unix_socket)
        if not 1 <= self.load_parallelism <= MAX_LOAD_PARALLELISM:
            raise ConfigError(
                "load_parallelism", f"{self.load_parallelism} not in 1..{MAX_LOAD_PARALLELISM}"
            )
        object.__setattr__(self, "tiers", tuple(validate_tiers(self.tiers, field="--tier")))


def build_worker_config(
    *,
    master: str,
    home: Path,
    worker_id: str | None = None,
    host: str = "127.0.0.1",
    advertise_host: str | None = None,
    data_port: int = 0,
    grpc_port: int = 0,
    metrics_port: int = 0,
    unix_socket: str | None = "",
    tier_flags: Sequence[str] = (),
    eviction_policy: str = DEFAULT_POLICY,
    cluster_secret_file: Path | None = None,
) -> WorkerConfig:
    """A validated :class:`WorkerConfig` from the ``worker`` command's flags.

    ``worker_id`` None reads (or creates) ``<home>/worker-id``. ``unix_socket``
    ``""`` picks a short default path under ``/tmp/cachecluster-<uid>/``,
    ``None`` (``--unix-socket none``) disables the socket. No ``tier_flags``
    means one 1 GiB MEM tier under ``/dev/shm/cachecluster-<uid>/<worker id>``.
    ``cluster_secret_file`` turns authentication on (see :mod:`cachecluster.common.auth`).
    """
    home = home.expanduser().resolve()
    check_address(master, "--master")
    if worker_id is None:
        worker_id = load_or_create_worker_id(home)
    else:
        check_worker_id(worker_id, "--id")
    if tier_flags:
        tiers = [parse_tier_flag(flag) for flag in tier_flags]
    else:
        tiers = [default_mem_tier(worker_id)]
    if unix_socket == "":
        unix_socket = default_unix_socket_path(worker_id)
    return WorkerConfig(
        master=master,
        home=home,
        worker_id=worker_id,
        incarnation=new_incarnation(),
        tiers=tuple(tiers),
        host=host,
        advertise_host=advertise_host,
        data_port=data_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        unix_socket=unix_socket,
        eviction_policy=eviction_policy,
        cluster_secret=None if cluster_secret_file is None else load_secret(cluster_secret_file),
    )


def new_incarnation() -> int:
    """A number new at every start: nanoseconds since the epoch (fits uint64)."""
    return time.time_ns()


def load_or_create_worker_id(home: Path) -> str:
    """The id kept in ``<home>/worker-id``; a new random one is written there the first time."""
    path = home / WORKER_ID_FILE
    try:
        worker_id = path.read_text().strip()
    except FileNotFoundError:
        worker_id = ""
    except OSError as error:
        raise ConfigError("--home", f"cannot read {path}: {error.strerror or error}") from None
    if worker_id:
        check_worker_id(worker_id, str(path))
        return worker_id
    worker_id = f"worker-{secrets.token_hex(4)}"
    try:
        home.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{WORKER_ID_FILE}.{os.getpid()}.tmp")
        tmp.write_text(worker_id + "\n")
        os.replace(tmp, path)
    except OSError as error:
        raise ConfigError("--home", f"cannot write {path}: {error.strerror or error}") from None
    return worker_id


def default_mem_tier(worker_id: str) -> TierConfig:
    """One 1 GiB MEM tier under ``/dev/shm/cachecluster-<uid>/<worker id>`` (tmp if no shm)."""
    base = _SHM if os.path.isdir(_SHM) else tempfile.gettempdir()
    path = os.path.join(base, f"cachecluster-{os.getuid()}", worker_id)
    return TierConfig(Medium.MEM, path, DEFAULT_MEM_QUOTA)


def default_unix_socket_path(worker_id: str) -> str:
    """``/tmp/cachecluster-<uid>/<worker id>-<random>.sock``, short enough for ``sun_path``."""
    base = os.path.join(tempfile.gettempdir(), f"cachecluster-{os.getuid()}")
    suffix = secrets.token_hex(3)
    room = UNIX_SOCKET_PATH_MAX - len(base) - len(suffix) - len("/-.sock")
    if room < 1:
        raise ConfigError("--unix-socket", f"temp dir {base} is too long for a Unix socket path")
    return os.path.join(base, f"{worker_id[:room]}-{suffix}.sock")


def check_unix_socket_path(path: str) -> None:
    """Refuse a relative or too long Unix socket path with a one-line ``ConfigError``."""
    if not os.path.isabs(path):
        raise ConfigError("--unix-socket", f"{path!r} is not an absolute path")
    if len(os.fsencode(path)) > UNIX_SOCKET_PATH_MAX:
        raise ConfigError("--unix-socket", f"{path!r} is longer than {UNIX_SOCKET_PATH_MAX} bytes")


_WILDCARDS = frozenset({"0.0.0.0", "::", "[::]"})


def check_advertise_host(host: str) -> None:
    """An address others can reach: not empty, not a wildcard, no blanks, ``/`` or ``$``."""
    if not host or host in _WILDCARDS or any(ch.isspace() or ch in "/$()" for ch in host):
        hint = " (an unexpanded $(POD_IP)?)" if "$" in host else ""
        raise ConfigError("--advertise-host", f"{host!r} is not an address others can reach{hint}")


def check_worker_id(worker_id: str, field: str) -> None:
    """Ids go into file and socket names: letters, digits, ``.``, ``_``, ``-``; 1-63 chars."""
    if not _WORKER_ID_RE.match(worker_id):
        raise ConfigError(
            field,
            f"worker id {worker_id!r} must be 1-63 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)",
        )


def check_address(address: str, field: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) split and checked; ``ConfigError`` otherwise."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(field, f"{address!r} is not host:port")
    port = int(port_text)
    if not 0 < port <= 65535:
        raise ConfigError(field, f"{address!r}: port {port} not in 1..65535")
    return host.strip("[]"), port
