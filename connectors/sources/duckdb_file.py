"""DuckDB database files: the fragment runs in a read-only DuckDB on the owner's file.

Opened per query (another process may write the file in between) with the same lock as every
DuckDB fedsql opens (fedsql/locked_duckdb.py): no other file, no network, no extensions,
settings fixed. Same engine as the node, so every fragment is pushed down whole.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
from sqlglot import exp

from connectors.sources import Source


class DuckDBFileSource(Source):
    kind = "duckdb"
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

    def _run(self, sql: str, what: str, max_rows: int | None = None) -> pa.Table:
        con = self._connect()
        try:
            result = con.execute(sql)
            stream = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch
            reader = stream(65536)
            batches, rows = [], 0
            for batch in reader:
                rows += batch.num_rows
                if max_rows is not None and rows > max_rows:
                    from fedsql.errors import ResourceLimitExceeded
                    raise ResourceLimitExceeded(f"at party '{self.party}': reading table '{self.table}' from its "
                                                f"source gives more than {max_rows} rows (max_rows_per_query); refused")
                batches.append(batch)
            return pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.Error as exc:
            raise self.fail(f"DuckDB could not {what}", exc, "the node log has the error's kind", quote=False) from None
        finally:
            con.close()

    def schema(self) -> list[tuple[str, str]]:
        schema, name = self.relation_parts()
        lit = lambda s: "'" + s.replace("'", "''") + "'"  # noqa: E731
        rows = self._run("SELECT column_name, data_type FROM information_schema.columns "
                         f"WHERE table_schema = {lit(schema or 'main')} AND table_name = {lit(name)} "
                         "ORDER BY ordinal_position", "describe the table")
        if rows.num_rows == 0:
            raise self.fail("the relation does not exist", hint="create it or fix table = ... in the configuration")
        return list(zip(rows.column(0).to_pylist(), rows.column(1).to_pylist()))

    def scan(self, sql: str, max_rows: int | None = None) -> pa.Table:
        return self._run(sql, "run the table's fragment", max_rows)

    def can_run(self, ast: exp.Expression, types: dict[str, str]) -> bool:
        return True  # the same engine: DuckDB semantics by definition
