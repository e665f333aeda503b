"""Issue #14: each party's data where it already lives (PostgreSQL, SQLite, DuckDB files).

One real federation: p1's tables live in a throw-away PostgreSQL 15 server (tests/pg_server.py,
`log_statement = 'all'`), p2's in a SQLite file, p3's in a DuckDB file. Every result is compared
with plain DuckDB over the pooled rows. The test process also plays the parts a database
source must survive: a wrong password, a missing table, a changed schema, a server that is down.
On the code before #14 the federation does not even load: `source = "postgresql://..."` was an
"unsupported file type".
"""

from __future__ import annotations

import decimal
import os
import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedsql import errors
from tests import pg_server
from tests.adversarial.harness import running, write_config
from tests.source_harness import UNION, error, one_table_executor, query, reference_db, table_entry

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(pg_server.available() is not None, reason=pg_server.available() or "")]

PASSWORD = pg_server.READER_PASSWORD
DP = '\n[parties.{p}.tables.v.dp]\nunit = "row"\nbounds = {{ x = [-1000, 1000] }}\nepsilon = 1e6\nmax_epsilon_per_query = 1000.0\n'
TYPES = "id bigint, k text, x bigint, d numeric(10,2), f double precision, b boolean, g integer"



def _config(pg: pg_server.Server, d: Path) -> str:
    bank = pg.url("bank")
    lite, duck = f"sqlite://{d}/p2.db", f"duckdb://{d}/p3.duckdb"
    text = '[federation]\nname = "srcfed"\ncompute = ["p1", "p2", "p3"]\ndeadline_seconds = 60\n'
    for p, src, rel in (("p1", bank, "public.t"), ("p2", lite, "t"), ("p3", duck, "main.t")):
        text += f'\n[parties.{p}]\naddress = "127.0.0.1:{{port{p[1]}}}"\n'
        text += f"[parties.{p}.tables.t]\n" + table_entry(src, rel) + f"[parties.{p}.tables.v]\n" + table_entry(src, rel)
        text += DP.format(p=p)
    text += "[parties.p1.tables.s]\n" + table_entry(bank, "public.s", '{ id = "join_key", z = "aggregate" }')
    text += "[parties.p1.tables.gone]\n" + table_entry(bank, "public.gone", "{}")
    text += "[parties.p1.tables.locked]\n" + table_entry(bank, "public.t", '{ x = "aggregate" }')
    text += '[parties.p1.tables.w]\nsource = "w.parquet"\ncolumns = { x = "aggregate" }\n'
    text += "[parties.p2.tables.u]\n" + table_entry(lite, "u", '{ id = "join_key", y = "aggregate" }')
    text += '\n[federated.t]\nunion = ["p1.t", "p2.t", "p3.t"]\n[federated.v]\nunion = ["p1.v", "p2.v", "p3.v"]\n'
    return text.replace("{", "{{").replace("}", "}}").replace("{{port", "{port").replace("}}\"", "}\"")


def _sql_value(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    return repr(float(v)) if isinstance(v, float) else str(v)


def _rows(table: pa.Table) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]


