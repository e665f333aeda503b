"""DuckDB database files: the fragment runs in a read-only DuckDB on the owner's file.

Opened per query (another process may write the file in between) with the same lock as every
DuckDB fedsql opens (fedsql/locked_duckdb.py): no other file, no network, no extensions,
settings fixed. Same engine as the node, so whatever `pushdown.split` cuts runs there as is.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
from sqlglot import exp

from connectors.sources import Source, sql_string


class DuckDBFileSource(Source):
    kind = "duckdb"
    engine_name = "DuckDB"
    dialect = "duckdb"

    def _connect(self) -> duckdb.DuckDBPyConnection:
        path = Path(self.url.path or "")
        if not path.is_file():
            raise self.fail("the database file does not exist", hint="fix the path in the source URL")
        try:
            return duckdb.connect(str(path), read_only=True, config={
                "autoinstall_known_extensions": False, "autoload_known_extensions": False,
                "python_enable_replacements": False, "enable_external_access": False,
                "lock_configuration": True})  # at connect: concurrent queries share one instance
        except duckdb.Error as exc:
            raise self.fail("cannot open the DuckDB database (is another process writing it?)", exc) from None

    @contextlib.contextmanager
    def _stream(self, con: duckdb.DuckDBPyConnection, sql: str,
                max_rows: int | None = None) -> Iterator[pa.RecordBatchReader]:
        relation = con.sql(sql)  # a relation streams without the DB-API result's extra copy
        yield (getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader)(65536)  # duckdb 2 / 1.x

    def schema(self) -> list[tuple[str, str]]:
        schema, name = self.relation_parts()
        rows = self._run("SELECT column_name, data_type FROM information_schema.columns "
                         f"WHERE table_schema = {sql_string(schema or 'main')} AND table_name = {sql_string(name)} "
                         "ORDER BY ordinal_position", "describe the table")
        if rows.num_rows == 0:
            raise self.fail("the relation does not exist", hint="create it or fix table = ... in the configuration")
        return list(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist()))

    def can_run(self, ast: exp.Expression, types: dict[str, str]) -> bool:
        return True  # the same engine: DuckDB semantics by definition
