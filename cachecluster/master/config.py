"""The master's configuration: one validated dataclass built from the command line.

Every field maps to one flag of ``cachecluster master``; a bad value is a
:class:`~cachecluster.common.errors.ConfigError` that names that flag, so the
user sees ``--block-size: '4Q' is not a size`` rather than a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

from cachecluster.common.auth import load_secret
from cachecluster.common.errors import ConfigError
from cachecluster.common.ring import DEFAULT_VNODES, MAX_VNODES
from cachecluster.common.units import format_size, parse_size

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
"""4 MiB, the same default as the worker's (the master never imports worker code)."""

MIN_BLOCK_SIZE = 64 * 1024
"""Smallest block size: below this, per-block overhead dominates every read."""

MAX_BLOCK_SIZE = 1024 * 1024 * 1024
"""Largest block size: a block is held in memory while it is fetched."""

MAX_REPLICAS = 16
"""More copies than this is a configuration mistake, not a need."""

MIN_HEARTBEAT_INTERVAL_S = 0.01
"""Shortest heartbeat interval (tests use tiny ones; production about 1 s)."""


def _check_port(flag: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(flag, f"{value!r} is not a TCP port (0-65535; 0 picks a free one)")


def _check_seconds(flag: str, value: float, minimum: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < minimum
    ):
        raise ConfigError(flag, f"{value!r} must be a number of seconds >= {minimum:g}")


@dataclasses.dataclass(frozen=True, slots=True)
class MasterConfig:
    """Everything ``run_master`` needs; validated on construction.

    ``home`` holds ``endpoint.json`` (while running) and ``datasets.json``.
    ``port`` and ``metrics_port`` 0 let the kernel pick free ports. A worker is
    declared lost after ``missed_heartbeats`` x ``heartbeat_interval`` seconds
    without a heartbeat. Directory listings from the UFS are cached for
    ``metadata_sync_interval`` seconds (0: never cached).
    """

    home: Path
    host: str = "127.0.0.1"
    port: int = 0
    metrics_port: int = 0
    replicas: int = 1
    block_size: int = DEFAULT_BLOCK_SIZE
    vnodes: int = DEFAULT_VNODES
    heartbeat_interval: float = 1.0
    missed_heartbeats: int = 3
    metadata_sync_interval: float = 30.0
    cluster_secret: bytes | None = dataclasses.field(default=None, repr=False)
    """The cluster secret (``--cluster-secret-file``): every call then needs a token
    (see :mod:`cachecluster.master.auth_interceptor`). ``None``: open mode."""

    def __post_init__(self) -> None:
        if not isinstance(self.home, Path):
            raise ConfigError("--home", f"{self.home!r} is not a path")
        if not self.host or any(ch.isspace() for ch in self.host):
            raise ConfigError("--host", f"{self.host!r} is not a host name or address")
        _check_port("--port", self.port)
        _check_port("--metrics-port", self.metrics_port)
        if (
            isinstance(self.replicas, bool)
            or not isinstance(self.replicas, int)
            or not 1 <= self.replicas <= MAX_REPLICAS
        ):
            raise ConfigError("--replicas", f"{self.replicas!r} must be in [1, {MAX_REPLICAS}]")
        if (
            isinstance(self.block_size, bool)
            or not isinstance(self.block_size, int)
            or not MIN_BLOCK_SIZE <= self.block_size <= MAX_BLOCK_SIZE
        ):
            raise ConfigError(
                "--block-size",
                f"{self.block_size!r} must be between {format_size(MIN_BLOCK_SIZE)} "
                f"and {format_size(MAX_BLOCK_SIZE)}",
            )
        if (
            isinstance(self.vnodes, bool)
            or not isinstance(self.vnodes, int)
            or not 1 <= self.vnodes <= MAX_VNODES
        ):
            raise ConfigError("--vnodes", f"{self.vnodes!r} must be in [1, {MAX_VNODES}]")
        _check_seconds("--heartbeat-interval", self.heartbeat_interval, MIN_HEARTBEAT_INTERVAL_S)
        if (
            isinstance(self.missed_heartbeats, bool)
            or not isinstance(self.missed_heartbeats, int)
            or self.missed_heartbeats < 1
        ):
            raise ConfigError("--missed-heartbeats", f"{self.missed_heartbeats!r} must be >= 1")
        _check_seconds("--metadata-sync-interval", self.metadata_sync_interval, 0.0)

    @property
    def lost_after(self) -> float:
        """Seconds without a heartbeat after which a worker is LOST."""
        return self.heartbeat_interval * self.missed_heartbeats

    @classmethod
    def from_args(cls, args: argparse.Namespace, default_home: Path) -> MasterConfig:
        """Build from the parsed flags of ``cachecluster master`` (see ``cli/master_cmd.py``)."""
        home = Path(args.home).expanduser().resolve() if args.home else default_home
        return cls(
            home=home,
            host=args.host,
            port=args.port,
            metrics_port=args.metrics_port,
            replicas=args.replicas,
            block_size=parse_size(args.block_size, "--block-size"),
            vnodes=args.vnodes,
            heartbeat_interval=args.heartbeat_interval,
            missed_heartbeats=args.missed_heartbeats,
            metadata_sync_interval=args.metadata_sync_interval,
            cluster_secret=(
                load_secret(args.cluster_secret_file)
                if getattr(args, "cluster_secret_file", None)
                else None
            ),
        )