@pytest.fixture(scope="module")
def srcfed(tmp_path_factory):
    from tests.conftest import write_test_federation

    d = tmp_path_factory.mktemp("srcfed")
    _, data = write_test_federation(d, (120, 80, 40))
    u = pa.table({"id": pa.array(range(1, 200, 3), pa.int64()), "y": pa.array(range(0, 670, 10), pa.int64())})
    pq.write_table(pa.table({"x": pa.array([1, 2, 3], pa.int64())}), d / "w.parquet")
    with pg_server.postgres_server() as pg:
        pg.psql("CREATE DATABASE bank")
        values = ", ".join("(" + ", ".join(_sql_value(v) for v in r.values()) + ")" for r in data["p1.t"].to_pylist())
        pg.psql(f"CREATE TABLE t ({TYPES}); INSERT INTO t VALUES {values}; CREATE TABLE s (id bigint, z bigint); "
                "INSERT INTO s VALUES (1, 10), (2, 20); GRANT SELECT ON t, s TO fedsql_reader", "bank")
        lite = sqlite3.connect(d / "p2.db")
        lite.execute("CREATE TABLE t (id INTEGER, k TEXT, x INTEGER, d DECIMAL(10,2), f REAL, b BOOLEAN, g INT4)")
        lite.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [tuple(float(v) if isinstance(v, decimal.Decimal) else v for v in r.values())
                          for r in data["p2.t"].to_pylist()])
        lite.execute("CREATE TABLE u (id INTEGER, y INTEGER)")
        lite.executemany("INSERT INTO u VALUES (?, ?)", [tuple(r.values()) for r in u.to_pylist()])
        lite.commit()
        lite.close()
        duck = duckdb.connect(str(d / "p3.duckdb"))
        duck.register("p3", data["p3.t"])
        duck.execute("CREATE TABLE t AS SELECT * FROM p3")
        duck.close()
        config = write_config(d, _config(pg, d), {})
        state = d / ".fedsql" / "p1"
        state.mkdir(parents=True, exist_ok=True)
        secrets = state / "secrets.toml"
        secrets.write_text(f'[tables.t]\npassword = "{PASSWORD}"\n[tables.v]\npassword = "{PASSWORD}"\n'
                           f'[tables.s]\npassword = "{PASSWORD}"\n[tables.gone]\npassword = "{PASSWORD}"\n')
        secrets.chmod(0o600)
        os.environ["FEDSQL_SOURCE_PASSWORD_P1_LOCKED"] = "not-the-password"  # the environment variable route
        try:
            with running(config) as fed:
                db = reference_db(data, u=u)
                yield fed, pg, db
        finally:
            os.environ.pop("FEDSQL_SOURCE_PASSWORD_P1_LOCKED", None)





def test_union_aggregates_over_three_kinds_of_source(srcfed):
    fed, _, db = srcfed
    assert query(fed, "p2", UNION) == db.execute(UNION).fetchall()
    own = "SELECT k, COUNT(*), SUM(d) FROM p1.t WHERE g >= 2 GROUP BY k ORDER BY k NULLS FIRST"  # the owner itself
    assert query(fed, "p1", own) == db.execute(own.replace("p1.t", "p1_t")).fetchall()
    total = "SELECT COUNT(*), SUM(x), SUM(d), COUNT(b) FROM t WHERE b"
    assert query(fed, "p3", total) == db.execute(total).fetchall()


def test_fragment_where_and_group_by_reach_postgresql(srcfed):
    fed, pg, _ = srcfed
    query(fed, "p2", UNION)
    pushed = [line for line in pg.log().splitlines() if '"x" > -777' in line]
    assert pushed, "the fragment's WHERE predicate never reached PostgreSQL"
    assert any('GROUP BY "k"' in line and '"g" >= 2' in line and 'SUM("x")' in line for line in pushed), pushed
    assert not any("COALESCE" in line for line in pushed)  # the finishing casts ran in the node's DuckDB


def test_same_party_join_runs_inside_postgresql(srcfed):
    fed, pg, db = srcfed
    sql = "SELECT a.k, SUM(b.z) FROM p1.t a JOIN p1.s b ON a.id = b.id WHERE b.z > 5 GROUP BY a.k ORDER BY a.k NULLS FIRST"
    want = db.execute("SELECT a.k, SUM(b.z) FROM p1_t a JOIN (VALUES (1, 10), (2, 20)) b(id, z) ON a.id = b.id "
                      "WHERE b.z > 5 GROUP BY a.k ORDER BY a.k NULLS FIRST").fetchall()
    assert query(fed, "p2", sql) == want
    joined = [line for line in pg.log().splitlines() if '"public"."s" AS "b"' in line and '"b"."z" > 5' in line]
    assert joined and all('"public"."t" AS "a"' in line for line in joined)  # both tables, one statement


def test_what_postgresql_cannot_run_falls_back_to_duckdb(srcfed, caplog):
    import logging

    from executors.local_duckdb import LocalExecutor

    fed, _, db = srcfed
    ex = LocalExecutor(fed.fed.party("p1"), secrets_dir=fed.state_dir("p1"))
    with caplog.at_level(logging.INFO, logger="fedsql.node"):
        out = ex.query('SELECT SUM(b) AS s, COUNT(*) AS n FROM "t" AS "t" WHERE x > 0')  # PostgreSQL has no sum(boolean)
    assert "could not run the pushed part" in caplog.text and PASSWORD not in caplog.text
    assert _rows(out) == db.execute("SELECT SUM(b), COUNT(*) FROM p1_t WHERE x > 0").fetchall()


