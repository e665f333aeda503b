"""A party's local DuckDB: its own tables, wherever they live, and the SQL it runs over them.

Everything a party computes in plaintext runs here; results leave as Arrow.
One connection per node, one cursor per query (DuckDB cursors are
independent and safe to use from concurrent query threads). The connection is
locked (fedsql/locked_duckdb.py): it reads its own table files and nothing
else, and a fragment cannot change its settings.

File tables (Parquet/CSV, connectors/sources/file.py) are views in that DuckDB. Database
tables (connectors/sources/) are read through their drivers, never by DuckDB itself: a
fragment over them is pushed whole into their engine when it can run it exactly, else the
columns it needs are read and the fragment runs here (`query`).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
from sqlglot import exp

from connectors.sources import Source, SourceError, open_source, parse_fragment, read_limited
from connectors.sources import file as file_source
from connectors.sources.pushdown import Split, split
from connectors.sources.secrets import load_passwords
from fedsql.config import PartyConfig
from fedsql.errors import ConfigError, DataError, ProgrammingError, ResourceLimitExceeded
from fedsql.locked_duckdb import DuckDBProgrammingError, open_locked
from plan.schemas import Schema
from plan.schemas import checked_schema
from plan.schemas import quote

log = logging.getLogger("fedsql.node")


class LocalExecutor:
    def __init__(self, party: PartyConfig, max_memory_mb: int | None = None, secrets_dir: Path | None = None,
                 statement_timeout: float | None = None):
        """`max_memory_mb` bounds this DuckDB (it spills or fails beyond it); fixed here,
        since the configuration is locked once the connection is open. `secrets_dir` holds the
        party's secrets file (database source passwords, connectors/sources/secrets.py);
        `statement_timeout` (seconds, the query deadline) bounds each statement in a database."""
        self.party = party
        self._lock = threading.Lock()
        self.max_rows: int | None = None  # set by the node: max_rows_per_query
        self.max_memory_mb = max_memory_mb
        files = {n: t for n, t in party.tables.items() if not t.is_database}
        databases = {n: t for n, t in party.tables.items() if t.is_database}
        files_allowed: list[Path] = []
        dirs_allowed: list[Path] = []
        for table in files.values():
            problem = file_source.missing(table)
            if problem:
                raise ConfigError(
                    f"party '{party.name}': table '{table.name}' {problem}; "
                    f"fix parties.{party.name}.tables.{table.name}.source in the configuration"
                )
            f, d = file_source.allowed(table)
            files_allowed += f
            dirs_allowed += d
        self._con = open_locked(files_allowed, max_memory_mb, allowed_directories=dirs_allowed)
        for table in files.values():
            try:
                self._con.execute(f"CREATE VIEW {quote(table.name)} AS {file_source.view_sql(table)}")
            except duckdb.Error as exc:
                raise ConfigError(f"party '{party.name}': cannot read {table.source}: {str(exc).splitlines()[0]}") from None
        # database tables are not opened here: a source that is down must not stop the node
        passwords = load_passwords(secrets_dir, party.name, list(databases)) if databases else {}
        self.sources: dict[str, Source] = {
            n: open_source(party.name, n, str(t.source), t.relation or n, passwords.get(n), statement_timeout)
            for n, t in databases.items()
        }

    def schema(self, table: str) -> Schema:
        """Public schema of one of this party's tables (a database table's read from it now)."""
        if table not in self.party.tables:
            raise ProgrammingError(f"party '{self.party.name}' has no table '{table}'")
        if table in self.sources:
            columns = self._source_schema(table)
        else:
            with self._lock:
                rows = self._con.execute(f"DESCRIBE SELECT * FROM {quote(table)}").fetchall()
            columns = [(r[0], r[1]) for r in rows]
        try:  # the same check as a peer's Describe reply gets (plan/schemas.py)
            return checked_schema([[c, t] for c, t in columns])
        except ValueError as exc:
            raise ProgrammingError(
                f"party '{self.party.name}': table '{table}' cannot be shared: {exc}; rename or cast the column in the source"
            ) from None

    def _source_schema(self, table: str) -> list[tuple[str, str]]:
        """The live schema; a column the configuration gives a level to but the source lost is
        a changed schema, said so now rather than as a confusing binder error later."""
        source = self.sources[table]
        columns = source.schema()
        have = {c.lower() for c, _ in columns}
        declared = set(self.party.tables[table].levels)
        for grants in self.party.tables[table].grants.values():
            declared |= set(grants)
        lost = sorted(c for c in declared if c.lower() not in have)
        if lost:
            raise SourceError(f"{source.where}: the table's schema changed: column(s) {', '.join(lost)} named in "
                              f"parties.{self.party.name}.tables.{table} are not in the source (dropped or renamed, "
                              "or never there); restore them or update the configuration")
        return columns

    def query(self, sql: str) -> pa.Table:
        """Run plaintext SQL over own tables; errors carry DuckDB's message, never data."""
        with self._lock:
            cur = self._con.cursor()
        try:
            used = self._database_tables(sql)
            if used:
                return self._query_sources(cur, sql, used)
            return self._run(cur, sql)
        finally:
            cur.close()

    def _database_tables(self, sql: str) -> list[str]:
        if not self.sources:
            return []
        try:
            ast = parse_fragment(sql)
        except Exception:  # noqa: BLE001 - DuckDB will say what is wrong with it
            return []
        return sorted({t.name for t in ast.find_all(exp.Table) if t.name in self.sources and not t.db})

    def _query_sources(self, cur: duckdb.DuckDBPyConnection, sql: str, used: list[str]) -> pa.Table:
        """A fragment reading database tables: pushed into their engine when one engine holds
        them all and can run it exactly; otherwise their needed columns are read and it runs here.
        Either way the output has exactly the types DuckDB gives the fragment over the live schemas."""
        ast = parse_fragment(sql)
        schemas = {n: self._source_schema(n) for n in used}
        for name, columns in schemas.items():  # typed, empty stand-ins: DuckDB binds the fragment on them
            cols = ", ".join(f"{quote(c)} {t}" for c, t in columns)
            cur.execute(f"CREATE TEMP TABLE {quote(name)} ({cols})")
        types = {c.lower(): t for columns in schemas.values() for c, t in columns}
        sources = [self.sources[n] for n in used]
        try:
            expected = cur.execute(f"DESCRIBE {sql}").fetchall()
        except _SCHEMA_ERRORS as exc:
            raise DuckDBProgrammingError(
                f"at party '{self.party.name}': the query does not match the current schema of "
                f"{', '.join(s.where.split(': ', 1)[1] for s in sources)}: {_first(exc)}") from None
        # pushed only when every table it reads is in that one engine: a file table of the party
        # (a view here) must not be looked up by its name in the database, which may hold another
        # relation of that name (or none: a wasted round trip)
        local = {t.name for t in ast.find_all(exp.Table)} - set(used)
        if len({s.engine for s in sources}) == 1 and not local:
            source = sources[0]
            cut = split(ast, lambda e: source.can_run(e, types), [r[0] for r in expected])
            if cut is not None:
                log.info("party %s: fragment over %s pushed into its %s source", self.party.name, ", ".join(used), source.kind)
                try:
                    return self._pushed(cur, cut, schemas, source)
                except SourceError as exc:
                    if not exc.statement_failed:  # down, login, timeout: the same again here
                        raise
                    log.info("party %s: the %s source could not run the pushed part; the node's DuckDB runs it",
                             self.party.name, source.kind)
        log.info("party %s: fragment over %s runs in the node's DuckDB over the columns read", self.party.name, ", ".join(used))
        for name in used:
            self._fill(cur, ast, name, schemas[name])
        return self._run(cur, sql)

    def _pushed(self, cur: duckdb.DuckDBPyConnection, cut: Split, schemas: dict[str, list[tuple[str, str]]],
                source: Source) -> pa.Table:
        """Run `cut.inner` in the source, cast its output to the types DuckDB gives it over the
        stand-ins, and finish `cut.outer` here."""
        try:
            inner_types = [r[1] for r in cur.execute(f"DESCRIBE {cut.inner.sql(dialect='duckdb')}").fetchall()]
        except duckdb.Error as exc:
            raise DuckDBProgrammingError(f"at party '{self.party.name}': {_first(exc)}") from None
        inner = cut.inner.copy()
        for node in inner.find_all(exp.Table):
            if node.name in schemas and not node.db:
                schema, name = self.sources[node.name].relation_parts()
                node.replace(exp.table_(name, db=schema, alias=node.alias or node.name, quoted=True))
        exact = {c.lower(): c for columns in schemas.values() for c, _ in columns}
        for col in inner.find_all(exp.Column):  # DuckDB matches names case-insensitively; the source may not
            if col.name.lower() in exact:
                col.set("this", exp.to_identifier(exact[col.name.lower()], quoted=True))
        result = source.scan(source.transpile(inner), self.max_rows)
        if result.num_columns != len(inner_types):
            raise SourceError(f"{source.where}: the source returned {result.num_columns} columns for a fragment "
                              f"of {len(inner_types)}")
        cur.register("__fedsql_raw", result.rename_columns([f"__p{i}" for i in range(result.num_columns)]))
        casts = ", ".join(f'CAST("__p{i}" AS {t}) AS "__p{i}"' for i, t in enumerate(inner_types))
        try:
            return self._run(cur, f"WITH __fedsql_pushed AS (SELECT {casts} FROM __fedsql_raw) "
                                  f"{cut.outer.sql(dialect='duckdb')}")
        finally:
            cur.unregister("__fedsql_raw")

    def _fill(self, cur: duckdb.DuckDBPyConnection, ast: exp.Expression, name: str, columns: list[tuple[str, str]]) -> None:
        """Read the columns of `name` the fragment uses into its stand-in table."""
        source = self.sources[name]
        wanted = {c.name.lower() for c in ast.find_all(exp.Column)}
        star = any(isinstance(s, exp.Star) for s in ast.find_all(exp.Star))
        needed = [(c, t) for c, t in columns if star or c.lower() in wanted] or columns[:1]
        schema, table = source.relation_parts()
        select = exp.select(*[exp.column(c, quoted=True) for c, _ in needed]).from_(exp.table_(table, db=schema, quoted=True))
        data = source.scan(source.transpile(select), self.max_rows)
        cur.register("__fedsql_read", data.rename_columns([f"c{i}" for i in range(data.num_columns)]))
        try:
            cur.execute(f"INSERT INTO {quote(name)} ({', '.join(quote(c) for c, _ in needed)}) "
                        f"SELECT {', '.join(f'CAST(c{i} AS {t})' for i, (_, t) in enumerate(needed))} FROM __fedsql_read")
        except duckdb.Error:
            raise SourceError(f"{source.where}: its values do not fit the declared column types "
                              f"({', '.join(f'{c} {t}' for c, t in needed)}); fix the data or the column types") from None
        finally:
            cur.unregister("__fedsql_read")

    def _run(self, cur: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
        try:
            result = cur.execute(sql)
            if self.max_rows is None:
                return result.to_arrow_table()
            # stream, so an oversized result is refused before it is all in memory
            stream = getattr(result, "to_arrow_reader", None) or result.fetch_record_batch  # duckdb 2 / 1.x
            reader = stream(65536)
            return read_limited(reader, reader.schema, self.max_rows, lambda: ResourceLimitExceeded(
                f"at party '{self.party.name}': a local step of this query produces more than "
                f"{self.max_rows} rows (max_rows_per_query); refused"))
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
