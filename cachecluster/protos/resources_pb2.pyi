# mypy: ignore-errors
from cachecluster.protos import master_pb2 as _master_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PutSecretRequest(_message.Message):
    __slots__ = ("ref", "data")
    class DataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    data: _containers.ScalarMap[str, str]
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ..., data: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PutSecretResponse(_message.Message):
    __slots__ = ("result", "keys")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    result: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, result: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteSecretRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class DeleteSecretResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class SecretInfo(_message.Message):
    __slots__ = ("ref", "keys", "created_ms")
    REF_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    keys: _containers.RepeatedScalarFieldContainer[str]
    created_ms: int
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ..., created_ms: _Optional[int] = ...) -> None: ...

class ListSecretsRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListSecretsResponse(_message.Message):
    __slots__ = ("secrets",)
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    secrets: _containers.RepeatedCompositeFieldContainer[SecretInfo]
    def __init__(self, secrets: _Optional[_Iterable[_Union[SecretInfo, _Mapping]]] = ...) -> None: ...

class Runtime(_message.Message):
    __slots__ = ("ref", "kind", "api_version", "spec_json", "generation", "created_ms", "datasets")
    REF_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    kind: str
    api_version: str
    spec_json: bytes
    generation: int
    created_ms: int
    datasets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ..., kind: _Optional[str] = ..., api_version: _Optional[str] = ..., spec_json: _Optional[bytes] = ..., generation: _Optional[int] = ..., created_ms: _Optional[int] = ..., datasets: _Optional[_Iterable[str]] = ...) -> None: ...

class ApplyRuntimeRequest(_message.Message):
    __slots__ = ("ref", "kind", "api_version", "spec_json")
    REF_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    kind: str
    api_version: str
    spec_json: bytes
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ..., kind: _Optional[str] = ..., api_version: _Optional[str] = ..., spec_json: _Optional[bytes] = ...) -> None: ...

class ApplyRuntimeResponse(_message.Message):
    __slots__ = ("runtime", "result")
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    runtime: Runtime
    result: str
    def __init__(self, runtime: _Optional[_Union[Runtime, _Mapping]] = ..., result: _Optional[str] = ...) -> None: ...

class GetRuntimeRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class GetRuntimeResponse(_message.Message):
    __slots__ = ("runtime",)
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    runtime: Runtime
    def __init__(self, runtime: _Optional[_Union[Runtime, _Mapping]] = ...) -> None: ...

class ListRuntimesRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListRuntimesResponse(_message.Message):
    __slots__ = ("runtimes",)
    RUNTIMES_FIELD_NUMBER: _ClassVar[int]
    runtimes: _containers.RepeatedCompositeFieldContainer[Runtime]
    def __init__(self, runtimes: _Optional[_Iterable[_Union[Runtime, _Mapping]]] = ...) -> None: ...

class DeleteRuntimeRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: _master_pb2.DatasetRef
    def __init__(self, ref: _Optional[_Union[_master_pb2.DatasetRef, _Mapping]] = ...) -> None: ...

class DeleteRuntimeResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...
