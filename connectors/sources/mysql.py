"""MySQL and MariaDB tables (`mysql://user@host:port/db`, `mariadb://` too), read with connectorx.

There is no ADBC driver for MySQL on PyPI; connectorx (Rust, Arrow-native) reads 10^6 rows
12-15x faster than PyMySQL or mysql-connector-python turned into Arrow (docs/decisions.md,
"MySQL sources"). It has no connection object: each statement is one `read_sql` call on its own
connection, preceded by a PyMySQL login (5 s timeout) that tells a refused login or a server
that is down from a statement the server could not run.

MySQL compares text by its collation — by default case- and trailing-space-insensitive, unlike
DuckDB — so a fragment that reads a text column is pushed only when that column's collation
is binary and NO PAD (`utf8mb4_nopad_bin`, `utf8mb4_0900_bin`, `binary`).

As a sink (INSERT INTO sink.NAME) the rows go through PyMySQL alone, as parameters of one
`INSERT … VALUES (%s, …)` that `executemany` batches (PyMySQL escapes each value; no SQL is
built from values, and LOAD DATA LOCAL is off), in one transaction under strict SQL mode, so
that a value the server would truncate is an error and nothing is written. The table must be
InnoDB (a MyISAM table cannot roll a failed insert back); a DATETIME(fsp) column refuses a
value with finer fractional seconds than it keeps instead of rounding it.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator
from urllib.parse import quote as urlquote

import pyarrow as pa
from sqlglot import exp

from connectors.sources import Source, integer_arithmetic_only, pushdown_types_ok, sql_string

_TYPES = {
    "tinyint": "TINYINT", "smallint": "SMALLINT", "mediumint": "INTEGER", "int": "INTEGER", "bigint": "BIGINT",
    "float": "FLOAT", "double": "DOUBLE", "date": "DATE", "datetime": "TIMESTAMP",
    "varchar": "VARCHAR", "char": "VARCHAR", "tinytext": "VARCHAR", "text": "VARCHAR", "mediumtext": "VARCHAR",
    "longtext": "VARCHAR",
}
_UNSIGNED = {"tinyint": "SMALLINT", "smallint": "INTEGER", "mediumint": "INTEGER", "int": "BIGINT"}
TRANSACTIONAL_ENGINES = ("innodb", "rocksdb")  # a failed insert can be rolled back
# strict: a too-long text, an out-of-range number or a bad date is an error, not a truncation
SINK_SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
EXACT_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "binary", "utf8mb3_nopad_bin", "latin1_nopad_bin")


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def insert_statement(schema: str | None, table: str, columns: list[str]) -> str:
    """`INSERT INTO `schema`.`table` (`a`, `b`) VALUES (%s, %s)`: names quoted, values parameters."""
    target = (f"{_quote(schema)}." if schema else "") + _quote(table)
    return (f"INSERT INTO {target} ({', '.join(_quote(c) for c in columns)}) "
            f"VALUES ({', '.join('%s' for _ in columns)})")


def mysql_rows(batch: pa.RecordBatch) -> list[tuple]:
    """A batch as PyMySQL parameters: Decimal, date, datetime, str, int, float, bool, None."""
    return list(zip(*(column.to_pylist() for column in batch.columns)))


def mysql_storage(duckdb_type: str, value: str, fsp: int | None) -> tuple[str, list[tuple[str, str]]]:
    """A sink's value for a MySQL column: as it is, but a DATETIME(fsp) refuses finer fractions."""
    if duckdb_type == "TIMESTAMP" and fsp is not None and fsp < 6:
        return value, [(f"{{v}} IS NOT NULL AND epoch_us({{v}}) % {10 ** (6 - fsp)} <> 0",
                        f"values with finer fractional seconds than the column's DATETIME({fsp}) keeps "
                        "(the server would round or cut them)")]
    return value, []


class _Link:
    """The `con` of `Source._run`: a checked connection string (connectorx opens its own)."""

    def __init__(self, uri: str, mariadb: bool):
        self.uri, self.mariadb = uri, mariadb

    def close(self) -> None:
        pass


