from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    UINT64: _ClassVar[DType]
    INT64: _ClassVar[DType]
    UINT32: _ClassVar[DType]
    INT32: _ClassVar[DType]
    UINT16: _ClassVar[DType]
    INT16: _ClassVar[DType]
    UINT8: _ClassVar[DType]
    INT8: _ClassVar[DType]
    BOOL: _ClassVar[DType]
    FLOAT64: _ClassVar[DType]
DTYPE_UNSPECIFIED: DType
UINT64: DType
INT64: DType
UINT32: DType
INT32: DType
UINT16: DType
INT16: DType
UINT8: DType
INT8: DType
BOOL: DType
FLOAT64: DType

class PeerMessage(_message.Message):
    __slots__ = ("query_id", "sender", "tag", "payload")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    sender: str
    tag: str
    payload: bytes
    def __init__(self, query_id: _Optional[str] = ..., sender: _Optional[str] = ..., tag: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...

class ArrayList(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: bytes
    data: bytes
    def __init__(self, header: _Optional[bytes] = ..., data: _Optional[bytes] = ...) -> None: ...

class ArrayHeader(_message.Message):
    __slots__ = ("dtype", "ndim", "dim")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    NDIM_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    dtype: _containers.RepeatedScalarFieldContainer[DType]
    ndim: _containers.RepeatedScalarFieldContainer[int]
    dim: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, dtype: _Optional[_Iterable[_Union[DType, str]]] = ..., ndim: _Optional[_Iterable[int]] = ..., dim: _Optional[_Iterable[int]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
