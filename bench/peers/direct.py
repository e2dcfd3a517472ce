"""The direct-UFS baseline: boto3 reading the objects from S3, no cache at all.

Two forms: one GET streamed start to end (``boto3-get``, the baseline every
ratio is taken against) and parallel ranged GETs of 8 MiB, 8 in flight
(``boto3-ranged``, what a tuned downloader does). "Cold" is the same as
warm for both: there is no cache; the S3 server's page cache is dropped.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from bench.peers.base import RangeReader, System, UfsEnv

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PART = 8 << 20
PARALLEL = 8
STREAM_CHUNK = 1 << 20
NO_CACHE = "no cache: a warm read is the cold read (warm rows' ratios use the cold figure)"


def make_client(env: UfsEnv) -> S3Client:
    """A boto3 S3 client for the bench's server (path-style, a pool for 32 threads)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=env.access_key,
        aws_secret_access_key=env.secret_key,
        region_name=env.region,
    )
    config = Config(
        max_pool_connections=32,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    return session.client("s3", endpoint_url=env.endpoint, config=config)


def stream_into(body: Any, buffer: memoryview, copy: BinaryIO | None = None) -> int:
    """Read a botocore streaming body to its end into ``buffer`` (reused), each chunk also
    written to ``copy`` if given; the byte count."""
    total = 0
    while True:
        data = body.read(min(STREAM_CHUNK, len(buffer)))
        if not data:
            return total
        buffer[: len(data)] = data
        if copy is not None:
            copy.write(data)
        total += len(data)


class _RangedGet:
    """An object read with one ranged GET per call."""

    def __init__(self, client: S3Client, bucket: str, key: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key

    def read_at(self, offset: int, buffer: memoryview) -> int:
        """GET ``bytes=offset-(offset+len-1)``."""
        answer = self._client.get_object(
            Bucket=self._bucket, Key=self._key, Range=f"bytes={offset}-{offset + len(buffer) - 1}"
        )
        return stream_into(answer["Body"], buffer)

    def close(self) -> None:
        """Nothing to release."""


class Boto3Get(System):
    """``get_object()['Body']`` read to the end: a single stream per object."""

    name = "boto3-get"
    label = "direct S3, boto3 single GET"
    cold_how = "no cache; S3 server's page cache dropped"
    skips = {
        "seq_warm": NO_CACHE,
        "small_warm": NO_CACHE,
        "model_load": NO_CACHE,
    }

    def __init__(self) -> None:
        self._env: UfsEnv | None = None
        self._client: S3Client | None = None

    def cache_parent(self, env: UfsEnv) -> Path | None:
        """No cache."""
        return None

    @property
    def client(self) -> S3Client:
        """The current boto3 client."""
        assert self._client is not None, "start() first"
        return self._client

    @property
    def bucket(self) -> str:
        """The bench's bucket."""
        assert self._env is not None, "start() first"
        return self._env.bucket

    def start(self, env: UfsEnv) -> None:
        """Make a client."""
        self._env = env
        self._client = make_client(env)

    def stop(self) -> None:
        """Drop the client."""
        self._client = None

    def reset_cold(self) -> None:
        """Nothing is cached: a new client."""
        self.fresh()

    def fresh(self) -> None:
        """A new client (new connections)."""
        assert self._env is not None
        self._client = make_client(self._env)

    def read_whole(self, key: str, buffer: memoryview) -> int:
        """One GET, streamed."""
        answer = self.client.get_object(Bucket=self.bucket, Key=key)
        return stream_into(answer["Body"], buffer)

    def open_reader(self, key: str) -> RangeReader:
        """Ranged GETs."""
        return _RangedGet(self.client, self.bucket, key)

    def list_tree(self, prefix: str) -> int:
        """ListObjectsV2 pages (sizes included)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/"
        )
        return sum(len(page.get("Contents", [])) for page in pages)

    def stat(self, key: str) -> int:
        """HeadObject."""
        return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])


class Boto3Ranged(Boto3Get):
    """Parallel ranged GETs of ``PART`` bytes, ``PARALLEL`` in flight, each into a buffer slot."""

    name = "boto3-ranged"
    label = "direct S3, boto3 8 parallel ranged GETs"
    skips = {
        **Boto3Get.skips,
        "small_cold": "one GET per 64 KiB file, as boto3-get",
        "ls_lR": "the same ListObjectsV2 calls as boto3-get",
        "stat": "the same HeadObject calls as boto3-get",
    }

    def __init__(self) -> None:
        super().__init__()
        self._pool = ThreadPoolExecutor(PARALLEL)

    def stop(self) -> None:
        """Drop the client and the threads."""
        super().stop()
        self._pool.shutdown(wait=True)

    def read_whole(self, key: str, buffer: memoryview) -> int:
        """HEAD for the size, then the parts, ``PARALLEL`` in flight, each into its buffer slot."""
        size = int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        part = min(PART, max(1, len(buffer) // PARALLEL))
        slots = [buffer[i * part : (i + 1) * part] for i in range(PARALLEL)]
        reader = _RangedGet(self.client, self.bucket, key)
        pending: list[Future[int] | None] = [None] * PARALLEL
        total = 0
        for index, offset in enumerate(range(0, size, part)):
            slot = index % PARALLEL
            previous = pending[slot]
            if previous is not None:
                total += previous.result()
            view = slots[slot][: min(part, size - offset)]
            pending[slot] = self._pool.submit(reader.read_at, offset, view)
        return total + sum(read.result() for read in pending if read is not None)
