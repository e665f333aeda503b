"""SQLite database files, read through ADBC (adbc-driver-sqlite), opened read-only.

SQLite stores values by affinity, not declared type: DECIMAL and DATE columns hold floats or
text. Their declared types are what fedsql shares; values are cast to them in the node's
DuckDB, and fragments that compute over such columns are not pushed into SQLite.
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


_STORAGE = {"BIGINT": ("integer",), "INTEGER": ("integer",), "SMALLINT": ("integer",), "BOOLEAN": ("integer",),
            "DOUBLE": ("real", "integer"), "VARCHAR": ("text",), "DATE": ("text",), "TIMESTAMP": ("text",)}


class SQLiteSource(Source):
    kind = "sqlite"
    engine_name = "SQLite"
    dialect = "sqlite"

    def _connect(self):
        path = Path(self.url.path or "")
        if not path.is_file():
            raise self.fail("the database file does not exist", hint="fix the path in the source URL")
        try:
            import adbc_driver_sqlite.dbapi as sq
        except ImportError:
            raise self.fail("the SQLite driver is not installed", hint="pip install adbc-driver-sqlite") from None
        try:
            return sq.connect(f"file:{urlquote(str(path))}?mode=ro")
        except Exception as exc:  # noqa: BLE001
            raise self.fail("cannot open the SQLite database", exc) from None

    def schema(self) -> list[tuple[str, str]]:
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
        self._check_storage(name, out)
        return out

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
