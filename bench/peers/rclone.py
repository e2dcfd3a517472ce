"""rclone mount with ``--vfs-cache-mode full`` (Debian's rclone).

Configured by ``RCLONE_CONFIG_BENCH_*`` variables (no config file) and run
without ``AWS_CA_BUNDLE`` (LIMITS.md). rclone's ``--cache-dir`` defaults to
``~/.cache/rclone`` (``$XDG_CACHE_HOME/rclone``); here it is a folder under the
suite's peer cache folder (on the root disk or on tmpfs, as ``--peer-cache``
says). Cold: a new mount over an emptied cache folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.peers.base import UfsEnv
from bench.peers.cached_mount import CachedFuseMount


class RcloneMount(CachedFuseMount):
    """``rclone mount bench:BUCKET MOUNT --vfs-cache-mode full --read-only``."""

    name = "rclone"
    label = "rclone mount, vfs-cache full"
    cold_how = "new mount, VFS cache folder emptied"
    binary = "rclone"
    folder = "rclone"
    default_cache = "rclone's default --cache-dir: ~/.cache/rclone"

    def default_cache_dir(self) -> Path | None:
        """``$XDG_CACHE_HOME/rclone``, else ``~/.cache/rclone``."""
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rclone"

    def _command(self, env: UfsEnv) -> tuple[Sequence[str], Mapping[str, str] | None]:
        environ = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        environ.update(
            RCLONE_CONFIG_BENCH_TYPE="s3",
            RCLONE_CONFIG_BENCH_PROVIDER="Other",
            RCLONE_CONFIG_BENCH_ENDPOINT=env.endpoint,
            RCLONE_CONFIG_BENCH_REGION=env.region,
            RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=env.access_key,
            RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=env.secret_key,
            RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
        )
        command = [
            "rclone", "mount", f"bench:{env.bucket}", str(self.root),
            "--vfs-cache-mode", "full", "--cache-dir", str(self._cache),
            "--read-only", "--log-level", "NOTICE",
        ]  # fmt: skip
        return command, environ
