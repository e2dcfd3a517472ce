"""A peer that is a foreground FUSE process with a local cache folder (rclone, s3fs-fuse).

Subclasses say how to start their process (:meth:`CachedFuseMount._command`);
this class mounts, unmounts, empties the cache for a cold pass and remounts
over the same cache for a "fresh mount" pass.
"""

from __future__ import annotations

import abc
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.peers.base import MountSystem, UfsEnv
from bench.peers.processes import fuse_missing, start_mount, stop_mount


class CachedFuseMount(MountSystem):
    """A FUSE peer with a cache folder under the peers' cache folder (``env.peer_cache``)."""

    binary: str
    """The executable that must be on PATH."""
    folder: str
    """Prefix of the mount (``<folder>-mnt``), cache (``<folder>-cache``) and log names."""

    def __init__(self) -> None:
        self._env: UfsEnv | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def available(self) -> str | None:
        """The binary and FUSE must be there."""
        return fuse_missing(self.binary)

    def cache_parent(self, env: UfsEnv) -> Path | None:
        """The peers' cache folder."""
        return env.peer_cache

    @property
    def _cache(self) -> Path:
        assert self._env is not None
        return self._env.peer_cache / f"{self.folder}-cache"

    @abc.abstractmethod
    def _command(self, env: UfsEnv) -> tuple[Sequence[str], Mapping[str, str] | None]:
        """The foreground FUSE command mounting at :attr:`root`, and its environment."""

    def _mount(self) -> None:
        assert self._env is not None
        command, environ = self._command(self._env)
        log = self._env.workdir / f"{self.folder}.log"
        self._process = start_mount(command, self.root, log, environ)

    def _unmount(self) -> None:
        stop_mount(self._process, self.root)
        self._process = None

    def start(self, env: UfsEnv) -> None:
        """Mount."""
        self._env = env
        self.root = env.workdir / f"{self.folder}-mnt"
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
