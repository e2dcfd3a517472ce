"""The one place that maps cachecluster errors to errno and CLI exit codes.

gRPC status codes are added here too when the control plane lands, so that
every transport reports the same error the same way.
"""

from __future__ import annotations

import errno

from cachecluster.common.errors import CacheClusterError, ErrorKind

_ERRNO: dict[ErrorKind, int] = {
    ErrorKind.INVALID: errno.EINVAL,
    ErrorKind.NOT_FOUND: errno.ENOENT,
    ErrorKind.PERMISSION: errno.EACCES,
    ErrorKind.UNAVAILABLE: errno.EIO,
    ErrorKind.CONFLICT: errno.ESTALE,
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
    ErrorKind.CORRUPT: 74,  # EX_IOERR
    ErrorKind.READ_ONLY: 73,  # EX_CANTCREAT
    ErrorKind.INTERNAL: 70,  # EX_SOFTWARE
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
