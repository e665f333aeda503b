"""Flight SQL metadata of a federation: result schemas, SqlInfo, table schemas.

Kept apart from the server so the exact shapes the spec demands live in one
place, testable without a network. Table schemas come from this party's node
(`DESCRIBE` through the client API): schemas are public in fedsql, rows never pass here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import pyarrow as pa

from connectors.flightsql import FlightSql_pb2 as fsql
from fedsql.config import Federation, TableConfig

SERVER_NAME = "fedsql"
TABLE_TYPE = "TABLE"
HANDLE_IDLE_SECONDS = 3600.0
"""Prepared statements and sessions unused this long are forgotten (reported as the statement timeout)."""

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


# -- catalog --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableEntry:
    db_schema: str
    name: str
    members: tuple[TableConfig, ...]  # one party table, or the members of a union


class Catalog:
    """The federation's tables as this party's node knows them, asked through the client API.

    The list comes from the federation file (public to the party); columns, types and this
    party's levels come from the node's own `DESCRIBE`, so Flight SQL keeps no cache, opens no
    channel to a peer and uses no node key: the node's catalog (fedsql/catalog.py), with its
    schema cache, expiry and invalidation, is the only one."""

    def __init__(self, fed: Federation, party: str, node: Any) -> None:
        """`node`: the Flight server's fedsql.client.NodeClient to this party's node."""
        self.fed = fed
        self.party = party
        self.node = node
        self.federated_schema = fed.federated_schema

    def db_schemas(self) -> list[str]:
        return sorted([*self.fed.parties, *([self.federated_schema] if self.fed.federated else [])])

    def tables(self) -> list[TableEntry]:
        out = [TableEntry(p, t, (tcfg,)) for p, pcfg in self.fed.parties.items() for t, tcfg in pcfg.tables.items()]
        out += [TableEntry(self.federated_schema, name, tuple(self.fed.table(p, t) for p, t in ftable.members))
                for name, ftable in self.fed.federated.items()]
        return sorted(out, key=lambda e: (e.db_schema, e.name))

    def describe(self, db_schema: str, table: str, user: str | None = None) -> list[tuple[str, str, str]]:
        """(column, DuckDB type, level) of `db_schema.table`, from the node: the level as `user` (a
        logged-in account, its roles' grants included) has it, else as this party has it."""
        from sqlglot import exp

        sql = exp.Describe(this=exp.table_(table, db=db_schema, quoted=True)).sql(dialect="duckdb")
        rows, _ = self.node.execute(sql, user=user)
        return [(str(c), str(t), str(lv)) for c, t, lv in zip(*(rows.column(i).to_pylist() for i in range(3)))]

    def schema_of(self, party: str, table: str) -> tuple[tuple[str, str], ...]:
        """(column, DuckDB type) pairs of `party.table`, for planning a statement's result schema."""
        return tuple((c, t) for c, t, _ in self.describe(party, table))

    def table_schema(self, entry: TableEntry, user: str | None = None) -> pa.Schema:
        meta = {"ARROW:FLIGHT:SQL:CATALOG_NAME": self.fed.name,
                "ARROW:FLIGHT:SQL:DB_SCHEMA_NAME": entry.db_schema,
                "ARROW:FLIGHT:SQL:TABLE_NAME": entry.name}
        described = self.describe(entry.db_schema, entry.name, user)
        return arrow_schema([(c, t) for c, t, _ in described], meta, {c: lv for c, _, lv in described})


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
