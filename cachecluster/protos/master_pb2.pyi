# mypy: ignore-errors
from cachecluster.protos import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_ACTIVE: _ClassVar[WorkerState]
    WORKER_STATE_SUSPECT: _ClassVar[WorkerState]
    WORKER_STATE_LOST: _ClassVar[WorkerState]
    WORKER_STATE_DRAINING: _ClassVar[WorkerState]
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_ACTIVE: WorkerState
WORKER_STATE_SUSPECT: WorkerState
WORKER_STATE_LOST: WorkerState
WORKER_STATE_DRAINING: WorkerState

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "incarnation", "endpoint", "tiers", "block_ids", "blocks_follow", "version")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_IDS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FOLLOW_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    incarnation: int
    endpoint: _common_pb2.WorkerEndpoint
    tiers: _containers.RepeatedCompositeFieldContainer[_common_pb2.TierUsage]
    block_ids: _containers.RepeatedScalarFieldContainer[str]
    blocks_follow: bool
    version: str
    def __init__(self, worker_id: _Optional[str] = ..., incarnation: _Optional[int] = ..., endpoint: _Optional[_Union[_common_pb2.WorkerEndpoint, _Mapping]] = ..., tiers: _Optional[_Iterable[_Union[_common_pb2.TierUsage, _Mapping]]] = ..., block_ids: _Optional[_Iterable[str]] = ..., blocks_follow: _Optional[bool] = ..., version: _Optional[str] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ("epoch", "heartbeat_interval_ms", "block_size")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    heartbeat_interval_ms: int
    block_size: int
    def __init__(self, epoch: _Optional[int] = ..., heartbeat_interval_ms: _Optional[int] = ..., block_size: _Optional[int] = ...) -> None: ...

class ReportBlocksRequest(_message.Message):
    __slots__ = ("worker_id", "incarnation", "full", "added", "removed")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    incarnation: int
    full: bool
    added: _containers.RepeatedScalarFieldContainer[str]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, worker_id: _Optional[str] = ..., incarnation: _Optional[int] = ..., full: _Optional[bool] = ..., added: _Optional[_Iterable[str]] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...

class ReportBlocksResponse(_message.Message):
    __slots__ = ("block_count",)
    BLOCK_COUNT_FIELD_NUMBER: _ClassVar[int]
    block_count: int
    def __init__(self, block_count: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "incarnation", "tiers", "counters", "block_count")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_COUNT_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    incarnation: int
    tiers: _containers.RepeatedCompositeFieldContainer[_common_pb2.TierUsage]
    counters: _common_pb2.WorkerCounters
    block_count: int
    def __init__(self, worker_id: _Optional[str] = ..., incarnation: _Optional[int] = ..., tiers: _Optional[_Iterable[_Union[_common_pb2.TierUsage, _Mapping]]] = ..., counters: _Optional[_Union[_common_pb2.WorkerCounters, _Mapping]] = ..., block_count: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("epoch", "reregister")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    REREGISTER_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    reregister: bool
    def __init__(self, epoch: _Optional[int] = ..., reregister: _Optional[bool] = ...) -> None: ...

class GetRingRequest(_message.Message):
    __slots__ = ("known_epoch",)
    KNOWN_EPOCH_FIELD_NUMBER: _ClassVar[int]
    known_epoch: int
    def __init__(self, known_epoch: _Optional[int] = ...) -> None: ...

class RingMember(_message.Message):
    __slots__ = ("worker_id", "endpoint", "weight", "state")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    endpoint: _common_pb2.WorkerEndpoint
    weight: float
    state: WorkerState
    def __init__(self, worker_id: _Optional[str] = ..., endpoint: _Optional[_Union[_common_pb2.WorkerEndpoint, _Mapping]] = ..., weight: _Optional[float] = ..., state: _Optional[_Union[WorkerState, str]] = ...) -> None: ...

class GetRingResponse(_message.Message):
    __slots__ = ("epoch", "unchanged", "members", "vnodes", "replicas", "block_size", "scheme")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    VNODES_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    unchanged: bool
    members: _containers.RepeatedCompositeFieldContainer[RingMember]
    vnodes: int
    replicas: int
    block_size: int
    scheme: str
    def __init__(self, epoch: _Optional[int] = ..., unchanged: _Optional[bool] = ..., members: _Optional[_Iterable[_Union[RingMember, _Mapping]]] = ..., vnodes: _Optional[int] = ..., replicas: _Optional[int] = ..., block_size: _Optional[int] = ..., scheme: _Optional[str] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("include_lost",)
    INCLUDE_LOST_FIELD_NUMBER: _ClassVar[int]
    include_lost: bool
    def __init__(self, include_lost: _Optional[bool] = ...) -> None: ...

class WorkerStatus(_message.Message):
    __slots__ = ("worker_id", "incarnation", "endpoint", "state", "weight", "tiers", "counters", "block_count", "registered_at_ms", "last_heartbeat_ms", "version")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_COUNT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    incarnation: int
    endpoint: _common_pb2.WorkerEndpoint
    state: WorkerState
    weight: float
    tiers: _containers.RepeatedCompositeFieldContainer[_common_pb2.TierUsage]
    counters: _common_pb2.WorkerCounters
    block_count: int
    registered_at_ms: int
    last_heartbeat_ms: int
    version: str
    def __init__(self, worker_id: _Optional[str] = ..., incarnation: _Optional[int] = ..., endpoint: _Optional[_Union[_common_pb2.WorkerEndpoint, _Mapping]] = ..., state: _Optional[_Union[WorkerState, str]] = ..., weight: _Optional[float] = ..., tiers: _Optional[_Iterable[_Union[_common_pb2.TierUsage, _Mapping]]] = ..., counters: _Optional[_Union[_common_pb2.WorkerCounters, _Mapping]] = ..., block_count: _Optional[int] = ..., registered_at_ms: _Optional[int] = ..., last_heartbeat_ms: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("epoch", "workers")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStatus]
    def __init__(self, epoch: _Optional[int] = ..., workers: _Optional[_Iterable[_Union[WorkerStatus, _Mapping]]] = ...) -> None: ...

class DatasetRef(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class FileStatus(_message.Message):
    __slots__ = ("path", "size", "version", "mtime", "is_dir", "mount_id", "mount_path")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    IS_DIR_FIELD_NUMBER: _ClassVar[int]
    MOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    version: str
    mtime: float
    is_dir: bool
    mount_id: str
    mount_path: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., version: _Optional[str] = ..., mtime: _Optional[float] = ..., is_dir: _Optional[bool] = ..., mount_id: _Optional[str] = ..., mount_path: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("dataset", "path")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    dataset: DatasetRef
    path: str
    def __init__(self, dataset: _Optional[_Union[DatasetRef, _Mapping]] = ..., path: _Optional[str] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: FileStatus
    def __init__(self, status: _Optional[_Union[FileStatus, _Mapping]] = ...) -> None: ...

class ListStatusRequest(_message.Message):
    __slots__ = ("dataset", "path", "recursive", "page_size", "page_token")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    dataset: DatasetRef
    path: str
    recursive: bool
    page_size: int
    page_token: str
    def __init__(self, dataset: _Optional[_Union[DatasetRef, _Mapping]] = ..., path: _Optional[str] = ..., recursive: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStatusResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[FileStatus]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[FileStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("ref", "spec_json", "status_json", "phase", "generation")
    REF_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ref: DatasetRef
    spec_json: bytes
    status_json: bytes
    phase: str
    generation: int
    def __init__(self, ref: _Optional[_Union[DatasetRef, _Mapping]] = ..., spec_json: _Optional[bytes] = ..., status_json: _Optional[bytes] = ..., phase: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class ApplyDatasetRequest(_message.Message):
    __slots__ = ("ref", "spec_json")
    REF_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    ref: DatasetRef
    spec_json: bytes
    def __init__(self, ref: _Optional[_Union[DatasetRef, _Mapping]] = ..., spec_json: _Optional[bytes] = ...) -> None: ...

class ApplyDatasetResponse(_message.Message):
    __slots__ = ("dataset", "created")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    created: bool
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: DatasetRef
    def __init__(self, ref: _Optional[_Union[DatasetRef, _Mapping]] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: DatasetRef
    def __init__(self, ref: _Optional[_Union[DatasetRef, _Mapping]] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class GetMountRequest(_message.Message):
    __slots__ = ("mount_id",)
    MOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    mount_id: str
    def __init__(self, mount_id: _Optional[str] = ...) -> None: ...

class MountInfo(_message.Message):
    __slots__ = ("mount_id", "dataset", "name", "uri", "path", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    mount_id: str
    dataset: DatasetRef
    name: str
    uri: str
    path: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, mount_id: _Optional[str] = ..., dataset: _Optional[_Union[DatasetRef, _Mapping]] = ..., name: _Optional[str] = ..., uri: _Optional[str] = ..., path: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetMountResponse(_message.Message):
    __slots__ = ("mount",)
    MOUNT_FIELD_NUMBER: _ClassVar[int]
    mount: MountInfo
    def __init__(self, mount: _Optional[_Union[MountInfo, _Mapping]] = ...) -> None: ...

class WatchMountsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchMountsResponse(_message.Message):
    __slots__ = ("mounts",)
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    mounts: _containers.RepeatedCompositeFieldContainer[MountInfo]
    def __init__(self, mounts: _Optional[_Iterable[_Union[MountInfo, _Mapping]]] = ...) -> None: ...
