"""The objects every system reads: generated from a seed, uploaded once.

Every object is a sequence of 1 MiB chunks of seeded random bytes (chunk
``i`` of ``key`` is numpy's SFC64 generator seeded with a hash of
``f"{seed}/{key}/{i}"``; about 0.7 GB/s), so any
range can be generated again to check what a system returned, without
keeping the data around.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1 << 20
CHUNK = MiB
SMALL_SIZE = 64 << 10
FILES_PER_DIR = 1000
MODEL_SHARDS = 4


@dataclass(frozen=True)
class Layout:
    """Names and sizes of the bench's objects."""

    big_size: int
    small_files: int
    model_size: int
    seed: int = 6

    big_key: str = "seq/big.bin"
    small_prefix: str = "small"
    model_prefix: str = "model"

    def small_keys(self) -> list[str]:
        """The small files, ``FILES_PER_DIR`` to a folder (so ``ls -lR`` recurses)."""
        return [
            f"{self.small_prefix}/d{i // FILES_PER_DIR:02d}/f{i:05d}.bin"
            for i in range(self.small_files)
        ]

    def model_keys(self) -> list[tuple[str, int]]:
        """The model's shards and their sizes (``MODEL_SHARDS`` of them, adding up)."""
        part = math.ceil(self.model_size / MODEL_SHARDS)
        sizes = [min(part, self.model_size - i * part) for i in range(MODEL_SHARDS)]
        return [
            (f"{self.model_prefix}/shard-{i + 1:02d}-of-{MODEL_SHARDS:02d}.bin", size)
            for i, size in enumerate(sizes)
            if size > 0
        ]

    def total_bytes(self) -> int:
        """All bytes of all objects."""
        return self.big_size + self.small_files * SMALL_SIZE + self.model_size


def chunk(seed: int, key: str, index: int, size: int) -> bytes:
    """Chunk ``index`` of an object of ``size`` bytes."""
    length = min(CHUNK, size - index * CHUNK)
    digest = hashlib.sha256(f"{seed}/{key}/{index}".encode()).digest()
    words = np.random.SFC64(int.from_bytes(digest[:8], "little")).random_raw(-(-length // 8))
    return words.tobytes()[:length]


def chunks(seed: int, key: str, size: int) -> Iterator[bytes]:
    """Every chunk of the object, in order."""
    for index in range(math.ceil(size / CHUNK)):
        yield chunk(seed, key, index, size)


def expected(seed: int, key: str, size: int, offset: int, length: int) -> bytes:
    """The bytes ``[offset, offset + length)`` of the object (clipped at its end)."""
    end = min(size, offset + length)
    parts: list[bytes] = []
    for index in range(offset // CHUNK, math.ceil(end / CHUNK)):
        data = chunk(seed, key, index, size)
        base = index * CHUNK
        parts.append(data[max(0, offset - base) : end - base])
    return b"".join(parts)


def _upload_large(client: S3Client, bucket: str, key: str, size: int, seed: int) -> None:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_chunksize=64 * MiB, max_concurrency=8)
    with tempfile.TemporaryFile(dir="/dev/shm") as staging:
        for data in chunks(seed, key, size):
            staging.write(data)
        staging.seek(0)
        client.upload_fileobj(staging, bucket, key, Config=config)


def upload(client: S3Client, bucket: str, layout: Layout) -> None:
    """Put every object of ``layout`` into ``bucket`` (small files 8 at a time)."""
    _upload_large(client, bucket, layout.big_key, layout.big_size, layout.seed)
    for key, size in layout.model_keys():
        _upload_large(client, bucket, key, size, layout.seed)

    def put_small(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=chunk(layout.seed, key, 0, SMALL_SIZE))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put_small, layout.small_keys()))


def scratch_dir(prefix: str, parent: Path | None = None, tmpfs: bool = True) -> Path:
    """A new folder under ``parent``; by default on tmpfs (/dev/shm when there is one) with
    ``tmpfs``, else in the temp dir."""
    if parent is None and tmpfs and Path("/dev/shm").is_dir():
        parent = Path("/dev/shm")
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
