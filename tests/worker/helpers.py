"""Helpers for the block store tests: test blocks, counting loaders, disk views."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

from cachecluster.common.block_key import BlockKey
from cachecluster.worker.block_file import DATA_OFFSET

SMALL_BLOCK = 64 * 1024
"""Data bytes of the blocks most tests use: small, so tests stay fast."""
SMALL_FILE = DATA_OFFSET + SMALL_BLOCK
"""What one such block costs a tier's quota."""


def block_id(n: int) -> str:
    """The id of test block ``n``."""
    return BlockKey("mount-1", f"dir/file-{n}.bin", "etag-1", 0).id


def block_data(n: int, length: int = SMALL_BLOCK) -> bytes:
    """The deterministic content of test block ``n``."""
    return random.Random(n).randbytes(length)


class CountingLoader:
    """Loader factory that counts calls and serves :func:`block_data`."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: dict[int, int] = {}
        self.delay = delay

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def __call__(self, n: int, length: int = SMALL_BLOCK) -> Callable[[], Awaitable[bytes]]:
        async def load() -> bytes:
            self.calls[n] = self.calls.get(n, 0) + 1
            if self.delay:
                await asyncio.sleep(self.delay)
            return block_data(n, length)

        return load


def files_bytes(tier_path: str | Path) -> int:
    """Bytes of every file under a tier's directory, as the disk sees them now."""
    total = 0
    for root, _dirs, names in os.walk(tier_path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(root, name)).st_size
    return total


def block_files(tier_path: str | Path) -> list[Path]:
    """Every ``*.blk`` file under a tier's directory."""
    return sorted(Path(tier_path).rglob("*.blk"))
