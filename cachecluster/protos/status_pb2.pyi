# mypy: ignore-errors
from cachecluster.protos import master_pb2 as _master_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DatasetStatus(_message.Message):
    __slots__ = ("ref", "phase", "ufs_total_bytes", "cached_bytes", "cache_capacity_bytes", "cached_percentage", "file_count", "cache_hit_ratio", "created_ms", "runtime", "reference", "access_modes", "message", "ufs_computed_ms")
    REF_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    UFS_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHED_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    ACCESS_MODES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UFS_COMPUTED_MS_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    phase: str
    ufs_total_bytes: int
    cached_bytes: int
    cache_capacity_bytes: int
    cached_percentage: float
    file_count: int
    cache_hit_ratio: float
    created_ms: int
    runtime: str
    reference: str
    access_modes: _containers.RepeatedScalarFieldContainer[str]
    message: str
    ufs_computed_ms: int
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ..., phase: _Optional[str] = ..., ufs_total_bytes: _Optional[int] = ..., cached_bytes: _Optional[int] = ..., cache_capacity_bytes: _Optional[int] = ..., cached_percentage: _Optional[float] = ..., file_count: _Optional[int] = ..., cache_hit_ratio: _Optional[float] = ..., created_ms: _Optional[int] = ..., runtime: _Optional[str] = ..., reference: _Optional[str] = ..., access_modes: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ..., ufs_computed_ms: _Optional[int] = ...) -> None: ...

class GetDatasetStatusRequest(_message.Message):
    __slots__ = ("ref", "refresh")
    REF_FIELD_NUMBER: _ClassVar[int]
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    refresh: bool
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ..., refresh: _Optional[bool] = ...) -> None: ...

class GetDatasetStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: DatasetStatus
    def __init__(self, status: _Optional[_Union[DatasetStatus, _Mapping]] = ...) -> None: ...

class ListDatasetStatusRequest(_message.Message):
    __slots__ = ("namespace", "refresh")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    refresh: bool
    def __init__(self, namespace: _Optional[str] = ..., refresh: _Optional[bool] = ...) -> None: ...

class ListDatasetStatusResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetStatus]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetStatus, _Mapping]]] = ...) -> None: ...

class RuntimeStatus(_message.Message):
    __slots__ = ("ref", "kind", "master_phase", "worker_phase", "fuse_phase", "desired_workers", "ready_workers", "cache_capacity_bytes", "created_ms")
    REF_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MASTER_PHASE_FIELD_NUMBER: _ClassVar[int]
    WORKER_PHASE_FIELD_NUMBER: _ClassVar[int]
    FUSE_PHASE_FIELD_NUMBER: _ClassVar[int]
    DESIRED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    READY_WORKERS_FIELD_NUMBER: _ClassVar[int]
    CACHE_CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    kind: str
    master_phase: str
    worker_phase: str
    fuse_phase: str
    desired_workers: int
    ready_workers: int
    cache_capacity_bytes: int
    created_ms: int
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ..., kind: _Optional[str] = ..., master_phase: _Optional[str] = ..., worker_phase: _Optional[str] = ..., fuse_phase: _Optional[str] = ..., desired_workers: _Optional[int] = ..., ready_workers: _Optional[int] = ..., cache_capacity_bytes: _Optional[int] = ..., created_ms: _Optional[int] = ...) -> None: ...

class ListRuntimeStatusRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListRuntimeStatusResponse(_message.Message):
    __slots__ = ("runtimes",)
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    runtimes: _containers.RepeatedCompositeFieldContainer[RuntimeStatus]
    def __init__(self, runtimes: _Optional[_Iterable[_Union[RuntimeStatus, _Mapping]]] = ...) -> None: ...