def test_cross_party_join_postgresql_with_sqlite(srcfed):
    fed, _, db = srcfed
    sql = "SELECT a.k, COUNT(*), SUM(b.y) FROM p1.t a JOIN p2.u b ON a.id = b.id GROUP BY a.k ORDER BY a.k NULLS FIRST"
    ref = sql.replace("p1.t", "p1_t").replace("p2.u", "u")
    assert query(fed, "p3", sql) == db.execute(ref).fetchall()


def test_dp_query_over_sources(srcfed):
    fed, _, db = srcfed
    (n, s), = query(fed, "p1", "SELECT COUNT(*) AS n, SUM(x) AS s FROM v", ("SET fedsql.epsilon = 1000",))
    # the truth the DP plan estimates: p1's own rows as they are, the others' x clamped to the
    # bounds as the planner clamps (a NULL stays NULL and is skipped by SUM, as in plain SQL)
    (tn, ts), = db.execute("SELECT COUNT(*), SUM(x) FROM (SELECT x FROM p1_t UNION ALL SELECT "
                           "CASE WHEN x IS NOT NULL THEN LEAST(GREATEST(x, -1000), 1000) END "
                           "FROM (SELECT x FROM p2_t UNION ALL SELECT x FROM p3_t))").fetchall()
    # Laplace scales at epsilon 500 each: 0.002 (count) and 4 (sum, bounds ±1000): 25 scales of slack
    assert abs(n - tn) <= 1 and abs(float(s) - float(ts)) <= 100



def _error(fed, party: str, sql: str) -> errors.Error:
    return error(fed, party, sql, PASSWORD)


def test_wrong_password_and_missing_table_are_clear(srcfed):
    fed, pg, _ = srcfed
    url = pg.url("bank")
    err = _error(fed, "p2", "SELECT SUM(x) FROM p1.locked")
    assert "p1" in str(err) and "'locked'" in str(err) and url in str(err) and "refused the login" in str(err)
    assert "not-the-password" not in str(err)
    err = _error(fed, "p2", "SELECT COUNT(*) FROM p1.gone")
    assert "'gone'" in str(err) and url in str(err) and "does not exist" in str(err)
    assert query(fed, "p2", "SELECT COUNT(*) FROM p1.t") == [(120,)]  # the rest still served


def test_changed_schema_is_noticed(srcfed):
    fed, pg, _ = srcfed
    assert query(fed, "p2", "SELECT SUM(z) FROM p1.s") == [(30,)]
    pg.psql("ALTER TABLE s RENAME COLUMN z TO z_old", "bank")
    try:
        err = _error(fed, "p2", "SELECT SUM(z) FROM p1.s")
        assert "'s'" in str(err) and "schema changed" in str(err) and "z" in str(err)
    finally:
        pg.psql("ALTER TABLE s RENAME COLUMN z_old TO z", "bank")
    assert query(fed, "p2", "SELECT SUM(z) FROM p1.s") == [(30,)]


def test_password_never_in_logs_audit_explain_or_describe(srcfed):
    fed, _, _ = srcfed
    query(fed, "p2", UNION)
    plan = query(fed, "p2", "EXPLAIN SELECT COUNT(*) FROM p1.t WHERE x > 1")
    from fedsql.proto import node_pb2 as pb

    reply = fed.stub("p2", "p1").Describe(pb.DescribeRequest(tables=["t", "locked", "gone"]), timeout=30)
    seen = [str(plan), reply.tables.decode("utf-8", "replace"), reply.error.message, fed.config.read_text()]
    seen += [fed.node_log(p) + fed.audit_text(p) for p in ("p1", "p2", "p3")]
    for text in seen:
        assert PASSWORD not in text and "not-the-password" not in text


