from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("sql", "settings", "query_id", "timeout_seconds", "user")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SQL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    sql: str
    settings: _containers.ScalarMap[str, str]
    query_id: str
    timeout_seconds: float
    user: str
    def __init__(self, sql: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., query_id: _Optional[str] = ..., timeout_seconds: _Optional[float] = ..., user: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("elapsed_seconds", "step")
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    elapsed_seconds: float
    step: str
    def __init__(self, elapsed_seconds: _Optional[float] = ..., step: _Optional[str] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("arrow_ipc", "meta_json")
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    META_JSON_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    meta_json: str
    def __init__(self, arrow_ipc: _Optional[bytes] = ..., meta_json: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("kind", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ExecuteEvent(_message.Message):
    __slots__ = ("progress", "result", "error")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: Result
    error: Error
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("query_id", "reason")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    reason: str
    def __init__(self, query_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class HealthReply(_message.Message):
    __slots__ = ("party", "federation", "version")
    PARTY_FIELD_NUMBER: _ClassVar[int]
    FEDERATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    party: str
    federation: str
    version: str
    def __init__(self, party: _Optional[str] = ..., federation: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ("tables",)
    TABLES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tables: _Optional[_Iterable[str]] = ...) -> None: ...

class DescribeReply(_message.Message):
    __slots__ = ("schemas_json", "error")
    SCHEMAS_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    schemas_json: str
    error: Error
    def __init__(self, schemas_json: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("query_id", "issuer", "sql", "settings", "plan_hash", "deadline_unix")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    PLAN_HASH_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    issuer: str
    sql: str
    settings: _containers.ScalarMap[str, str]
    plan_hash: str
    deadline_unix: float
    def __init__(self, query_id: _Optional[str] = ..., issuer: _Optional[str] = ..., sql: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., plan_hash: _Optional[str] = ..., deadline_unix: _Optional[float] = ...) -> None: ...

class RunReply(_message.Message):
    __slots__ = ("ok", "error", "stats_json")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATS_JSON_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: Error
    stats_json: str
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., stats_json: _Optional[str] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("query_id", "issuer", "sql", "settings", "plan_hash", "user", "wait_seconds")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    PLAN_HASH_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    issuer: str
    sql: str
    settings: _containers.ScalarMap[str, str]
    plan_hash: str
    user: str
    wait_seconds: float
    def __init__(self, query_id: _Optional[str] = ..., issuer: _Optional[str] = ..., sql: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., plan_hash: _Optional[str] = ..., user: _Optional[str] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class AuthorizeReply(_message.Message):
    __slots__ = ("status", "message", "error")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    error: Error
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...
