"""The S3 backend against a real SeaweedFS: the conformance suite plus S3 specifics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from cachecluster.common.errors import (
    ConfigError,
    NotFound,
    Unavailable,
    UnknownScheme,
    VersionChanged,
)
from cachecluster.ufs.base import UfsBackend
from cachecluster.ufs.registry import create_backend
from cachecluster.ufs.s3 import S3Backend
from tests.servers.seaweed import SeaweedS3, free_ports
from tests.ufs.conformance import UfsConformance, payload

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "conformance"


class S3Writer:
    """Puts objects under a key prefix with a plain boto3 client."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def write(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(path), Body=data)

    def make_dir(self, path: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(path) + "/", Body=b"")


@pytest.fixture(scope="module")
def s3_client(s3_server: SeaweedS3) -> S3Client:
    s3_server.create_bucket(BUCKET)
    return s3_server.client()


@pytest.fixture
def writer(s3_client: S3Client, prefix: str) -> S3Writer:
    return S3Writer(s3_client, BUCKET, prefix)


@pytest.fixture
async def backend(
    s3_server: SeaweedS3, s3_client: S3Client, prefix: str
) -> AsyncIterator[UfsBackend]:
    options = s3_server.backend_options() | {"fs.s3.partSize": str(UfsConformance.part_size)}
    ufs = create_backend(f"s3://{BUCKET}/{prefix}", options)
    yield ufs
    await ufs.close()


class TestS3Conformance(UfsConformance):
    """Everything every backend does, on a fresh key prefix per test."""


async def test_bucket_root_mount(s3_server: SeaweedS3) -> None:
    bucket = f"root-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    writer = S3Writer(s3_server.client(), bucket, "")
    ufs = create_backend(f"s3://{bucket}", s3_server.backend_options())
    try:
        assert await ufs.list("") == []
        writer.write("a/b.txt", b"bee")
        writer.write("c.txt", b"see")
        assert [(e.path, e.is_dir) for e in await ufs.list("")] == [("a", True), ("c.txt", False)]
        assert await ufs.read("a/b.txt", 1, 10) == b"ee"
    finally:
        await ufs.close()


async def test_alluxio_aliases_and_default_part_size(
    s3_server: SeaweedS3, s3_client: S3Client
) -> None:
    s3_client.put_object(Bucket=BUCKET, Key="alias/obj", Body=payload(100))
    options = {
        "alluxio.underfs.s3.endpoint": s3_server.endpoint,
        "alluxio.underfs.s3.endpoint.region": s3_server.region,
        "aws.accessKeyId": s3_server.access_key,
        "aws.secretKey": s3_server.secret_key,
        "alluxio.underfs.s3.disable.dns.buckets": "true",
        "unrelated.cache.option": "ignored",
    }
    ufs = create_backend(f"s3://{BUCKET}/alias", options)
    try:
        assert isinstance(ufs, S3Backend)
        assert ufs.part_size == 8 << 20 and ufs.read_parallelism == 8
        assert await ufs.read("obj", 0, 1000) == payload(100)
    finally:
        await ufs.close()


async def test_hadoop_s3a_aliases(s3_server: SeaweedS3, s3_client: S3Client) -> None:
    s3_client.put_object(Bucket=BUCKET, Key="s3a/obj", Body=b"hadoop")
    options = {
        "fs.s3a.endpoint": s3_server.endpoint,
        "fs.s3a.access.key": s3_server.access_key,
        "fs.s3a.secret.key": s3_server.secret_key,
        "fs.s3a.path.style.access": "true",
        "fs.s3.partSize": "1Mi",
        "fs.s3.readParallelism": "3",
    }
    ufs = create_backend(f"s3://{BUCKET}/s3a", options)
    try:
        assert isinstance(ufs, S3Backend) and ufs.part_size == 1 << 20
        assert await ufs.read("obj", 0, 100) == b"hadoop"
    finally:
        await ufs.close()


