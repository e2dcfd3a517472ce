"""Amazon S3 and S3-compatible stores (SeaweedFS, MinIO, Ceph RGW) as a UFS: ``s3://bucket/dir``.

One botocore client per backend, its connection pool sized to the backend's
thread pool. Options (a mount's ``options``/``encryptOptions``; aliases in
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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import boto3
import botocore.exceptions
import urllib3.exceptions
from botocore import UNSIGNED
from botocore.config import Config

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
    strip_etag,
    with_scheme,
)
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
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if path_style else "auto"},
            # Ranged GETs cannot be checked against a whole-object checksum; we
            # read the raw body ourselves.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            self._client: S3Client = _new_client(
                endpoint_url=self.endpoint,
                region_name=self.region,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                aws_session_token=token,
                config=config,
            )
        except ValueError as exc:  # e.g. a malformed endpoint URL
            raise ConfigError(reader.field("fs.s3.endpoint"), self._scrub(str(exc))) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise ConfigError("fs.s3.*", self._scrub(str(exc))) from exc

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
        end = start + sum(len(view) for view in views) - 1
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Range": f"bytes={start}-{end}",
        }
        if etag is not None:
            kwargs["IfMatch"] = f'"{etag}"'
        try:
            response = self._client.get_object(**kwargs)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416:
                forget_locals(exc)
                return self._past_end(key, start, etag)
            raise
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

    def _close_blocking(self) -> None:
        self._client.close()
