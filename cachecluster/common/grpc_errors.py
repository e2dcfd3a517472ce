"""cachecluster errors across gRPC, both ways.

Servers: decorate each servicer method with :func:`grpc_method` (or the whole
class with :func:`grpc_servicer`). A :class:`CacheClusterError` the method
raises becomes ``context.abort(code, one-line message)`` with the code of
:func:`cachecluster.common.error_map.to_grpc_status`; any other exception is
a bug: it is logged once, with its traceback, and the caller gets INTERNAL
with the exception's type but not its text (which may hold paths or secrets).
A failed call to another peer (``grpc.aio.AioRpcError``) counts as expected:
it is passed on with its own code. Servicers raise our errors rather than
call ``context.abort`` themselves, so that every code keeps one meaning.

Clients: :func:`raise_from_rpc_error` (or ``with rpc_errors():``) turns a
failed call back into our error classes, so that the CLI maps it to its exit
code and FUSE to its errno. Each kind has its own status code, so the code
alone tells the kind back; codes we never send (UNIMPLEMENTED, UNKNOWN
...) become a :class:`RemoteError` of the nearest kind.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, NoReturn, TypeVar, overload

import grpc

from cachecluster.common.error_map import to_grpc_status
from cachecluster.common.errors import (
    AlreadyExists,
    CacheClusterError,
    CorruptBlock,
    ErrorKind,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ReadOnly,
    Unavailable,
    VersionChanged,
)

__all__ = [
    "RemoteError",
    "error_from_rpc_error",
    "grpc_method",
    "grpc_servicer",
    "raise_from_rpc_error",
    "rpc_errors",
]

log = logging.getLogger(__name__)

MAX_DETAILS = 1000
"""Characters of an error message sent as status details, at most."""

_Self = TypeVar("_Self")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Class = TypeVar("_Class", bound=type)

_WRAPPED = "__cachecluster_grpc_method__"

_Code = grpc.StatusCode
_ERROR_OF_STATUS: dict[grpc.StatusCode, type[CacheClusterError]] = {
    _Code.INVALID_ARGUMENT: InvalidArgument,
    _Code.OUT_OF_RANGE: InvalidArgument,
    _Code.NOT_FOUND: NotFound,
    _Code.PERMISSION_DENIED: PermissionDenied,
    _Code.UNAUTHENTICATED: PermissionDenied,
    _Code.UNAVAILABLE: Unavailable,
    _Code.DEADLINE_EXCEEDED: Unavailable,
    _Code.RESOURCE_EXHAUSTED: Unavailable,
    _Code.CANCELLED: Unavailable,
    _Code.ABORTED: VersionChanged,
    _Code.DATA_LOSS: CorruptBlock,
    _Code.FAILED_PRECONDITION: ReadOnly,
    _Code.ALREADY_EXISTS: AlreadyExists,
}


class RemoteError(CacheClusterError):
    """A peer failed with a status code none of our error classes stands for.

    ``kind`` is the nearest :class:`ErrorKind` (INTERNAL for UNKNOWN,
    UNIMPLEMENTED, INTERNAL...), ``code`` the status code received.
    """

    def __init__(self, message: str, *, kind: ErrorKind, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code


def one_line(exc: BaseException) -> str:
    """``str(exc)`` on one line, at most :data:`MAX_DETAILS` long; the class name if empty."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_DETAILS else text[: MAX_DETAILS - 3] + "..."


async def _abort_for(exc: Exception, context: Any, method: str) -> NoReturn:
    """Abort the call of ``context`` as ``exc`` demands; never returns."""
    if isinstance(exc, CacheClusterError):
        await context.abort(to_grpc_status(exc), one_line(exc))
    elif isinstance(exc, grpc.aio.AioRpcError):
        await context.abort(exc.code(), exc.details() or exc.code().name)
    log.error("unexpected error in %s", method, exc_info=exc)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal error in {method}: {type(exc).__name__} (see the server log)",
    )
    raise AssertionError("context.abort returned")  # pragma: no cover


@overload
def grpc_method(
    method: Callable[[_Self, _Request, Any], AsyncIterator[_Response]],
) -> Callable[[_Self, _Request, Any], AsyncIterator[_Response]]: ...


@overload
def grpc_method(
    method: Callable[[_Self, _Request, Any], Awaitable[_Response]],
) -> Callable[[_Self, _Request, Any], Coroutine[Any, Any, _Response]]: ...


def grpc_method(method: Callable[[Any, Any, Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """Map the exceptions of a ``grpc.aio`` servicer method to status codes.

    Works on coroutine methods (unary and client-streaming calls) and on
    async generator methods (server-streaming calls). See the module docstring.
    """
    if getattr(method, _WRAPPED, False):
        return method
    name = method.__qualname__

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for response in method(self, request, context):
                    yield response
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _abort_for(exc, context, name)

        setattr(stream, _WRAPPED, True)
        return stream

    if not inspect.iscoroutinefunction(method):
        raise TypeError(f"grpc_method: {name} is neither a coroutine nor an async generator")

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: Any) -> Any:
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort_for(exc, context, name)

    setattr(unary, _WRAPPED, True)
    return unary


def grpc_servicer(cls: _Class) -> _Class:
    """Apply :func:`grpc_method` to every RPC method ``cls`` defines.

    RPC methods are the coroutine and async generator functions defined in
    the class body whose names start with a capital letter (gRPC method names
    are CamelCase); helpers such as ``_load`` or ``close`` are left alone.
    """
    for attribute, value in list(vars(cls).items()):
        if not attribute[:1].isupper():
            continue
        if inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value):
            setattr(cls, attribute, grpc_method(value))
    return cls


def error_from_rpc_error(error: grpc.RpcError) -> CacheClusterError:
    """Our error for a failed call: ``NOT_FOUND`` -> ``NotFound`` and so on."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else None
    message = details or f"remote call failed: {code.name}"
    error_class = _ERROR_OF_STATUS.get(code)
    if error_class is not None:
        return error_class(message)
    return RemoteError(message, kind=ErrorKind.INTERNAL, code=code)


def raise_from_rpc_error(error: grpc.RpcError) -> NoReturn:
    """Raise :func:`error_from_rpc_error` of ``error``, chained to it."""
    raise error_from_rpc_error(error) from error


@contextlib.contextmanager
def rpc_errors() -> Iterator[None]:
    """Turn a failed gRPC call inside the block into our error (sync or async calls)."""
    try:
        yield
    except grpc.RpcError as error:
        raise_from_rpc_error(error)