def test_unknown_option_names_it(s3_server: SeaweedS3) -> None:
    with pytest.raises(ConfigError, match=r"fs\.s3\.acessKeyId"):
        create_backend("s3://b/p", s3_server.backend_options() | {"fs.s3.acessKeyId": "x"})


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"fs.s3.accessKeyId": "id-only"}, "fs.s3.accessKeySecret"),
        ({"fs.s3.pathStyle": "maybe"}, "fs.s3.pathStyle"),
        ({"fs.s3.partSize": "tiny"}, "fs.s3.partSize"),
        ({"fs.s3.partSize": "1Ki"}, "fs.s3.partSize"),
        ({"fs.s3.readParallelism": "0"}, "fs.s3.readParallelism"),
        (
            {"fs.s3.endpoint": "http://a:1", "alluxio.underfs.s3.endpoint": "http://b:2"},
            "alluxio.underfs.s3.endpoint",
        ),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_backend("s3://b/p", options)
    assert info.value.field == field


def test_unknown_scheme_from_the_s3_side() -> None:
    with pytest.raises(UnknownScheme, match="supported: file, local, oss, s3"):
        create_backend("s3a://bucket/dir", {})


async def test_missing_bucket_is_not_found(s3_server: SeaweedS3) -> None:
    ufs = create_backend("s3://no-such-bucket-here/x", s3_server.backend_options())
    try:
        with pytest.raises(NotFound, match="no-such-bucket-here"):
            await ufs.list("")
    finally:
        await ufs.close()


async def test_unreachable_endpoint_is_unavailable_without_the_secret() -> None:
    (port,) = free_ports(1)
    secret = "very-secret-value-1234"
    options = {
        "fs.s3.endpoint": f"http://127.0.0.1:{port}",
        "fs.s3.accessKeyId": "id",
        "fs.s3.accessKeySecret": secret,
        "fs.s3.pathStyle": "true",
    }
    ufs = create_backend("s3://bucket/p", options)
    try:
        with pytest.raises(Unavailable) as info:
            await ufs.read("f", 0, 10)
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message and "s3://bucket/p/f" in message
        assert secret not in message and secret not in repr(info.value.__cause__)
    finally:
        await ufs.close()


async def test_every_part_is_pinned_to_the_etag(backend: UfsBackend, writer: S3Writer) -> None:
    writer.write("pinned.bin", payload(4 * UfsConformance.part_size))
    old = await backend.stat("pinned.bin")
    writer.write("pinned.bin", payload(4 * UfsConformance.part_size, seed=99))
    assert isinstance(backend, S3Backend)
    buf = bytearray(4 * UfsConformance.part_size)
    # As if the object changed between the HEAD and the part GETs.
    with pytest.raises(VersionChanged, match="pinned"):
        await backend._read_parts(writer.key("pinned.bin"), 0, memoryview(buf), old.version)


async def test_scatter_read_is_one_get_pinned_to_the_etag(
    backend: UfsBackend, writer: S3Writer
) -> None:
    block = UfsConformance.part_size
    data = payload(5 * block + 7, seed=21)
    writer.write("run.bin", data)
    status = await backend.stat("run.bin")
    assert isinstance(backend, S3Backend)
    sent: list[tuple[str, bytes]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append((request.headers.get("Range", b"").decode(), request.headers["If-Match"]))

    backend._client.meta.events.register("before-send.s3.GetObject", record)
    buffers = [bytearray(block) for _ in range(6)]
    n = await backend.read_blocks_into(
        "run.bin", block, [memoryview(b) for b in buffers], version=status.version
    )
    assert n == len(data) - block
    assert b"".join(buffers)[:n] == data[block:]
    # One request for six blocks, past the end too: the server cuts it short.
    assert sent == [(f"bytes={block}-{7 * block - 1}", f'"{status.version}"'.encode())]
