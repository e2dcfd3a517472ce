# mypy: ignore-errors
from cachecluster.protos import master_pb2 as _master_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataLoadFailure(_message.Message):
    __slots__ = ("path", "message")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    path: str
    message: str
    def __init__(self, path: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class DataLoadStatus(_message.Message):
    __slots__ = ("phase", "files_total", "files_done", "bytes_total", "bytes_done", "blocks_total", "blocks_done", "percentage", "start_time_ms", "end_time_ms", "duration_ms", "failures", "failed_files", "message", "last_schedule_time_ms", "runs", "bytes_fetched")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FILES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_DONE_FIELD_NUMBER: _ClassVar[int]
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    FAILED_FILES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_SCHEDULE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FETCHED_FIELD_NUMBER: _ClassVar[int]
    phase: str
    files_total: int
    files_done: int
    bytes_total: int
    bytes_done: int
    blocks_total: int
    blocks_done: int
    percentage: float
    start_time_ms: int
    end_time_ms: int
    duration_ms: int
    failures: _containers.RepeatedCompositeFieldContainer[DataLoadFailure]
    failed_files: int
    message: str
    last_schedule_time_ms: int
    runs: int
    bytes_fetched: int
    def __init__(self, phase: _Optional[str] = ..., files_total: _Optional[int] = ..., files_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., bytes_done: _Optional[int] = ..., blocks_total: _Optional[int] = ..., blocks_done: _Optional[int] = ..., percentage: _Optional[float] = ..., start_time_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., duration_ms: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[DataLoadFailure, _Mapping]]] = ..., failed_files: _Optional[int] = ..., message: _Optional[str] = ..., last_schedule_time_ms: _Optional[int] = ..., runs: _Optional[int] = ..., bytes_fetched: _Optional[int] = ...) -> None: ...

class DataLoad(_message.Message):
    __slots__ = ("ref", "dataset", "spec_json", "status", "created_ms", "generation")
    REF_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    dataset: _master_pb2.DatasetRef
    spec_json: bytes
    status: DataLoadStatus
    created_ms: int
    generation: int
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ..., dataset: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ..., spec_json: _Optional[bytes] = ..., status: _Optional[_Union[DataLoadStatus, _Mapping]] = ..., created_ms: _Optional[int] = ..., generation: _Optional[int] = ...) -> None: ...

class ApplyDataLoadRequest(_message.Message):
    __slots__ = ("ref", "spec_json")
    REF_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    spec_json: bytes
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ..., spec_json: _Optional[bytes] = ...) -> None: ...

class ApplyDataLoadResponse(_message.Message):
    __slots__ = ("dataload", "created")
    DATALOAD_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    dataload: DataLoad
    created: bool
    def __init__(self, dataload: _Optional[_Union[DataLoad, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetDataLoadRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class GetDataLoadResponse(_message.Message):
    __slots__ = ("dataload",)
    DATALOAD_FIELD_NUMBER: _ClassVar[int]
    dataload: DataLoad
    def __init__(self, dataload: _Optional[_Union[DataLoad, _Mapping]] = ...) -> None: ...

class ListDataLoadsRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListDataLoadsResponse(_message.Message):
    __slots__ = ("dataloads",)
    DATALOADS_FIELD_NUMBER: _ClassVar[int]
    dataloads: _containers.RepeatedCompositeFieldContainer[DataLoad]
    def __init__(self, dataloads: _Optional[_Iterable[_Union[DataLoad, _Mapping]]] = ...) -> None: ...

class DeleteDataLoadRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class DeleteDataLoadResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...
