"""Where a party's tables live: one module per kind of source, behind one small interface.

A `Source` is one table of a party in its own engine (issue #14):

    schema()           its columns as (name, DuckDB type), read from the source each time
                       (no stale cached schema: a changed table is seen by the next query)
    can_run(ast, types) whether the source runs this fragment with DuckDB's exact semantics
    transpile(ast)     the fragment in the source's SQL dialect (sqlglot)
    scan(sql)          run it there; only its output comes back, as Arrow

`executors/local_duckdb.py` routes a fragment: pushed whole into the source when every table
it reads lives in one engine that can run it, otherwise the needed columns are read and the
fragment runs in the node's locked DuckDB. File sources (Parquet/CSV, `file.py`) stay views
in that DuckDB. Every failure is a `SourceError` naming party, table and source (never a
password), so the node keeps serving everything else.
"""

from __future__ import annotations

import contextlib
import logging
import re
from abc import ABC, abstractmethod
from typing import Any, Callable, ContextManager, Iterable, Iterator

import pyarrow as pa
import sqlglot
from sqlglot import exp

from connectors.sources.url import SourceURL, parse_source_url
from fedsql.errors import OperationalError

log = logging.getLogger("fedsql.node")


class SourceError(OperationalError):
    """A database source failed (down, refused the login, no such table, changed schema)."""

    statement_failed = False  # the source was reachable but could not run this statement


def read_limited(reader: Iterable[pa.RecordBatch], schema: pa.Schema, max_rows: int | None,
                 refuse: Callable[[], Exception]) -> pa.Table:
    """Collect a stream of batches, refusing (`refuse()`) as soon as it passes `max_rows`, so an
    oversized result is stopped before it is all in memory (max_rows_per_query)."""
    batches, rows = [], 0
    for batch in reader:
        rows += batch.num_rows
        if max_rows is not None and rows > max_rows:
            raise refuse()
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=schema)


