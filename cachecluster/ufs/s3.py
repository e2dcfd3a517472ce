"""Amazon S3 and S3-compatible stores (SeaweedFS, MinIO, Ceph RGW) as a UFS: ``s3://bucket/dir``.

One botocore client per backend, its connection pool sized to the backend's
thread pool. HEAD and LIST go through the client; a ranged GET goes out as one
request signed by botocore over the client's own HTTP session (``s3_get.py``:
about a third of ``get_object``'s CPU), and the client takes over whenever that
try gets no usable answer. Options (a mount's ``options``/``encryptOptions``; aliases in
brackets, from Alluxio and Hadoop s3a):

- ``fs.s3.endpoint`` [``alluxio.underfs.s3.endpoint``, ``fs.s3a.endpoint``]
- ``fs.s3.region`` [``alluxio.underfs.s3.endpoint.region``, ``alluxio.underfs.s3.region``,
  ``fs.s3a.endpoint.region``]
- ``fs.s3.accessKeyId`` [``aws.accessKeyId``, ``fs.s3a.access.key``]
- ``fs.s3.accessKeySecret`` [``aws.secretKey``, ``fs.s3a.secret.key``]
- ``fs.s3.sessionToken`` [``aws.sessionToken``, ``fs.s3a.session.token``]
- ``fs.s3.pathStyle`` [``alluxio.underfs.s3.disable.dns.buckets``, ``fs.s3a.path.style.access``]
- ``fs.s3.partSize``, ``fs.s3.readParallelism``, ``fs.s3.maxConnections``

Without keys, boto3's default chain applies (environment, ``~/.aws``, instance role).
See ``docs/ufs.md`` for defaults.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import boto3
import botocore.exceptions
import urllib3.exceptions
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.retries.standard import (
    ExponentialBackoff,
    RetryContext,
    RetryEventAdapter,
    StandardRetryConditions,
    ThrottlingErrorDetector,
)

from cachecluster.common.errors import (
    CacheClusterError,
    ConfigError,
    NotFound,
    PermissionDenied,
    UfsError,
    Unavailable,
    VersionChanged,
)
from cachecluster.ufs.base import Filled
from cachecluster.ufs.object_store import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PART_SIZE,
    DEFAULT_READ_PARALLELISM,
    Listing,
    ObjectInfo,
    ObjectStoreBackend,
    OptionReader,
    ReadAborted,
    finish_response,
    strip_etag,
    with_scheme,
)
from cachecluster.ufs.s3_get import SEND_ERRORS, LeanGet, error_context
from cachecluster.ufs.threads import forget_locals

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_OPTIONS: dict[str, tuple[str, ...]] = {
    "fs.s3.endpoint": ("alluxio.underfs.s3.endpoint", "fs.s3a.endpoint"),
    "fs.s3.region": (
        "alluxio.underfs.s3.endpoint.region",
        "alluxio.underfs.s3.region",
        "fs.s3a.endpoint.region",
    ),
    "fs.s3.accessKeyId": ("aws.accessKeyId", "fs.s3a.access.key"),
    "fs.s3.accessKeySecret": ("aws.secretKey", "fs.s3a.secret.key"),
    "fs.s3.sessionToken": ("aws.sessionToken", "fs.s3a.session.token"),
    "fs.s3.pathStyle": ("alluxio.underfs.s3.disable.dns.buckets", "fs.s3a.path.style.access"),
    "fs.s3.partSize": (),
    "fs.s3.readParallelism": (),
    "fs.s3.maxConnections": (),
}

# Config(retries={"max_attempts": ...}) counts the retries after the first try:
# a GET is tried up to 4 times (botocore's standard mode).
_MAX_RETRIES = 3
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchBucket"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "ExpiredToken"}
)
_CONNECTION_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.HTTPClientError,
    http.client.HTTPException,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)


_shared_session: boto3.session.Session | None = None
_shared_session_lock = threading.Lock()


def _session_credentials() -> Credentials | None:
    """The shared session's default-chain credentials: the object its clients sign with."""
    with _shared_session_lock:
        assert _shared_session is not None, "no client was made yet"
        return _shared_session.get_credentials()


def _new_client(**kwargs: Any) -> S3Client:
    """A new S3 client from one process-wide boto3 session.

    A session loads botocore's service models (about 0.1 s); clients made from
    one session share them (a few ms each). Explicit keys go to the client, so
    backends with different credentials can share the session; without keys
    a client uses the session's default chain (environment, ~/.aws, role).
    """
    global _shared_session
    with _shared_session_lock:
        if _shared_session is None:
            _shared_session = boto3.session.Session()
        return _shared_session.client("s3", **kwargs)


