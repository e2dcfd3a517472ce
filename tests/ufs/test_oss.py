"""The OSS backend against our OSS-protocol server: the conformance suite plus OSS specifics."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator

import oss2
import pytest

from cachecluster.common.errors import (
    ConfigError,
    NotFound,
    PermissionDenied,
    Unavailable,
    UnknownScheme,
    VersionChanged,
)
from cachecluster.ufs.base import UfsBackend
from cachecluster.ufs.oss import OssBackend
from cachecluster.ufs.registry import create_backend
from tests.servers.oss_server import OssTestServer
from tests.servers.seaweed import free_ports
from tests.ufs.conformance import UfsConformance, payload

BUCKET = "conformance"


class OssWriter:
    """Puts objects under a key prefix with a plain oss2 Bucket."""

    def __init__(self, bucket: oss2.Bucket, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix

    def key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def write(self, path: str, data: bytes) -> None:
        self.bucket.put_object(self.key(path), data)

    def make_dir(self, path: str) -> None:
        self.bucket.put_object(self.key(path) + "/", b"")


def sdk_bucket(server: OssTestServer, name: str, secret: str | None = None) -> oss2.Bucket:
    auth = oss2.Auth(server.access_key_id, secret or server.access_key_secret)
    return oss2.Bucket(auth, server.endpoint, name)


@pytest.fixture(scope="module")
def oss_bucket(oss_server: OssTestServer) -> oss2.Bucket:
    bucket = sdk_bucket(oss_server, BUCKET)
    bucket.create_bucket()
    return bucket


@pytest.fixture
def writer(oss_bucket: oss2.Bucket, prefix: str) -> OssWriter:
    return OssWriter(oss_bucket, prefix)


@pytest.fixture
async def backend(
    oss_server: OssTestServer, oss_bucket: oss2.Bucket, prefix: str
) -> AsyncIterator[UfsBackend]:
    options = oss_server.backend_options() | {"fs.oss.partSize": str(UfsConformance.part_size)}
    ufs = create_backend(f"oss://{BUCKET}/{prefix}", options)
    yield ufs
    await ufs.close()


class TestOssConformance(UfsConformance):
    """Everything every backend does, on a fresh key prefix per test."""


async def test_wrong_secret_is_denied_without_leaking_it(
    oss_server: OssTestServer, oss_bucket: oss2.Bucket
) -> None:
    oss_bucket.put_object("creds/f", b"x")
    secret = "definitely-not-the-secret-42"
    options = oss_server.backend_options() | {"fs.oss.accessKeySecret": secret}
    ufs = create_backend(f"oss://{BUCKET}/creds", options)
    try:
        with pytest.raises(PermissionDenied, match="SignatureDoesNotMatch") as info:
            await ufs.list("")
        assert "fs.oss.accessKeySecret" in str(info.value)
        with pytest.raises(PermissionDenied) as head_info:
            await ufs.stat("f")  # a HEAD: the error has no body, only the status
        for message in (str(info.value), str(head_info.value)):
            assert secret not in message and oss_server.access_key_secret not in message
    finally:
        await ufs.close()


async def test_unknown_key_id_is_denied(oss_server: OssTestServer, oss_bucket: oss2.Bucket) -> None:
    options = oss_server.backend_options() | {"fs.oss.accessKeyId": "LTAI-nobody"}
    ufs = create_backend(f"oss://{BUCKET}", options)
    try:
        with pytest.raises(PermissionDenied, match="InvalidAccessKeyId"):
            await ufs.list("")
    finally:
        await ufs.close()


def test_server_rejects_unsigned_and_tampered_requests(
    oss_server: OssTestServer, oss_bucket: oss2.Bucket
) -> None:
    oss_bucket.put_object("sig/f", b"x")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{oss_server.endpoint}/{BUCKET}/sig/f", timeout=5)
    assert info.value.code == 403
    assert b"<Code>AccessDenied</Code>" in info.value.read()
    info.value.close()
    with pytest.raises(oss2.exceptions.ServerError) as bad:
        sdk_bucket(oss_server, BUCKET, secret="wrong").get_object("sig/f")
    assert bad.value.status == 403 and bad.value.code == "SignatureDoesNotMatch"


def test_server_signs_subresources_and_pages_listings(
    oss_server: OssTestServer, oss_bucket: oss2.Bucket
) -> None:
    keys = [f"pages/{i:02d}" for i in range(7)] + ["pages/sub/a", "pages/sub/b", "pages/z"]
    for key in keys:
        oss_bucket.put_object(key, b"k")
    # continuation-token is a signed sub-resource: a wrong canonical resource would 403.
    v2 = [o.key for o in oss2.ObjectIteratorV2(oss_bucket, prefix="pages/", max_keys=3)]
    assert v2 == sorted(keys)
    v1 = [
        o.key for o in oss2.ObjectIterator(oss_bucket, prefix="pages/", delimiter="/", max_keys=2)
    ]
    assert v1 == [f"pages/{i:02d}" for i in range(7)] + ["pages/sub/", "pages/z"]


async def test_invalid_range_answered_with_the_whole_object() -> None:
    # An OSS that ignores x-oss-range-behavior answers a range past the end
    # with the whole object and 200: the backend must not take it as data.
    with OssTestServer(honour_range_behavior=False) as server:
        server.create_bucket("quirk")
        data = payload(300)
        sdk_bucket(server, "quirk").put_object("f", data)
        ufs = create_backend("oss://quirk", server.backend_options())
        try:
            assert await ufs.read("f", 300, 10) == b""
            assert await ufs.read("f", 1000, 10) == b""
            assert await ufs.read("f", 250, 100) == data[250:]
            assert await ufs.read("f", 0, 1000) == data
        finally:
            await ufs.close()


def test_ip_endpoint_uses_path_style(oss_server: OssTestServer) -> None:
    ufs = create_backend("oss://bucket/p", oss_server.backend_options())
    assert isinstance(ufs, OssBackend)
    url = ufs._bucket._make_url("bucket", "p/k")
    assert url == f"{oss_server.endpoint}/bucket/p%2Fk"


async def test_missing_bucket_is_not_found(oss_server: OssTestServer) -> None:
    ufs = create_backend("oss://no-such-bucket/x", oss_server.backend_options())
    try:
        with pytest.raises(NotFound, match="no-such-bucket"):
            await ufs.list("")
    finally:
        await ufs.close()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"fs.oss.accessKeyId": "a", "fs.oss.accessKeySecret": "b"}, "fs.oss.endpoint"),
        (
            {"fs.oss.endpoint": "http://127.0.0.1:1", "fs.oss.accessKeyId": "a"},
            "fs.oss.accessKeySecret",
        ),
        ({"fs.oss.endpoint": "http://127.0.0.1:1", "fs.oss.acessKeyId": "a"}, "fs.oss.acessKeyId"),
        (
            {"fs.oss.endpoint": "http://127.0.0.1:1", "fs.oss.readParallelism": "many"},
            "fs.oss.readParallelism",
        ),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_backend("oss://bucket/p", options)
    assert info.value.field == field


def test_unknown_scheme() -> None:
    with pytest.raises(UnknownScheme, match="'oss2'"):
        create_backend("oss2://bucket/p")


@pytest.fixture
def no_oss_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield


async def test_keys_from_the_environment(
    oss_server: OssTestServer,
    oss_bucket: oss2.Bucket,
    monkeypatch: pytest.MonkeyPatch,
    no_oss_env: None,
) -> None:
    oss_bucket.put_object("env/f", b"from env")
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", oss_server.access_key_id)
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", oss_server.access_key_secret)
    ufs = create_backend(f"oss://{BUCKET}/env", {"fs.oss.endpoint": oss_server.endpoint})
    try:
        assert await ufs.read("f", 0, 100) == b"from env"
    finally:
        await ufs.close()


async def test_every_part_is_pinned_to_the_etag(backend: UfsBackend, writer: OssWriter) -> None:
    writer.write("pinned.bin", payload(4 * UfsConformance.part_size))
    old = await backend.stat("pinned.bin")
    writer.write("pinned.bin", payload(4 * UfsConformance.part_size, seed=99))
    assert isinstance(backend, OssBackend)
    buf = bytearray(4 * UfsConformance.part_size)
    # As if the object changed between the HEAD and the part GETs.
    with pytest.raises(VersionChanged, match="pinned"):
        await backend._read_parts(writer.key("pinned.bin"), 0, memoryview(buf), old.version)


async def test_unreachable_endpoint_is_unavailable() -> None:
    (port,) = free_ports(1)
    options = {
        "fs.oss.endpoint": f"http://127.0.0.1:{port}",
        "fs.oss.accessKeyId": "id",
        "fs.oss.accessKeySecret": "never-shown-secret",
    }
    ufs = create_backend("oss://bucket/p", options)
    try:
        with pytest.raises(Unavailable, match=f"127.0.0.1:{port}") as info:
            await ufs.stat("f")
        assert "never-shown-secret" not in str(info.value)
    finally:
        await ufs.close()
