"""Who is calling: one gRPC server interceptor that checks bearer tokens.

With a cluster secret, every call but the open ones (the health service)
needs a valid token (``authorization: Bearer <token>``, see
:mod:`cachecluster.common.auth`); the token's namespace is put in
:data:`CALLER` for the handler. Some methods admit only some namespaces
(e.g. the system namespace of workers). A missing or invalid token is
``UNAUTHENTICATED``; a valid token of a namespace the method does not admit
is ``PERMISSION_DENIED``. Master and workers each build one with their rules.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any

import grpc

from cachecluster.common.auth import token_from_metadata, verify_token
from cachecluster.common.errors import PermissionDenied

log = logging.getLogger(__name__)

CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cachecluster_caller", default=None
)
"""The namespace of the current call's token; ``None`` in open mode."""

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
"""Methods anyone may call (health checks of Kubernetes probes and ``up``)."""


class _Refusal(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Checks the bearer token of every call and sets :data:`CALLER` for its handler.

    ``admitted`` maps full method names (``/pkg.Service/Method``) to the
    namespaces that may call them; other methods admit ``default`` (``None``:
    any valid token).
    """

    def __init__(
        self,
        secret: bytes,
        *,
        admitted: Mapping[str, Collection[str]] | None = None,
        default: Collection[str] | None = None,
    ) -> None:
        self._secret = secret
        self._admitted = {method: frozenset(names) for method, names in (admitted or {}).items()}
        self._default = None if default is None else frozenset(default)

    def _authenticate(self, method: str, metadata: Any) -> str:
        """The caller's namespace; raises :class:`_Refusal` otherwise."""
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
        admitted = self._admitted.get(method, self._default)
        if admitted is not None and namespace not in admitted:
            raise _Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{method.rsplit('/', 1)[-1]} is not for namespace {namespace!r}",
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
