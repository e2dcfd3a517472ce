"""The S3 backend's lean ranged GET (ufs/s3_get.py) against a real SeaweedFS.

The server here checks signatures (one identity), so every request the lean
path signs itself is verified. Each backend is warmed first: its first GET
goes through the botocore client, which the lean path learns from; the reads
a test makes after that are the lean path's own. After each test the lean path
must still be on: it turns itself off when the client succeeds where it failed,
which would hide a wrong request behind a second round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import botocore.exceptions
import botocore.session
import pytest
import urllib3
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from botocore.retries.standard import StandardRetryConditions

from cachecluster.common.errors import NotFound, PermissionDenied, Unavailable, VersionChanged
from cachecluster.ufs.object_store import ReadAborted
from cachecluster.ufs.s3 import S3Backend
from cachecluster.ufs.s3_get import error_context
from tests.servers.seaweed import SeaweedS3
from tests.ufs.conformance import UfsConformance, payload
from tests.ufs.test_s3 import S3Writer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "lean"
WARM_KEY = "warm-up.bin"  # at f"{prefix}-warm-up.bin"


@pytest.fixture(scope="module")
def signed_s3() -> Iterator[SeaweedS3]:
    server = SeaweedS3.start(check_signatures=True)
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def signed_client(signed_s3: SeaweedS3) -> S3Client:
    return signed_s3.client()


@pytest.fixture
def writer(signed_client: S3Client, prefix: str) -> S3Writer:
    return S3Writer(signed_client, BUCKET, prefix)


class Spy:
    """Records what each path sends: the lean path's requests and the client's GETs.

    Both are seen by the client's ``before-send`` hooks; the client's own carry
    an invocation id.
    """

    def __init__(self, backend: S3Backend) -> None:
        self.lean: list[dict[str, str]] = []
        self.client_gets: list[str] = []

        def record(request: Any, **_: Any) -> None:
            if "amz-sdk-invocation-id" in request.headers:
                self.client_gets.append(request.url)
            else:
                headers = {k: v.decode() for k, v in request.headers.items()}
                self.lean.append({"url": request.url} | headers)

        backend._client.meta.events.register("before-send.s3.GetObject", record)


async def warm(ufs: S3Backend, writer: S3Writer) -> None:
    """One GET through the client, so that the lean path knows the bucket.

    Its object lies beside the backend's root, which stays empty for the test.
    """
    key = f"{writer.prefix}-{WARM_KEY}"
    writer.client.put_object(Bucket=writer.bucket, Key=key, Body=b"warm")
    buf = bytearray(10)
    assert (
        await asyncio.to_thread(ufs._get_into_blocking, key, 0, [memoryview(buf)], None, None) == 4
    )
    assert ufs._lean._base is not None and ufs._lean.usable


def lean_backend(server: SeaweedS3, prefix: str, **options: str) -> S3Backend:
    opts = server.backend_options() | {"fs.s3.partSize": str(UfsConformance.part_size)} | options
    return S3Backend(f"s3://{BUCKET}/{prefix}", opts)


@pytest.fixture
async def backend(signed_s3: SeaweedS3, writer: S3Writer, prefix: str) -> AsyncIterator[S3Backend]:
    ufs = lean_backend(signed_s3, prefix)
    await warm(ufs, writer)
    yield ufs
    still_on = ufs._lean.usable
    await ufs.close()
    assert still_on, "the lean GET turned itself off: the client succeeded where it failed"


class TestS3LeanConformance(UfsConformance):
    """The whole UFS suite with every GET after the first on the lean path."""


async def test_gets_after_the_first_skip_the_client(backend: S3Backend, writer: S3Writer) -> None:
    spy = Spy(backend)
    names = ["plain.bin", "a b/ü ñ.bin", "odd+chars=1&x~y%z.bin", "deep/er/still/x.bin"]
    data = {name: payload(100_000 + i, seed=i) for i, name in enumerate(names)}
    for name, body in data.items():
        writer.write(name, body)
    for name, body in data.items():
        got = await backend.read(name, 0, len(body) + 10)
        assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()
    assert spy.client_gets == []
    assert len(spy.lean) == len(names)
    first = spy.lean[0]
    assert first["Range"] == f"bytes=0-{len(data['plain.bin']) + 9}"
    assert first["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert first["User-Agent"].startswith("Boto3/")


async def test_version_pinning_on_the_lean_path(backend: S3Backend, writer: S3Writer) -> None:
    writer.write("v.bin", payload(5000, seed=1))
    old = await backend.stat("v.bin")
    writer.write("v.bin", payload(5000, seed=2))
    spy = Spy(backend)
    with pytest.raises(VersionChanged, match=r"s3://lean/.*/v\.bin changed"):
        await backend.read("v.bin", 0, 100, version=old.version)
    assert spy.lean[0]["If-Match"] == f'"{old.version}"'
    new = await backend.stat("v.bin")
    assert await backend.read("v.bin", 10, 5, version=new.version) == payload(5000, seed=2)[10:15]


async def test_past_the_end_on_the_lean_path(backend: S3Backend, writer: S3Writer) -> None:
    writer.write("end.bin", payload(1000))
    status = await backend.stat("end.bin")
    spy = Spy(backend)
    for offset in (1000, 4000):
        assert await backend.read_into("end.bin", offset, memoryview(bytearray(10))) == 0
        assert (
            await backend.read_into(
                "end.bin", offset, memoryview(bytearray(10)), version=status.version
            )
            == 0
        )
    assert len(spy.lean) == 4 and spy.client_gets == []
    writer.write("end.bin", payload(1000, seed=5))
    with pytest.raises(VersionChanged):
        await backend.read_into("end.bin", 1000, memoryview(bytearray(10)), version=status.version)


async def test_missing_key_on_the_lean_path(backend: S3Backend, prefix: str) -> None:
    with pytest.raises(NotFound) as info:
        await backend.read("no/such.bin", 0, 10)
    assert str(info.value) == f"no such file: s3://{BUCKET}/{prefix}/no/such.bin"


async def test_several_buffers_in_one_lean_get(backend: S3Backend, writer: S3Writer) -> None:
    block = 64 << 10
    data = payload(4 * block + 100, seed=7)
    writer.write("run.bin", data)
    status = await backend.stat("run.bin")
    spy = Spy(backend)
    buffers = [bytearray(block) for _ in range(5)]
    n = await backend.read_blocks_into(
        "run.bin", block, [memoryview(b) for b in buffers], version=status.version
    )
    assert n == 3 * block + 100
    assert b"".join(buffers)[:n] == data[block:]
    assert [(r["Range"], r["If-Match"]) for r in spy.lean] == [
        (f"bytes={block}-{6 * block - 1}", f'"{status.version}"')
    ]
    assert spy.client_gets == []


async def test_abort_stops_a_lean_get_before_the_buffer_is_written(
    backend: S3Backend, writer: S3Writer
) -> None:
    data = payload(3 << 20, seed=4)
    writer.write("big.bin", data)
    key = f"{writer.prefix}/big.bin"
    abort = threading.Event()
    abort.set()
    buf = bytearray(b"\xee" * len(data))
    spy = Spy(backend)
    with pytest.raises(ReadAborted):
        await asyncio.to_thread(backend._get_into_blocking, key, 0, [memoryview(buf)], None, abort)
    assert buf == b"\xee" * len(data)
    assert len(spy.lean) == 1 and spy.client_gets == []
    assert await backend.read("big.bin", 5, 10) == data[5:15]


async def test_wrong_credentials_are_one_clear_line(
    signed_s3: SeaweedS3, writer: S3Writer, prefix: str
) -> None:
    writer.write("f.bin", b"data")
    secret = "wrong-secret-do-not-print"
    ufs = lean_backend(signed_s3, prefix, **{"fs.s3.accessKeySecret": secret})
    try:
        with pytest.raises(PermissionDenied) as info:
            await ufs.read("f.bin", 0, 4)
        message = str(info.value)
        assert "\n" not in message and secret not in message
        assert message.startswith(f"access to s3://{BUCKET}/{prefix}/f.bin denied")
        assert "fs.s3.accessKeySecret" in message
        assert ufs._lean._base is None  # the lean path learns only from a success
    finally:
        await ufs.close()


async def test_a_refused_lean_request_falls_back_and_turns_the_path_off(
    backend: S3Backend, writer: S3Writer
) -> None:
    """As if our signature were wrong where the client's is right: the read still
    returns the right bytes (through the client) and later GETs skip the lean path."""
    writer.write("f.bin", payload(300, seed=3))
    backend._lean._credentials = Credentials(
        "cachecluster-test-key", "not-the-secret"
    )  # only the lean path signs with these
    spy = Spy(backend)
    assert await backend.read("f.bin", 0, 300) == payload(300, seed=3)
    assert len(spy.lean) == 1 and len(spy.client_gets) == 1
    assert not backend._lean.usable
    assert await backend.read("f.bin", 1, 2) == payload(300, seed=3)[1:3]
    assert len(spy.lean) == 1 and len(spy.client_gets) == 2
    backend._lean.usable = True  # for the fixture's check: this test turned it off on purpose


async def test_a_lean_try_without_answer_is_retried_and_lets_go_of_the_buffer(
    backend: S3Backend, writer: S3Writer
) -> None:
    data = payload(5000, seed=8)
    writer.write("r.bin", data)
    refused: list[str] = []

    def refuse_once(request: Any, **_: Any) -> None:  # as if the pooled connection had died
        if "amz-sdk-invocation-id" not in request.headers and not refused:
            refused.append(request.url)
            raise botocore.exceptions.EndpointConnectionError(endpoint_url=request.url)

    backend._client.meta.events.register("before-send.s3.GetObject", refuse_once)
    buf = bytearray(5000)
    assert await backend.read_into("r.bin", 0, memoryview(buf)) == 5000
    assert buf == data and len(refused) == 1 and backend._retry_client is not None
    buf.append(0)  # a BufferError here means something still holds a view of it
    assert backend._lean.usable


async def test_connection_refused_on_the_lean_path_retries_then_is_unavailable(
    writer: S3Writer, prefix: str
) -> None:
    server = SeaweedS3.start(check_signatures=True)
    try:
        server.create_bucket(BUCKET)
        own = S3Writer(server.client(), BUCKET, prefix)
        ufs = lean_backend(server, prefix)
        try:
            await warm(ufs, own)
            spy = Spy(ufs)
            retries: list[str] = []
            ufs._client_for_retries().meta.events.register(
                "before-send.s3.GetObject", lambda request, **_: retries.append(request.url)
            )
            server.stop()
            with pytest.raises(Unavailable) as info:
                await ufs.read("gone.bin", 0, 10)
            message = str(info.value)
            assert server.endpoint in message and f"s3://{BUCKET}/{prefix}/gone.bin" in message
            # One lean try, then the client's standard policy for the three retries.
            assert len(spy.lean) == 1 and len(retries) == 3 and spy.client_gets == []
            assert ufs._lean.usable
        finally:
            await ufs.close()
    finally:
        server.stop()


async def test_session_token_is_signed_on_the_lean_path(s3_server: SeaweedS3, prefix: str) -> None:
    # SeaweedFS without STS cannot check a token: this server takes any request;
    # what is checked is that the token goes out, signed.
    s3_server.create_bucket(BUCKET)
    own = S3Writer(s3_server.client(), BUCKET, prefix)
    ufs = lean_backend(s3_server, prefix, **{"fs.s3.sessionToken": "token-123"})
    try:
        await warm(ufs, own)
        spy = Spy(ufs)
        own.write("t.bin", b"tokened")
        assert await ufs.read("t.bin", 0, 100) == b"tokened"
        (sent,) = spy.lean
        assert sent["X-Amz-Security-Token"] == "token-123"
        signed = sent["Authorization"].partition("SignedHeaders=")[2].partition(",")[0]
        assert "x-amz-security-token" in signed.split(";")
    finally:
        await ufs.close()


@pytest.mark.parametrize(
    ("status", "body", "retry"),
    [
        (503, b"<Error><Code>SlowDown</Code><Message>slow</Message></Error>", True),
        (500, b"not xml at all", True),
        (400, b"<Error><Code>RequestTimeout</Code></Error>", True),
        (404, b"<Error><Code>NoSuchKey</Code></Error>", False),
        (412, b"<Error><Code>PreconditionFailed</Code></Error>", False),
        (403, b"", False),
    ],
)
def test_a_failed_lean_answer_is_judged_by_the_standard_retry_policy(
    status: int, body: bytes, retry: bool
) -> None:
    raw = urllib3.HTTPResponse(body=io.BytesIO(body), status=status, preload_content=False)
    answer = AWSResponse("http://127.0.0.1/b/k", status, HTTPHeaders(), raw)
    model = botocore.session.get_session().get_service_model("s3").operation_model("GetObject")
    context = error_context(model, answer, None)
    assert StandardRetryConditions(max_attempts=4).is_retryable(context) is retry
    refused = botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert StandardRetryConditions(max_attempts=4).is_retryable(error_context(model, None, refused))
