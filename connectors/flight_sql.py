"""Arrow Flight SQL endpoint of a party's node, for BI tools (ADBC, JDBC, Superset, DBeaver).

There is no Flight SQL server library for Python, so this is one on top of
`pyarrow.flight.FlightServerBase`: it decodes the Flight SQL commands (protobuf
`Any` messages in descriptors, tickets and action bodies) and answers them
from two sources only:

* the party's own node (`fedsql.client.NodeClient`) for every statement, so
  queries take exactly the path the shell and the DB-API take (planning,
  policy checks, MPC, DP, audit) and nothing here can bypass a policy;
* the federation config plus the owners' public `Describe` answers for the
  catalog (catalog = federation, db schema = party, plus one schema holding
  the federated union tables).

A statement runs when the client asks for its FlightInfo (its schema is only
known once it ran); the result waits in memory under a random ticket until
the client fetches it. Session settings (`SET fedsql.mode = ...`) are kept per
client session: the `arrow_flight_session_id` cookie when the client sends
it, else the client's connection (gRPC peer), which is what one ADBC or JDBC
connection is.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import grpc
import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from fedsql import errors  # first: fedsql/__init__ imports connectors.dbapi (import cycle otherwise)
from connectors.dbapi import sql_segments, substitute_parameters  # noqa: I001
from connectors.flightsql import FlightSession_pb2 as session_pb
from connectors.flightsql import FlightSql_pb2 as fsql
from fedsql.client import NodeClient
from fedsql.config import Federation, TableConfig, load_config
from fedsql.proto import node_pb2, node_pb2_grpc

log = logging.getLogger("fedsql.flight")

SERVER_NAME = "fedsql"
TABLE_TYPE = "TABLE"
SESSION_COOKIE = "arrow_flight_session_id"
DESCRIBE_TIMEOUT = 10.0
SCHEMA_CACHE_SECONDS = 60.0
RESULT_TTL_SECONDS = 600.0
"""A result not fetched within this time is dropped (clients fetch at once)."""
MAX_PENDING_RESULTS = 64
HANDLE_IDLE_SECONDS = 3600.0
"""Prepared statements and sessions unused this long are forgotten."""
MAX_SESSIONS = 10_000
MAX_PARAMETER_SETS = 1_000
_TYPE_PREFIX = "type.googleapis.com/"

Columns = Sequence[Sequence[str]]
"""Ordered (column, DuckDB type) pairs, as `Describe` returns them."""

# -- result schemas of the metadata commands, exactly as FlightSql.proto states -----

CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema([
    pa.field("catalog_name", pa.utf8()),
    pa.field("db_schema_name", pa.utf8(), nullable=False),
])
TABLES_SCHEMA = pa.schema([
    pa.field("catalog_name", pa.utf8()),
    pa.field("db_schema_name", pa.utf8()),
    pa.field("table_name", pa.utf8(), nullable=False),
    pa.field("table_type", pa.utf8(), nullable=False),
])
TABLES_SCHEMA_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])
PRIMARY_KEYS_SCHEMA = pa.schema([
    pa.field("catalog_name", pa.utf8()),
    pa.field("db_schema_name", pa.utf8()),
    pa.field("table_name", pa.utf8(), nullable=False),
    pa.field("column_name", pa.utf8(), nullable=False),
    pa.field("key_name", pa.utf8()),
    pa.field("key_sequence", pa.int32(), nullable=False),
])
KEYS_SCHEMA = pa.schema([
    pa.field("pk_catalog_name", pa.utf8()),
    pa.field("pk_db_schema_name", pa.utf8()),
    pa.field("pk_table_name", pa.utf8(), nullable=False),
    pa.field("pk_column_name", pa.utf8(), nullable=False),
    pa.field("fk_catalog_name", pa.utf8()),
    pa.field("fk_db_schema_name", pa.utf8()),
    pa.field("fk_table_name", pa.utf8(), nullable=False),
    pa.field("fk_column_name", pa.utf8(), nullable=False),
    pa.field("key_sequence", pa.int32(), nullable=False),
    pa.field("fk_key_name", pa.utf8()),
    pa.field("pk_key_name", pa.utf8()),
    pa.field("update_rule", pa.uint8(), nullable=False),
    pa.field("delete_rule", pa.uint8(), nullable=False),
])

_STRING_LIST = pa.list_(pa.field("string_data", pa.utf8()))
_INT32_TO_INT32_LIST_MAP = pa.map_(pa.int32(), pa.list_(pa.field("$data$", pa.int32())))
SQL_INFO_VALUE_FIELDS = [
    pa.field("string_value", pa.utf8()),
    pa.field("bool_value", pa.bool_()),
    pa.field("bigint_value", pa.int64()),
    pa.field("int32_bitmask", pa.int32()),
    pa.field("string_list", _STRING_LIST),
    pa.field("int32_to_int32_list_map", _INT32_TO_INT32_LIST_MAP),
]
SQL_INFO_VALUE_TYPE = pa.dense_union(SQL_INFO_VALUE_FIELDS, type_codes=list(range(6)))
SQL_INFO_SCHEMA = pa.schema([
    pa.field("info_name", pa.uint32(), nullable=False),
    pa.field("value", SQL_INFO_VALUE_TYPE),
])

# -- DuckDB type names → Arrow types ----------------------------------------------

_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "BOOLEAN": pa.bool_(), "BOOL": pa.bool_(),
    "TINYINT": pa.int8(), "SMALLINT": pa.int16(), "INTEGER": pa.int32(), "INT": pa.int32(),
    "BIGINT": pa.int64(), "HUGEINT": pa.decimal128(38, 0),
    "UTINYINT": pa.uint8(), "USMALLINT": pa.uint16(), "UINTEGER": pa.uint32(), "UBIGINT": pa.uint64(),
    "FLOAT": pa.float32(), "REAL": pa.float32(), "DOUBLE": pa.float64(),
    "VARCHAR": pa.utf8(), "TEXT": pa.utf8(), "STRING": pa.utf8(), "UUID": pa.utf8(), "JSON": pa.utf8(),
    "BLOB": pa.binary(), "BYTEA": pa.binary(),
    "DATE": pa.date32(), "TIME": pa.time64("us"),
    "TIMESTAMP": pa.timestamp("us"), "DATETIME": pa.timestamp("us"),
    "TIMESTAMP_S": pa.timestamp("s"), "TIMESTAMP_MS": pa.timestamp("ms"), "TIMESTAMP_NS": pa.timestamp("ns"),
    "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC"), "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "INTERVAL": pa.month_day_nano_interval(),
}
_DECIMAL = re.compile(r"^(?:DECIMAL|NUMERIC)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?$", re.I)


def duckdb_to_arrow(type_name: str) -> pa.DataType:
    """Arrow type DuckDB itself exports for `type_name` (what a query result will carry).

    Nested and unusual types fall back to utf8: schemas here are for browsing,
    and a result always carries its own exact schema.
    """
    name = " ".join(type_name.strip().upper().split())
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    m = _DECIMAL.match(name)
    if m:
        precision = int(m.group(1) or 18)
        scale = int(m.group(2) or (0 if m.group(1) else 3))
        return pa.decimal128(precision, scale)
    if name.endswith("[]"):
        return pa.list_(duckdb_to_arrow(type_name.strip()[:-2]))
    return pa.utf8()


def _column_metadata(type_name: str, arrow_type: pa.DataType) -> dict[str, str]:
    """Flight SQL column metadata (ARROW:FLIGHT:SQL:*) that JDBC/ADBC show as xdbc fields."""
    meta = {"ARROW:FLIGHT:SQL:TYPE_NAME": type_name, "ARROW:FLIGHT:SQL:IS_READ_ONLY": "1",
            "ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT": "0",
            "ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE": "1" if pa.types.is_string(arrow_type) else "0"}
    if pa.types.is_decimal(arrow_type):
        meta["ARROW:FLIGHT:SQL:PRECISION"] = str(arrow_type.precision)
        meta["ARROW:FLIGHT:SQL:SCALE"] = str(arrow_type.scale)
    return meta


def arrow_schema(columns: Columns, table_meta: dict[str, str] | None = None,
                 levels: dict[str, str] | None = None) -> pa.Schema:
    """Arrow schema of a table or result from its DuckDB column types.

    `levels` (column → policy level for this party) is shown as `fedsql:level`
    metadata and decides IS_SEARCHABLE, so BI users see what they may filter on.
    """
    fields = []
    for column, type_name in columns:
        arrow_type = duckdb_to_arrow(type_name)
        meta = {**(table_meta or {}), **_column_metadata(type_name, arrow_type)}
        if levels is not None:
            level = levels.get(column, "private")
            meta["fedsql:level"] = level
            meta["ARROW:FLIGHT:SQL:IS_SEARCHABLE"] = "0" if level in ("private", "mixed") else "1"
        fields.append(pa.field(column, arrow_type, nullable=True, metadata=meta))
    return pa.schema(fields)


# -- errors -------------------------------------------------------------------------


def flight_error(exc: BaseException) -> Exception:
    """fedsql error → the Flight error whose gRPC code makes ADBC/JDBC raise the matching
    DB-API class (PERMISSION_DENIED/INVALID_ARGUMENT → ProgrammingError, UNIMPLEMENTED →
    NotSupportedError, UNAVAILABLE/DEADLINE/CANCELLED/UNKNOWN → OperationalError,
    INTERNAL → InternalError). fedsql messages are safe to show; anything else is
    logged here and reported without details."""
    if not isinstance(exc, errors.Error):
        if isinstance(exc, (flight.FlightError, pa.ArrowException)):
            return exc
        log.exception("internal error in the Flight SQL endpoint")
        return flight.FlightInternalError(
            f"InternalError: internal error in the Flight SQL endpoint ({type(exc).__name__}); it was logged")
    message = f"{exc.kind}: {exc}"
    if isinstance(exc, errors.PolicyViolation):
        return flight.FlightUnauthorizedError(message)
    if isinstance(exc, (errors.ProgrammingError, errors.InterfaceError, errors.DataError)):
        return pa.ArrowInvalid(message)
    if isinstance(exc, errors.NotSupportedError):
        return pa.ArrowNotImplementedError(message)
    if isinstance(exc, errors.PartyUnavailable):
        return flight.FlightUnavailableError(message)
    if isinstance(exc, errors.QueryTimeout):
        return flight.FlightTimedOutError(message)
    if isinstance(exc, errors.QueryCancelled):
        return flight.FlightCancelledError(message)
    if isinstance(exc, errors.InternalError):
        return flight.FlightInternalError(message)
    return flight.FlightServerError(message)


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an RPC handler so every failure leaves as a mapped Flight error."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a clear error
            mapped = flight_error(exc)
            if mapped is exc:
                raise
            raise mapped.with_traceback(None) from None
    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


# -- protobuf Any helpers -----------------------------------------------------------------


def pack(message: Message) -> bytes:
    """Serialise a Flight SQL message wrapped in google.protobuf.Any, as the spec requires."""
    wrapped = any_pb2.Any()
    wrapped.Pack(message)
    return wrapped.SerializeToString()


def unpack(data: bytes) -> Message:
    """Decode an Any-wrapped Flight SQL message (command, ticket or action body)."""
    wrapped = any_pb2.Any()
    try:
        wrapped.ParseFromString(data)
    except DecodeError:
        raise errors.InterfaceError("not a Flight SQL request (malformed protobuf)") from None
    name = wrapped.type_url[len(_TYPE_PREFIX):] if wrapped.type_url.startswith(_TYPE_PREFIX) else ""
    prefix = fsql.DESCRIPTOR.package + "."
    cls = getattr(fsql, name[len(prefix):], None) if name.startswith(prefix) else None
    if cls is None:
        raise errors.NotSupportedError(f"unsupported Flight SQL request {wrapped.type_url or '(empty)'}")
    message = cls()
    wrapped.Unpack(message)
    return message


# -- catalog --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableEntry:
    db_schema: str
    name: str
    members: tuple[TableConfig, ...]  # one party table, or the members of a union

    def level(self, column: str, issuer: str) -> str:
        """The column's level for `issuer`: the members' level when they agree."""
        found = {m.level(column, issuer) for m in self.members}
        return found.pop() if len(found) == 1 else "mixed"


class Catalog:
    """The federation's public table schemas, asked of each owner's node (`Describe`)."""

    def __init__(self, fed: Federation, party: str) -> None:
        self.fed = fed
        self.party = party
        self.federated_schema = "federated" if "federated" not in fed.parties else "federated_tables"
        self._stubs: dict[str, node_pb2_grpc.NodeStub] = {}
        self._channels: list[grpc.Channel] = []
        self._cache: dict[tuple[str, str], tuple[float, tuple[tuple[str, str], ...]]] = {}
        self._lock = threading.Lock()

    def db_schemas(self) -> list[str]:
        return sorted([*self.fed.parties, *([self.federated_schema] if self.fed.federated else [])])

    def tables(self) -> list[TableEntry]:
        out = [TableEntry(p, t, (tcfg,)) for p, pcfg in self.fed.parties.items() for t, tcfg in pcfg.tables.items()]
        out += [TableEntry(self.federated_schema, name, tuple(self.fed.table(p, t) for p, t in ftable.members))
                for name, ftable in self.fed.federated.items()]
        return sorted(out, key=lambda e: (e.db_schema, e.name))

    def columns(self, entry: TableEntry) -> tuple[tuple[str, str], ...]:
        """A union has the schema of its first member (the planner checks the others)."""
        first = entry.members[0]
        return self.schema_of(first.party, first.name)

    def schema_of(self, party: str, table: str) -> tuple[tuple[str, str], ...]:
        """(column, DuckDB type) pairs of `party.table`, cached for a minute."""
        key = (party, table)
        with self._lock:
            hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < SCHEMA_CACHE_SECONDS:
            return hit[1]
        schema = self._describe(party, table)
        with self._lock:
            self._cache[key] = (time.monotonic(), schema)
        return schema

    def _describe(self, party: str, table: str) -> tuple[tuple[str, str], ...]:
        stub = self._stub(party)
        try:
            reply = stub.Describe(node_pb2.DescribeRequest(tables=[table]), timeout=DESCRIBE_TIMEOUT)
        except grpc.RpcError:
            raise errors.PartyUnavailable(
                f"cannot describe {party}.{table}: party '{party}' node at {self.fed.parties[party].address} "
                "does not answer"
            ) from None
        if reply.error.kind:
            raise errors.error_from_kind(reply.error.kind, f"party '{party}': {reply.error.message}")
        try:
            return tuple((str(c), str(t)) for c, t in json.loads(reply.schemas_json)[table])
        except (ValueError, KeyError, TypeError):
            raise errors.InternalError(f"party '{party}' sent a malformed schema for table '{table}'") from None

    def _stub(self, party: str) -> node_pb2_grpc.NodeStub:
        with self._lock:
            if party not in self._stubs:
                channel = grpc.insecure_channel(self.fed.parties[party].address)
                self._channels.append(channel)
                self._stubs[party] = node_pb2_grpc.NodeStub(channel)
            return self._stubs[party]

    def table_schema(self, entry: TableEntry) -> pa.Schema:
        meta = {"ARROW:FLIGHT:SQL:CATALOG_NAME": self.fed.name,
                "ARROW:FLIGHT:SQL:DB_SCHEMA_NAME": entry.db_schema,
                "ARROW:FLIGHT:SQL:TABLE_NAME": entry.name}
        columns = self.columns(entry)
        return arrow_schema(columns, meta, {c: entry.level(c, self.party) for c, _ in columns})

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


def like_to_regex(pattern: str | None) -> re.Pattern[str] | None:
    """SQL LIKE pattern (`%`, `_`, `\\` escapes) → regex; None matches everything."""
    if pattern is None:
        return None
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.S)


def _matches(regex: re.Pattern[str] | None, value: str) -> bool:
    return regex is None or regex.match(value) is not None


# -- sessions, prepared statements, pending results -----------------------------------


@dataclass
class Session:
    settings: dict[str, str] = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class Prepared:
    sql: str
    n_params: int
    session: Session
    dataset_schema: pa.Schema
    parameter_sets: list[tuple[Any, ...]] | None = None
    last_used: float = field(default_factory=time.monotonic)


class Sessions:
    """Session state keyed by cookie or by connection (see module docstring)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Session, bool]:
        """The session under `key` (created when missing) and whether it is new."""
        with self._lock:
            session = self._by_key.get(key)
            created = session is None
            if session is None:
                self._expire()
                session = self._by_key[key] = Session()
            session.last_used = time.monotonic()
            return session, created

    def alias(self, key: str, session: Session) -> None:
        with self._lock:
            self._by_key[key] = session

    def close(self, session: Session) -> None:
        with self._lock:
            for key in [k for k, s in self._by_key.items() if s is session]:
                del self._by_key[key]

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._by_key.items() if now - s.last_used > HANDLE_IDLE_SECONDS]:
            del self._by_key[key]
        while len(self._by_key) >= MAX_SESSIONS:
            del self._by_key[min(self._by_key, key=lambda k: self._by_key[k].last_used)]


