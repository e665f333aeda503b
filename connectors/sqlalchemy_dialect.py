"""SQLAlchemy dialect `fedsql://` over the DB-API (`fedsql.connect`).

URL (like SQLite's: the "database" is the federation file)::

    fedsql:///relative/path/federation.toml?party=h1
    fedsql:////absolute/path/federation.toml?party=h1&mode=reveal&timeout=120

Query parameters: `party` (required: your party, the query issuer), `mode`
(`reveal` | `sizes` | `oblivious`, the session's leakage mode) and `timeout`
(seconds per query). Registered under the entry point group
`sqlalchemy.dialects`, so `create_engine("fedsql:///…")` finds it once fedsql is
installed.

Schemas, as the inspector lists them: one per party (its tables, `p1.t`), the
union tables under `federated` (the default schema: SQL names them without a
schema, `t`; `federated.t` is rendered as `t`), and `scratch` — your own
scratch tables. Column types come from the owners' public DuckDB schemas;
each column's comment says its policy level for your party. fedsql has no
keys, indexes, views or transactions; the dialect says so instead of failing.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import types as sqltypes
from sqlalchemy.engine import default
from sqlalchemy.sql import compiler, elements

FEDERATED = "federated"
SCRATCH = "scratch"


class FedsqlIdentifierPreparer(compiler.IdentifierPreparer):
    """DuckDB quoting; the pseudo schema of union tables is never rendered."""

    def __init__(self, dialect: Any, **kw: Any) -> None:
        super().__init__(dialect, initial_quote='"', **kw)

    def schema_for_object(self, obj: Any) -> str | None:  # type: ignore[override]
        schema = getattr(obj, "schema", None)
        if schema is not None and schema == getattr(self.dialect, "federated_schema", FEDERATED):
            return None
        return schema


class FedsqlCompiler(compiler.SQLCompiler):
    def visit_column(self, column: Any, add_to_result_map: Any = None, include_table: bool = True,
                     **kw: Any) -> str:
        """`t.x`, never `p2.t.x`: DuckDB and the planner qualify columns by table (or alias) only."""
        text = super().visit_column(column, add_to_result_map=add_to_result_map, include_table=False, **kw)
        table = column.table
        if table is None or not include_table or not table.named_with_column:
            return text
        name = table.name
        ambiguous = kw.get("ambiguous_table_name_map")
        if ambiguous and name in ambiguous and not self.preparer.schema_for_object(table):
            name = ambiguous[name]  # the FROM clause renders this table under that alias
        if isinstance(name, elements._truncated_label):
            name = self._truncated_identifier("alias", name)
        return self.preparer.quote(name) + "." + text


class FedsqlTypeCompiler(compiler.GenericTypeCompiler):
    def visit_double(self, type_: Any, **kw: Any) -> str:
        return "DOUBLE"

    def visit_large_binary(self, type_: Any, **kw: Any) -> str:
        return "BLOB"


# SQLAlchemy 1.4 (Superset pins it) has neither Double nor Uuid
_DOUBLE = getattr(sqltypes, "Double", sqltypes.Float)
_UUID = getattr(sqltypes, "Uuid", sqltypes.String)

_SIMPLE: dict[str, Any] = {
    "BOOLEAN": sqltypes.Boolean, "BOOL": sqltypes.Boolean,
    "TINYINT": sqltypes.SmallInteger, "SMALLINT": sqltypes.SmallInteger, "UTINYINT": sqltypes.SmallInteger,
    "INTEGER": sqltypes.Integer, "INT": sqltypes.Integer, "USMALLINT": sqltypes.Integer,
    "BIGINT": sqltypes.BigInteger, "UINTEGER": sqltypes.BigInteger, "UBIGINT": sqltypes.BigInteger,
    "HUGEINT": sqltypes.BigInteger, "UHUGEINT": sqltypes.BigInteger,
    "FLOAT": sqltypes.Float, "REAL": sqltypes.Float, "DOUBLE": _DOUBLE,
    "VARCHAR": sqltypes.String, "TEXT": sqltypes.String, "STRING": sqltypes.String, "CHAR": sqltypes.String,
    "BLOB": sqltypes.LargeBinary, "BYTEA": sqltypes.LargeBinary,
    "DATE": sqltypes.Date, "TIME": sqltypes.Time,
    "TIMESTAMP": sqltypes.DateTime, "DATETIME": sqltypes.DateTime, "TIMESTAMP_S": sqltypes.DateTime,
    "TIMESTAMP_MS": sqltypes.DateTime, "TIMESTAMP_NS": sqltypes.DateTime,
    "INTERVAL": sqltypes.Interval, "UUID": _UUID, "JSON": sqltypes.JSON,
}
_DECIMAL = re.compile(r"^(?:DECIMAL|NUMERIC)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?$")


def sqla_type(type_name: str) -> Any:
    """SQLAlchemy type for a DuckDB type name (`DECIMAL(10,2)` → Numeric(10, 2)); NullType if unknown."""
    name = " ".join(type_name.strip().upper().split())
    if name in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return sqltypes.DateTime(timezone=True)
    if name in _SIMPLE:
        return _SIMPLE[name]()
    m = _DECIMAL.match(name)
    if m:
        return sqltypes.Numeric(int(m.group(1) or 18), int(m.group(2) or (0 if m.group(1) else 3)))
    if name.startswith("VARCHAR("):
        return sqltypes.String()
    if name.endswith("[]"):
        return sqltypes.ARRAY(sqla_type(name[:-2]))
    return sqltypes.NullType()


class FedsqlDialect(default.DefaultDialect):
    name = "fedsql"
    driver = "fedsql"
    supports_statement_cache = True
    default_paramstyle = "qmark"
    supports_native_boolean = True
    supports_native_decimal = True
    supports_alter = False
    supports_sequences = False
    supports_comments = False
    supports_default_values = False
    supports_empty_insert = False
    supports_multivalues_insert = True
    supports_sane_rowcount = False
    supports_sane_multi_rowcount = False
    postfetch_lastrowid = False
    implicit_returning = False
    insert_returning = update_returning = delete_returning = False
    requires_name_normalize = False
    preparer = FedsqlIdentifierPreparer
    statement_compiler = FedsqlCompiler
    type_compiler_cls = FedsqlTypeCompiler
    default_schema_name = FEDERATED
    federated_schema = FEDERATED

    @classmethod
    def import_dbapi(cls) -> Any:
        import fedsql

        return fedsql

    @classmethod
    def dbapi(cls) -> Any:  # SQLAlchemy < 2.0
        return cls.import_dbapi()

    def create_connect_args(self, url: Any) -> tuple[list[Any], dict[str, Any]]:
        from fedsql.errors import InterfaceError

        options = dict(url.query)
        # fedsql://USER:PASSWORD@/path?party=P logs in as an account of P; without a password the
        # user part names the party (fedsql://P@/path), as before accounts existed
        party = options.pop("party", None) or (url.username if url.password is None else None)
        if not party:
            raise InterfaceError("the fedsql URL needs ?party=NAME (your party), e.g. "
                                 "fedsql:///federation.toml?party=h1")
        if not url.database:
            raise InterfaceError("the fedsql URL needs the federation file: fedsql:///path/federation.toml?party=NAME")
        kwargs: dict[str, Any] = {"config": url.database, "party": party}
        if url.password is not None:
            kwargs.update(user=url.username, password=url.password)
        if "mode" in options:
            kwargs["mode"] = options.pop("mode")
        if "timeout" in options:
            kwargs["timeout"] = float(options.pop("timeout"))
        if options:
            raise InterfaceError(f"unknown fedsql URL parameters: {', '.join(sorted(options))} "
                                 "(known: party, mode, timeout)")
        return [], kwargs

    def on_connect(self) -> Any:
        def remember_schema(dbapi_connection: Any) -> None:
            fed = getattr(dbapi_connection, "federation", None)
            if fed is not None:
                self.federated_schema = self.default_schema_name = fed.federated_schema

        return remember_schema

    # -- no transactions, no server version, no isolation levels ----------------

    def do_begin(self, dbapi_connection: Any) -> None:
        pass

    def do_rollback(self, dbapi_connection: Any) -> None:
        pass

    def do_commit(self, dbapi_connection: Any) -> None:
        pass

    def do_close(self, dbapi_connection: Any) -> None:
        if not getattr(dbapi_connection, "closed", False):
            dbapi_connection.close()

    def do_ping(self, dbapi_connection: Any) -> bool:
        cur = dbapi_connection.cursor()
        try:
            cur.execute("SELECT 1")
        finally:
            cur.close()
        return True

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        import fedsql

        return tuple(int(p) for p in fedsql.__version__.split(".")[:3] if p.isdigit())

    def _get_default_schema_name(self, connection: Any) -> str:
        return self.federated_schema

    def get_isolation_level(self, dbapi_connection: Any) -> str:
        return "AUTOCOMMIT"

    def get_default_isolation_level(self, dbapi_conn: Any) -> str:
        return "AUTOCOMMIT"

    def get_isolation_level_values(self, dbapi_conn: Any) -> list[str]:
        return ["AUTOCOMMIT"]

    def set_isolation_level(self, dbapi_connection: Any, level: str) -> None:
        if level != "AUTOCOMMIT":
            from fedsql.errors import NotSupportedError

            raise NotSupportedError("fedsql has no transactions: only AUTOCOMMIT")

    # -- reflection --------------------------------------------------------------

    def _dbapi(self, connection: Any) -> Any:
        return connection.connection.dbapi_connection

    def _tables(self, connection: Any) -> list[tuple[str, str, str]]:
        return self._dbapi(connection).tables()

    def _schema(self, schema: str | None) -> str:
        return schema or self.federated_schema

    def get_schema_names(self, connection: Any, **kw: Any) -> list[str]:
        conn = self._dbapi(connection)
        names = set(conn.federation.parties) if conn.federation is not None else set()
        names |= {s for s, _, _ in self._tables(connection)}
        names |= {self.federated_schema, SCRATCH}
        return sorted(names)

    def get_table_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        want = self._schema(schema)
        return sorted(name for s, name, _ in self._tables(connection) if s == want)

    def get_view_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        return []

    def get_temp_table_names(self, connection: Any, **kw: Any) -> list[str]:
        return []

    def has_table(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> bool:
        return table_name in self.get_table_names(connection, schema)

    def _sql_name(self, table_name: str, schema: str | None) -> str:
        q = self.identifier_preparer.quote
        schema = self._schema(schema)
        return q(table_name) if schema == self.federated_schema else f"{q(schema)}.{q(table_name)}"

    def get_columns(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        from fedsql.errors import ProgrammingError
        from sqlalchemy.exc import NoSuchTableError

        if not self.has_table(connection, table_name, schema):
            raise NoSuchTableError(f"{self._schema(schema)}.{table_name}")
        try:
            described = self._dbapi(connection).describe(self._sql_name(table_name, schema))
        except ProgrammingError:
            raise NoSuchTableError(f"{self._schema(schema)}.{table_name}") from None
        return [
            {"name": name, "type": sqla_type(type_name), "nullable": True, "default": None,
             "autoincrement": False, "comment": f"fedsql level: {level}"}
            for name, type_name, level in described
        ]

    def get_pk_constraint(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> dict[str, Any]:
        return {"constrained_columns": [], "name": None}

    def get_foreign_keys(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> list[Any]:
        return []

    def get_indexes(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> list[Any]:
        return []

    def get_unique_constraints(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> list[Any]:
        return []

    def get_check_constraints(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> list[Any]:
        return []

    def get_table_comment(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> dict[str, Any]:
        kinds = {(s, n): k for s, n, k in self._tables(connection)}
        kind = kinds.get((self._schema(schema), table_name))
        text = {"federated": "federated union table", "scratch": "your scratch table",
                "table": f"table of party {schema}"}.get(kind or "")
        return {"text": text}

    def get_sequence_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        return []


dialect = FedsqlDialect