def test_a_blocked_statement_is_cancelled_at_the_deadline(srcfed):
    import subprocess
    import time

    from connectors.sources import SourceError, open_source

    _, pg, _ = srcfed
    source = open_source("p1", "s", pg.url("bank"), "public.s", PASSWORD, statement_timeout=1.0)
    locker = subprocess.Popen([*pg.runas, str(pg_server.BIN / "psql"), "-X", "-q", "-h", str(pg.root), "-p", str(pg.port),
                               "-U", "postgres", "-d", "bank", "-c",
                               "BEGIN; LOCK TABLE s IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        started = time.monotonic()
        with pytest.raises(SourceError, match=r"table 's' .*ran longer than 1 s .* cancelled it"):
            source.scan('SELECT SUM("z") FROM "public"."s"')
        assert time.monotonic() - started < 4
    finally:
        locker.wait(timeout=30)


def test_source_down_is_clear_and_the_node_keeps_serving(srcfed):
    fed, pg, db = srcfed
    pg.stop()
    try:
        err = _error(fed, "p2", "SELECT COUNT(*) FROM p1.t")
        assert "p1" in str(err) and "'t'" in str(err) and pg.url("bank") in str(err) and "cannot connect" in str(err)
        assert query(fed, "p2", "SELECT SUM(x) FROM p1.w") == [(6,)]  # p1's file table
        assert query(fed, "p3", "SELECT COUNT(*) FROM p2.u") == [(67,)]  # and the federation
    finally:
        pg.start()
    assert query(fed, "p2", "SELECT COUNT(*) FROM p1.t") == [(120,)]


def _types(table: pa.Table) -> list:
    """Column types, a zoned timestamp's zone name aside (UTC or Etc/UTC, as the machine says)."""
    return [(t.unit, t.tz is not None) if pa.types.is_timestamp(t) else t for t in table.schema.types]


def test_decimal_date_timestamp_and_nulls_are_exact(srcfed, tmp_path, caplog):
    """Types come from PostgreSQL: numeric(p,s), date, timestamp, timestamptz and NULLs, read
    as rows and through a pushed aggregate, equal to DuckDB over the same values."""
    import logging

    _, pg, _ = srcfed
    rows = ("(1, -1.25, DATE '2024-01-02', TIMESTAMP '2024-01-02 03:04:05.123456', TIMESTAMPTZ '2024-01-02 03:04:05.123456+00'), "
            "(2, 0.00, DATE '1969-12-31', NULL, TIMESTAMPTZ '1970-01-01 00:00:00.000001+00'), "
            "(3, NULL, NULL, TIMESTAMP '2038-01-19 03:14:08', NULL), "
            "(4, 12345678.99, DATE '2000-02-29', TIMESTAMP '1999-12-31 23:59:59.999999', TIMESTAMPTZ '2024-12-31 23:00:00-05')")
    pg.psql("CREATE TABLE typed (n bigint, d numeric(10,2), day date, ts timestamp, tz timestamptz); "
            f"INSERT INTO typed VALUES {rows}; GRANT SELECT ON typed TO fedsql_reader", "bank")
    ref = duckdb.connect()
    ref.execute("SET TimeZone = 'UTC'")
    ref.execute("CREATE TABLE typed (n BIGINT, d DECIMAL(10,2), day DATE, ts TIMESTAMP, tz TIMESTAMPTZ)")
    ref.execute(f"INSERT INTO typed VALUES {rows}")
    ex = one_table_executor(tmp_path, pg.url("bank"), "public.typed", "typed", PASSWORD)
    assert [tuple(c) for c in ex.schema("typed")] == [("n", "BIGINT"), ("d", "DECIMAL(10,2)"), ("day", "DATE"),
                                                      ("ts", "TIMESTAMP"), ("tz", "TIMESTAMP WITH TIME ZONE")]
    read = ex.query('SELECT * FROM "typed" ORDER BY n')
    want = ref.execute("SELECT * FROM typed ORDER BY n").to_arrow_table()
    assert _types(read) == _types(want) and read.to_pylist() == want.to_pylist()
    agg = ('SELECT SUM(d) AS s, MIN(day) AS a, MAX(day) AS b, MIN(ts) AS c, MAX(tz) AS e, COUNT(day) AS m, '
           'COUNT(*) AS k FROM "typed" AS "typed" WHERE n > 1')
    with caplog.at_level(logging.INFO, logger="fedsql.node"):
        got = ex.query(agg)
    assert "pushed into its postgresql source" in caplog.text and "could not run" not in caplog.text
    assert any('MAX("tz")' in line and '"n" > 1' in line for line in pg.log().splitlines())
    want = ref.execute(agg.replace('"typed" AS "typed"', "typed")).to_arrow_table()
    assert _types(got) == _types(want) and got.to_pylist() == want.to_pylist()
