"""The CSI plugin's configuration: one validated dataclass built from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path

from cachecluster.common.errors import ConfigError
from cachecluster.operator.naming import RUNTIME_MOUNT_ROOT

UNIX_SCHEME = "unix://"
DEFAULT_ENDPOINT = "unix:///csi/csi.sock"
DEFAULT_REBIND_INTERVAL_S = 5.0


def socket_path(endpoint: str) -> Path:
    """The socket file of ``unix:///abs/path`` (a bare absolute path is taken as is)."""
    path = endpoint[len(UNIX_SCHEME) :] if endpoint.startswith(UNIX_SCHEME) else endpoint
    if ("://" in endpoint and not endpoint.startswith(UNIX_SCHEME)) or not os.path.isabs(path):
        raise ConfigError("--endpoint", f"{endpoint!r} is not unix:///absolute/path")
    return Path(os.path.normpath(path))


@dataclasses.dataclass(frozen=True, slots=True)
class CsiConfig:
    """Everything ``run_csi`` needs; validated on construction.

    ``socket`` is the Unix socket kubelet (through node-driver-registrar)
    calls; ``state_dir`` keeps the published targets (default: the socket's
    folder, a hostPath in the chart); only sources under ``fuse_root`` are
    bound; broken binds are checked every ``rebind_interval`` seconds.
    """

    socket: Path
    node_id: str
    state_dir: Path
    fuse_root: Path = Path(RUNTIME_MOUNT_ROOT)
    rebind_interval: float = DEFAULT_REBIND_INTERVAL_S

    def __post_init__(self) -> None:
        if not self.node_id.strip():
            raise ConfigError("--node-id", "must not be empty (the Kubernetes node name)")
        if not self.fuse_root.is_absolute():
            raise ConfigError("--fuse-root", f"{str(self.fuse_root)!r} is not an absolute path")
        value = self.rebind_interval
        if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise ConfigError("--rebind-interval", f"{value!r} must be a number of seconds > 0")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> CsiConfig:
        """Build from the parsed flags of ``cachecluster csi``."""
        socket = socket_path(args.endpoint)
        state_dir = Path(os.path.abspath(args.state_dir)) if args.state_dir else socket.parent
        return cls(
            socket=socket,
            node_id=args.node_id or "",
            state_dir=state_dir,
            fuse_root=Path(args.fuse_root),
            rebind_interval=args.rebind_interval,
        )
