"""fsspec's ``s3fs`` behind its local caches: ``blockcache`` and ``simplecache``.

``blockcache::s3://`` keeps the blocks it read in a sparse local file per
object; ``simplecache::s3://`` downloads a whole object on open and reads the
local copy. Their ``cache_storage`` defaults to a new folder under
``tempfile.gettempdir()``; here it is a folder under the suite's peer cache
folder (``--peer-cache disk``: under the temp dir too, on the root disk;
``--peer-cache tmpfs``: on /dev/shm). Cold: a new filesystem instance over an
emptied cache folder.

The caching file systems are not thread-safe: opening files from 8 threads
at once raises ``KeyError`` from their cache index. Opens and closes are
therefore serialized with a lock here (the reads themselves run in
parallel), which is what a user sharing one instance between threads must
do too.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from bench.peers.base import System, UfsEnv


class _FsspecFile:
    """An fsspec file read at offsets."""

    def __init__(self, file: Any, lock: threading.Lock) -> None:
        self._file, self._lock = file, lock

    def readinto(self, buffer: memoryview) -> int:
        """Read on from the current position."""
        return int(self._file.readinto(buffer))

    def read_at(self, offset: int, buffer: memoryview) -> int:
        """Seek, then read ``len(buffer)`` bytes."""
        self._file.seek(offset)
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Close the file (under the instance's lock)."""
        with self._lock:
            self._file.close()


class FsspecCached(System):
    """s3fs wrapped in one of fsspec's caching file systems (``protocol``)."""

    protocol = "blockcache"
    default_cache = "fsspec's default cache_storage: a folder under tempfile.gettempdir()"

    def __init__(self) -> None:
        self._env: UfsEnv | None = None
        self._fs: Any = None
        self._cache: Path | None = None
        self._lock = threading.Lock()

    def available(self) -> str | None:
        """s3fs must be importable."""
        try:
            import s3fs  # noqa: F401
        except ImportError as exc:
            return f"s3fs is not installed ({exc}): pip install '.[bench]'"
        return None

    def cache_parent(self, env: UfsEnv) -> Path | None:
        """The peers' cache folder."""
        return env.peer_cache

    def default_cache_dir(self) -> Path | None:
        """The temp dir."""
        return Path(tempfile.gettempdir())

    def _new_fs(self) -> None:
        import fsspec

        assert self._env is not None and self._cache is not None
        env = self._env
        self._fs = fsspec.filesystem(
            self.protocol,
            target_protocol="s3",
            target_options={
                "key": env.access_key,
                "secret": env.secret_key,
                "endpoint_url": env.endpoint,
                "client_kwargs": {"region_name": env.region},
                "config_kwargs": {"s3": {"addressing_style": "path"}},
                "skip_instance_cache": True,
            },
            cache_storage=str(self._cache),
            skip_instance_cache=True,
        )

    def start(self, env: UfsEnv) -> None:
        """A cache folder and a file system instance."""
        self._env = env
        self._cache = env.peer_cache / f"{self.name}-cache"
        self._cache.mkdir(parents=True, exist_ok=True)
        self._new_fs()

    def stop(self) -> None:
        """Drop the instance and the cache folder."""
        self._fs = None
        if self._cache is not None:
            shutil.rmtree(self._cache, ignore_errors=True)

    def reset_cold(self) -> None:
        """An emptied cache folder and a new instance."""
        assert self._cache is not None
        shutil.rmtree(self._cache, ignore_errors=True)
        self._cache.mkdir(parents=True)
        self._new_fs()

    def fresh(self) -> None:
        """A new instance over the same cache folder."""
        self._new_fs()

    def _path(self, key: str) -> str:
        assert self._env is not None
        return f"{self._env.bucket}/{key}"

    def read_whole(self, key: str, buffer: memoryview) -> int:
        """Open and ``readinto`` to the end."""
        file = self.open_reader(key)
        try:
            total = 0
            while got := file.readinto(buffer):
                total += got
            return total
        finally:
            file.close()

    def open_reader(self, key: str) -> _FsspecFile:
        """Open the file (under the instance's lock)."""
        with self._lock:
            return _FsspecFile(self._fs.open(self._path(key), "rb"), self._lock)

    def list_tree(self, prefix: str) -> int:
        """``find(detail=True)``: every file with its size."""
        return len(self._fs.find(self._path(prefix), detail=True))

    def stat(self, key: str) -> int:
        """``info``."""
        return int(self._fs.info(self._path(key))["size"])


class FsspecBlockcache(FsspecCached):
    """``blockcache::s3://``."""

    name = "fsspec-blockcache"
    label = "fsspec s3fs + blockcache (opens and closes serialized: not thread-safe)"
    cold_how = "new instance, cache folder emptied"
    protocol = "blockcache"


class FsspecSimplecache(FsspecCached):
    """``simplecache::s3://``."""

    name = "fsspec-simplecache"
    label = "fsspec s3fs + simplecache (opens and closes serialized: not thread-safe)"
    cold_how = "new instance, cache folder emptied"
    protocol = "simplecache"
