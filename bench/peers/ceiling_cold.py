"""A reference for the cold rows: one GET whose bytes are also written to a tmpfs file.

Not a system anyone mounts: the baseline's single GET (:class:`Boto3Get`),
each chunk written to a file in the scratch folder (tmpfs) as it arrives, in
the reading thread. That is the least any cache that keeps the bytes in RAM
does on a cold read: receive them once and write them once into fresh tmpfs
pages. Where this figure is below the plain GET, the cold target (no slower
than the GET) asks for more than keeping a copy gives on this machine; the
S3 server runs on the same 2 cores. It is not a strict ceiling: a cache can
overlap its write with the receive on another core.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.peers.base import UfsEnv
from bench.peers.direct import Boto3Get, stream_into

ONLY_COLD = "a reference for the cold rows only (its warm read would be tmpfs-copy's)"
WARM_ROWS = ("seq_warm", "random_1m", "small_warm", "concurrent_4", "ls_lR", "stat", "model_load")


class GetStore(Boto3Get):
    """``get_object()['Body']`` read to the end, every chunk also written to a tmpfs file."""

    name = "get-store"
    label = "reference: one GET, its bytes also written to a tmpfs file"
    cold_how = "the tmpfs files removed; S3 server's page cache dropped"
    skips = dict.fromkeys(WARM_ROWS, ONLY_COLD)

    def __init__(self) -> None:
        super().__init__()
        self._root: Path | None = None

    def cache_parent(self, env: UfsEnv) -> Path | None:
        """The scratch folder (tmpfs), like cachecluster's MEM tier."""
        return env.workdir

    def start(self, env: UfsEnv) -> None:
        """Make a client and the folder the copies go in."""
        super().start(env)
        self._root = env.workdir / "get-store"
        self._root.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        """Drop the client, remove the copies."""
        super().stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def reset_cold(self) -> None:
        """Remove the copies, a new client."""
        assert self._root is not None
        shutil.rmtree(self._root, ignore_errors=True)
        self._root.mkdir(parents=True)
        super().reset_cold()

    def read_whole(self, key: str, buffer: memoryview) -> int:
        """One GET, streamed into ``buffer``; each chunk written to the key's tmpfs file."""
        assert self._root is not None
        path = self._root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        with open(path, "wb", buffering=0) as copy:
            return stream_into(body, buffer, copy)
