"""`INSERT INTO sink.NAME SELECT …` into every kind of database a party reads: SQLite and DuckDB
files and a throw-away MariaDB server (tests/mysql_server.py; its cases skip where MariaDB is not
installed). PostgreSQL is tests/adversarial/test_sink_insert.py.

A real federation (p1, p2, p3 with table `t`) whose party p1 configures, per kind, a sink for an
aggregate (`KIND_results`) and one for typed rows (`KIND_typed`: DECIMAL, DATE, TIMESTAMP with
microseconds, BOOLEAN, NULLs, text with quotes). Rows read back with each engine's own client
equal DuckDB over the pooled data. Each failure — a column the table lacks, a value that does not
cast, a constraint broken by the last row, a value the engine cannot hold exactly, a MyISAM table,
a missing password — is a clear error naming party, sink and table, and changes nothing. The
MariaDB sinks log in as a writer whose password is under `[sinks.NAME]`, beside a table named
`sink_my_results` read with another user and password under `[tables.sink_my_results]`: before
sinks had a namespace of their own the two looked up the same key. On the code before this
change the federation did not load ("sqlite databases cannot be sinks yet").
"""

from __future__ import annotations

import decimal
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pytest

import fedsql
from tests import mysql_server
from tests.adversarial.harness import running, standard_federation
from tests.source_harness import reference_db

pytestmark = [pytest.mark.e2e]

QUERY = "SELECT k, COUNT(*) AS n, SUM(x) AS sx, SUM(d) AS sd FROM t GROUP BY k"
TYPED = ("SELECT * FROM (VALUES ('it''s é', 1, 12.34::DECIMAL(12,2), DATE '2024-02-29', "
         "TIMESTAMP '2024-01-02 03:04:05.000006', true), "
         "(NULL, 2, -0.05::DECIMAL(12,2), DATE '1999-12-31', TIMESTAMP '1999-12-31 23:59:59', false), "
         "(NULL, 3, NULL, NULL, NULL, NULL)) v(k, n, sd, day, ts, b)")
HALF_BAD = "SELECT * FROM (VALUES ('ok', 7), ('breaks NOT NULL', NULL)) v(k, n)"  # the last row fails
WRITER, WRITER_PASSWORD = "fedsql_writer", "Wr1ter-s3cret!"
MY = mysql_server.available() is None
needs_mysql = pytest.mark.skipif(not MY, reason=mysql_server.available() or "")
KINDS = ["lite", "duck", pytest.param("my", marks=needs_mysql)]

DDL = {
    "results": {"lite": "CREATE TABLE results (k TEXT, n INTEGER, sx INTEGER, sd DECIMAL(14,2))",
                "duck": "CREATE TABLE results (k VARCHAR, n BIGINT, sx BIGINT, sd DECIMAL(14,2))",
                "my": "CREATE TABLE results (k VARCHAR(20), n BIGINT, sx BIGINT, sd DECIMAL(14,2)) ENGINE=InnoDB"},
    "typed": {"lite": "CREATE TABLE typed (k TEXT, n INTEGER NOT NULL, sd DECIMAL(12,2), day DATE, ts TIMESTAMP, "
                      "b BOOLEAN, wide DECIMAL(18,2))",
              "duck": "CREATE TABLE typed (k VARCHAR, n BIGINT NOT NULL, sd DECIMAL(12,2), day DATE, ts TIMESTAMP, "
                      "b BOOLEAN, wide DECIMAL(18,2))",
              "my": "CREATE TABLE typed (k VARCHAR(20), n BIGINT NOT NULL, sd DECIMAL(12,2), day DATE, "
                    "ts DATETIME(6), b BOOLEAN, wide DECIMAL(18,2)) ENGINE=InnoDB"},
}