def sql_string(text: str) -> str:
    """`text` as a standard SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


# what every pushable fragment may contain: plain relational algebra whose meaning is the same
# in DuckDB and the source (no division, casts, functions or windows: those differ in typing)
PORTABLE = (
    exp.Select, exp.From, exp.Where, exp.Group, exp.Having, exp.Column, exp.Identifier, exp.Table,
    exp.TableAlias, exp.Alias, exp.Literal, exp.Boolean, exp.Null, exp.And, exp.Or, exp.Not,
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.In, exp.Between, exp.Paren,
    exp.Add, exp.Sub, exp.Mul, exp.Neg, exp.Sum, exp.Count, exp.Min, exp.Max, exp.Star,
    exp.Distinct, exp.Join, exp.Tuple,
)
ORDERING = (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.Min, exp.Max)


class Source(ABC):
    """One table of a party, read through its engine's driver."""

    kind: str = ""
    engine_name: str = ""  # for messages: "PostgreSQL"
    dialect: str = "duckdb"  # sqlglot dialect of the engine

    def __init__(self, party: str, table: str, url: SourceURL, relation: str, password: str | None,
                 statement_timeout: float | None = None):
        self.party, self.table, self.url, self.relation = party, table, url, relation
        self._password = password
        self.statement_timeout = statement_timeout  # seconds; a statement running longer is cancelled

    # -- the interface ---------------------------------------------------------------

    @abstractmethod
    def schema(self) -> list[tuple[str, str]]:
        """(column, DuckDB type) of the relation, read from the source now."""

    def scan(self, sql: str, max_rows: int | None = None) -> pa.Table:
        """Run `sql` (in the source's dialect) in the source; its output as Arrow."""
        return self._run(sql, "run the table's fragment", max_rows)

    @abstractmethod
    def _connect(self) -> Any:
        """A new connection (closed after one statement); a SourceError if there is none."""

    def _stream(self, con: Any, sql: str, max_rows: int | None = None) -> ContextManager[pa.RecordBatchReader]:
        """`sql`'s result as a stream (ADBC cursors; DuckDB and Spark override this). `max_rows`
        lets an engine stop early; `_run` refuses past it either way."""
        @contextlib.contextmanager
        def cursor() -> Iterator[pa.RecordBatchReader]:
            cur = con.cursor()
            try:
                cur.execute(sql)
                yield cur.fetch_record_batch()
            finally:
                cur.close()
        return cursor()

    def _run(self, sql: str, what: str, max_rows: int | None = None) -> pa.Table:
        """One statement on a fresh connection. A driver failure while running it becomes a
        SourceError whose log line names the error's kind only (its text may quote a value)."""
        from fedsql.errors import Error

        con = self._connect()
        try:
            with self._stream(con, sql, max_rows) as reader:
                return read_limited(reader, reader.schema, max_rows, self.too_many(max_rows))
        except Error:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver failure becomes a clear SourceError
            if getattr(exc, "sqlstate", None) == "57014":  # query_canceled: statement_timeout
                raise self.fail(f"the statement ran longer than {self.statement_timeout:g} s (the query's deadline) "
                                "and the database cancelled it", hint="retry later or raise deadline_seconds") from None
            err = self.fail(f"{self.engine_name} could not {what}", exc, "the node log has the error's kind", quote=False)
            err.statement_failed = True
            raise err from None
        finally:
            con.close()

    # -- sinks: INSERT INTO sink.NAME (fedsql/scratch.py) ---------------------------------

    def append(self, data: pa.Table) -> int:
        """Insert `data`'s rows into the relation (a sink) in one transaction, by column name;
        returns the rows written. The relation must exist; each result column is cast to the
        relation's type for it (`_as_relation`), then written by the engine's `_write` (ADBC bulk
        ingest by default: COPY for PostgreSQL). A failure names party, sink and relation, never a
        value or the password, and leaves the relation as it was."""
        return self._write(self._as_relation(data))

    def sink_schema(self) -> list[tuple[str, str]]:
        """(column, DuckDB type) of the relation as a sink writes it (the source's schema)."""
        return self.schema()

    def storage(self, column: str, duckdb_type: str, value: str) -> tuple[str, list[tuple[str, str]]]:
        """How the engine stores a value already cast to `duckdb_type`: the DuckDB expression that
        writes it (`value` is the cast value), and checks [(predicate true for a value the column
        cannot hold exactly, why)] made before anything is written. By default: as it is."""
        return value, []

    def _write(self, data: pa.Table) -> int:
        """Write `data` (columns named and typed as the relation's) in one transaction."""
        if data.num_rows == 0:
            return 0
        schema, name = self._ingest_target()
        con = self._writer()
        try:
            with con.cursor() as cur:
                kwargs = {"db_schema_name": schema} if schema else {}
                written = cur.adbc_ingest(name, data, mode="append", **kwargs)
            con.commit()
            return int(written) if written is not None and written >= 0 else data.num_rows
        except Exception as exc:  # noqa: BLE001 - any driver failure becomes a clear SourceError
            with contextlib.suppress(Exception):
                con.rollback()
            raise self.refused_insert(exc) from None
        finally:
            con.close()

    def _writer(self) -> Any:
        """A connection that may write (the default: the reading one; SQLite's reads read-only)."""
        return self._connect()

    def _ingest_target(self) -> tuple[str | None, str]:
        """(schema, table) as the ADBC ingest names the relation."""
        return self.relation_parts()

    def refused_insert(self, exc: BaseException) -> Exception:
        """The error for a driver failure while inserting (its text may quote a value: not shown)."""
        from fedsql.errors import Error

        if isinstance(exc, Error):
            return exc
        err = self.fail(f"{self.engine_name} refused to insert the rows (nothing was written)", exc,
                        "the relation must exist with columns named as the SELECT's, its constraints must hold, "
                        "and the user needs INSERT on it; the node log has the error's kind", quote=False)
        err.statement_failed = True
        return err

    def _as_relation(self, data: pa.Table, target_schema: list[tuple[str, str]] | None = None) -> pa.Table:
        """`data` with each column cast to the relation's type for it, matched by name (a SUM is a
        HUGEINT in DuckDB, a bigint column in the database), then to the engine's storage form
        (`storage`). Refused, by column name and before anything is written: a column the relation
        lacks, two result columns for one of its columns, a value that does not cast or that the
        column cannot hold exactly. Columns of the relation the result lacks take their default."""
        from fedsql.locked_duckdb import open_locked

        columns = target_schema if target_schema is not None else self.sink_schema()
        target = {c.lower(): (c, t) for c, t in columns}
        missing = [c for c in data.column_names if c.lower() not in target]
        if missing:
            raise self.fail(f"the result has column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}, "
                            f"which the relation does not have (it has {', '.join(c for c, _ in target.values())})",
                            hint="name the SELECT's columns as the relation's (SELECT x AS column, …)")
        seen: dict[str, str] = {}
        for c in data.column_names:
            if c.lower() in seen:
                raise self.fail(f"the result has two columns for the relation's column {target[c.lower()][0]!r} "
                                f"({seen[c.lower()]!r} and {c!r})", hint="name each SELECT column once")
            seen[c.lower()] = c
        quote = lambda n: '"' + n.replace('"', '""') + '"'  # noqa: E731
        cast = {c: f"CAST({quote(c)} AS {target[c.lower()][1]})" for c in data.column_names}
        select, checks = [], []
        for c in data.column_names:
            name, duck_type = target[c.lower()]
            stored, unfit = self.storage(name, duck_type, cast[c])
            select.append(f"{stored} AS {quote(name)}")
            checks += [(name, predicate.replace("{v}", cast[c]), why) for predicate, why in unfit]
        con = open_locked()
        try:
            con.register("__rows", data)
            try:
                if checks:
                    counts = con.sql("SELECT " + ", ".join(f"COUNT(*) FILTER (WHERE {p})" for _, p, _ in checks)
                                     + " FROM __rows").fetchall()[0]
                    bad = [(name, why, n) for (name, _, why), n in zip(checks, counts) if n]
                    if bad:
                        raise self.fail("; ".join(f"column {name!r}: {why} ({n} {'values' if n > 1 else 'value'})"
                                                  for name, why, n in bad) + " (nothing was written)",
                                        hint="cast or round them in the SELECT")
                return con.sql(f"SELECT {', '.join(select)} FROM __rows").to_arrow_table()
            except duckdb_error() as exc:  # a value that does not fit the column types: say which column
                raise self.fail("the result does not fit the relation's column types: "
                                + self._unfit_columns(con, data, cast, target) + " (nothing was written)", exc,
                                "cast it in the SELECT", quote=False) from None
        finally:
            con.close()

    @staticmethod
    def _unfit_columns(con: Any, data: pa.Table, cast: dict[str, str], target: dict[str, tuple[str, str]]) -> str:
        """Which result columns do not cast to the relation's types, counted (no value is shown)."""
        quote = lambda n: '"' + n.replace('"', '""') + '"'  # noqa: E731
        out = []
        for c in data.column_names:
            name, duck_type = target[c.lower()]
            try:
                n = con.sql(f"SELECT COUNT(*) FROM __rows WHERE {quote(c)} IS NOT NULL AND "
                            f"TRY_{cast[c]} IS NULL").fetchall()[0][0]
            except duckdb_error():
                out.append(f"column {name!r} ({duck_type}) cannot take the result's {data.schema.field(c).type}")
                continue
            if n:
                out.append(f"column {name!r} ({duck_type}): {n} {'values do' if n > 1 else 'value does'} not cast")
        return "; ".join(out) or "a value does not cast"

    def can_run(self, ast: exp.Expression, types: dict[str, str]) -> bool:
        """True when the source computes `ast` exactly as DuckDB would; `types` maps each column
        the fragment reads (lower case) to its DuckDB type."""
        for node in ast.walk():
            if not isinstance(node, PORTABLE):
                return False
            if isinstance(node, exp.Join) and (node.side or node.kind not in ("", "INNER")):
                return False
        return True

    def transpile(self, ast: exp.Expression) -> str:
        """The fragment (DuckDB dialect, table names already the source's) in the source's SQL."""
        return ast.sql(dialect=self.dialect, identify=True)

    @property
    def engine(self) -> tuple[str, str | None]:
        """Tables with the same engine key can be joined inside one fragment there."""
        return (self.url.display, self._password)

    # -- shared helpers ----------------------------------------------------------------

    @property
    def where(self) -> str:
        if self.table.startswith("sink."):  # fedsql/scratch.py opens a sink as table "sink.NAME"
            return (f"party '{self.party}': sink '{self.table[len('sink.'):]}' "
                    f"(source {self.url.display}, table {self.relation})")
        return f"party '{self.party}': table '{self.table}' (source {self.url.display}, relation {self.relation})"

    def relation_parts(self) -> tuple[str | None, str]:
        schema, _, name = self.relation.rpartition(".")
        return (schema or None), name

    def fail(self, what: str, exc: BaseException | None = None, hint: str = "", quote: bool = True) -> SourceError:
        """A SourceError for `what`. The driver's text goes to the node log only, scrubbed of the
        password; with `quote=False` (a failure while reading rows, whose text may quote a value)
        only the error's kind and SQLSTATE are logged."""
        if exc is not None:
            if quote:
                detail = self.scrub(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
            else:
                detail = type(exc).__name__ + (f" (SQLSTATE {exc.sqlstate})" if getattr(exc, "sqlstate", None) else "")
            log.warning("%s: %s: %s", self.where, what, detail)
        return SourceError(f"{self.where}: {what}" + (f"; {hint}" if hint else ""))

    def too_many(self, max_rows: int | None) -> Callable[[], Exception]:
        from fedsql.errors import ResourceLimitExceeded

        return lambda: ResourceLimitExceeded(f"at party '{self.party}': reading table '{self.table}' from its source "
                                             f"gives more than {max_rows} rows (max_rows_per_query); refused")

    def scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
            from urllib.parse import quote as urlquote
            text = text.replace(urlquote(self._password, safe=""), "***")
        return re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", text)


def duckdb_error() -> type[Exception]:
    import duckdb

    return duckdb.Error


def pushdown_types_ok(ast: exp.Expression, types: dict[str, str], refuse: tuple[str, ...],
                      no_ordering: tuple[str, ...] = ()) -> bool:
    """False when a column of a type in `refuse` is read at all, or one of `no_ordering` is
    compared by order (<, MIN, ...): those differ between the source and DuckDB."""
    for col in ast.find_all(exp.Column):
        t = types.get(col.name.lower(), "")
        if any(t.startswith(r) for r in refuse):
            return False
    if no_ordering:
        for node in ast.find_all(*ORDERING):
            for col in node.find_all(exp.Column):
                if any(types.get(col.name.lower(), "").startswith(r) for r in no_ordering):
                    return False
    return True


def integer_arithmetic_only(ast: exp.Expression, types: dict[str, str], integers: tuple[str, ...]) -> bool:
    """False when +, -, * or unary minus touches a column whose type is not in `integers` or a
    non-integer literal: decimal and float result types (precision, scale cuts) differ by engine."""
    for node in ast.find_all(exp.Add, exp.Sub, exp.Mul, exp.Neg):
        if any(types.get(col.name.lower(), "") not in integers for col in node.find_all(exp.Column)):
            return False
        if any(lit.is_number and not lit.is_int for lit in node.find_all(exp.Literal)):
            return False
    return True


def open_source(party: str, table: str, url: str, relation: str, password: str | None,
                statement_timeout: float | None = None) -> Source:
    """The Source for a configured database table (the URL was checked by fedsql/config.py)."""
    parsed = parse_source_url(url)
    if parsed.kind == "postgresql":
        from connectors.sources.postgresql import PostgreSQLSource as cls
    elif parsed.kind == "mysql":
        from connectors.sources.mysql import MySQLSource as cls
    elif parsed.kind == "sqlite":
        from connectors.sources.sqlite import SQLiteSource as cls
    elif parsed.kind == "flightsql":
        from connectors.sources.flight_sql import FlightSQLSource as cls
    elif parsed.kind == "spark":
        from connectors.sources.spark import SparkSource as cls
    else:
        from connectors.sources.duckdb_file import DuckDBFileSource as cls
    return cls(party, table, parsed, relation, password, statement_timeout)


def parse_fragment(sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, dialect="duckdb")
