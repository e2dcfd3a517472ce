"""A small OSS-protocol server for tests: in memory, on 127.0.0.1, checking V1 signatures.

No OSS server is available from the registries we reach, so this speaks just
enough of the OSS REST API for ``oss2`` and our backend, path-style
(``/bucket/key``, which oss2 uses for IP endpoints):

- PutBucket, DeleteBucket; PutObject (``Content-MD5`` checked), GetObject and
  HeadObject (``Range``; ``If-Match``/``If-None-Match``; without
  ``x-oss-range-behavior: standard`` an unsatisfiable range gets the whole
  object with 200, as OSS does), DeleteObject;
- ListObjects (V1: marker) and ListObjectsV2 (``list-type=2``: continuation
  token, start-after), with prefix, delimiter, max-keys, ``encoding-type=url``.

Every request must carry ``Authorization: OSS <AccessKeyId>:<Signature>`` with
Signature = base64(HMAC-SHA1(secret, VERB \\n Content-MD5 \\n Content-Type \\n
Date \\n CanonicalizedOSSHeaders CanonicalizedResource)), and a ``Date`` within
15 minutes; failures get OSS's 403 XML errors (``InvalidAccessKeyId``,
``SignatureDoesNotMatch``, ``RequestTimeTooSkewed``, ``AccessDenied``).
Objects carry no CRC64 header (oss2 then skips its CRC check).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import email.utils
import hashlib
import hmac
import http.server
import itertools
import socket
import threading
import time
import urllib.parse
from types import TracebackType
from xml.sax.saxutils import escape

ACCESS_KEY_ID = "LTAI-cachecluster-test"
ACCESS_KEY_SECRET = "oss-test-secret-5d1f0c"  # a test credential, not a real one
MAX_CLOCK_SKEW_S = 15 * 60

# Query parameters that are part of the signed resource (OSS "sub-resources").
# fmt: off
SUBRESOURCES = frozenset({
    "acl", "uploads", "location", "cors", "logging", "website", "referer", "lifecycle", "delete",
    "append", "tagging", "objectMeta", "uploadId", "partNumber", "security-token", "position",
    "img", "style", "styleName", "replication", "replicationProgress", "replicationLocation",
    "cname", "bucketInfo", "comp", "qos", "live", "status", "vod", "startTime", "endTime",
    "symlink", "x-oss-process", "response-content-type", "response-content-language",
    "response-expires", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "udf", "udfName", "udfImage", "udfId", "udfImageDesc",
    "udfApplication", "udfApplicationLog", "restore", "callback", "callback-var",
    "continuation-token", "versions", "versioning", "versionId", "policy", "requestPayment",
    "encryption", "inventory", "inventoryId", "worm", "wormId", "wormExtend", "stat",
    "objectInfo", "group", "link", "x-oss-traffic-limit", "sequential", "asyncFetch", "qosInfo",
    "transferAcceleration", "metaQuery", "resourceGroup", "regionList",
})
# fmt: on


@dataclasses.dataclass(frozen=True, slots=True)
class StoredObject:
    """One object: its bytes and what OSS reports about them."""

    data: bytes
    etag: str  # upper-case hex MD5, no quotes
    mtime: float
    content_type: str


class OssError(Exception):
    """An error answer: HTTP status, OSS code, message and extra XML fields."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def sign_v1(secret: str, string_to_sign: str) -> str:
    """The OSS V1 signature of ``string_to_sign``."""
    digest = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def string_to_sign(
    method: str, headers: dict[str, str], bucket: str, key: str, query: list[tuple[str, str]]
) -> str:
    """What OSS signs for a request (``headers`` with lower-case names)."""
    oss_headers = sorted((k, v.strip()) for k, v in headers.items() if k.startswith("x-oss-"))
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in oss_headers)
    resource = f"/{bucket}/{key}" if bucket else "/"
    subresources = sorted((k, v) for k, v in query if k in SUBRESOURCES)
    if subresources:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subresources)
    return "\n".join(
        [
            method,
            headers.get("content-md5", ""),
            headers.get("content-type", ""),
            headers.get("date", ""),
            canonical_headers + resource,
        ]
    )


