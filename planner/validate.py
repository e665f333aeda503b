"""Bind a query against empty tables of the public schemas in DuckDB.

DuckDB's own binder gives the exact output names and types a user would get
from plain DuckDB, and its error for unknown columns, wrong types or bad
functions. Only schemas are involved, never data.
"""

from __future__ import annotations

import duckdb

from fedsql.errors import ProgrammingError
from fedsql.locked_duckdb import DuckDBProgrammingError, DuckDBSyntaxError, open_locked
from plan.schemas import Schema, quote
from plan.schemas import duckdb_type

OutputSchema = tuple[tuple[str, str], ...]


def describe(sql: str, tables: dict[str, Schema], display: dict[str, str] | None = None) -> OutputSchema:
    """Output (name, type) of `sql` over empty tables named by `tables` ("party.table" or "table").

    `display` maps internal table names back to the user's names for errors. The DuckDB is
    locked (fedsql/locked_duckdb.py): `sql` is the user's text, and no file may be read while
    binding it. Column types are re-rendered by the strict type grammar (plan/schemas.py),
    so no text from a peer's schema reaches the DDL unparsed.
    """
    con = open_locked()
    try:
        for name, schema in tables.items():
            cols = ", ".join(f"{quote(c)} {_ddl_type(t)}" for c, t in schema)
            db, _, table = name.rpartition(".")
            if db:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(db)}")
            target = f"{quote(db)}.{quote(table)}" if db else quote(table)
            try:  # checked names and types: a failure here is a schema DuckDB cannot hold
                con.execute(f"CREATE TABLE {target} ({cols})")
            except duckdb.Error as exc:
                raise DuckDBProgrammingError(f"table {(display or {}).get(name, name)} cannot be planned over: "
                                             f"{_clean(exc, display or {})}") from None
        try:
            rows = con.execute(f"DESCRIBE {sql}").fetchall()
        except duckdb.ParserException as exc:
            raise DuckDBSyntaxError(_clean(exc, display or {})) from None
        except duckdb.Error as exc:
            raise DuckDBProgrammingError(_clean(exc, display or {})) from None
        return tuple((r[0], r[1]) for r in rows)
    finally:
        con.close()


def _ddl_type(typ: str) -> str:
    try:
        return duckdb_type(typ)
    except ValueError as exc:
        raise ProgrammingError(f"column type {typ[:80]!r} is not a plain DuckDB type ({exc}); refused") from None


def _clean(exc: Exception, display: dict[str, str]) -> str:
    # DuckDB appends a LINE/caret excerpt of the rewritten query; the first part says it all
    text = str(exc).strip().split("\n\nLINE")[0]
    for internal, shown in display.items():
        text = text.replace(internal, shown)
    return text
