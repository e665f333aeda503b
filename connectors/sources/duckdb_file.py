"""DuckDB database files: the fragment runs in a read-only DuckDB on the owner's file.

Opened per query (another process may write the file in between) with the same lock as every
DuckDB fedsql opens (fedsql/locked_duckdb.py `open_locked_file`): no other file, no network, no
extensions, settings fixed. Same engine as the node, so whatever `pushdown.split` cuts runs there
as is. As a sink (INSERT INTO sink.NAME) the file is opened writable under the same lock, its
schema read and the rows inserted on that one connection, in one transaction.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
from sqlglot import exp

from connectors.sources import Source


class DuckDBFileSource(Source):
    kind = "duckdb"
    engine_name = "DuckDB"
    dialect = "duckdb"

    def _connect(self, write: bool = False) -> duckdb.DuckDBPyConnection:
        from fedsql.locked_duckdb import open_locked_file

        path = Path(self.url.path or "")
        if not path.is_file():
            raise self.fail("the database file does not exist", hint="fix the path in the source URL")
        try:
            return open_locked_file(path, read_only=not write)
        except duckdb.Error as exc:
            raise self.fail("cannot open the DuckDB database (is another process writing it?)", exc) from None

    @contextlib.contextmanager
    def _stream(self, con: duckdb.DuckDBPyConnection, sql: str,
                max_rows: int | None = None) -> Iterator[pa.RecordBatchReader]:
        relation = con.sql(sql)  # a relation streams without the DB-API result's extra copy
        yield (getattr(relation, "to_arrow_reader", None) or relation.fetch_arrow_reader)(65536)  # duckdb 2 / 1.x

    def schema(self) -> list[tuple[str, str]]:
        con = self._connect()
        try:
            return self._describe(con)
        finally:
            con.close()

    def _describe(self, con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
        schema, name = self.relation_parts()
        try:
            rows = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                               "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                               [schema or "main", name]).fetchall()
        except duckdb.Error as exc:
            err = self.fail("DuckDB could not describe the table", exc, "the node log has the error's kind", quote=False)
            err.statement_failed = True
            raise err from None
        if not rows:
            raise self.fail("the relation does not exist", hint="create it or fix table = ... in the configuration")
        return [(c, t) for c, t in rows]

    def append(self, data: pa.Table) -> int:
        """One writable connection: the relation's schema, the cast rows, one INSERT transaction."""
        con = self._connect(write=True)
        try:
            rows = self._as_relation(data, self._describe(con))
            if rows.num_rows == 0:
                return 0
            quote = lambda n: '"' + n.replace('"', '""') + '"'  # noqa: E731
            schema, name = self.relation_parts()
            target = (f"{quote(schema)}." if schema else "") + quote(name)
            cols = ", ".join(quote(c) for c in rows.column_names)
            con.register("__fedsql_rows", rows)
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM __fedsql_rows")
                con.execute("COMMIT")
            except Exception as exc:  # noqa: BLE001 - a constraint, a concurrent writer, a full disk
                with contextlib.suppress(Exception):
                    con.execute("ROLLBACK")
                raise self.refused_insert(exc) from None
            return rows.num_rows
        finally:
            con.close()

    def can_run(self, ast: exp.Expression, types: dict[str, str]) -> bool:
        return True  # the same engine: DuckDB semantics by definition
