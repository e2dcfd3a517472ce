"""The ranged GET of an S3 object, sent without the botocore client's per-call machinery.

A ``client.get_object`` costs about 1 ms of CPU beyond the HTTP exchange
itself: the request is built from the service model, a dozen events are
emitted, the answer's headers are parsed into a dict (dates included). For the
worker's small ranged GETs that is most of the cost of a read. :class:`LeanGet`
keeps botocore for what it does well and skips the rest:

- where to send and how: learnt from the first GET the client sends and gets
  an answer to (its URL after endpoint resolution and any region redirect,
  the region in its signature, its User-Agent);
- credentials: the client's own (refreshing ones refresh through
  ``get_frozen_credentials``);
- signing: botocore's ``S3SigV4Auth`` (header signing, session token);
- hooks: the client's ``before-send.s3.GetObject`` handlers see each request;
- sending: the client's own HTTP session (its urllib3 pools sized by
  ``max_pool_connections``, its timeouts, proxies and TLS settings), which
  raises botocore's connection errors.

It sends one attempt and hands back the answer; what to do with an answer
other than 200/206/416 (retry, redirect, error parsing) stays with the client:
see :meth:`cachecluster.ufs.s3.S3Backend._get_into_blocking`.
"""

from __future__ import annotations

import contextlib
import threading
import xml.etree.ElementTree as ElementTree
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import botocore.exceptions
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.credentials import Credentials
from botocore.hooks import first_non_none_response
from botocore.httpsession import URLLib3Session
from botocore.model import OperationModel
from botocore.retries.standard import RetryContext

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# What the HTTP session raises when no answer came: botocore's connection errors.
SEND_ERRORS = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)


class LeanGet:
    """One signed ranged GetObject over an S3 client's connection pool.

    :meth:`send` returns ``None`` until :meth:`learn` has seen a GET the client
    sent, and for good when this path cannot serve the bucket (no
    credentials, a directory bucket or access point, a request not signed
    with SigV4, a botocore without the pieces used here, or :meth:`disable`
    was called): the caller then uses the client. Safe to use from many threads.
    """

    def __init__(self, client: S3Client, bucket: str, credentials: Credentials | None) -> None:
        self._credentials = credentials
        endpoint = getattr(client, "_endpoint", None)
        session = getattr(endpoint, "http_session", None)
        self._session = session if isinstance(session, URLLib3Session) else None
        self._sent = threading.local()  # the client's last GetObject request in this thread
        self._base: str | None = None  # scheme://host/path up to the key
        self._region = ""
        self._user_agent: str | None = None
        # Access points, Outposts and directory buckets sign differently (SigV4a,
        # S3 Express sessions): they stay with the client.
        self.usable = (
            credentials is not None
            and self._session is not None
            and not bucket.startswith("arn:")
            and not bucket.endswith("--x-s3")
        )
        self._events = client.meta.events
        if self.usable:
            self._events.register("before-send.s3.GetObject", self._record)

    @property
    def learning(self) -> bool:
        """Whether the next GET the client answers should be passed to :meth:`learn`."""
        return self.usable and self._base is None

    def disable(self) -> None:
        """Send every later GET through the client (its answer differed from ours)."""
        self.usable = False

    def _record(self, request: AWSPreparedRequest, **_: Any) -> None:
        # Until the model is learnt, every GetObject request is the client's.
        if self._base is None:
            self._sent.request = request

    def learn(self, key: str) -> None:
        """Take the GET of ``key`` the client just sent in this thread (and got an answer
        to) as the model for later ones: its URL, signing region and User-Agent."""
        request: AWSPreparedRequest | None = getattr(self._sent, "request", None)
        self._sent.request = None
        if request is None or self._base is not None:
            return
        suffix = quote(key, safe="/~")
        auth = _text(request.headers.get("Authorization"))
        scope = auth.partition("Credential=")[2].partition(",")[0].split("/")
        if (
            not auth.startswith("AWS4-HMAC-SHA256 ")
            or len(scope) < 5
            or scope[-2] != "s3"
            or not request.url.endswith("/" + suffix)
        ):
            self.usable = False
            return
        self._user_agent = _text(request.headers.get("User-Agent")) or None
        self._region = scope[-3]
        self._base = request.url[: len(request.url) - len(suffix)]

    def send(self, key: str, byte_range: str, if_match: str | None) -> AWSResponse | None:
        """One attempt at ``GET key`` with ``Range`` (and ``If-Match``); the body is not read.

        Raises one of :data:`SEND_ERRORS` when no answer came.
        """
        base = self._base
        if base is None or not self.usable or self._credentials is None or self._session is None:
            return None
        frozen = self._credentials.get_frozen_credentials()
        headers = {"Range": byte_range}
        if if_match is not None:
            headers["If-Match"] = if_match
        if self._user_agent is not None:
            headers["User-Agent"] = self._user_agent
        # Quoted as botocore's serializer quotes a greedy ``{Key+}`` label.
        request = AWSRequest("GET", base + quote(key, safe="/~"), headers)
        S3SigV4Auth(frozen, "s3", self._region).add_auth(request)
        for name, value in request.headers.items():  # as the client's endpoint does
            if isinstance(value, str):
                request.headers[name] = value.encode("utf-8")  # type: ignore[assignment]
        prepared = request.prepare()
        prepared.stream_output = True
        # Hooks on the client's ``before-send`` see this GET as they see the
        # client's own; one that answers it (a stubber) is the answer, as there.
        answered = first_non_none_response(
            self._events.emit("before-send.s3.GetObject", request=prepared)
        )
        response: AWSResponse = answered if answered is not None else self._session.send(prepared)
        return response


def _text(value: str | bytes | None) -> str:
    """A header value botocore prepared (often bytes) as text; ``""`` when absent."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value or ""


def error_context(
    operation: OperationModel, response: AWSResponse | None, exc: Exception | None
) -> RetryContext:
    """A first attempt's failure as botocore's standard retry policy sees it.

    ``operation`` is the client's GetObject model; ``response`` is an answer
    other than 200/206/416 (its body, an S3 error document, is read here);
    ``exc`` is the error when no answer came.
    """
    if response is None:
        return RetryContext(attempt_number=1, operation_model=operation, caught_exception=exc)
    body = response.content
    code: str | None = None
    with contextlib.suppress(ElementTree.ParseError):
        code = ElementTree.fromstring(body).findtext("Code") if body else None
    parsed: dict[str, Any] = {"ResponseMetadata": {"HTTPStatusCode": response.status_code}}
    if code:
        parsed["Error"] = {"Code": code}
    return RetryContext(
        attempt_number=1, operation_model=operation, parsed_response=parsed, http_response=response
    )
