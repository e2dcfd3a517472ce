"""The error families of cachecluster.

Every error a user can cause or meet carries a one-line message that says what
is wrong and where. Each class has an :class:`ErrorKind`; ``error_map`` turns
kinds into gRPC status codes, errno values and CLI exit codes in one place.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """What went wrong, independent of the transport that reports it."""

    INVALID = "invalid"  # bad input: a config field, a path, a frame
    NOT_FOUND = "not_found"
    PERMISSION = "permission"
    UNAVAILABLE = "unavailable"  # a peer or the UFS cannot be reached now
    CONFLICT = "conflict"  # e.g. the object changed under us
    EXISTS = "exists"  # something else already holds the name or place asked for
    CORRUPT = "corrupt"
    READ_ONLY = "read_only"
    INTERNAL = "internal"


class CacheClusterError(Exception):
    """Base of every error cachecluster raises on purpose."""

    kind: ErrorKind = ErrorKind.INTERNAL


class InvalidArgument(CacheClusterError, ValueError):
    """Bad input from a user or a peer."""

    kind = ErrorKind.INVALID


class ConfigError(InvalidArgument):
    """A configuration field is wrong; the message names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidPath(InvalidArgument):
    """A path escapes its root or is not well formed."""


class UnknownScheme(InvalidArgument):
    """A URI names a scheme no backend serves."""


class NotFound(CacheClusterError, FileNotFoundError):
    """A file, object, dataset or block does not exist."""

    kind = ErrorKind.NOT_FOUND


class NotCached(NotFound):
    """A block asked for only if cached (``open`` with ``cached``) is not held: nothing fetched."""


class PermissionDenied(CacheClusterError, PermissionError):
    """The caller may not do this."""

    kind = ErrorKind.PERMISSION


class Unavailable(CacheClusterError, ConnectionError):
    """A peer or the UFS cannot be reached now; retrying may help."""

    kind = ErrorKind.UNAVAILABLE


class VersionChanged(CacheClusterError):
    """A UFS object no longer has the version the reader asked for."""

    kind = ErrorKind.CONFLICT


class AlreadyExists(CacheClusterError):
    """Something incompatible already holds the name or place asked for (e.g. a mount target)."""

    kind = ErrorKind.EXISTS


class CorruptBlock(CacheClusterError):
    """A cached block failed its checksum."""

    kind = ErrorKind.CORRUPT


class ReadOnly(CacheClusterError):
    """A write was attempted on a read-only dataset."""

    kind = ErrorKind.READ_ONLY


class UfsError(CacheClusterError):
    """The UFS answered with an error we do not map more precisely."""

    kind = ErrorKind.UNAVAILABLE