class S3Backend(ObjectStoreBackend):
    """An S3 bucket (and optional prefix) read through boto3/botocore."""

    schemes: ClassVar[tuple[str, ...]] = ("s3",)

    @classmethod
    def warm_up(cls) -> None:
        """Create the shared session and one unsigned client (no credentials, no network):
        botocore loads the S3 model and endpoint rules once, so a first backend takes ms."""
        _new_client(region_name="us-east-1", config=Config(signature_version=UNSIGNED)).close()

    def __init__(self, uri: str, options: Mapping[str, str] | None = None) -> None:
        reader = OptionReader(options or {}, "fs.s3.", S3_OPTIONS, "an S3 UFS")
        max_connections = reader.count("fs.s3.maxConnections", DEFAULT_MAX_CONNECTIONS)
        super().__init__(
            uri,
            options,
            part_size=reader.size("fs.s3.partSize", DEFAULT_PART_SIZE, minimum=64 << 10),
            read_parallelism=reader.count("fs.s3.readParallelism", DEFAULT_READ_PARALLELISM),
            max_connections=max_connections,
        )
        endpoint = reader.text("fs.s3.endpoint")
        self.endpoint = with_scheme(endpoint) if endpoint else None
        self.region = reader.text("fs.s3.region")
        key_id = reader.text("fs.s3.accessKeyId")
        secret = reader.text("fs.s3.accessKeySecret")
        token = reader.text("fs.s3.sessionToken")
        if bool(key_id) != bool(secret):
            missing = "fs.s3.accessKeySecret" if key_id else "fs.s3.accessKeyId"
            raise ConfigError(missing, "give both fs.s3.accessKeyId and fs.s3.accessKeySecret")
        self._secrets = tuple(value for value in (secret, token) if value)
        path_style = reader.flag("fs.s3.pathStyle", default=False)
        config = Config(
            max_pool_connections=max_connections,
            connect_timeout=10,
            read_timeout=60,
            retries={"max_attempts": _MAX_RETRIES, "mode": "standard"},
            s3={"addressing_style": "path" if path_style else "auto"},
            # Ranged GETs cannot be checked against a whole-object checksum; we
            # read the raw body ourselves.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client_args: dict[str, Any] = {
            "endpoint_url": self.endpoint,
            "region_name": self.region,
            "aws_access_key_id": key_id,
            "aws_secret_access_key": secret,
            "aws_session_token": token,
            "config": config,
        }
        try:
            self._client: S3Client = _new_client(**self._client_args)
        except ValueError as exc:  # e.g. a malformed endpoint URL
            raise ConfigError(reader.field("fs.s3.endpoint"), self._scrub(str(exc))) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise ConfigError("fs.s3.*", self._scrub(str(exc))) from exc
        # Ranged GETs go out through ``_lean`` (see s3_get.py); the client
        # takes over whenever that first try does not succeed.
        credentials = (
            Credentials(key_id, secret, token) if key_id and secret else _session_credentials()
        )
        self._lean = LeanGet(self._client, self.bucket, credentials)
        self._retry_conditions = StandardRetryConditions(max_attempts=_MAX_RETRIES + 1)
        self._get_model = self._client.meta.service_model.operation_model("GetObject")
        # The back-off the client's own standard retry handler uses for S3.
        self._backoff = ExponentialBackoff(
            service_name="s3", throttling_detector=ThrottlingErrorDetector(RetryEventAdapter())
        )
        self._retry_client_lock = threading.Lock()
        self._retry_client: S3Client | None = None

    # -- errors -----------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _map_error(self, exc: Exception, key: str) -> CacheClusterError:
        where = self.display(key)
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            message = self._scrub(str(error.get("Message", "")))
            if code == "NoSuchBucket":
                return NotFound(f"no such bucket: {self.display('')}")
            if code in _NOT_FOUND_CODES or status == 404:
                return NotFound(f"no such file: {where}")
            if code == "PreconditionFailed" or status == 412:
                return VersionChanged(f"{where} changed: its ETag no longer matches")
            if code in _DENIED_CODES or status == 403:
                return PermissionDenied(
                    f"access to {where} denied ({code or status}): check fs.s3.accessKeyId "
                    "and fs.s3.accessKeySecret"
                )
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
                return Unavailable(f"S3 failed for {where}: {code} (HTTP {status}) {message}")
            return UfsError(f"S3 error for {where}: {code} (HTTP {status}) {message}".rstrip())
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return ConfigError(
                "fs.s3.accessKeyId",
                f"no credentials to read {where}: set fs.s3.accessKeyId and "
                "fs.s3.accessKeySecret, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            )
        if isinstance(exc, _CONNECTION_ERRORS):
            endpoint = self.endpoint or "the AWS endpoint"
            return Unavailable(
                f"cannot reach S3 at {endpoint} for {where}: "
                f"{type(exc).__name__}: {self._scrub(str(exc))}"
            )
        return UfsError(f"S3 read of {where} failed: {type(exc).__name__}: {self._scrub(str(exc))}")

    # -- blocking primitives -------------------------------------------------------

    def _head_blocking(self, key: str) -> ObjectInfo | None:
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 and error.get("Code") != "NoSuchBucket":
                return None
            raise
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            etag=strip_etag(response.get("ETag")),
            mtime=response["LastModified"].timestamp(),
        )

    def _list_blocking(self, prefix: str, delimiter: str, limit: int | None) -> Listing:
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if limit is not None:
            kwargs["PaginationConfig"] = {"MaxItems": limit, "PageSize": max(limit, 1)}
        for page in self._client.get_paginator("list_objects_v2").paginate(**kwargs):
            for item in page.get("Contents", []):
                objects.append(
                    ObjectInfo(
                        key=item["Key"],
                        size=int(item["Size"]),
                        etag=strip_etag(item.get("ETag")),
                        mtime=item["LastModified"].timestamp(),
                    )
                )
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []))
            if limit is not None and len(objects) + len(prefixes) >= limit:
                break
        return Listing(objects, prefixes)

    def _get_into_blocking(
        self,
        key: str,
        start: int,
        views: list[memoryview],
        etag: str | None,
        abort: threading.Event | None,
        filled: Filled | None = None,
    ) -> int:
        """A ranged GET: first one lean attempt, then the client if that did not succeed.

        The lean attempt (:class:`~cachecluster.ufs.s3_get.LeanGet`) serves
        200, 206 and 416. Any other answer, or no answer, goes to botocore's
        standard retry policy: when it says retry, the GET is sent again after
        its back-off through a client allowed the attempts that are left; when
        it does not (404, 403, 412, a redirect), the client asks once more and
        raises what it always raised, so errors map as before in ``_map_error``.
        """
        end = start + sum(len(view) for view in views) - 1
        byte_range = f"bytes={start}-{end}"
        if_match = None if etag is None else f'"{etag}"'
        try:
            answer = self._lean.send(key, byte_range, if_match)
            failure = None
        except SEND_ERRORS as exc:
            answer = None
            # Without its traceback: it would tie this frame (and ``views``) to itself.
            failure = error_context(self._get_model, None, exc.with_traceback(None))
        if answer is not None:
            status = answer.status_code
            if status in (200, 206):
                return self._receive_range(
                    key,
                    start,
                    views,
                    answer.raw,
                    partial=status == 206,
                    length=int(answer.headers.get("Content-Length", 0)),
                    content_range=answer.headers.get("Content-Range"),
                    abort=abort,
                    filled=filled,
                )
            if status == 416:
                finish_response(answer.raw)
                return self._past_end(key, start, etag)
            failure = error_context(self._get_model, answer, None)
            finish_response(answer.raw)
        client = self._client if failure is None else self._client_after(failure, abort)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Range": byte_range}
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            response = client.get_object(**kwargs)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416:
                forget_locals(exc)
                return self._past_end(key, start, etag)
            raise
        if client is self._client:
            if self._lean.learning:
                self._lean.learn(key)
            elif answer is not None:
                # The client got an answer where ours failed for good (a region
                # redirect, say): this bucket is not for the lean path.
                self._lean.disable()
        body = response["Body"]
        return self._receive_range(
            key,
            start,
            views,
            getattr(body, "_raw_stream", body),
            partial=response["ResponseMetadata"]["HTTPStatusCode"] == 206,
            length=int(response.get("ContentLength", 0)),
            content_range=response.get("ContentRange"),
            abort=abort,
            filled=filled,
        )

    def _client_after(self, failure: RetryContext, abort: threading.Event | None) -> S3Client:
        """The client to ask after the lean try failed: when botocore's standard policy
        retries ``failure``, after its back-off, the one with the retries left."""
        if not self._retry_conditions.is_retryable(failure):
            return self._client
        delay = self._backoff.delay_amount(failure)
        if abort is None:
            time.sleep(delay)
        elif abort.wait(delay):
            raise ReadAborted()
        return self._client_for_retries()

    def _client_for_retries(self) -> S3Client:
        """A client like ours allowed one retry fewer: the lean path made the first try."""
        with self._retry_client_lock:
            if self._retry_client is None:
                config = self._client_args["config"].merge(
                    Config(retries={"max_attempts": _MAX_RETRIES - 1, "mode": "standard"})
                )
                self._retry_client = _new_client(**(self._client_args | {"config": config}))
            return self._retry_client

    def _close_blocking(self) -> None:
        self._client.close()
        with self._retry_client_lock:
            if self._retry_client is not None:
                self._retry_client.close()