class MySQLSource(Source):
    kind = "mysql"
    engine_name = "MySQL"
    dialect = "mysql"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._exact_text: set[str] = set()  # text columns (lower case) whose collation compares as DuckDB does
        self._fsp: dict[str, int] = {}  # DATETIME columns (lower case): fractional-second digits kept

    def _uri(self) -> str:
        u = self.url
        auth = urlquote(u.user or "", safe="")
        if self._password is not None:
            auth += ":" + urlquote(self._password, safe="")
        return f"mysql://{auth}{'@' if auth else ''}{u.host}:{u.port}/{urlquote(u.database or '')}"

    def _needs(self) -> str:
        """The privileges the user needs: a sink (INSERT INTO sink.NAME) reads the relation's
        schema and writes its rows."""
        return "SELECT, INSERT" if self.table.startswith("sink.") else "SELECT"

    def _login(self, **options: Any) -> Any:
        """A PyMySQL connection (5 s connect timeout); a refused login, a missing database or a
        server that is down is a SourceError saying which."""
        try:
            import pymysql
        except ImportError:
            raise self.fail("the MySQL driver is not installed", hint="pip install 'fedsql[mysql]'") from None
        try:
            return pymysql.connect(host=self.url.host, port=self.url.port, user=self.url.user or "",
                                   password=self._password or "", database=self.url.database, connect_timeout=5,
                                   **options)
        except Exception as exc:  # noqa: BLE001 - any driver failure becomes a clear SourceError
            code = exc.args[0] if getattr(exc, "args", None) and isinstance(exc.args[0], int) else None
            if code in (1044, 1045, 1698):  # access denied (to the server, or to the database)
                raise self.fail("MySQL refused the login", exc,
                                "check the user in the URL and the password in the party's secrets file "
                                f"or its environment variable, and GRANT {self._needs()} on the database") from None
            if code == 1049:
                raise self.fail("the database does not exist", exc, "fix the database name in the source URL") from None
            raise self.fail("cannot connect to MySQL (is the server running and reachable?)", exc,
                            "the node keeps serving its other tables") from None

    def _connect(self) -> _Link:
        try:
            import connectorx  # noqa: F401
            import pymysql  # noqa: F401
        except ImportError:
            raise self.fail("the MySQL reader is not installed", hint="pip install 'fedsql[mysql]'") from None
        # connectorx's pool retries a refused or unreachable connection for 30 s, past a peer's
        # patience: PyMySQL checks reachability and the login first, in at most 5 s
        check = self._login()
        try:
            mariadb = "mariadb" in check.get_server_info().lower()
        finally:
            check.close()
        return _Link(self._uri(), mariadb)

    @contextlib.contextmanager
    def _stream(self, con: _Link, sql: str, max_rows: int | None = None) -> Iterator[pa.RecordBatchReader]:
        import connectorx

        if max_rows is not None:  # the server stops one row past the limit
            sql = f"SELECT * FROM ({sql}) AS `__fedsql_limited` LIMIT {int(max_rows) + 1}"
        if self.statement_timeout:  # the server cancels a statement that outlives the query's deadline
            if con.mariadb:
                sql = f"SET STATEMENT max_statement_time={float(self.statement_timeout):g} FOR {sql}"
            elif sql.upper().startswith("SELECT "):  # MySQL: an optimizer hint (untested here: no MySQL server)
                sql = f"SELECT /*+ MAX_EXECUTION_TIME({int(self.statement_timeout * 1000)}) */ {sql[len('SELECT '):]}"
        try:
            table = connectorx.read_sql(con.uri, sql, return_type="arrow")
        except Exception as exc:
            if "ERROR 1969 " in str(exc) or "ERROR 3024 " in str(exc):  # max_statement_time / MAX_EXECUTION_TIME
                raise self.fail(f"the statement ran longer than {self.statement_timeout:g} s (the query's deadline) "
                                "and the server cancelled it", hint="retry later or raise deadline_seconds") from None
            raise
        yield table.to_reader()

    def schema(self) -> list[tuple[str, str]]:
        schema, name = self.relation_parts()
        rows = self._run(
            "SELECT column_name AS c, data_type AS t, column_type AS ct, numeric_precision AS p, numeric_scale AS s, "
            "collation_name AS coll, datetime_precision AS fsp FROM information_schema.columns "
            f"WHERE table_schema = {sql_string(schema or self.url.database or '')} AND table_name = {sql_string(name)} "
            "ORDER BY ordinal_position", "describe the table").to_pylist()
        if not rows:
            raise self.fail("the relation does not exist (or the user may not read it)",
                            hint=f"create it, GRANT {self._needs()} on it, or fix table = ... in the configuration")
        out, exact, fsp = [], set(), {}
        for r in rows:
            col, t, unsigned = r["c"], str(r["t"]).lower(), "unsigned" in str(r["ct"]).lower()
            if t == "decimal":
                p, s = int(r["p"]), int(r["s"] or 0)
                if p > 38:
                    raise self.fail(f"column {col!r} is decimal({p}, {s}); at most 38 digits are supported")
                out.append((col, f"DECIMAL({p},{s})"))
            elif str(r["ct"]).lower() == "tinyint(1)":  # MySQL's BOOLEAN
                out.append((col, "BOOLEAN"))
            elif unsigned and t in _UNSIGNED:
                out.append((col, _UNSIGNED[t]))
            elif t in _TYPES and not unsigned:
                out.append((col, _TYPES[t]))
                if t == "datetime":
                    fsp[col.lower()] = int(r["fsp"] or 0)
                if _TYPES[t] == "VARCHAR" and str(r["coll"]).lower() in EXACT_COLLATIONS:
                    exact.add(col.lower())
            else:
                raise self.fail(f"column {col!r} has type {r['ct']}, which fedsql does not read",
                                hint="expose a view that casts it to a number, text, DATE or DATETIME")
        self._exact_text, self._fsp = exact, fsp
        return out

    # -- as a sink ---------------------------------------------------------------------

    def storage(self, column: str, duckdb_type: str, value: str) -> tuple[str, list[tuple[str, str]]]:
        return mysql_storage(duckdb_type, value, self._fsp.get(column.lower()))

    def _write(self, data: pa.Table) -> int:
        """The rows as parameters of one INSERT, batched by `executemany`, in one transaction."""
        if data.num_rows == 0:
            return 0
        schema, name = self.relation_parts()
        con = self._login(autocommit=False, local_infile=False, charset="utf8mb4")
        try:
            mariadb = "mariadb" in con.get_server_info().lower()
            with con.cursor() as cur:
                cur.execute("SELECT engine FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                            (schema or self.url.database, name))
                engine = (cur.fetchone() or (None,))[0]
                if str(engine).lower() not in TRANSACTIONAL_ENGINES:
                    raise self.fail(f"the table's storage engine is {engine or 'none (a view)'}, which cannot roll "
                                    "back a failed insert, so a sink could half-write",
                                    hint=f"make it an InnoDB table (ALTER TABLE {name} ENGINE = InnoDB)")
                cur.execute("SET SESSION sql_mode = %s", (SINK_SQL_MODE,))
                if self.statement_timeout and mariadb:  # the server cancels an insert past the deadline
                    cur.execute("SET SESSION max_statement_time = %s", (float(self.statement_timeout),))
                sql = insert_statement(schema, name, data.column_names)
                for batch in data.to_batches(max_chunksize=10_000):
                    cur.executemany(sql, mysql_rows(batch))
            con.commit()
            return data.num_rows
        except Exception as exc:  # noqa: BLE001 - any driver failure becomes a clear SourceError
            with contextlib.suppress(Exception):
                con.rollback()
            raise self.refused_insert(exc) from None
        finally:
            with contextlib.suppress(Exception):
                con.close()

    def can_run(self, ast: exp.Expression, types: dict[str, str]) -> bool:
        if not super().can_run(ast, types):
            return False
        if any(types.get(c.name.lower()) == "VARCHAR" and c.name.lower() not in self._exact_text
               for c in ast.find_all(exp.Column)):
            return False  # the collation may fold case and trailing spaces
        # no boolean type (TRUE is 1, a BOOLEAN column is a tinyint that may hold 2); integer
        # +,-,* of BIGINT only (MySQL computes INT arithmetic in BIGINT, DuckDB would overflow)
        if any(isinstance(n, exp.Boolean) for n in ast.walk()) or not pushdown_types_ok(ast, types, ("BOOLEAN",)):
            return False
        return integer_arithmetic_only(ast, types, ("BIGINT",))
