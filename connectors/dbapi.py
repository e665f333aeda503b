"""PEP 249 (DB-API 2.0) connection and cursor over a party's own node.

A result arrives as a stream of Arrow record batches (fedsql/result_meta.py ResultStream):
`execute` returns once the node sent the result's header (description, leakage, rowcount), and
the cursor reads and converts one record batch at a time as rows are fetched, so a result of
millions of rows is never held twice nor turned into Python rows at once; `fetch_arrow_table()`
and `fetch_record_batch()` hand out the rows not fetched yet as Arrow. Parameters are substituted client-side as SQL literals (the node only
accepts SQL text): every value is rendered by `sql_literal`, never by string
formatting of user input, and placeholders are found only outside quotes and
comments.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import math
import re
import time as _time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from fedsql import errors, hidden_params
from fedsql.errors import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)

apilevel = "2.0"
threadsafety = 1  # threads may share the module, not connections
paramstyle = "qmark"  # `named` (:name with a mapping) is accepted too

# -- type objects and constructors (PEP 249) ---------------------------------


class DBAPITypeObject:
    """Compares equal to every DuckDB type name of its group (type_code is that name)."""

    def __init__(self, name: str, *base_types: str) -> None:
        self.name = name
        self.values = frozenset(base_types)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DBAPITypeObject):
            return self is other
        if isinstance(other, str):
            return _base_type(other) in self.values
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<fedsql type {self.name}>"


def _base_type(type_name: str) -> str:
    """`DECIMAL(10,2)` → `DECIMAL`, `TIMESTAMP WITH TIME ZONE` kept whole."""
    return type_name.split("(", 1)[0].strip().upper()


STRING = DBAPITypeObject("STRING", "VARCHAR", "CHAR", "TEXT", "STRING", "UUID", "ENUM", "JSON")
BINARY = DBAPITypeObject("BINARY", "BLOB", "BYTEA", "VARBINARY", "BIT")
NUMBER = DBAPITypeObject(
    "NUMBER",
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
    "FLOAT", "REAL", "DOUBLE", "DECIMAL", "NUMERIC", "BOOLEAN",
)
DATETIME = DBAPITypeObject(
    "DATETIME",
    "DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ",
    "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIME WITH TIME ZONE", "INTERVAL",
)
ROWID = DBAPITypeObject("ROWID", "ROWID")

Date = _dt.date
Time = _dt.time
Timestamp = _dt.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> _dt.date:
    return Date(*_time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> _dt.time:
    return Time(*_time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> _dt.datetime:
    return Timestamp(*_time.localtime(ticks)[:6])


# -- SQL text scanning and literal rendering -----------------------------------

_TOKEN = re.compile(
    r"""
    (?P<string>'(?:[^']|'')*'?)          # '...' with '' escapes (unterminated ok)
    |(?P<ident>"(?:[^"]|"")*"?)          # "identifier"
    |(?P<line_comment>--[^\n]*)
    |(?P<block_comment>/\*.*?(?:\*/|\Z))
    |(?P<cast>::)
    |(?P<qmark>\?)
    |(?P<named>:[A-Za-z_][A-Za-z0-9_]*)
    |(?P<semicolon>;)
    |(?P<other>[^'"\-/:?;]+|.)
    """,
    re.VERBOSE | re.DOTALL,
)


def sql_segments(sql: str) -> Iterator[tuple[str, str]]:
    """Yield (kind, text) pieces of `sql`; kinds: string, ident, line_comment,
    block_comment, cast, qmark, named, semicolon, other.

    Enough lexing to find placeholders and statement ends outside quotes and
    comments; shared by the shell's statement splitter.
    """
    for m in _TOKEN.finditer(sql):
        yield m.lastgroup or "other", m.group()


def sql_literal(value: Any) -> str:
    """Render a Python value as a SQL literal that cannot change the statement's shape."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"CAST('{value!r}' AS DOUBLE)"
        return repr(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise DataError(f"cannot use non-finite decimal {value} as a parameter")
        return format(value, "f")
    if isinstance(value, str):
        if "\x00" in value:
            raise DataError("string parameters may not contain NUL characters")
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (bytes, bytearray, memoryview)):
        hexed = "".join(f"\\x{b:02X}" for b in bytes(value))
        return f"CAST('{hexed}' AS BLOB)"
    if isinstance(value, _dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, _dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, _dt.time):
        return f"TIME '{value.isoformat()}'"
    # numpy scalars and the like
    if hasattr(value, "item") and callable(value.item):
        return sql_literal(value.item())
    raise NotSupportedError(f"cannot use a parameter of type {type(value).__name__}")


def substitute_parameters(sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None) -> str:
    """Replace `?` (with a sequence) or `:name` (with a mapping) by literals."""
    if parameters is None:
        return sql
    named = isinstance(parameters, Mapping)
    if not named and (isinstance(parameters, (str, bytes)) or not isinstance(parameters, Sequence)):
        raise ProgrammingError("parameters must be a sequence (for ?) or a mapping (for :name)")
    out: list[str] = []
    index = 0
    for kind, text in sql_segments(sql):
        if kind == "qmark":
            if named:
                raise ProgrammingError("the statement uses ? placeholders but parameters is a mapping")
            if index >= len(parameters):  # type: ignore[arg-type]
                raise ProgrammingError(
                    f"the statement has more ? placeholders than the {len(parameters)} parameters given"  # type: ignore[arg-type]
                )
            out.append(sql_literal(parameters[index]))  # type: ignore[index]
            index += 1
        elif kind == "named" and named:
            key = text[1:]
            if key not in parameters:
                raise ProgrammingError(f"no value given for parameter {text}")
            out.append(sql_literal(parameters[key]))  # type: ignore[index]
        else:
            out.append(text)
    if not named and index != len(parameters):  # type: ignore[arg-type]
        raise ProgrammingError(f"the statement has {index} ? placeholders but {len(parameters)} parameters were given")  # type: ignore[arg-type]
    return "".join(out)


# -- description -------------------------------------------------------------

_DECIMAL = re.compile(r"^\s*(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$", re.I)


def _describe_column(col: Mapping[str, Any]) -> tuple[Any, ...]:
    type_name = str(col.get("type") or "VARCHAR")
    precision = scale = None
    m = _DECIMAL.match(type_name)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
    return (col.get("name"), type_name, None, None, precision, scale, True)


def _arrow_type_name(arrow_type: Any) -> str:
    """Fallback DuckDB-ish type name when the node sent no column metadata."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}[t.bit_width]
    if pa.types.is_floating(t):
        return "FLOAT" if t.bit_width == 32 else "DOUBLE"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP"
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BLOB"
    return "VARCHAR"


# -- connection and cursor -----------------------------------------------------


class Connection:
    """A session with one party's node: holds session settings such as fedsql.mode."""

    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    def __init__(self, client: Any, party: str, federation: Any = None, settings: dict[str, str] | None = None,
                 timeout: float | None = None, user: str | None = None) -> None:
        self._client = client
        self.party = party
        self.user = user  # the account whose password connect() checked; named in the audit records
        self.federation = federation
        self.settings: dict[str, str] = dict(settings or {})
        self.timeout = timeout
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("the connection is closed")

    def cursor(self) -> "Cursor":
        self._check_open()
        return Cursor(self)

    def execute(self, sql: str, parameters: Any = None) -> "Cursor":
        """Shortcut (as in sqlite3/duckdb): a new cursor that has run `sql`."""
        cur = self.cursor()
        cur.execute(sql, parameters)
        return cur

    def commit(self) -> None:
        """Queries are read-only; nothing to commit."""
        self._check_open()

    def rollback(self) -> None:
        self._check_open()
        raise NotSupportedError("fedsql has no transactions; there is nothing to roll back")

    def close(self) -> None:
        """Close the session; closing twice raises InterfaceError (PEP 249: any use after close)."""
        self._check_open()
        self._closed = True
        self._client.close()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close()

    # -- catalog (answered by the own node: configuration, public schemas, scratch space) --

    def tables(self) -> list[tuple[str, str, str]]:
        """(schema, name, kind) of every table this party can name: `kind` is `table`
        (a party's table, schema = the party), `federated` (schema `federated`; SQL names
        it without schema) or `scratch` (this party's own scratch space, schema `scratch`)."""
        return [tuple(r) for r in self.execute("SHOW TABLES").fetchall()]  # type: ignore[misc]

    def describe(self, table: str) -> list[tuple[str, str, str]]:
        """(column, DuckDB type, level for this party) of `table` (`p.t`, `t` or `scratch.t`)."""
        return [tuple(r) for r in self.execute(f"DESCRIBE {table}").fetchall()]  # type: ignore[misc]

    @property
    def hidden_params(self) -> bool:
        """SET fedsql.hidden_params = on: ? values go to the node beside the SQL, never into it."""
        return self.settings.get("fedsql.hidden_params") == "on"

    def _run(self, sql: str, on_progress: Any = None, hidden: bytes | None = None) -> Any:
        """Run `sql`; its ResultStream once the header arrived (the rows follow on demand)."""
        self._check_open()
        named: dict[str, Any] = {"user": self.user} if self.user else {}  # clients without accounts: old signature
        if hidden is not None:
            named["hidden_params"] = hidden
        result = self._client.stream(sql, self.settings, timeout=self.timeout, on_progress=on_progress, **named)
        meta = result.meta
        if meta.get("kind") == "set" and isinstance(meta.get("settings"), dict):
            self.settings = {str(k): str(v) for k, v in meta["settings"].items()}
        return result


class Cursor:
    """PEP 249 cursor; `leakage` and `columns_meta` describe the last result, whose rows are
    read from the node's stream as they are fetched (a new execute or close stops it)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.arraysize = 1
        self._closed = False
        self._result: Any = None
        self._reset()

    def _reset(self) -> None:
        if self._result is not None:
            self._result.close()  # the previous result's stream stops (the node stops sending)
        self._result = None  # a ResultStream while there is a result set
        self._batch: Any = None  # the record batch rows are fetched from, and its rows as tuples
        self._batch_rows: list[tuple[Any, ...]] = []
        self._batch_pos = 0
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self.lastrowid = None  # fedsql tables have no row ids
        self.leakage: list[str] = []
        self.columns_meta: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {}

    def _check_open(self) -> None:
        if self._closed:
            raise InterfaceError("the cursor is closed")
        self.connection._check_open()

    # -- execution -----------------------------------------------------------

    def execute(self, operation: str, parameters: Any = None, on_progress: Any = None) -> "Cursor":
        self._check_open()
        if not isinstance(operation, str):
            raise ProgrammingError("the operation must be a SQL string")
        hidden = None
        if self.connection.hidden_params and parameters is not None:
            sql, hidden = operation, hidden_params.encode(parameters)
        else:
            sql = substitute_parameters(operation, parameters)
        self._reset()
        result = self.connection._run(sql, on_progress=on_progress, hidden=hidden)
        meta = result.meta
        self.meta = meta
        self.leakage = [str(x) for x in meta.get("leakage", [])]
        cols = list(meta.get("columns") or [])
        rows = meta.get("kind") in ("rows", "explain")
        if not cols and (rows or result.total_rows):
            cols = [{"name": f.name, "type": _arrow_type_name(f.type), "note": None} for f in result.schema]
        self.columns_meta = cols
        if cols or rows:
            self._result = result
            self.description = [_describe_column(c) for c in self.columns_meta] or None
            self.rowcount = result.total_rows if result.total_rows is not None else -1
        else:  # DDL / INSERT into the scratch space, SET: no result set
            with result:
                result.read_all()  # just the end marker (checked); the call completes
            self.rowcount = int(meta.get("rowcount", -1))
        return self

    def executemany(self, operation: str, seq_of_parameters: Any) -> "Cursor":
        """Run once per parameter set; keeps the last result, rowcount sums row counts."""
        self._check_open()
        total = 0
        any_count = False
        for params in seq_of_parameters:
            self.execute(operation, params)
            if self.rowcount >= 0:
                total += self.rowcount
                any_count = True
        self.rowcount = total if any_count else -1
        return self

    # -- fetching ------------------------------------------------------------

    def _stream(self) -> Any:
        self._check_open()
        if self._result is None:
            raise ProgrammingError("no result set: execute a query first")
        return self._result

    def _rows_ahead(self) -> bool:
        """Rows of the current batch are ready to fetch; reads (and converts) the next batch if needed."""
        result = self._stream()
        while self._batch_pos >= len(self._batch_rows):
            batch = result.read_next_batch()
            if batch is None:
                self._batch, self._batch_rows, self._batch_pos = None, [], 0
                return False
            columns = [c.to_pylist() for c in batch.columns]
            self._batch = batch
            self._batch_rows = list(zip(*columns)) if columns else [()] * batch.num_rows
            self._batch_pos = 0
        return True

    def fetchone(self) -> tuple[Any, ...] | None:
        if not self._rows_ahead():
            return None
        self._batch_pos += 1
        return self._batch_rows[self._batch_pos - 1]

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        n = max(self.arraysize if size is None else size, 0)
        out: list[tuple[Any, ...]] = []
        self._stream()
        while len(out) < n and self._rows_ahead():
            take = self._batch_rows[self._batch_pos:self._batch_pos + n - len(out)]
            self._batch_pos += len(take)
            out.extend(take)
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        while self._rows_ahead():
            out.extend(self._batch_rows[self._batch_pos:])
            self._batch_pos = len(self._batch_rows)
        return out

    def _arrow_ahead(self) -> Iterator[Any]:
        """The rows not fetched yet as record batches: the rest of the current batch, then the stream."""
        result = self._stream()
        if self._batch is not None and self._batch_pos < self._batch.num_rows:
            rest = self._batch.slice(self._batch_pos)
            self._batch_pos = len(self._batch_rows)
            yield rest
        self._batch, self._batch_rows, self._batch_pos = None, [], 0
        yield from result

    def fetch_arrow_table(self) -> Any:
        """The rows not fetched yet, as one pyarrow.Table (all of them right after execute)."""
        import pyarrow as pa

        schema = self._stream().schema
        return pa.Table.from_batches(list(self._arrow_ahead()), schema=schema)

    def fetch_record_batch(self) -> Any:
        """The rows not fetched yet as a pyarrow.RecordBatchReader that reads the node's stream as
        batches arrive (one batch in memory at a time)."""
        import pyarrow as pa

        schema = self._stream().schema
        return pa.RecordBatchReader.from_batches(schema, self._arrow_ahead())

    def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> Sequence[Any]:
        """fedsql has no stored procedures; a scalar function is called instead:
        `SELECT procname(?, …)`, its one-row result is the result set. Returns
        `parameters` unchanged (there are no output parameters)."""
        if not isinstance(procname, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", procname):
            raise ProgrammingError(f"not a function name: {procname!r}")
        params = list(parameters or ())
        self.execute(f"SELECT {procname}({', '.join('?' for _ in params)})", params)
        return parameters

    def nextset(self) -> None:
        """fedsql statements return at most one result set: always None (no more sets)."""
        self._stream()
        return None

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self

    def __next__(self) -> tuple[Any, ...]:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    # -- misc (PEP 249) ------------------------------------------------------

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def close(self) -> None:
        """Close the cursor; a result still streaming is stopped at the node."""
        self._reset()
        self._closed = True

    def __enter__(self) -> "Cursor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    config: str = "federation.toml",
    party: str = "h1",
    mode: str | None = None,
    timeout: float | None = None,
    user: str | None = None,
    password: str | None = None,
) -> Connection:
    """Open a session with `party`'s node as listed in the federation `config`.

    Checks the node answers (PartyUnavailable otherwise) and that it belongs to
    this federation, so a wrong port is caught here and not at the first query.
    With `user` and `password`, the password is checked against the party's accounts
    (`fedsql user add`) and every query's audit record names the user; the connection
    still uses the party's client certificate (docs/decisions.md, D-USERS).
    """
    from fedsql.client import NodeClient
    from fedsql.config import load_config

    fed = load_config(config)
    pconf = fed.party(party)
    from fedsql.settings import MODES

    if mode is not None and mode not in MODES:
        raise ProgrammingError(f"unknown mode {mode!r}; use one of {', '.join(map(repr, MODES))}")
    if (user is None) != (password is None):
        raise InterfaceError("give both user and password, or neither (the client certificate alone)")
    if user is not None:
        from fedsql.users import Accounts, Authenticator

        Authenticator(Accounts.of(fed, party)).login(user, password or "")  # AuthenticationError if wrong
    client = NodeClient(pconf.address, party=party, config_path=str(config), default_timeout=None)
    try:
        info = client.health(timeout=5.0)
        if info.get("federation") and info["federation"] != fed.name:
            raise OperationalError(
                f"the node at {pconf.address} belongs to federation '{info['federation']}', "
                f"not '{fed.name}' ({fed.path})"
            )
        if info.get("party") and info["party"] != party:
            raise OperationalError(f"the node at {pconf.address} is party '{info['party']}', not '{party}'")
    except BaseException:
        client.close()
        raise
    settings = {"fedsql.mode": mode} if mode else {}
    return Connection(client, party, federation=fed, settings=settings, timeout=timeout, user=user)


__all__ = [
    "apilevel", "threadsafety", "paramstyle", "connect", "Connection", "Cursor",
    "STRING", "BINARY", "NUMBER", "DATETIME", "ROWID",
    "Date", "Time", "Timestamp", "Binary", "DateFromTicks", "TimeFromTicks", "TimestampFromTicks",
    "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
    "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
    "sql_literal", "substitute_parameters", "sql_segments", "errors",
]
