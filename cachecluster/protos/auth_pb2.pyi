# mypy: ignore-errors
from cachecluster.protos import master_pb2 as _master_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IssueCapabilityRequest(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: _master_pb2.DatasetRef
    def __init__(self, dataset: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class IssueCapabilityResponse(_message.Message):
    __slots__ = ("capability", "expires_at_ms", "required", "namespace")
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    capability: bytes
    expires_at_ms: int
    required: bool
    namespace: str
    def __init__(self, capability: _Optional[bytes] = ..., expires_at_ms: _Optional[int] = ..., required: _Optional[bool] = ..., namespace: _Optional[str] = ...) -> None: ...
