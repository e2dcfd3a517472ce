"""The one place that maps cachecluster errors to errno, gRPC status codes and CLI exit codes.

Every transport reports the same error the same way: a FUSE read gets the
errno, a gRPC caller the status code (servicers raise, ``grpc_errors`` aborts
with :func:`to_grpc_status`), the CLI the exit code.
"""

from __future__ import annotations

import errno

import grpc

from cachecluster.common.errors import CacheClusterError, ErrorKind

_ERRNO: dict[ErrorKind, int] = {
    ErrorKind.INVALID: errno.EINVAL,
    ErrorKind.NOT_FOUND: errno.ENOENT,
    ErrorKind.PERMISSION: errno.EACCES,
    ErrorKind.UNAVAILABLE: errno.EIO,
    ErrorKind.CONFLICT: errno.ESTALE,
    ErrorKind.EXISTS: errno.EEXIST,
    ErrorKind.CORRUPT: errno.EIO,
    ErrorKind.READ_ONLY: errno.EROFS,
    ErrorKind.INTERNAL: errno.EIO,
}

# Exit codes follow sysexits.h where one fits.
_EXIT: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 64,  # EX_USAGE / EX_DATAERR family
    ErrorKind.NOT_FOUND: 66,  # EX_NOINPUT
    ErrorKind.PERMISSION: 77,  # EX_NOPERM
    ErrorKind.UNAVAILABLE: 69,  # EX_UNAVAILABLE
    ErrorKind.CONFLICT: 75,  # EX_TEMPFAIL
    ErrorKind.EXISTS: 73,  # EX_CANTCREAT
    ErrorKind.CORRUPT: 74,  # EX_IOERR
    ErrorKind.READ_ONLY: 73,  # EX_CANTCREAT
    ErrorKind.INTERNAL: 70,  # EX_SOFTWARE
}


# One status code a kind, so that a client can tell the kind back from the
# code alone (cachecluster.common.grpc_errors). A changed UFS object is ABORTED,
# gRPC's "retry at a higher level": re-read the file status, then the blocks.
# A write to a read-only dataset is FAILED_PRECONDITION: retrying cannot help.
_GRPC_STATUS: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.PERMISSION: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.CONFLICT: grpc.StatusCode.ABORTED,
    ErrorKind.EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.CORRUPT: grpc.StatusCode.DATA_LOSS,
    ErrorKind.READ_ONLY: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}


def kind_of(exc: BaseException) -> ErrorKind:
    """The kind of any exception, including the builtin ones we meet."""
    if isinstance(exc, CacheClusterError):
        return exc.kind
    if isinstance(exc, FileNotFoundError):
        return ErrorKind.NOT_FOUND
    if isinstance(exc, PermissionError):
        return ErrorKind.PERMISSION
    if isinstance(exc, ValueError):
        return ErrorKind.INVALID
    if isinstance(exc, ConnectionError | TimeoutError):
        return ErrorKind.UNAVAILABLE
    return ErrorKind.INTERNAL


def to_errno(exc: BaseException) -> int:
    """The errno a FUSE operation returns for ``exc``."""
    return _ERRNO[kind_of(exc)]


def to_exit_code(exc: BaseException) -> int:
    """The process exit code the CLI returns for ``exc``."""
    return _EXIT[kind_of(exc)]


def to_grpc_status(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code a servicer aborts with for ``exc``."""
    return _GRPC_STATUS[kind_of(exc)]
