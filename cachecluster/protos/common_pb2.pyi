# mypy: ignore-errors
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Medium(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEDIUM_UNSPECIFIED: _ClassVar[Medium]
    MEDIUM_MEM: _ClassVar[Medium]
    MEDIUM_SSD: _ClassVar[Medium]
    MEDIUM_HDD: _ClassVar[Medium]

class ErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_KIND_UNSPECIFIED: _ClassVar[ErrorKind]
    ERROR_KIND_INVALID: _ClassVar[ErrorKind]
    ERROR_KIND_NOT_FOUND: _ClassVar[ErrorKind]
    ERROR_KIND_PERMISSION: _ClassVar[ErrorKind]
    ERROR_KIND_UNAVAILABLE: _ClassVar[ErrorKind]
    ERROR_KIND_CONFLICT: _ClassVar[ErrorKind]
    ERROR_KIND_CORRUPT: _ClassVar[ErrorKind]
    ERROR_KIND_READ_ONLY: _ClassVar[ErrorKind]
    ERROR_KIND_INTERNAL: _ClassVar[ErrorKind]
MEDIUM_UNSPECIFIED: Medium
MEDIUM_MEM: Medium
MEDIUM_SSD: Medium
MEDIUM_HDD: Medium
ERROR_KIND_UNSPECIFIED: ErrorKind
ERROR_KIND_INVALID: ErrorKind
ERROR_KIND_NOT_FOUND: ErrorKind
ERROR_KIND_PERMISSION: ErrorKind
ERROR_KIND_UNAVAILABLE: ErrorKind
ERROR_KIND_CONFLICT: ErrorKind
ERROR_KIND_CORRUPT: ErrorKind
ERROR_KIND_READ_ONLY: ErrorKind
ERROR_KIND_INTERNAL: ErrorKind

class ItemError(_message.Message):
    __slots__ = ("kind", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: ErrorKind
    message: str
    def __init__(self, kind: _Optional[_Union[ErrorKind, str]] = ..., message: _Optional[str] = ...) -> None: ...

class TierUsage(_message.Message):
    __slots__ = ("medium", "path", "capacity_bytes", "used_bytes", "block_count", "high_watermark", "low_watermark")
    MEDIUM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_COUNT_FIELD_NUMBER: _ClassVar[int]
    HIGH_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    LOW_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    medium: Medium
    path: str
    capacity_bytes: int
    used_bytes: int
    block_count: int
    high_watermark: float
    low_watermark: float
    def __init__(self, medium: _Optional[_Union[Medium, str]] = ..., path: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., block_count: _Optional[int] = ..., high_watermark: _Optional[float] = ..., low_watermark: _Optional[float] = ...) -> None: ...

class WorkerCounters(_message.Message):
    __slots__ = ("hits", "misses", "bytes_served", "bytes_fetched", "evictions", "ufs_errors", "corrupt_blocks")
    HITS_FIELD_NUMBER: _ClassVar[int]
    MISSES_FIELD_NUMBER: _ClassVar[int]
    BYTES_SERVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FETCHED_FIELD_NUMBER: _ClassVar[int]
    EVICTIONS_FIELD_NUMBER: _ClassVar[int]
    UFS_ERRORS_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    hits: int
    misses: int
    bytes_served: int
    bytes_fetched: int
    evictions: int
    ufs_errors: int
    corrupt_blocks: int
    def __init__(self, hits: _Optional[int] = ..., misses: _Optional[int] = ..., bytes_served: _Optional[int] = ..., bytes_fetched: _Optional[int] = ..., evictions: _Optional[int] = ..., ufs_errors: _Optional[int] = ..., corrupt_blocks: _Optional[int] = ...) -> None: ...

class WorkerEndpoint(_message.Message):
    __slots__ = ("host", "data_port", "unix_socket", "grpc_port", "metrics_port")
    HOST_FIELD_NUMBER: _ClassVar[int]
    DATA_PORT_FIELD_NUMBER: _ClassVar[int]
    UNIX_SOCKET_FIELD_NUMBER: _ClassVar[int]
    GRPC_PORT_FIELD_NUMBER: _ClassVar[int]
    METRICS_PORT_FIELD_NUMBER: _ClassVar[int]
    host: str
    data_port: int
    unix_socket: str
    grpc_port: int
    metrics_port: int
    def __init__(self, host: _Optional[str] = ..., data_port: _Optional[int] = ..., unix_socket: _Optional[str] = ..., grpc_port: _Optional[int] = ..., metrics_port: _Optional[int] = ...) -> None: ...
