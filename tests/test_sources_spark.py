"""Issue #14 item 3: a party whose tables live in Spark (`source = "sc://host:port"`).

One real federation: p1's tables are Spark tables in a throw-away Spark Connect server
(tests/spark_server.py: pyspark's Spark in local mode, bearer token, event log on), p2's and
p3's Parquet files. Every result is compared with plain DuckDB over the pooled rows; that the
WHERE and GROUP BY ran in Spark is read from Spark's own event log (the statement text it got
and the physical plan it ran). Marked slow: a JVM and a Spark server start (about 20 s).
"""

from __future__ import annotations

import datetime
import decimal
import logging
import os
from pathlib import Path

import pyarrow as pa
import pytest

from fedsql import errors
from tests import spark_server
from tests.adversarial.harness import running, write_config
from tests.source_harness import COLS, UNION, error, query, reference_db, table_entry

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(spark_server.available() is not None, reason=spark_server.available() or "")]

TOKEN = spark_server.TOKEN
DP = '[parties.p1.tables.v.dp]\nunit = "row"\nbounds = { x = [-1000, 1000] }\nepsilon = 1e6\nmax_epsilon_per_query = 1000.0\n'
UTC = datetime.timezone.utc
# p1.e: every type Spark hands over, with NULLs, negatives, zeros, duplicates and mixed-case names
EVENTS = pa.table({
    "Id": pa.array([1, 2, 3, 4, 5, 6], pa.int64()),
    "Kind": pa.array(["a", "a", "B", None, "it's", "back\\slash"]),
    "Amount": pa.array([decimal.Decimal("-1.25"), decimal.Decimal("0.00"), None, decimal.Decimal("12345678.99"),
                        decimal.Decimal("0.01"), decimal.Decimal("-0.01")], pa.decimal128(10, 2)),
    "Day": pa.array([datetime.date(2024, 1, 2), datetime.date(1969, 12, 31), None, datetime.date(2024, 1, 2),
                     datetime.date(2000, 2, 29), datetime.date(2024, 12, 31)], pa.date32()),
    "At": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, UTC), None,
                    datetime.datetime(1970, 1, 1, 0, 0, 0, 1, UTC), datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, UTC),
                    datetime.datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")),
    "Small": pa.array([0, -1, 2, None, 2, 7], pa.int32()),
})



def _config(url: str) -> str:
    text = '[federation]\nname = "sparkfed"\ncompute = ["p1", "p2", "p3"]\ndeadline_seconds = 60\n'
    for p in ("p1", "p2", "p3"):
        text += f'\n[parties.{p}]\naddress = "127.0.0.1:{{port{p[1]}}}"\n'
        if p == "p1":
            text += "[parties.p1.tables.t]\n" + table_entry(url, "bank.t") + "[parties.p1.tables.v]\n" + table_entry(url, "bank.t")
            text += DP
            text += "[parties.p1.tables.s]\n" + table_entry(url, "bank.s", '{ id = "join_key", z = "aggregate" }')
            text += "[parties.p1.tables.e]\n" + table_entry(url, "bank.events", "{}")
            text += "[parties.p1.tables.gone]\n" + table_entry(url, "bank.gone", "{}")
            text += "[parties.p1.tables.locked]\n" + table_entry(url, "bank.t", '{ x = "aggregate" }')
        else:
            for name in ("t", "v"):
                text += f'[parties.{p}.tables.{name}]\nsource = "{p}_t.parquet"\ncolumns = {COLS}\n'
            if p == "p2":
                text += '[parties.p2.tables.u]\nsource = "u.parquet"\ncolumns = { id = "join_key", y = "aggregate" }\n'
    text += '\n[federated.t]\nunion = ["p1.t", "p2.t", "p3.t"]\n[federated.v]\nunion = ["p1.v", "p2.v", "p3.v"]\n'
    return text.replace("{", "{{").replace("}", "}}").replace("{{port", "{port").replace("}}\"", "}\"")


@pytest.fixture(scope="module")
def sparkfed(tmp_path_factory):
    from tests.conftest import write_test_federation

    d = tmp_path_factory.mktemp("sparkfed")
    _, data = write_test_federation(d, (120, 80, 40))
    u = pa.table({"id": pa.array(range(1, 200, 3), pa.int64()), "y": pa.array(range(0, 670, 10), pa.int64())})
    with spark_server.spark_server() as spark:
        session = spark.session()
        session.sql("CREATE DATABASE bank")
        session.createDataFrame(data["p1.t"]).write.saveAsTable("bank.t")
        session.sql("CREATE TABLE bank.s (id BIGINT, z BIGINT) USING parquet")
        session.sql("INSERT INTO bank.s VALUES (1, 10), (2, 20)")
        session.createDataFrame(EVENTS).write.saveAsTable("bank.events")
        session.stop()
        config = write_config(d, _config(spark.url), {"u.parquet": u})
        state = d / ".fedsql" / "p1"
        state.mkdir(parents=True, exist_ok=True)
        secrets = state / "secrets.toml"
        secrets.write_text("".join(f'[tables.{t}]\npassword = "{TOKEN}"\n' for t in ("t", "v", "s", "e", "gone")))
        secrets.chmod(0o600)
        os.environ["FEDSQL_SOURCE_PASSWORD_P1_LOCKED"] = "not-the-token"  # the environment variable route
        try:
            with running(config) as fed:
                db = reference_db(data, u=u, events=EVENTS)
                yield fed, spark, db
        finally:
            os.environ.pop("FEDSQL_SOURCE_PASSWORD_P1_LOCKED", None)





