"""rclone mount with ``--vfs-cache-mode full`` (Debian's rclone).

Configured by ``RCLONE_CONFIG_BENCH_*`` variables (no config file) and run
without ``AWS_CA_BUNDLE`` (LIMITS.md); the VFS cache sits on tmpfs. Cold: a
new mount over an emptied cache folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bench.peers.base import MountSystem, UfsEnv
from bench.peers.processes import fuse_missing, start_mount, stop_mount


class RcloneMount(MountSystem):
    """``rclone mount bench:BUCKET MOUNT --vfs-cache-mode full --read-only``."""

    name = "rclone"
    label = "rclone mount, vfs-cache full"
    cold_how = "new mount, VFS cache folder emptied"

    def __init__(self) -> None:
        self._env: UfsEnv | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def available(self) -> str | None:
        """rclone and FUSE must be there."""
        return fuse_missing("rclone")

    @property
    def _cache(self) -> Path:
        assert self._env is not None
        return self._env.workdir / "rclone-cache"

    def _environ(self) -> dict[str, str]:
        assert self._env is not None
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update(
            RCLONE_CONFIG_BENCH_TYPE="s3",
            RCLONE_CONFIG_BENCH_PROVIDER="Other",
            RCLONE_CONFIG_BENCH_ENDPOINT=self._env.endpoint,
            RCLONE_CONFIG_BENCH_REGION=self._env.region,
            RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=self._env.access_key,
            RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=self._env.secret_key,
            RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
        )
        return env

    def _mount(self) -> None:
        assert self._env is not None
        command = [
            "rclone", "mount", f"bench:{self._env.bucket}", str(self.root),
            "--vfs-cache-mode", "full", "--cache-dir", str(self._cache),
            "--read-only", "--log-level", "NOTICE",
        ]  # fmt: skip
        log = self._env.workdir / "rclone.log"
        self._process = start_mount(command, self.root, log, self._environ())

    def _unmount(self) -> None:
        stop_mount(self._process, self.root)
        self._process = None

    def start(self, env: UfsEnv) -> None:
        """Mount."""
        self._env = env
        self.root = env.workdir / "rclone-mnt"
        self._mount()

    def stop(self) -> None:
        """Unmount, remove the cache."""
        if self._env is None:
            return
        self._unmount()
        shutil.rmtree(self._cache, ignore_errors=True)

    def reset_cold(self) -> None:
        """Unmount, empty the cache, mount again."""
        self._unmount()
        shutil.rmtree(self._cache, ignore_errors=True)
        self._mount()

    def fresh(self) -> None:
        """Unmount and mount again over the same cache."""
        self._unmount()
        self._mount()
