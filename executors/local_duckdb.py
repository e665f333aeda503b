"""A party's local DuckDB: its own tables as views over its source files.

Everything a party computes in plaintext runs here; results leave as Arrow.
One connection per node, one cursor per query (DuckDB cursors are
independent and safe to use from concurrent query threads). The connection is
locked (fedsql/locked_duckdb.py): it reads its own table sources and nothing
else, and a fragment cannot change its settings.
"""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa

from fedsql.config import PartyConfig, TableConfig
from fedsql.errors import ConfigError, DataError, ProgrammingError, ResourceLimitExceeded
from fedsql.locked_duckdb import DuckDBProgrammingError, open_locked
from planner.catalog import Schema
from planner.schemas import checked_schema
from planner.validate import quote


def _scan(table: TableConfig) -> str:
    path = str(table.source.resolve()).replace("'", "''")  # as in allowed_paths (open_locked)
    if table.format == "parquet":
        return f"read_parquet('{path}')"
    return f"read_csv('{path}', header = true)"


class LocalExecutor:
    def __init__(self, party: PartyConfig, max_memory_mb: int | None = None):
        """`max_memory_mb` bounds this DuckDB (it spills or fails beyond it); fixed here,
        since the configuration is locked once the connection is open."""
        self.party = party
        self._lock = threading.Lock()
        self.max_rows: int | None = None  # set by the node: max_rows_per_query
        self.max_memory_mb = max_memory_mb
        for table in party.tables.values():
            if not table.source.is_file():
                raise ConfigError(
                    f"party '{party.name}': table '{table.name}' source {table.source} does not exist; "
                    "fix parties.{party}.tables.{table}.source in the configuration".format(party=party.name, table=table.name)
                )
        self._con = open_locked([t.source.resolve() for t in party.tables.values()], max_memory_mb)
        for table in party.tables.values():
            try:
                self._con.execute(f"CREATE VIEW {quote(table.name)} AS SELECT * FROM {_scan(table)}")
            except duckdb.Error as exc:
                raise ConfigError(f"party '{party.name}': cannot read {table.source}: {str(exc).splitlines()[0]}") from None

    def schema(self, table: str) -> Schema:
        """Public schema of one of this party's tables."""
        if table not in self.party.tables:
            raise ProgrammingError(f"party '{self.party.name}' has no table '{table}'")
        with self._lock:
            rows = self._con.execute(f"DESCRIBE SELECT * FROM {quote(table)}").fetchall()
        try:  # the same check as a peer's Describe reply gets (planner/schemas.py)
            return checked_schema([[r[0], r[1]] for r in rows])
        except ValueError as exc:
            raise ProgrammingError(
                f"party '{self.party.name}': table '{table}' cannot be shared: {exc}; rename or cast the column in the source"
            ) from None

    def query(self, sql: str) -> pa.Table:
        """Run plaintext SQL over own tables; errors carry DuckDB's message, never data."""
        with self._lock:
            cur = self._con.cursor()
        try:
            result = cur.execute(sql)
            if self.max_rows is None:
                return result.to_arrow_table()
            # stream, so an oversized result is refused before it is all in memory
            stream = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch  # duckdb 2 / 1.x
            reader = stream(65536)
            batches, rows = [], 0
            for batch in reader:
                rows += batch.num_rows
                if rows > self.max_rows:
                    raise ResourceLimitExceeded(
                        f"at party '{self.party.name}': a local step of this query produces more than "
                        f"{self.max_rows} rows (max_rows_per_query); refused"
                    )
                batches.append(batch)
            return pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.PermissionException:  # the lock (fedsql/locked_duckdb.py) held
            raise ProgrammingError(f"at party '{self.party.name}': the query tried to read a file, load an "
                                   "extension or change a setting; fedsql's DuckDB does not allow it") from None
        except _SCHEMA_ERRORS as exc:  # about SQL and schemas only: safe to show
            raise DuckDBProgrammingError(f"at party '{self.party.name}': {_first(exc)}") from None
        except duckdb.Error as exc:  # may quote a value: say what kind, not what
            raise DataError(
                f"at party '{self.party.name}': a value could not be computed or encoded "
                f"({type(exc).__name__}); the value stays private. Check the column types and ranges "
                "(secure values must satisfy |x| < 2^61 after scaling)"
            ) from None
        finally:
            cur.close()


_SCHEMA_ERRORS = (duckdb.BinderException, duckdb.ParserException, duckdb.CatalogException)


def run_over_tables(sql: str, tables: dict[str, pa.Table]) -> pa.Table:
    """Plaintext SQL over received Arrow tables (the issuer's final step)."""
    con = open_locked()
    try:
        for name, table in tables.items():
            con.register(name, table)
        return con.execute(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise DataError(f"in the final step: {_first(exc)}") from None
    finally:
        con.close()


def _first(exc: Exception) -> str:
    return str(exc).strip().split("\n\nLINE")[0]