def test_union_aggregates_with_a_spark_party(sparkfed):
    fed, _, db = sparkfed
    assert query(fed, "p2", UNION) == db.execute(UNION).fetchall()
    total = "SELECT COUNT(*), SUM(x), SUM(d), COUNT(b) FROM t WHERE b"
    assert query(fed, "p3", total) == db.execute(total).fetchall()


def test_fragment_where_and_group_by_ran_in_spark(sparkfed):
    fed, spark, _ = sparkfed
    before = len(spark.statements())
    query(fed, "p2", UNION)
    sent = [s for s in spark.statements()[before:] if "`x` > -777" in s]
    assert sent, "the fragment's WHERE predicate never reached Spark"
    assert any("GROUP BY `k`" in s and "`g` >= 2" in s and "SUM(`x`)" in s and "`bank`.`t`" in s for s in sent), sent
    assert not any("COALESCE" in s for s in sent)  # the finishing casts ran in the node's DuckDB
    plans = [p for p in spark.plans() if "-777" in p]
    assert plans and all("HashAggregate" in p and "Filter" in p for p in plans), plans  # Spark ran both


def test_same_party_join_runs_inside_spark(sparkfed):
    fed, spark, db = sparkfed
    sql = "SELECT a.k, SUM(b.z) FROM p1.t a JOIN p1.s b ON a.id = b.id WHERE b.z > 5 GROUP BY a.k ORDER BY a.k NULLS FIRST"
    want = db.execute("SELECT a.k, SUM(b.z) FROM p1_t a JOIN (VALUES (1, 10), (2, 20)) b(id, z) ON a.id = b.id "
                      "WHERE b.z > 5 GROUP BY a.k ORDER BY a.k NULLS FIRST").fetchall()
    assert query(fed, "p2", sql) == want
    joined = [s for s in spark.statements() if "`bank`.`s` AS `b`" in s and "`b`.`z` > 5" in s]
    assert joined and all("`bank`.`t` AS `a`" in s for s in joined)  # both tables, one Spark statement


def test_cross_party_join_spark_with_parquet(sparkfed):
    fed, _, db = sparkfed
    sql = "SELECT a.k, COUNT(*), SUM(b.y) FROM p1.t a JOIN p2.u b ON a.id = b.id GROUP BY a.k ORDER BY a.k NULLS FIRST"
    assert query(fed, "p3", sql) == db.execute(sql.replace("p1.t", "p1_t").replace("p2.u", "u")).fetchall()


def test_dp_query_over_a_spark_party(sparkfed):
    fed, _, db = sparkfed
    (n, s), = query(fed, "p1", "SELECT COUNT(*) AS n, SUM(x) AS s FROM v", ("SET fedsql.epsilon = 1000",))
    (tn, ts), = db.execute("SELECT COUNT(*), SUM(x) FROM (SELECT x FROM p1_t UNION ALL SELECT "
                           "CASE WHEN x IS NOT NULL THEN LEAST(GREATEST(x, -1000), 1000) END "
                           "FROM (SELECT x FROM p2_t UNION ALL SELECT x FROM p3_t))").fetchall()
    assert abs(n - tn) <= 1 and abs(float(s) - float(ts)) <= 100  # Laplace scales 0.002 and 4: 25 scales of slack


def test_decimal_date_timestamp_and_nulls_are_exact(sparkfed):
    from executors.local_duckdb import LocalExecutor

    fed, _, db = sparkfed
    ex = LocalExecutor(fed.fed.party("p1"), secrets_dir=fed.state_dir("p1"))
    assert [tuple(c) for c in ex.schema("e")] == [
        ("Id", "BIGINT"), ("Kind", "VARCHAR"), ("Amount", "DECIMAL(10,2)"), ("Day", "DATE"),
        ("At", "TIMESTAMP WITH TIME ZONE"), ("Small", "INTEGER")]
    for sql in (
        'SELECT kind, COUNT(*) AS n, SUM(amount) AS s, MIN(day) AS d0, MAX(day) AS d1, MIN("at") AS t0, MAX("at") AS t1, '
        'SUM(small * 3 - 1) AS q FROM "e" AS "e" WHERE day >= day OR day IS NULL GROUP BY kind',
        'SELECT SUM(amount) AS s, COUNT("at") AS n, MIN(kind) AS m FROM "e" AS "e" WHERE kind IN (\'it\'\'s\', \'back\\slash\', \'a\')',
        'SELECT id, kind, amount, day, "at" FROM "e" AS "e" WHERE amount < 0 OR amount IS NULL',
    ):
        got = ex.query(sql)
        want = db.execute(sql.replace('"e" AS "e"', "events")).to_arrow_table()
        assert [str(f.type) for f in got.schema] == [str(f.type) for f in want.schema], sql
        key = lambda r: tuple((v is None, str(v)) for v in r.values())  # noqa: E731
        assert sorted(got.to_pylist(), key=key) == sorted(want.to_pylist(), key=key), sql


