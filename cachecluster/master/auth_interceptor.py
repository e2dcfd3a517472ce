"""Who is calling: the master's one authentication check, a gRPC server interceptor.

With a cluster secret every call but the health service needs a valid token
(``authorization: Bearer <token>``); the token's namespace is put in
:data:`CALLER` for the servicers (see :mod:`cachecluster.master.access`).
Worker calls (RegisterWorker, ReportBlocks, Heartbeat) and ``GetMount``, which
answers with UFS credentials, need the system namespace that workers sign
with the cluster secret. A missing or invalid token is ``UNAUTHENTICATED``; a
namespace token on a worker call is ``PERMISSION_DENIED``.

Without a secret (open/dev mode) nothing is checked and :data:`CALLER` stays
``None``, which the access rules read as "sees everything".
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from cachecluster.common.auth import SYSTEM_NAMESPACE, token_from_metadata, verify_token
from cachecluster.common.errors import PermissionDenied

log = logging.getLogger(__name__)

CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cachecluster_caller", default=None
)
"""The namespace of the current call's token; ``None`` in open mode."""

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
"""Methods anyone may call (health checks of Kubernetes probes and ``up``)."""

SYSTEM_METHODS = frozenset(
    {
        "/cachecluster.v1.MasterService/RegisterWorker",
        "/cachecluster.v1.MasterService/ReportBlocks",
        "/cachecluster.v1.MasterService/Heartbeat",
        "/cachecluster.v1.MetadataService/GetMount",
    }
)
"""Methods only workers (the system namespace) may call."""


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks the bearer token of every call and sets :data:`CALLER` for its handler."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _authenticate(self, method: str, metadata: Any) -> str:
        """The caller's namespace; raises ``PermissionDenied`` (with a gRPC code) otherwise."""
        token = token_from_metadata(metadata)
        if token is None:
            raise _Refusal(
                grpc.StatusCode.UNAUTHENTICATED,
                "this cluster needs a token: pass --token, set CACHECLUSTER_TOKEN "
                "or token= (`cachecluster token NAMESPACE` makes one)",
            )
        try:
            namespace = verify_token(self._secret, token)
        except PermissionDenied as exc:
            raise _Refusal(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None
        if method in SYSTEM_METHODS and namespace != SYSTEM_NAMESPACE:
            raise _Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method.rsplit('/', 1)[-1]} is for workers only, not namespace {namespace!r}",
            )
        return namespace

    def _guard(self, method: str, behaviour: Callable[..., Any], streaming: bool) -> Any:
        authenticate = self._authenticate

        async def refuse(context: Any, refusal: _Refusal) -> None:
            log.info("refused %s: %s", method, refusal.message)
            await context.abort(refusal.code, refusal.message)

        if streaming:

            async def guarded_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                try:
                    CALLER.set(authenticate(method, context.invocation_metadata()))
                except _Refusal as refusal:
                    await refuse(context, refusal)
                async for item in behaviour(request, context):
                    yield item

            return guarded_stream

        async def guarded(request: Any, context: Any) -> Any:
            try:
                CALLER.set(authenticate(method, context.invocation_metadata()))
            except _Refusal as refusal:
                await refuse(context, refusal)
            return await behaviour(request, context)

        return guarded

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        method = str(handler_call_details.method)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._guard(method, handler.unary_unary, False), **options
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._guard(method, handler.stream_unary, False), **options
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._guard(method, handler.unary_stream, True), **options
            )
        return grpc.stream_stream_rpc_method_handler(
            self._guard(method, handler.stream_stream, True), **options
        )


class _Refusal(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
