"""SQLite database files, read through ADBC (adbc-driver-sqlite), opened read-only.

SQLite stores values by affinity, not declared type: DECIMAL and DATE columns hold floats or
text. Their declared types are what fedsql shares; values are cast to them in the node's
DuckDB, and fragments that compute over such columns are not pushed into SQLite.

As a sink (INSERT INTO sink.NAME) the file is opened read-write (never created) and the rows
are written in that same storage form, in one transaction (ADBC bulk ingest): DECIMAL as REAL
(a value with more digits than a double keeps exactly is refused, not rounded), DATE as
'YYYY-MM-DD' text, TIMESTAMP as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text, BOOLEAN as 0/1 — so
that the table, read back as a source, gives the values that were inserted.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote as urlquote

from sqlglot import exp

from connectors.sources import Source, pushdown_types_ok, sql_string


def _duckdb_type(declared: str) -> str | None:
    d = declared.upper().strip()
    if m := re.fullmatch(r"(DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", d):
        return f"DECIMAL({m[2]},{m[3] or 0})"
    if d in ("DATE",):
        return "DATE"
    if d in ("TIMESTAMP", "DATETIME"):
        return "TIMESTAMP"
    if d in ("BOOLEAN", "BOOL"):
        return "BOOLEAN"
    if d in ("SMALLINT", "INT2"):
        return "SMALLINT"
    if d == "INT4":
        return "INTEGER"
    if "INT" in d:  # SQLite's own affinity rules (https://sqlite.org/datatype3.html §3.1)
        return "BIGINT"
    if any(k in d for k in ("CHAR", "CLOB", "TEXT")):
        return "VARCHAR"
    if any(k in d for k in ("REAL", "FLOA", "DOUB")):
        return "DOUBLE"
    return None


def sqlite_storage(duckdb_type: str, value: str) -> tuple[str, list[tuple[str, str]]]:
    """How a sink writes a value of `duckdb_type` (the DuckDB expression `value`) into SQLite, in
    the form the source reads back (`_STORAGE`), and the checks for values it cannot hold exactly."""
    if duckdb_type.startswith("DECIMAL"):
        return f"CAST({value} AS DOUBLE)", [
            (f"{{v}} IS NOT NULL AND CAST(CAST({{v}} AS DOUBLE) AS {duckdb_type}) <> {{v}}",
             "values with more digits than SQLite keeps exactly (it stores a DECIMAL as an 8-byte float: "
             "15 significant digits)")]
    if duckdb_type == "DATE":
        return f"CAST({value} AS VARCHAR)", [
            ("NOT ({v} BETWEEN DATE '0001-01-01' AND DATE '9999-12-31')",
             "values outside the years 1-9999 (SQLite keeps a DATE as 'YYYY-MM-DD' text)")]
    if duckdb_type == "TIMESTAMP":
        return f"CAST({value} AS VARCHAR)", [
            ("NOT ({v} BETWEEN TIMESTAMP '0001-01-01' AND TIMESTAMP '9999-12-31 23:59:59.999999')",
             "values outside the years 1-9999 (SQLite keeps a TIMESTAMP as 'YYYY-MM-DD HH:MM:SS' text)")]
    if duckdb_type == "BOOLEAN":
        return f"CAST({value} AS INTEGER)", []
    return value, []


_STORAGE = {"BIGINT": ("integer",), "INTEGER": ("integer",), "SMALLINT": ("integer",), "BOOLEAN": ("integer",),
            "DOUBLE": ("real", "integer"), "VARCHAR": ("text",), "DATE": ("text",), "TIMESTAMP": ("text",)}


class SQLiteSource(Source):
    kind = "sqlite"
    engine_name = "SQLite"
    dialect = "sqlite"

    def _connect(self, write: bool = False):
        path = Path(self.url.path or "")
        if not path.is_file():
            raise self.fail("the database file does not exist", hint="fix the path in the source URL")
        try:
            import adbc_driver_sqlite.dbapi as sq
        except ImportError:
            raise self.fail("the SQLite driver is not installed", hint="pip install adbc-driver-sqlite") from None
        try:
            return sq.connect(f"file:{urlquote(str(path))}?mode={'rw' if write else 'ro'}")
        except Exception as exc:  # noqa: BLE001
            raise self.fail("cannot open the SQLite database", exc) from None

    def schema(self) -> list[tuple[str, str]]:
        out = self.sink_schema()
        self._check_storage(self.relation_parts()[1], out)
        return out

    def sink_schema(self) -> list[tuple[str, str]]:
        """The declared columns as DuckDB types (no value is read)."""
        schema, name = self.relation_parts()
        if schema not in (None, "main"):
            raise self.fail("SQLite relations are 'table' or 'main.table'", hint="fix table = ... in the configuration")
        rows = self._run(f"SELECT name, type FROM pragma_table_info({sql_string(name)})", "describe the table")
        if rows.num_rows == 0:
            raise self.fail("the relation does not exist", hint="create it or fix table = ... in the configuration")
        out = []
        for col, declared in zip(rows.column("name").to_pylist(), rows.column("type").to_pylist()):
            t = _duckdb_type(declared or "")
            if t is None:
                raise self.fail(f"column {col!r} has declared type {declared!r}, which fedsql does not read",
                                hint="declare INTEGER, REAL, TEXT, DECIMAL(p,s), DATE or TIMESTAMP")
            out.append((col, t))
        return out

    def storage(self, column: str, duckdb_type: str, value: str) -> tuple[str, list[tuple[str, str]]]:
        return sqlite_storage(duckdb_type, value)

    def _writer(self):
        return self._connect(write=True)

    def _ingest_target(self) -> tuple[str | None, str]:
        return None, self.relation_parts()[1]  # 'main' is the only schema, and the driver's default

    def _check_storage(self, name: str, columns: list[tuple[str, str]]) -> None:
        """A table that is not STRICT may hold a value of another kind than its column declares
        (text in an INTEGER column, which SQLite's SUM counts as 0): refuse it, so pushed and
        read results both mean what the declared type says. Counts only: no value is read."""
        def q(c: str) -> str:
            return '"' + c.replace('"', '""') + '"'
        checks = []
        for col, t in columns:
            kinds = _STORAGE.get(t, ("integer", "real"))  # DECIMAL: SQLite keeps it as a number
            listed = ", ".join(f"'{k}'" for k in (*kinds, "null"))
            checks.append(f"SUM(typeof({q(col)}) NOT IN ({listed}))")
        bad = self._run(f"SELECT {', '.join(checks)} FROM {q(name)}", "check the table's values").to_pylist()[0]
        wrong = [f"{col} ({n} rows)" for (col, t), n in zip(columns, bad.values()) if n]
        if wrong:
            raise self.fail(f"column(s) {', '.join(wrong)} hold values that are not of the declared type "
                            "(the values stay private)", hint="fix the rows or make the table STRICT")

    def can_run(self, ast: exp.Expression, types: dict[str, str]) -> bool:
        # only where SQLite's storage equals the declared type: integers, floats, text
        return super().can_run(ast, types) and pushdown_types_ok(
            ast, types, ("DECIMAL", "DATE", "TIMESTAMP", "BOOLEAN"))