def test_decimal_arithmetic_is_not_pushed(sparkfed, caplog):
    from executors.local_duckdb import LocalExecutor

    fed, spark, db = sparkfed
    ex = LocalExecutor(fed.fed.party("p1"), secrets_dir=fed.state_dir("p1"))
    before = len(spark.statements())
    with caplog.at_level(logging.INFO, logger="fedsql.node"):
        got = ex.query('SELECT SUM(amount * small) AS s FROM "e" AS "e"')
    assert "runs in the node's DuckDB" in caplog.text
    assert not any("*" in s for s in spark.statements()[before:])  # only the column was read from Spark
    assert got.to_pylist() == db.execute("SELECT SUM(amount * small) AS s FROM events").to_arrow_table().to_pylist()



def _error(fed, party: str, sql: str) -> errors.Error:
    return error(fed, party, sql, TOKEN)


def test_wrong_token_and_missing_table_are_clear(sparkfed):
    fed, spark, _ = sparkfed
    err = _error(fed, "p2", "SELECT SUM(x) FROM p1.locked")
    assert "p1" in str(err) and "'locked'" in str(err) and spark.url in str(err) and "refused the login" in str(err)
    assert "not-the-token" not in str(err)
    err = _error(fed, "p2", "SELECT COUNT(*) FROM p1.gone")
    assert "'gone'" in str(err) and spark.url in str(err) and "does not exist" in str(err)
    assert query(fed, "p2", "SELECT COUNT(*) FROM p1.t") == [(120,)]  # the rest still served


def test_changed_schema_is_noticed(sparkfed):
    fed, spark, _ = sparkfed
    assert query(fed, "p2", "SELECT SUM(z) FROM p1.s") == [(30,)]
    session = spark.session()
    try:
        session.sql("ALTER TABLE bank.s RENAME TO bank.s_old")
        session.sql("CREATE TABLE bank.s (id BIGINT, z_new BIGINT) USING parquet")
        err = _error(fed, "p2", "SELECT SUM(z) FROM p1.s")
        assert "'s'" in str(err) and "schema changed" in str(err) and "z" in str(err)
    finally:
        session.sql("DROP TABLE IF EXISTS bank.s")
        session.sql("ALTER TABLE bank.s_old RENAME TO bank.s")
        session.stop()
    assert query(fed, "p2", "SELECT SUM(z) FROM p1.s") == [(30,)]


def test_a_failing_statement_leaks_no_value_into_logs_or_errors(sparkfed, capfd, caplog):
    """Spark's message for a bad cast quotes the value ('it's'); pyspark would log it to stderr."""
    from connectors.sources import SourceError, open_source

    _, spark, _ = sparkfed
    source = open_source("p1", "e", spark.url, "bank.events", TOKEN)
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as info:
        source.scan("SELECT CAST(`Kind` AS INT) FROM `bank`.`events`")
    out, err = capfd.readouterr()
    for text in (str(info.value), out, err, caplog.text):
        assert "it's" not in text and "back" not in text and TOKEN not in text


def test_token_never_in_logs_audit_explain_or_describe(sparkfed):
    fed, spark, _ = sparkfed
    query(fed, "p2", UNION)
    plan = query(fed, "p2", "EXPLAIN SELECT COUNT(*) FROM p1.t WHERE x > 1")
    from fedsql.proto import node_pb2 as pb

    reply = fed.stub("p2", "p1").Describe(pb.DescribeRequest(tables=["t", "locked", "gone"]), timeout=30)
    seen = [str(plan), reply.tables.decode("utf-8", "replace"), reply.error.message, fed.config.read_text()]
    seen += [fed.node_log(p) + fed.audit_text(p) for p in ("p1", "p2", "p3")]
    for text in seen:
        assert TOKEN not in text and "not-the-token" not in text


def test_a_long_statement_is_cancelled_in_spark_at_the_deadline(sparkfed):
    import time

    from connectors.sources import SourceError, open_source

    _, spark, _ = sparkfed
    source = open_source("p1", "t", spark.url, "bank.t", TOKEN, statement_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"table 't' .*ran longer than 1 s .*Spark cancelled it"):
        source.scan("SELECT COUNT(*) FROM range(100000000000)")
    assert time.monotonic() - started < 10


def test_source_down_is_clear_and_the_node_keeps_serving(sparkfed):
    fed, spark, _ = sparkfed
    spark.stop()  # the last test: the server does not come back
    err = _error(fed, "p2", "SELECT COUNT(*) FROM p1.t")
    assert "p1" in str(err) and "'t'" in str(err) and spark.url in str(err) and "cannot connect" in str(err)
    assert query(fed, "p3", "SELECT COUNT(*) FROM p2.u") == [(67,)]  # the federation still serves
    assert Path(spark.root).exists()
