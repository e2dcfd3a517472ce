"""s3fs-fuse with ``use_cache`` (Debian's s3fs).

Credentials in a ``passwd_file`` (mode 600), path-style requests, the cache
folder on tmpfs, read-only. Cold: a new mount over an emptied cache folder.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.peers.base import MountSystem, UfsEnv
from bench.peers.processes import fuse_missing, start_mount, stop_mount


class S3fsFuse(MountSystem):
    """``s3fs BUCKET MOUNT -f -o use_cache=DIR,ro,use_path_request_style``."""

    name = "s3fs-fuse"
    label = "s3fs-fuse, use_cache"
    cold_how = "new mount, use_cache folder emptied"

    def __init__(self) -> None:
        self._env: UfsEnv | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def available(self) -> str | None:
        """s3fs and FUSE must be there."""
        return fuse_missing("s3fs")

    @property
    def _cache(self) -> Path:
        assert self._env is not None
        return self._env.workdir / "s3fs-cache"

    def _mount(self) -> None:
        assert self._env is not None
        env = self._env
        passwd = env.workdir / "s3fs.passwd"
        if not passwd.exists():
            passwd.touch(mode=0o600)
            passwd.write_text(f"{env.access_key}:{env.secret_key}\n")
        command = [
            "s3fs", env.bucket, str(self.root), "-f",
            "-o", f"url={env.endpoint}", "-o", "use_path_request_style",
            "-o", f"passwd_file={passwd}", "-o", f"use_cache={self._cache}", "-o", "ro",
        ]  # fmt: skip
        self._process = start_mount(command, self.root, env.workdir / "s3fs.log")

    def _unmount(self) -> None:
        stop_mount(self._process, self.root)
        self._process = None

    def start(self, env: UfsEnv) -> None:
        """Mount."""
        self._env = env
        self.root = env.workdir / "s3fs-mnt"
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
