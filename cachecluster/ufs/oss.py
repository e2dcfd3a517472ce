"""Alibaba Cloud OSS as a UFS: ``oss://bucket/dir``, through the ``oss2`` SDK.

Options, named as JindoRuntime and Alluxio name them (see ``docs/ufs.md``):

- ``fs.oss.endpoint`` (required): ``oss-cn-hangzhou-internal.aliyuncs.com`` or a URL;
  ``https://`` is added when no scheme is given. An IP endpoint such as
  ``http://127.0.0.1:9000`` is addressed path-style (``/bucket/key``) by oss2.
- ``fs.oss.accessKeyId``, ``fs.oss.accessKeySecret``, ``fs.oss.securityToken`` (STS).
  Without keys: ``OSS_ACCESS_KEY_ID``/``OSS_ACCESS_KEY_SECRET``(/``OSS_SESSION_TOKEN``)
  from the environment, else anonymous access (public buckets).
- ``fs.oss.partSize``, ``fs.oss.readParallelism``, ``fs.oss.maxConnections``.

OSS answers a Range it considers invalid (a start past the end) with the whole
object and status 200. Reads send ``x-oss-range-behavior: standard`` (which
turns that into a 416) and also check the status and ``Content-Range`` of every
answer, never reading a body that is not the range asked for.
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

import oss2
import oss2.exceptions
import requests.exceptions
import urllib3.exceptions

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

OSS_OPTIONS: dict[str, tuple[str, ...]] = {
    "fs.oss.endpoint": (),
    "fs.oss.accessKeyId": (),
    "fs.oss.accessKeySecret": (),
    "fs.oss.securityToken": (),
    "fs.oss.partSize": (),
    "fs.oss.readParallelism": (),
    "fs.oss.maxConnections": (),
}

_DENIED_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "SecurityTokenExpired"}
)
_LIST_PAGE = 1000  # the most OSS returns in one ListObjectsV2 page


class OssBackend(ObjectStoreBackend):
    """An OSS bucket (and optional prefix) read through oss2."""

    schemes: ClassVar[tuple[str, ...]] = ("oss",)

    def __init__(self, uri: str, options: Mapping[str, str] | None = None) -> None:
        reader = OptionReader(options or {}, "fs.oss.", OSS_OPTIONS, "an OSS UFS")
        max_connections = reader.count("fs.oss.maxConnections", DEFAULT_MAX_CONNECTIONS)
        super().__init__(
            uri,
            options,
            part_size=reader.size("fs.oss.partSize", DEFAULT_PART_SIZE, minimum=64 << 10),
            read_parallelism=reader.count("fs.oss.readParallelism", DEFAULT_READ_PARALLELISM),
            max_connections=max_connections,
        )
        endpoint = reader.text("fs.oss.endpoint")
        if endpoint is None:
            raise ConfigError(
                "fs.oss.endpoint", f"required for {uri} (e.g. oss-cn-hangzhou.aliyuncs.com)"
            )
        self.endpoint = with_scheme(endpoint)
        key_id = reader.text("fs.oss.accessKeyId")
        secret = reader.text("fs.oss.accessKeySecret")
        token = reader.text("fs.oss.securityToken")
        if bool(key_id) != bool(secret):
            missing = "fs.oss.accessKeySecret" if key_id else "fs.oss.accessKeyId"
            raise ConfigError(missing, "give both fs.oss.accessKeyId and fs.oss.accessKeySecret")
        if not key_id:
            key_id = os.environ.get("OSS_ACCESS_KEY_ID") or None
            secret = os.environ.get("OSS_ACCESS_KEY_SECRET") or None
            token = token or os.environ.get("OSS_SESSION_TOKEN") or None
        self._secrets = tuple(value for value in (secret, token) if value)
        auth: Any
        if key_id and secret:
            auth = oss2.StsAuth(key_id, secret, token) if token else oss2.Auth(key_id, secret)
        else:
            auth = oss2.AnonymousAuth()
        self._session = oss2.Session(pool_size=max_connections)
        try:
            self._bucket = oss2.Bucket(
                auth,
                self.endpoint,
                self.bucket,
                session=self._session,
                connect_timeout=10,
                enable_crc=False,  # ranged reads carry no CRC; we read the raw body
            )
        except (ValueError, oss2.exceptions.ClientError) as exc:
            raise ConfigError("fs.oss.endpoint", self._scrub(str(exc))) from exc

    # -- errors -----------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _map_error(self, exc: Exception, key: str) -> CacheClusterError:
        where = self.display(key)
        if isinstance(
            exc,
            oss2.exceptions.RequestError
            | requests.exceptions.ConnectionError
            | requests.exceptions.Timeout
            | http.client.HTTPException
            | urllib3.exceptions.HTTPError
            | ConnectionError
            | TimeoutError,
        ):
            return Unavailable(
                f"cannot reach OSS at {self.endpoint} for {where}: {type(exc).__name__}"
            )
        if isinstance(exc, oss2.exceptions.OssError):
            status = int(getattr(exc, "status", 0) or 0)
            code = str(getattr(exc, "code", "") or "")
            message = self._scrub(str(getattr(exc, "message", "") or ""))
            request_id = getattr(exc, "request_id", "") or ""
            detail = "; ".join(
                part
                for part in (
                    code or f"HTTP {status}",
                    message,
                    request_id and f"request id {request_id}",
                )
                if part
            )
            if code == "NoSuchBucket":
                return NotFound(f"no such bucket: {self.display('')}")
            if status == 404:
                return NotFound(f"no such file: {where}")
            if status == 412:
                return VersionChanged(f"{where} changed: its ETag no longer matches")
            if status == 403 or code in _DENIED_CODES:
                return PermissionDenied(
                    f"access to {where} denied by OSS ({detail}): check fs.oss.accessKeyId "
                    "and fs.oss.accessKeySecret"
                )
            if status >= 500:
                return Unavailable(f"OSS failed for {where}: {detail}")
            if status < 0:  # oss2 reports client-side failures with negative statuses
                return Unavailable(f"OSS request for {where} failed: {detail}")
            return UfsError(f"OSS error for {where}: HTTP {status} {detail}")
        return UfsError(
            f"OSS read of {where} failed: {type(exc).__name__}: {self._scrub(str(exc))}"
        )

    # -- blocking primitives -------------------------------------------------------

    def _head_blocking(self, key: str) -> ObjectInfo | None:
        try:
            result = self._bucket.head_object(key)
        except oss2.exceptions.NotFound as exc:
            if getattr(exc, "code", "") == "NoSuchBucket":
                raise
            return None
        return ObjectInfo(
            key=key,
            size=int(result.content_length or 0),
            etag=strip_etag(result.etag),
            mtime=float(result.last_modified or 0),
        )

    def _list_blocking(self, prefix: str, delimiter: str, limit: int | None) -> Listing:
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        token = ""
        while True:
            page_size = _LIST_PAGE if limit is None else max(1, min(limit, _LIST_PAGE))
            result = self._bucket.list_objects_v2(
                prefix=prefix, delimiter=delimiter, continuation_token=token, max_keys=page_size
            )
            for item in result.object_list:
                objects.append(
                    ObjectInfo(
                        key=item.key,
                        size=int(item.size),
                        etag=strip_etag(item.etag),
                        mtime=float(item.last_modified or 0),
                    )
                )
            prefixes.extend(result.prefix_list)
            if limit is not None and len(objects) + len(prefixes) >= limit:
                break
            if not result.is_truncated or not result.next_continuation_token:
                break
            token = result.next_continuation_token
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
        headers = {"x-oss-range-behavior": "standard"}
        if etag is not None:
            headers["If-Match"] = f'"{etag}"'
        try:
            result = self._bucket.get_object(key, byte_range=(start, end), headers=headers)
        except oss2.exceptions.OssError as exc:
            if getattr(exc, "status", None) == 416:
                forget_locals(exc)
                return self._past_end(key, start, etag)
            raise
        return self._receive_range(
            key,
            start,
            views,
            result.resp.response.raw,
            partial=result.status == 206,
            length=int(result.content_length or 0),
            content_range=result.content_range,
            abort=abort,
            filled=filled,
        )

    def _close_blocking(self) -> None:
        self._session.session.close()