class _SessionMiddleware(flight.ServerMiddleware):
    def __init__(self, cookie: str | None) -> None:
        self.cookie = cookie
        self.issue: str | None = None  # set by the handler when it opens a session

    def sending_headers(self) -> dict[str, str]:
        return {"set-cookie": f"{SESSION_COOKIE}={self.issue}"} if self.issue else {}


class _SessionMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Reads the session cookie of each call (see `FedSqlFlightServer._session`)."""

    def start_call(self, info: Any, headers: dict[str, list[str]]) -> _SessionMiddleware:
        return _SessionMiddleware(_cookie(headers, SESSION_COOKIE))


def _cookie(headers: dict[str, list[str]], name: str) -> str | None:
    for value in headers.get("cookie", []):
        for part in value.split(";"):
            key, _, val = part.strip().partition("=")
            if key == name and val:
                return val
    return None


# -- SQL helpers --------------------------------------------------------------------------


def count_parameters(sql: str) -> int:
    return sum(1 for kind, _ in sql_segments(sql) if kind == "qmark")


def normalise_names(sql: str, fed: Federation, federated_schema: str) -> str:
    """Accept the names BI tools generate from the catalog: drop a leading catalog
    (`testfed.p1.t` → `p1.t`) and the pseudo schema of union tables (`federated.t` → `t`).

    The text is left untouched unless such a name occurs.
    """
    lowered = sql.lower()
    if fed.name.lower() not in lowered and federated_schema.lower() not in lowered:
        return sql
    import sqlglot
    from sqlglot import exp

    try:
        trees = sqlglot.parse(sql, read="duckdb")
    except Exception:  # noqa: BLE001 - the node reports syntax errors itself
        return sql
    if len(trees) != 1 or trees[0] is None:
        return sql
    changed = False
    for node in trees[0].find_all(exp.Table, exp.Column):
        if node.args.get("catalog") is not None and node.catalog.lower() == fed.name.lower():
            node.set("catalog", None)
            changed = True
        db = node.text("db")
        if db and db not in fed.parties and db.lower() in (federated_schema.lower(), fed.name.lower()):
            node.set("db", None)
            changed = True
    return trees[0].sql(dialect="duckdb") if changed else sql


# -- SqlInfo -------------------------------------------------------------------------------


def _sql_info_values() -> dict[int, tuple[int, Any]]:
    """SqlInfo id → (union type code, value); codes: 0 string, 1 bool, 2 int64,
    3 int32 bitmask, 4 string list, 5 int32 → int32 list map."""
    from fedsql import __version__

    s = fsql
    return {
        s.FLIGHT_SQL_SERVER_NAME: (0, SERVER_NAME),
        s.FLIGHT_SQL_SERVER_VERSION: (0, __version__),
        s.FLIGHT_SQL_SERVER_ARROW_VERSION: (0, pa.__version__),
        s.FLIGHT_SQL_SERVER_READ_ONLY: (1, True),
        s.FLIGHT_SQL_SERVER_SQL: (1, True),
        s.FLIGHT_SQL_SERVER_SUBSTRAIT: (1, False),
        s.FLIGHT_SQL_SERVER_TRANSACTION: (3, s.SQL_SUPPORTED_TRANSACTION_NONE),
        s.FLIGHT_SQL_SERVER_CANCEL: (1, False),
        s.FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT: (3, int(HANDLE_IDLE_SECONDS * 1000)),
        s.FLIGHT_SQL_SERVER_TRANSACTION_TIMEOUT: (3, 0),
        s.SQL_DDL_CATALOG: (1, False),
        s.SQL_DDL_SCHEMA: (1, False),
        s.SQL_DDL_TABLE: (1, False),
        s.SQL_IDENTIFIER_CASE: (3, s.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE),
        s.SQL_IDENTIFIER_QUOTE_CHAR: (0, '"'),
        s.SQL_QUOTED_IDENTIFIER_CASE: (3, s.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE),
        # policies decide which columns of a table a party may see
        s.SQL_ALL_TABLES_ARE_SELECTABLE: (1, False),
        s.SQL_NULL_ORDERING: (3, s.SQL_NULLS_SORTED_AT_END),
        s.SQL_KEYWORDS: (4, ["EXPLAIN", "SET"]),
        s.SQL_SEARCH_STRING_ESCAPE: (0, "\\"),
        s.SQL_EXTRA_NAME_CHARACTERS: (0, ""),
        s.SQL_SUPPORTS_COLUMN_ALIASING: (1, True),
        s.SQL_NULL_PLUS_NULL_IS_NULL: (1, True),
        s.SQL_SUPPORTS_CONVERT: (5, []),
        s.SQL_SUPPORTS_LIKE_ESCAPE_CLAUSE: (1, False),
        s.SQL_SUPPORTS_NON_NULLABLE_COLUMNS: (1, False),
        s.SQL_SUPPORTED_GRAMMAR: (3, 1 << s.SQL_MINIMUM_GRAMMAR),
        s.SQL_ANSI92_SUPPORTED_LEVEL: (3, 1 << s.ANSI92_ENTRY_SQL),
        s.SQL_SCHEMA_TERM: (0, "party"),
        s.SQL_PROCEDURE_TERM: (0, ""),
        s.SQL_CATALOG_TERM: (0, "federation"),
        s.SQL_CATALOG_AT_START: (1, True),
        s.SQL_SELECT_FOR_UPDATE_SUPPORTED: (1, False),
        s.SQL_STORED_PROCEDURES_SUPPORTED: (1, False),
        s.SQL_MAX_STATEMENT_LENGTH: (2, 0),
        s.SQL_DEFAULT_TRANSACTION_ISOLATION: (3, s.SQL_TRANSACTION_NONE),
        s.SQL_TRANSACTIONS_SUPPORTED: (1, False),
        s.SQL_SUPPORTED_TRANSACTIONS_ISOLATION_LEVELS: (3, 1 << s.SQL_TRANSACTION_NONE),
        s.SQL_SUPPORTED_RESULT_SET_TYPES: (3, 1 << s.SQL_RESULT_SET_TYPE_FORWARD_ONLY),
        s.SQL_BATCH_UPDATES_SUPPORTED: (1, False),
        s.SQL_SAVEPOINTS_SUPPORTED: (1, False),
        s.SQL_NAMED_PARAMETERS_SUPPORTED: (1, False),
    }


def sql_info_table(requested: Iterable[int] = ()) -> pa.Table:
    """GetSqlInfo result: one row per known requested id (all ids when none requested)."""
    values = _sql_info_values()
    ids = [i for i in (list(requested) or sorted(values)) if i in values]
    children: list[list[Any]] = [[] for _ in SQL_INFO_VALUE_FIELDS]
    type_ids, offsets = [], []
    for i in ids:
        code, value = values[i]
        type_ids.append(code)
        offsets.append(len(children[code]))
        children[code].append(value)
    arrays = [pa.array(vals, type=f.type) for vals, f in zip(children, SQL_INFO_VALUE_FIELDS)]
    union = pa.UnionArray.from_dense(
        pa.array(type_ids, pa.int8()), pa.array(offsets, pa.int32()), arrays,
        [f.name for f in SQL_INFO_VALUE_FIELDS], list(range(6)),
    )
    return pa.Table.from_arrays([pa.array(ids, pa.uint32()), union], schema=SQL_INFO_SCHEMA)


# -- the server ------------------------------------------------------------------------------


class FedSqlFlightServer(flight.FlightServerBase):
    """Flight SQL front of one party's node; see the module docstring."""

    def __init__(self, fed: Federation, party: str, node_address: str, location: str,
                 tls_certificates: list[tuple[bytes, bytes]] | None = None,
                 execute_timeout: float | None = None) -> None:
        fed.party(party)
        super().__init__(location, tls_certificates=tls_certificates or None,
                         middleware={"session": _SessionMiddlewareFactory()})
        self.fed = fed
        self.party = party
        self.catalog = Catalog(fed, party)
        self.node = NodeClient(node_address, party=party, config_path=str(fed.path),
                               default_timeout=execute_timeout)
        self.sessions = Sessions()
        self._prepared: dict[bytes, Prepared] = {}
        self._results: dict[bytes, tuple[float, pa.Table]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fedsql-flight")

    # -- sessions and execution ------------------------------------------------

    def _session(self, context: flight.ServerCallContext) -> Session:
        """The caller's session: its cookie's, else its connection's. A new connection
        session is offered a cookie too, so cookie-aware clients keep it across
        reconnects; clients that ignore cookies stay keyed by connection."""
        middleware = context.get_middleware("session")
        if middleware is not None and middleware.cookie:
            return self.sessions.get("cookie:" + middleware.cookie)[0]
        session, created = self.sessions.get("peer:" + context.peer())
        if created and middleware is not None:
            middleware.issue = secrets.token_urlsafe(18)
            self.sessions.alias("cookie:" + middleware.issue, session)
        return session

    def _execute(self, context: flight.ServerCallContext, sql: str, session: Session) -> pa.Table:
        """Run one statement at the own node; cancel it there if the client goes away."""
        sql = normalise_names(sql, self.fed, self.catalog.federated_schema)
        query_id = uuid.uuid4().hex
        future = self._pool.submit(self.node.execute, sql, dict(session.settings), None, None, query_id)
        while True:
            try:
                table, meta = future.result(timeout=0.2)
                break
            except FutureTimeout:
                if context.is_cancelled():
                    self._pool.submit(self._cancel_quietly, query_id)
                    raise errors.QueryCancelled("the Flight SQL client cancelled the query") from None
        if meta.get("kind") == "set":
            session.settings = {str(k): str(v) for k, v in (meta.get("settings") or {}).items()}
        leakage = meta.get("leakage") or []
        if leakage:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                   b"fedsql:leakage": json.dumps(leakage).encode()})
        return table

    def _cancel_quietly(self, query_id: str) -> None:
        try:
            self.node.cancel(query_id, reason="the Flight SQL client cancelled the query")
        except errors.Error:
            pass

    def _execute_prepared(self, context: flight.ServerCallContext, prepared: Prepared) -> pa.Table:
        prepared.last_used = time.monotonic()
        if prepared.n_params == 0:
            return self._execute(context, prepared.sql, prepared.session)
        if not prepared.parameter_sets:
            raise errors.ProgrammingError(
                f"the statement has {prepared.n_params} ? parameter(s) but none were bound")
        tables = [self._execute(context, substitute_parameters(prepared.sql, row), prepared.session)
                  for row in prepared.parameter_sets]
        try:
            return pa.concat_tables(tables, promote_options="permissive")
        except pa.ArrowInvalid:
            raise errors.DataError("the parameter sets gave results of different types") from None

    def _infer_schema(self, sql: str, session: Session) -> pa.Schema:
        """Output schema without running the query (no MPC, no DP budget): the same
        deterministic planner the node uses, over the owners' public schemas."""
        from planner.compile import compile_query

        sql = normalise_names(sql, self.fed, self.catalog.federated_schema)
        compiled = compile_query(sql, self.fed, self.party, dict(session.settings), self.catalog.schema_of)
        if compiled.kind == "set":
            return pa.schema([])
        if compiled.kind == "explain":
            return pa.schema([pa.field("plan", pa.utf8())])
        return arrow_schema(compiled.plan.output)

    def _store_result(self, table: pa.Table) -> bytes:
        handle = secrets.token_bytes(16)
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (t, _) in self._results.items() if now - t > RESULT_TTL_SECONDS]:
                del self._results[key]
            while len(self._results) >= MAX_PENDING_RESULTS:
                del self._results[min(self._results, key=lambda k: self._results[k][0])]
            self._results[handle] = (now, table)
        return handle

    def _prepared_statement(self, handle: bytes) -> Prepared:
        with self._lock:
            prepared = self._prepared.get(handle)
        if prepared is None:
            raise errors.ProgrammingError("unknown or closed prepared statement handle")
        return prepared

    def _info(self, descriptor: flight.FlightDescriptor, schema: pa.Schema, ticket: bytes,
              rows: int = -1) -> flight.FlightInfo:
        endpoint = flight.FlightEndpoint(ticket, [])
        return flight.FlightInfo(schema, descriptor, [endpoint], rows, -1)

    # -- Flight RPCs ----------------------------------------------------------------

    @_guarded
    def get_flight_info(self, context: flight.ServerCallContext,
                        descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        command = self._command(descriptor)
        if isinstance(command, (fsql.CommandStatementQuery, fsql.CommandPreparedStatementQuery)):
            if isinstance(command, fsql.CommandStatementQuery):
                table = self._execute(context, command.query, self._session(context))
            else:
                table = self._execute_prepared(context, self._prepared_statement(command.prepared_statement_handle))
            handle = self._store_result(table)
            ticket = pack(fsql.TicketStatementQuery(statement_handle=handle))
            return self._info(descriptor, table.schema, ticket, table.num_rows)
        # metadata: the ticket is the command itself, answered at DoGet
        return self._info(descriptor, self._metadata_schema(command), descriptor.command)

    @_guarded
    def get_schema(self, context: flight.ServerCallContext,
                   descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        command = self._command(descriptor)
        if isinstance(command, fsql.CommandStatementQuery):
            return flight.SchemaResult(self._infer_schema(command.query, self._session(context)))
        if isinstance(command, fsql.CommandPreparedStatementQuery):
            return flight.SchemaResult(self._prepared_statement(command.prepared_statement_handle).dataset_schema)
        return flight.SchemaResult(self._metadata_schema(command))

    @_guarded
    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.RecordBatchStream:
        command = unpack(ticket.ticket)
        if isinstance(command, fsql.TicketStatementQuery):
            with self._lock:
                entry = self._results.pop(command.statement_handle, None)
            if entry is None:
                raise errors.ProgrammingError("unknown or expired ticket: run the statement again")
            return flight.RecordBatchStream(entry[1])
        return flight.RecordBatchStream(self._metadata(command))

    @_guarded
    def do_put(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor,
               reader: flight.MetadataRecordBatchReader, writer: flight.FlightMetadataWriter) -> None:
        command = self._command(descriptor)
        if isinstance(command, fsql.CommandPreparedStatementQuery):
            self._bind(self._prepared_statement(command.prepared_statement_handle), reader.read_all())
            return
        if isinstance(command, fsql.CommandStatementUpdate):
            reader.read_all()
            self._execute(context, command.query, self._session(context))
        elif isinstance(command, fsql.CommandPreparedStatementUpdate):
            prepared = self._prepared_statement(command.prepared_statement_handle)
            params = reader.read_all()
            if params.num_columns:
                self._bind(prepared, params)
            self._execute_prepared(context, prepared)
        else:
            raise errors.NotSupportedError(f"DoPut with {type(command).__name__} is not supported")
        writer.write(pa.py_buffer(fsql.DoPutUpdateResult(record_count=-1).SerializeToString()))

    def _bind(self, prepared: Prepared, params: pa.Table) -> None:
        if params.num_columns != prepared.n_params:
            raise errors.ProgrammingError(
                f"the statement has {prepared.n_params} ? parameter(s) but {params.num_columns} were bound")
        if params.num_rows > MAX_PARAMETER_SETS:
            raise errors.NotSupportedError(f"at most {MAX_PARAMETER_SETS} parameter sets per execution")
        columns = [col.to_pylist() for col in params.columns]
        prepared.parameter_sets = list(zip(*columns)) if columns else []
        prepared.last_used = time.monotonic()

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [
            ("CreatePreparedStatement", "Create a prepared statement (parameters: ?)"),
            ("ClosePreparedStatement", "Close a prepared statement"),
            ("SetSessionOptions", "Set session options (fedsql.mode)"),
            ("GetSessionOptions", "Get session options"),
            ("CloseSession", "Close the session"),
        ]

    @_guarded
    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> list[flight.Result]:
        body = action.body.to_pybytes() if action.body is not None else b""
        handler = {
            "CreatePreparedStatement": self._create_prepared,
            "ClosePreparedStatement": self._close_prepared,
            "SetSessionOptions": self._set_session_options,
            "GetSessionOptions": self._get_session_options,
            "CloseSession": self._close_session,
        }.get(action.type)
        if handler is None:
            raise errors.NotSupportedError(f"action '{action.type}' is not supported (fedsql is read-only, "
                                           "without transactions)")
        return [flight.Result(pa.py_buffer(out)) for out in handler(context, body)]

    # -- actions ------------------------------------------------------------------------

    def _create_prepared(self, context: flight.ServerCallContext, body: bytes) -> list[bytes]:
        request = unpack(body)
        if not isinstance(request, fsql.ActionCreatePreparedStatementRequest):
            raise errors.InterfaceError("CreatePreparedStatement needs an ActionCreatePreparedStatementRequest")
        if request.HasField("transaction_id"):
            raise errors.NotSupportedError("fedsql has no transactions")
        session = self._session(context)
        n_params = count_parameters(request.query)
        dataset_schema = self._dataset_schema(request.query, n_params, session)
        handle = uuid.uuid4().bytes
        with self._lock:
            self._expire_prepared()
            self._prepared[handle] = Prepared(request.query, n_params, session, dataset_schema)
        parameter_schema = pa.schema([pa.field(f"parameter_{i + 1}", pa.null()) for i in range(n_params)])
        result = fsql.ActionCreatePreparedStatementResult(
            prepared_statement_handle=handle,
            dataset_schema=dataset_schema.serialize().to_pybytes(),
            parameter_schema=parameter_schema.serialize().to_pybytes() if n_params else b"",
        )
        return [pack(result)]

    def _dataset_schema(self, sql: str, n_params: int, session: Session) -> pa.Schema:
        """Planner's output schema; errors surface now unless parameters may explain
        them (then at execution, with the real values)."""
        probe = substitute_parameters(sql, [None] * n_params) if n_params else sql
        try:
            return self._infer_schema(probe, session)
        except errors.Error:
            if n_params:
                return pa.schema([])
            raise
        except Exception:  # noqa: BLE001 - a planner gap must not block execution
            log.warning("could not infer the schema of a prepared statement", exc_info=True)
            return pa.schema([])

    def _expire_prepared(self) -> None:
        now = time.monotonic()
        for key in [k for k, p in self._prepared.items() if now - p.last_used > HANDLE_IDLE_SECONDS]:
            del self._prepared[key]

    def _close_prepared(self, context: flight.ServerCallContext, body: bytes) -> list[bytes]:
        request = unpack(body)
        if not isinstance(request, fsql.ActionClosePreparedStatementRequest):
            raise errors.InterfaceError("ClosePreparedStatement needs an ActionClosePreparedStatementRequest")
        with self._lock:
            self._prepared.pop(request.prepared_statement_handle, None)
        return []

    def _set_session_options(self, context: flight.ServerCallContext, body: bytes) -> list[bytes]:
        request = session_pb.SetSessionOptionsRequest()
        request.ParseFromString(body)
        session = self._session(context)
        result = session_pb.SetSessionOptionsResult()
        for name, value in request.session_options.items():
            kind = value.WhichOneof("option_value")
            if kind is None:
                session.settings.pop(name, None)
            elif kind != "string_value" or not name.startswith("fedsql."):
                result.errors[name].value = (session_pb.SetSessionOptionsResult.INVALID_NAME
                                             if not name.startswith("fedsql.")
                                             else session_pb.SetSessionOptionsResult.INVALID_VALUE)
            else:
                session.settings[name] = value.string_value
        return [result.SerializeToString()]

    def _get_session_options(self, context: flight.ServerCallContext, body: bytes) -> list[bytes]:
        result = session_pb.GetSessionOptionsResult()
        for name, value in self._session(context).settings.items():
            result.session_options[name].string_value = value
        return [result.SerializeToString()]

    def _close_session(self, context: flight.ServerCallContext, body: bytes) -> list[bytes]:
        session = self._session(context)
        with self._lock:
            for key in [k for k, p in self._prepared.items() if p.session is session]:
                del self._prepared[key]
        self.sessions.close(session)
        return [session_pb.CloseSessionResult(status=session_pb.CloseSessionResult.CLOSED).SerializeToString()]

    # -- metadata commands -------------------------------------------------------------

    def _command(self, descriptor: flight.FlightDescriptor) -> Message:
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            raise errors.NotSupportedError("only Flight SQL command descriptors are supported")
        return unpack(descriptor.command)

    def _metadata_schema(self, command: Message) -> pa.Schema:
        schemas = {
            fsql.CommandGetCatalogs: CATALOGS_SCHEMA,
            fsql.CommandGetDbSchemas: DB_SCHEMAS_SCHEMA,
            fsql.CommandGetTableTypes: TABLE_TYPES_SCHEMA,
            fsql.CommandGetSqlInfo: SQL_INFO_SCHEMA,
            fsql.CommandGetPrimaryKeys: PRIMARY_KEYS_SCHEMA,
            fsql.CommandGetExportedKeys: KEYS_SCHEMA,
            fsql.CommandGetImportedKeys: KEYS_SCHEMA,
            fsql.CommandGetCrossReference: KEYS_SCHEMA,
        }
        if isinstance(command, fsql.CommandGetTables):
            return TABLES_SCHEMA_WITH_SCHEMA if command.include_schema else TABLES_SCHEMA
        schema = schemas.get(type(command))
        if schema is None:
            raise errors.NotSupportedError(f"{type(command).__name__} is not supported")
        return schema

    def _metadata(self, command: Message) -> pa.Table:
        if isinstance(command, fsql.CommandGetCatalogs):
            return pa.Table.from_pylist([{"catalog_name": self.fed.name}], schema=CATALOGS_SCHEMA)
        if isinstance(command, fsql.CommandGetDbSchemas):
            return self._db_schemas(command)
        if isinstance(command, fsql.CommandGetTables):
            return self._tables(command)
        if isinstance(command, fsql.CommandGetTableTypes):
            return pa.Table.from_pylist([{"table_type": TABLE_TYPE}], schema=TABLE_TYPES_SCHEMA)
        if isinstance(command, fsql.CommandGetSqlInfo):
            return sql_info_table(command.info)
        # fedsql declares no keys: the answer is empty, in the spec's schema
        return self._metadata_schema(command).empty_table()

    def _catalog_matches(self, command: Message) -> bool:
        return not command.HasField("catalog") or command.catalog == self.fed.name

    def _db_schemas(self, command: fsql.CommandGetDbSchemas) -> pa.Table:
        pattern = like_to_regex(command.db_schema_filter_pattern
                                if command.HasField("db_schema_filter_pattern") else None)
        names = [s for s in self.catalog.db_schemas() if _matches(pattern, s)] if self._catalog_matches(command) else []
        rows = [{"catalog_name": self.fed.name, "db_schema_name": s} for s in names]
        return pa.Table.from_pylist(rows, schema=DB_SCHEMAS_SCHEMA)

    def _tables(self, command: fsql.CommandGetTables) -> pa.Table:
        schema = TABLES_SCHEMA_WITH_SCHEMA if command.include_schema else TABLES_SCHEMA
        if not self._catalog_matches(command) or (command.table_types and TABLE_TYPE not in command.table_types):
            return schema.empty_table()
        db_pattern = like_to_regex(command.db_schema_filter_pattern
                                   if command.HasField("db_schema_filter_pattern") else None)
        name_pattern = like_to_regex(command.table_name_filter_pattern
                                     if command.HasField("table_name_filter_pattern") else None)
        rows = []
        for entry in self.catalog.tables():
            if not (_matches(db_pattern, entry.db_schema) and _matches(name_pattern, entry.name)):
                continue
            row: dict[str, Any] = {"catalog_name": self.fed.name, "db_schema_name": entry.db_schema,
                                   "table_name": entry.name, "table_type": TABLE_TYPE}
            if command.include_schema:
                row["table_schema"] = self.catalog.table_schema(entry).serialize().to_pybytes()
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=schema)

    # -- lifecycle -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop serving and release the node connections."""
        super().shutdown()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.node.close()
        self.catalog.close()


def _location(location: str, tls: bool) -> str:
    if "://" in location:
        return location
    return ("grpc+tls://" if tls else "grpc://") + location


def start_flight_server(fed: Federation, party: str, node_address: str, location: str,
                        tls_certificates: list[tuple[bytes, bytes]] | None = None) -> FedSqlFlightServer:
    """Start the Flight SQL endpoint of `party` (serving in a background thread).

    `location` is "host:port" (port 0 picks a free one; see `.port`) or a
    grpc:// / grpc+tls:// URI; `tls_certificates` is [(cert_pem, key_pem)].
    Stop it with `.shutdown()`.
    """
    uri = _location(location, bool(tls_certificates))
    try:
        server = FedSqlFlightServer(fed, party, node_address, uri, tls_certificates=tls_certificates)
    except (OSError, pa.ArrowException) as exc:
        raise errors.OperationalError(
            f"party '{party}': cannot serve Flight SQL on {location} ({exc}); "
            f"stop what uses the port or change parties.{party}.flight in {fed.path}"
        ) from None
    thread = threading.Thread(target=server.serve, name=f"fedsql-flight-{party}", daemon=True)
    thread.start()
    log.info("party %s: Flight SQL endpoint on %s (node %s)", party, uri, node_address)
    return server


def run_flight(config_path: str, party: str) -> None:
    """`fedsql flight CONFIG --party P`: serve P's Flight SQL endpoint until SIGINT/SIGTERM."""
    fed = load_config(config_path)
    pcfg = fed.party(party)
    if not pcfg.flight:
        raise errors.ConfigError(
            f"{fed.path}: parties.{party}.flight is not set; add e.g. flight = \"127.0.0.1:32010\""
        )
    server = start_flight_server(fed, party, pcfg.address, pcfg.flight)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, lambda signum, frame: stop.set())
        except ValueError:
            pass  # not the main thread
    print(f"fedsql: party '{party}' Flight SQL endpoint at grpc://{pcfg.flight} (node {pcfg.address})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
