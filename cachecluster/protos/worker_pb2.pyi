# mypy: ignore-errors
from cachecluster.protos import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BlockRef(_message.Message):
    __slots__ = ("block_id", "mount_id", "ufs_uri", "path", "version", "index", "offset", "length")
    BLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    MOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    UFS_URI_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    block_id: str
    mount_id: str
    ufs_uri: str
    path: str
    version: str
    index: int
    offset: int
    length: int
    def __init__(self, block_id: _Optional[str] = ..., mount_id: _Optional[str] = ..., ufs_uri: _Optional[str] = ..., path: _Optional[str] = ..., version: _Optional[str] = ..., index: _Optional[int] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class LoadBlocksRequest(_message.Message):
    __slots__ = ("blocks", "parallelism")
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[BlockRef]
    parallelism: int
    def __init__(self, blocks: _Optional[_Iterable[_Union[BlockRef, _Mapping]]] = ..., parallelism: _Optional[int] = ...) -> None: ...

class BlockResult(_message.Message):
    __slots__ = ("block_id", "ok", "already_cached", "bytes_fetched", "error")
    BLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ALREADY_CACHED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FETCHED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    block_id: str
    ok: bool
    already_cached: bool
    bytes_fetched: int
    error: _common_pb2.ItemError
    def __init__(self, block_id: _Optional[str] = ..., ok: _Optional[bool] = ..., already_cached: _Optional[bool] = ..., bytes_fetched: _Optional[int] = ..., error: _Optional[_Union[_common_pb2.ItemError, _Mapping]] = ...) -> None: ...

class LoadBlocksResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[BlockResult]
    def __init__(self, results: _Optional[_Iterable[_Union[BlockResult, _Mapping]]] = ...) -> None: ...

class EvictBlocksRequest(_message.Message):
    __slots__ = ("block_ids",)
    BLOCK_IDS_FIELD_NUMBER: _ClassVar[int]
    block_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, block_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class EvictBlocksResponse(_message.Message):
    __slots__ = ("evicted", "bytes_freed", "missing")
    EVICTED_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    evicted: int
    bytes_freed: int
    missing: int
    def __init__(self, evicted: _Optional[int] = ..., bytes_freed: _Optional[int] = ..., missing: _Optional[int] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("worker_id", "incarnation", "tiers", "counters", "block_count", "started_at_ms", "version")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_COUNT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    incarnation: int
    tiers: _containers.RepeatedCompositeFieldContainer[_common_pb2.TierUsage]
    counters: _common_pb2.WorkerCounters
    block_count: int
    started_at_ms: int
    version: str
    def __init__(self, worker_id: _Optional[str] = ..., incarnation: _Optional[int] = ..., tiers: _Optional[_Iterable[_Union[_common_pb2.TierUsage, _Mapping]]] = ..., counters: _Optional[_Union[_common_pb2.WorkerCounters, _Mapping]] = ..., block_count: _Optional[int] = ..., started_at_ms: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...
