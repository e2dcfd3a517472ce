"""Bearer tokens on gRPC channels: one client interceptor adds ``authorization`` to every call.

A channel built with :func:`auth_interceptors` asks its ``token_source`` for a
token on each call (``None``: send none, the open/dev mode). Workers pass a
source that mints a fresh :data:`~cachecluster.common.auth.SYSTEM_NAMESPACE`
token from the cluster secret; clients pass their namespace token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from cachecluster.common.auth import SYSTEM_NAMESPACE, bearer, issue_token

TokenSource = Callable[[], str | None]

SYSTEM_TOKEN_TTL = 300.0
"""Seconds a worker's self-minted token is valid (it mints one per call)."""


def _with_token(details: Any, token_source: TokenSource) -> Any:
    token = token_source()
    if token is None:
        return details
    metadata = list(details.metadata or ())
    metadata.append(bearer(token))
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=grpc.aio.Metadata(*metadata),
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token_source: TokenSource) -> None:
        self._source = token_source

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._source), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token_source: TokenSource) -> None:
        self._source = token_source

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._source), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, token_source: TokenSource) -> None:
        self._source = token_source

    async def intercept_stream_unary(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(details, self._source), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, token_source: TokenSource) -> None:
        self._source = token_source

    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(details, self._source), request_iterator)


def auth_interceptors(token_source: TokenSource) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=...)``."""
    return [
        _UnaryUnary(token_source),
        _UnaryStream(token_source),
        _StreamUnary(token_source),
        _StreamStream(token_source),
    ]


def system_token_source(secret: bytes | None) -> TokenSource:
    """Mint a fresh system token per call from ``secret``; no token without one."""
    if secret is None:
        return lambda: None
    return lambda: issue_token(secret, SYSTEM_NAMESPACE, SYSTEM_TOKEN_TTL)