def _encode_token(last_key: str) -> str:
    """An opaque continuation token (OSS's are opaque too) naming where a page ended."""
    return base64.urlsafe_b64encode(last_key.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise OssError(400, "InvalidArgument", "The continuation token is not valid.") from None


def _iso8601(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


class _OssHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AliyunOSS"
    sys_version = ""
    timeout = 30
    server: _OssHttpServer

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet: tests read failures from assertions, not access logs

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    # -- plumbing ---------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes | memoryview = b"",
        headers: dict[str, str] | None = None,
        *,
        content_length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("x-oss-request-id", self.request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        length = len(body) if content_length is None else content_length
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_error(self, error: OssError, bucket: str, key: str) -> None:
        fields = {"Code": error.code, "Message": error.message, "RequestId": self.request_id}
        fields["HostId"] = f"{bucket}.127.0.0.1" if bucket else "127.0.0.1"
        if bucket:
            fields["BucketName"] = bucket
        if key:
            fields["Key"] = key
        fields.update(error.extra)
        xml = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
        body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{xml}</Error>\n'.encode()
        self._send(error.status, body, {"Content-Type": "application/xml"})

    def _dispatch(self) -> None:
        self.request_id = self.server.next_request_id()
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
        bucket, _, key = urllib.parse.unquote(parsed.path).lstrip("/").partition("/")
        try:
            body = self._read_body()
            self._authenticate(bucket, key, query)
            self.server.store.handle(self, self.command, bucket, key, dict(query), body)
        except OssError as error:
            self._send_error(error, bucket, key)

    def _read_body(self) -> bytes:
        """The request body: by Content-Length, or chunked (oss2 sends empty bodies chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise OssError(400, "InvalidArgument", "Bad chunked encoding.") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authenticate(self, bucket: str, key: str, query: list[tuple[str, str]]) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        authorization = headers.get("authorization", "")
        if not authorization.startswith("OSS ") or ":" not in authorization:
            raise OssError(403, "AccessDenied", "You have no right to access this object.")
        key_id, _, signature = authorization[4:].strip().rpartition(":")
        secret = self.server.credentials.get(key_id)
        if secret is None:
            raise OssError(
                403,
                "InvalidAccessKeyId",
                "The OSS Access Key Id you provided does not exist in our records.",
                OSSAccessKeyId=key_id,
            )
        date = headers.get("date", "")
        try:
            sent_at = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            raise OssError(403, "AccessDenied", "Invalid date format in the Date header.") from None
        if abs(time.time() - sent_at) > MAX_CLOCK_SKEW_S:
            raise OssError(
                403,
                "RequestTimeTooSkewed",
                "The difference between the request time and the current time is too large.",
            )
        to_sign = string_to_sign(self.command, headers, bucket, key, query)
        if not hmac.compare_digest(sign_v1(secret, to_sign), signature):
            raise OssError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you "
                "provided. Check your key and signing method.",
                OSSAccessKeyId=key_id,
                SignatureProvided=signature,
                StringToSign=to_sign,
            )

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _dispatch


class _OssStore:
    """The buckets and objects, and the operations on them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buckets: dict[str, dict[str, StoredObject]] = {}
        # False: behave like an OSS that ignores x-oss-range-behavior (whole object, 200).
        self.honour_range_behavior = True

    def _bucket(self, name: str) -> dict[str, StoredObject]:
        found = self.buckets.get(name)
        if found is None:
            raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.")
        return found

    def handle(
        self,
        req: _OssHandler,
        method: str,
        bucket: str,
        key: str,
        query: dict[str, str],
        body: bytes,
    ) -> None:
        if not bucket:
            raise OssError(501, "NotImplemented", "ListBuckets is not supported here.")
        if not key:
            if method == "PUT" and not query:
                with self.lock:
                    self.buckets.setdefault(bucket, {})
                return req._send(200)
            if method == "DELETE" and not query:
                with self.lock:
                    if self._bucket(bucket):
                        raise OssError(409, "BucketNotEmpty", "The bucket is not empty.")
                    del self.buckets[bucket]
                return req._send(204)
            if method == "GET" and not (set(query) & SUBRESOURCES - {"continuation-token"}):
                return self._list(req, bucket, query)
        elif method == "PUT" and not query:
            return self._put(req, bucket, key, body)
        elif method in ("GET", "HEAD") and not (set(query) & SUBRESOURCES):
            return self._get(req, bucket, key)
        elif method == "DELETE" and not query:
            with self.lock:
                self._bucket(bucket).pop(key, None)
            return req._send(204)
        raise OssError(501, "NotImplemented", f"{method} with {sorted(query)} is not supported.")

    def _put(self, req: _OssHandler, bucket: str, key: str, body: bytes) -> None:
        digest = hashlib.md5(body).digest()
        sent_md5 = req.headers.get("Content-MD5")
        if sent_md5 and sent_md5 != base64.b64encode(digest).decode():
            raise OssError(400, "InvalidDigest", "The Content-MD5 you specified is not valid.")
        content_type = req.headers.get("Content-Type") or "application/octet-stream"
        obj = StoredObject(body, digest.hex().upper(), time.time(), content_type)
        with self.lock:
            self._bucket(bucket)[key] = obj
        req._send(200, headers={"ETag": f'"{obj.etag}"'})

    def _get(self, req: _OssHandler, bucket: str, key: str) -> None:
        with self.lock:
            obj = self._bucket(bucket).get(key)
        if obj is None:
            raise OssError(404, "NoSuchKey", "The specified key does not exist.")
        quoted = f'"{obj.etag}"'
        if_match = req.headers.get("If-Match")
        if if_match is not None and if_match.strip().strip('"') != obj.etag:
            raise OssError(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold.",
                Condition="If-Match",
            )
        if_none_match = req.headers.get("If-None-Match")
        if if_none_match is not None and if_none_match.strip().strip('"') == obj.etag:
            return req._send(304, headers={"ETag": quoted})
        headers = {
            "ETag": quoted,
            "Last-Modified": email.utils.formatdate(obj.mtime, usegmt=True),
            "Content-Type": obj.content_type,
            "Accept-Ranges": "bytes",
            "x-oss-object-type": "Normal",
            "x-oss-storage-class": "Standard",
        }
        size = len(obj.data)
        span = self._range(req.headers.get("Range"), size)
        if span is None:
            standard = req.headers.get("x-oss-range-behavior", "").lower() == "standard"
            if standard and self.honour_range_behavior and req.headers.get("Range"):
                raise OssError(
                    416,
                    "InvalidRange",
                    "The requested range is not satisfiable.",
                    ActualObjectSize=str(size),
                )
            return req._send(200, memoryview(obj.data), headers)
        first, last = span
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        req._send(206, memoryview(obj.data)[first : last + 1], headers)

    @staticmethod
    def _range(header: str | None, size: int) -> tuple[int, int] | None:
        """The satisfiable byte span of a single ``bytes=`` range, else ``None``."""
        if not header or not header.startswith("bytes=") or "," in header:
            return None
        first_text, _, last_text = header[len("bytes=") :].strip().partition("-")
        try:
            if not first_text:  # suffix: the last N bytes
                count = int(last_text)
                return (max(0, size - count), size - 1) if count > 0 and size else None
            first = int(first_text)
            last = int(last_text) if last_text else size - 1
        except ValueError:
            return None
        if first >= size or last < first:
            return None
        return first, min(last, size - 1)

    def _list(self, req: _OssHandler, bucket: str, query: dict[str, str]) -> None:
        v2 = query.get("list-type") == "2"
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        url_encode = query.get("encoding-type") == "url"
        try:
            max_keys = int(query.get("max-keys", "100"))
        except ValueError:
            raise OssError(400, "InvalidArgument", "max-keys is not a number.") from None
        if not 0 <= max_keys <= 1000:
            raise OssError(400, "InvalidArgument", "max-keys must be between 0 and 1000.")
        if v2:
            token = query.get("continuation-token", "")
            start = _decode_token(token) if token else query.get("start-after", "")
        else:
            start = query.get("marker", "")
        with self.lock:
            objects = sorted(self._bucket(bucket).items())
        contents: list[tuple[str, StoredObject]] = []
        prefixes: list[str] = []
        truncated = False
        last = ""
        for name, obj in objects:
            if name <= start or not name.startswith(prefix):
                continue
            if delimiter and start.endswith(delimiter) and name.startswith(start):
                continue  # inside the common prefix that ended the previous page
            cut = name.find(delimiter, len(prefix)) if delimiter else -1
            common = name[: cut + len(delimiter)] if cut >= 0 else None
            if common is not None and prefixes and prefixes[-1] == common:
                continue
            if len(contents) + len(prefixes) >= max_keys:
                truncated = True
                break
            if common is not None:
                prefixes.append(common)
                last = common
            else:
                contents.append((name, obj))
                last = name

        def enc(text: str) -> str:
            return escape(urllib.parse.quote(text, safe="/") if url_encode else text)

        parts = [f"<Name>{escape(bucket)}</Name>", f"<Prefix>{enc(prefix)}</Prefix>"]
        if v2:
            if query.get("continuation-token"):
                parts.append(
                    f"<ContinuationToken>{escape(query['continuation-token'])}</ContinuationToken>"
                )
            if query.get("start-after"):
                parts.append(f"<StartAfter>{enc(query['start-after'])}</StartAfter>")
        else:
            parts.append(f"<Marker>{enc(start)}</Marker>")
        parts.append(f"<MaxKeys>{max_keys}</MaxKeys>")
        parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
        if url_encode:
            parts.append("<EncodingType>url</EncodingType>")
        parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
        if truncated:
            if v2:
                parts.append(
                    f"<NextContinuationToken>{_encode_token(last)}</NextContinuationToken>"
                )
            else:
                parts.append(f"<NextMarker>{enc(last)}</NextMarker>")
        if v2:
            parts.append(f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>")
        for name, obj in contents:
            parts.append(
                f"<Contents><Key>{enc(name)}</Key><LastModified>{_iso8601(obj.mtime)}"
                f"</LastModified><ETag>&quot;{obj.etag}&quot;</ETag><Type>Normal</Type>"
                f"<Size>{len(obj.data)}</Size><StorageClass>Standard</StorageClass>"
                + ("" if v2 else "<Owner><ID>0</ID><DisplayName>0</DisplayName></Owner>")
                + "</Contents>"
            )
        parts.extend(
            f"<CommonPrefixes><Prefix>{enc(p)}</Prefix></CommonPrefixes>" for p in prefixes
        )
        xml = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult>{"".join(parts)}'
            "</ListBucketResult>\n"
        )
        req._send(200, xml.encode(), {"Content-Type": "application/xml"})


class _OssHttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the request threads
    block_on_close = True

    def __init__(self, credentials: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), _OssHandler)
        self.credentials = credentials
        self.store = _OssStore()
        self._ids = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def next_request_id(self) -> str:
        return f"{int(time.time()):X}{next(self._ids):012X}"

    def track(self, connection: socket.socket, opened: bool) -> None:
        with self._connections_lock:
            if opened:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def drop_connections(self) -> None:
        """Shut every open keep-alive connection so its thread ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class OssTestServer:
    """The server running in a thread; a context manager that stops it.

    ``honour_range_behavior=False`` makes it answer every unsatisfiable range
    with the whole object and 200, even with ``x-oss-range-behavior: standard``
    (the OSS quirk a client must survive).
    """

    def __init__(
        self, credentials: dict[str, str] | None = None, *, honour_range_behavior: bool = True
    ) -> None:
        self.access_key_id = ACCESS_KEY_ID
        self.access_key_secret = ACCESS_KEY_SECRET
        self._httpd = _OssHttpServer(credentials or {ACCESS_KEY_ID: ACCESS_KEY_SECRET})
        self._httpd.store.honour_range_behavior = honour_range_behavior
        port = self._httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="oss-test-server"
        )
        self._thread.start()
        self._stopped = False

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` directly in the store (no request)."""
        with self._httpd.store.lock:
            self._httpd.store.buckets.setdefault(name, {})

    def backend_options(self) -> dict[str, str]:
        """Mount options that point our OSS backend at this server."""
        return {
            "fs.oss.endpoint": self.endpoint,
            "fs.oss.accessKeyId": self.access_key_id,
            "fs.oss.accessKeySecret": self.access_key_secret,
        }

    def stop(self) -> None:
        """Stop serving, close open connections, join every thread. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._httpd.shutdown()
        self._httpd.drop_connections()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> OssTestServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
