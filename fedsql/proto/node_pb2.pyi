from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResultKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_KIND_UNSPECIFIED: _ClassVar[ResultKind]
    ROWS: _ClassVar[ResultKind]
    EXPLAIN: _ClassVar[ResultKind]
    SET: _ClassVar[ResultKind]
    OK: _ClassVar[ResultKind]
RESULT_KIND_UNSPECIFIED: ResultKind
ROWS: ResultKind
EXPLAIN: ResultKind
SET: ResultKind
OK: ResultKind

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("sql", "settings", "query_id", "timeout_seconds", "user", "hidden_params")
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
    HIDDEN_PARAMS_FIELD_NUMBER: _ClassVar[int]
    sql: str
    settings: _containers.ScalarMap[str, str]
    query_id: str
    timeout_seconds: float
    user: str
    hidden_params: bytes
    def __init__(self, sql: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., query_id: _Optional[str] = ..., timeout_seconds: _Optional[float] = ..., user: _Optional[str] = ..., hidden_params: _Optional[bytes] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("elapsed_seconds", "step")
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    elapsed_seconds: float
    step: str
    def __init__(self, elapsed_seconds: _Optional[float] = ..., step: _Optional[str] = ...) -> None: ...

class ResultChunk(_message.Message):
    __slots__ = ("arrow_ipc",)
    ARROW_IPC_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc: bytes
    def __init__(self, arrow_ipc: _Optional[bytes] = ...) -> None: ...

class ResultEnd(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResultMeta(_message.Message):
    __slots__ = ("kind", "columns", "leakage", "settings", "stats", "plan_hash", "query_id", "rowcount", "total_rows")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    LEAKAGE_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    PLAN_HASH_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    ROWCOUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    kind: ResultKind
    columns: _containers.RepeatedCompositeFieldContainer[ResultColumn]
    leakage: _containers.RepeatedCompositeFieldContainer[LeakageItem]
    settings: _containers.ScalarMap[str, str]
    stats: QueryStats
    plan_hash: str
    query_id: str
    rowcount: int
    total_rows: int
    def __init__(self, kind: _Optional[_Union[ResultKind, str]] = ..., columns: _Optional[_Iterable[_Union[ResultColumn, _Mapping]]] = ..., leakage: _Optional[_Iterable[_Union[LeakageItem, _Mapping]]] = ..., settings: _Optional[_Mapping[str, str]] = ..., stats: _Optional[_Union[QueryStats, _Mapping]] = ..., plan_hash: _Optional[str] = ..., query_id: _Optional[str] = ..., rowcount: _Optional[int] = ..., total_rows: _Optional[int] = ...) -> None: ...

class ResultColumn(_message.Message):
    __slots__ = ("name", "type", "dp_note", "confidence_interval_95")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DP_NOTE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_INTERVAL_95_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    dp_note: str
    confidence_interval_95: ConfidenceIntervals
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., dp_note: _Optional[str] = ..., confidence_interval_95: _Optional[_Union[ConfidenceIntervals, _Mapping]] = ...) -> None: ...

class ConfidenceIntervals(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[Interval]
    def __init__(self, rows: _Optional[_Iterable[_Union[Interval, _Mapping]]] = ...) -> None: ...

class Interval(_message.Message):
    __slots__ = ("known", "low", "high")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    known: bool
    low: float
    high: float
    def __init__(self, known: _Optional[bool] = ..., low: _Optional[float] = ..., high: _Optional[float] = ...) -> None: ...

class LeakageItem(_message.Message):
    __slots__ = ("viewers", "only", "what")
    VIEWERS_FIELD_NUMBER: _ClassVar[int]
    ONLY_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    viewers: _containers.RepeatedScalarFieldContainer[str]
    only: bool
    what: str
    def __init__(self, viewers: _Optional[_Iterable[str]] = ..., only: _Optional[bool] = ..., what: _Optional[str] = ...) -> None: ...

class PartyStats(_message.Message):
    __slots__ = ("rounds", "bytes_sent", "steps")
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    rounds: int
    bytes_sent: int
    steps: _containers.RepeatedCompositeFieldContainer[StepTime]
    def __init__(self, rounds: _Optional[int] = ..., bytes_sent: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[StepTime, _Mapping]]] = ...) -> None: ...

class StepTime(_message.Message):
    __slots__ = ("step", "op", "wall_seconds", "cpu_seconds")
    STEP_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    step: str
    op: str
    wall_seconds: float
    cpu_seconds: float
    def __init__(self, step: _Optional[str] = ..., op: _Optional[str] = ..., wall_seconds: _Optional[float] = ..., cpu_seconds: _Optional[float] = ...) -> None: ...

class QueryStats(_message.Message):
    __slots__ = ("elapsed_seconds", "own", "parties")
    class PartiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: PartyStats
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[PartyStats, _Mapping]] = ...) -> None: ...
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OWN_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    elapsed_seconds: float
    own: PartyStats
    parties: _containers.MessageMap[str, PartyStats]
    def __init__(self, elapsed_seconds: _Optional[float] = ..., own: _Optional[_Union[PartyStats, _Mapping]] = ..., parties: _Optional[_Mapping[str, PartyStats]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("kind", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    message: str
    def __init__(self, kind: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ExecuteEvent(_message.Message):
    __slots__ = ("progress", "error", "chunk", "header", "end")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    error: Error
    chunk: ResultChunk
    header: ResultMeta
    end: ResultEnd
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., chunk: _Optional[_Union[ResultChunk, _Mapping]] = ..., header: _Optional[_Union[ResultMeta, _Mapping]] = ..., end: _Optional[_Union[ResultEnd, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("error", "tables")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    error: Error
    tables: bytes
    def __init__(self, error: _Optional[_Union[Error, _Mapping]] = ..., tables: _Optional[bytes] = ...) -> None: ...

class DescribedTables(_message.Message):
    __slots__ = ("tables",)
    TABLES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[TableSchema]
    def __init__(self, tables: _Optional[_Iterable[_Union[TableSchema, _Mapping]]] = ...) -> None: ...

class TableSchema(_message.Message):
    __slots__ = ("name", "columns")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    name: str
    columns: _containers.RepeatedCompositeFieldContainer[ColumnSchema]
    def __init__(self, name: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[ColumnSchema, _Mapping]]] = ...) -> None: ...

class ColumnSchema(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("query_id", "issuer", "sql", "settings", "plan_hash", "deadline_unix", "user", "roles")
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
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    issuer: str
    sql: str
    settings: _containers.ScalarMap[str, str]
    plan_hash: str
    deadline_unix: float
    user: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, query_id: _Optional[str] = ..., issuer: _Optional[str] = ..., sql: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., plan_hash: _Optional[str] = ..., deadline_unix: _Optional[float] = ..., user: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class RunReply(_message.Message):
    __slots__ = ("ok", "error", "stats")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: Error
    stats: PartyStats
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., stats: _Optional[_Union[PartyStats, _Mapping]] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("query_id", "issuer", "sql", "settings", "plan_hash", "user", "wait_seconds", "roles")
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
    ROLES_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    issuer: str
    sql: str
    settings: _containers.ScalarMap[str, str]
    plan_hash: str
    user: str
    wait_seconds: float
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, query_id: _Optional[str] = ..., issuer: _Optional[str] = ..., sql: _Optional[str] = ..., settings: _Optional[_Mapping[str, str]] = ..., plan_hash: _Optional[str] = ..., user: _Optional[str] = ..., wait_seconds: _Optional[float] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class AuthorizeReply(_message.Message):
    __slots__ = ("status", "message", "error")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    error: Error
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...