class Sinks:
    """The sink databases: `rows(kind, table, sql)` reads them with the engine's own client."""

    def __init__(self, directory: Path, my: Any | None):
        self.directory, self.my = directory, my

    def rows(self, kind: str, table: str, columns: str) -> list[tuple]:
        sql = f"SELECT {columns} FROM {table}"
        if kind == "lite":
            con = sqlite3.connect(self.directory / "sink.db")
            try:
                return sorted(con.execute(sql).fetchall(), key=repr)
            finally:
                con.close()
        if kind == "duck":
            con = duckdb.connect(str(self.directory / "sink.duckdb"), read_only=True)
            try:
                return sorted(con.execute(sql).fetchall(), key=repr)
            finally:
                con.close()
        out = self.my.sql(sql, "bank")
        return sorted((tuple(None if v == "NULL" else v for v in line.split("\t")) for line in out.splitlines()),
                      key=repr)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any], Sinks]]:
    import contextlib

    directory = tmp_path_factory.mktemp("sinkkinds")
    config, data = standard_federation(directory)
    lite = sqlite3.connect(directory / "sink.db")
    lite.executescript(f"{DDL['results']['lite']}; {DDL['typed']['lite']};")
    lite.close()
    duck = duckdb.connect(str(directory / "sink.duckdb"))
    duck.execute(DDL["results"]["duck"])
    duck.execute(DDL["typed"]["duck"])
    duck.close()
    sinks = (f'[parties.p1.sinks.lite_results]\nsource = "sqlite://{directory}/sink.db"\ntable = "results"\n'
             f'[parties.p1.sinks.lite_typed]\nsource = "sqlite://{directory}/sink.db"\ntable = "main.typed"\n'
             f'[parties.p1.sinks.duck_results]\nsource = "duckdb://{directory}/sink.duckdb"\ntable = "results"\n'
             f'[parties.p1.sinks.duck_typed]\nsource = "duckdb://{directory}/sink.duckdb"\ntable = "main.typed"\n')
    with contextlib.ExitStack() as stack:
        my = stack.enter_context(mysql_server.mysql_server()) if MY else None
        secrets = ""
        if my is not None:
            my.sql("CREATE DATABASE bank")
            my.sql(f"{DDL['results']['my']}; {DDL['typed']['my']}; CREATE TABLE myisam (n BIGINT) ENGINE=MyISAM; "
                   "CREATE TABLE counts (n BIGINT) ENGINE=InnoDB; INSERT INTO counts VALUES (5), (6)", "bank")
            my.sql(f"CREATE USER '{WRITER}'@'%' IDENTIFIED BY '{WRITER_PASSWORD}'; "
                   f"GRANT SELECT, INSERT ON bank.* TO '{WRITER}'@'%'; "
                   f"GRANT SELECT ON bank.counts TO '{mysql_server.READER}'@'%'")
            for name, table in (("my_results", "results"), ("my_typed", "typed"), ("my_myisam", "myisam"),
                                ("my_nopw", "results")):
                sinks += f'[parties.p1.sinks.{name}]\nsource = "{my.url("bank", WRITER)}"\ntable = "{table}"\n'
            sinks += (f'[parties.p1.tables.sink_my_results]\nsource = "{my.url("bank")}"\ntable = "counts"\n'
                      'columns = { n = "aggregate" }\n')
            secrets = (f'[sinks.my_results]\npassword = "{WRITER_PASSWORD}"\n'
                       f'[sinks.my_typed]\npassword = "{WRITER_PASSWORD}"\n'
                       f'[sinks.my_myisam]\npassword = "{WRITER_PASSWORD}"\n'
                       f'[tables.sink_my_results]\npassword = "{mysql_server.READER_PASSWORD}"\n')
        text = config.read_text()
        config.write_text(text.replace("[parties.p2]", sinks + "\n[parties.p2]", 1), encoding="utf-8")
        path = config.parent / ".fedsql" / "p1" / "secrets.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets)
        path.chmod(0o600)
        with running(config) as running_fed:
            yield running_fed, data, Sinks(directory, my)


def _text(rows: list[tuple]) -> list[tuple]:
    """Rows as the MariaDB client prints them (text), for comparing with DuckDB's values."""
    def one(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, bool):
            return str(int(v))
        return str(v)
    return sorted((tuple(one(v) for v in r) for r in rows), key=repr)


@pytest.mark.parametrize("kind", KINDS)
def test_insert_equals_duckdb(fed: tuple[Any, dict[str, Any], Sinks], kind: str) -> None:
    running_fed, data, sinks = fed
    db = reference_db(data)
    want = db.execute(QUERY).fetchall()
    typed = db.execute(TYPED).fetchall()
    with running_fed.connect("p1") as conn:
        cur = conn.execute(f"INSERT INTO sink.{kind}_results {QUERY}")
        assert cur.rowcount == len(want)
        assert any(f"inserts the result into its own database (sink.{kind}_results)" in item for item in cur.leakage)
        conn.execute(f"CREATE OR REPLACE TABLE scratch.typed_{kind} AS {TYPED}")
        assert conn.execute(f"INSERT INTO sink.{kind}_typed SELECT * FROM scratch.typed_{kind}").rowcount == 3
    got = sinks.rows(kind, "results", "k, n, sx, sd")
    typed_got = sinks.rows(kind, "typed", "k, n, sd, day, ts, b")
    if kind == "duck":  # the same types, exactly
        assert got == sorted(want, key=repr)
        assert typed_got == sorted(typed, key=repr)
    elif kind == "lite":  # SQLite's storage: DECIMAL as REAL, DATE/TIMESTAMP as ISO text, BOOLEAN as 0/1
        assert got == sorted(((k, n, sx, float(sd) if sd is not None else None) for k, n, sx, sd in want), key=repr)
        assert typed_got == sorted([("it's é", 1, 12.34, "2024-02-29", "2024-01-02 03:04:05.000006", 1),
                                    (None, 2, -0.05, "1999-12-31", "1999-12-31 23:59:59", 0),
                                    (None, 3, None, None, None, None)], key=repr)
        from connectors.sources import open_source  # read back as a source: declared types, values exact

        back = open_source("p1", "typed", f"sqlite://{sinks.directory}/sink.db", "typed", None)
        assert dict(back.schema())["sd"] == "DECIMAL(12,2)"  # its storage check passes
        con = duckdb.connect()
        con.register("raw", back.scan('SELECT "sd", "day", "ts" FROM "typed"'))
        assert sorted(con.execute("SELECT CAST(sd AS DECIMAL(12,2)), CAST(day AS DATE), CAST(ts AS TIMESTAMP) "
                                  "FROM raw").fetchall(), key=repr) == sorted((r[2:5] for r in typed), key=repr)
    else:
        assert got == _text(want)
        assert typed_got == _text([(k, n, sd, day, ts.isoformat(sep=" ", timespec="microseconds") if ts else None, b)
                                   for k, n, sd, day, ts, b in typed])


@pytest.mark.parametrize("kind", KINDS)
def test_failed_inserts_change_nothing(fed: tuple[Any, dict[str, Any], Sinks], kind: str) -> None:
    running_fed, _, sinks = fed
    before = {t: sinks.rows(kind, t, "*") for t in ("results", "typed")}
    with running_fed.connect("p1") as conn:
        conn.execute(f"CREATE OR REPLACE TABLE scratch.half_{kind} AS {HALF_BAD}")
        for sql, error, message in [
            (f"INSERT INTO sink.{kind}_results SELECT k AS region, COUNT(*) AS n FROM t GROUP BY k",
             fedsql.OperationalError, "the result has column 'region', which the relation does not have"),
            (f"INSERT INTO sink.{kind}_typed SELECT 'x' AS k, 'not a number' AS n",
             fedsql.OperationalError, "column 'n' \\(BIGINT\\): 1 value does not cast \\(nothing was written\\)"),
            (f"INSERT INTO sink.{kind}_typed SELECT * FROM scratch.half_{kind}",
             fedsql.OperationalError, "refused to insert the rows \\(nothing was written\\)"),
            (f"INSERT INTO sink.{kind}_typed SELECT 1 AS n, 2 AS N", fedsql.OperationalError,
             "two columns for the relation's column 'n'"),
        ]:
            with pytest.raises(error, match=message) as info:
                conn.execute(sql)
            sink = f"{kind}_results" if "region" in sql else f"{kind}_typed"
            assert str(info.value).startswith(f"party 'p1': sink '{sink}' (source "), str(info.value)
            assert f"table {'main.typed' if kind != 'my' else 'typed'})" in str(info.value) or "region" in sql
            assert WRITER_PASSWORD not in str(info.value)
        if kind == "lite":  # 18 significant digits: SQLite's REAL would round it
            with pytest.raises(fedsql.OperationalError, match="column 'wide': values with more digits than SQLite "
                                                              "keeps exactly"):
                conn.execute(f"INSERT INTO sink.{kind}_typed SELECT 1 AS n, 1234567890123456.78 AS wide")
        if kind == "my":
            with pytest.raises(fedsql.OperationalError, match="sink 'my_myisam' .*storage engine is MyISAM, which "
                                                              "cannot roll back"):
                conn.execute("INSERT INTO sink.my_myisam SELECT 1 AS n")
            with pytest.raises(fedsql.OperationalError, match="sink 'my_nopw' .*MySQL refused the login"):
                conn.execute("INSERT INTO sink.my_nopw SELECT 'x' AS k")
            # the table sink_my_results keeps its own password (another user) beside the sink my_results
            assert conn.execute("SELECT SUM(n) FROM p1.sink_my_results").fetchall() == [(11,)]
    assert {t: sinks.rows(kind, t, "*") for t in ("results", "typed")} == before
    if kind == "my":
        assert sinks.rows("my", "myisam", "*") == []
    for party in ("p1", "p2", "p3"):
        log = running_fed.node_log(party)
        assert WRITER_PASSWORD not in log and mysql_server.READER_PASSWORD not in log
        assert "not a number" not in log and "breaks NOT NULL" not in log  # no value reaches the log


@pytest.mark.parametrize("kind", ["duck", pytest.param("my", marks=needs_mysql)])
def test_wide_decimals_are_exact(fed: tuple[Any, dict[str, Any], Sinks], kind: str) -> None:
    """18 significant digits reach DuckDB and MariaDB DECIMAL columns as they are (no float between)."""
    running_fed, _, sinks = fed
    with running_fed.connect("p1") as conn:
        conn.execute(f"INSERT INTO sink.{kind}_typed SELECT 99 AS n, 1234567890123456.78 AS wide")
    got = sinks.rows(kind, "typed", "n, wide")
    assert (99, decimal.Decimal("1234567890123456.78")) in got or ("99", "1234567890123456.78") in got
