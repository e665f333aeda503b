"""Issue #14 item 2: a party whose tables live in MySQL/MariaDB (`source = "mysql://..."`).

One real federation: p1's tables are in a throw-away MariaDB server (tests/mysql_server.py,
general query log on), p2's and p3's Parquet files. Every result is compared with plain DuckDB
over the pooled rows; the general log shows what reached the server. Skipped where MariaDB is
not installed (`apt-get install mariadb-server`).
"""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from fedsql import errors
from tests import mysql_server
from tests.adversarial.harness import running, write_config
from tests.source_harness import COLS, UNION, error, one_table_executor, query, reference_db, table_entry

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(mysql_server.available() is not None, reason=mysql_server.available() or "")]

PASSWORD = mysql_server.READER_PASSWORD
DP = '[parties.p1.tables.v.dp]\nunit = "row"\nbounds = { x = [-1000, 1000] }\nepsilon = 1e6\nmax_epsilon_per_query = 1000.0\n'
# k compares as DuckDB does only under a binary NO PAD collation; BOOLEAN is tinyint(1) there
TYPES = ("id BIGINT, k VARCHAR(20) COLLATE utf8mb4_nopad_bin, x BIGINT, d DECIMAL(10,2), f DOUBLE, b BOOLEAN, g INT")



def _config(url: str) -> str:
    text = '[federation]\nname = "myfed"\ncompute = ["p1", "p2", "p3"]\ndeadline_seconds = 90\n'
    for p in ("p1", "p2", "p3"):
        text += f'\n[parties.{p}]\naddress = "127.0.0.1:{{port{p[1]}}}"\n'
        if p == "p1":
            text += "[parties.p1.tables.t]\n" + table_entry(url, "bank.t") + "[parties.p1.tables.v]\n" + table_entry(url, "bank.t")
            text += DP
            text += "[parties.p1.tables.gone]\n" + table_entry(url, "bank.gone", "{}")
            text += "[parties.p1.tables.locked]\n" + table_entry(url, "bank.t", '{ x = "aggregate" }')
        else:
            for name in ("t", "v"):
                text += f'[parties.{p}.tables.{name}]\nsource = "{p}_t.parquet"\ncolumns = {COLS}\n'
            if p == "p2":
                text += '[parties.p2.tables.u]\nsource = "u.parquet"\ncolumns = { id = "join_key", y = "aggregate" }\n'
    text += '\n[federated.t]\nunion = ["p1.t", "p2.t", "p3.t"]\n[federated.v]\nunion = ["p1.v", "p2.v", "p3.v"]\n'
    return text.replace("{", "{{").replace("}", "}}").replace("{{port", "{port").replace("}}\"", "}\"")


def _sql_value(v) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(float(v)) if isinstance(v, float) else str(v)


@pytest.fixture(scope="module")
def myfed(tmp_path_factory):
    from tests.conftest import write_test_federation

    d = tmp_path_factory.mktemp("myfed")
    _, data = write_test_federation(d, (120, 80, 40))
    u = pa.table({"id": pa.array(range(1, 200, 3), pa.int64()), "y": pa.array(range(0, 670, 10), pa.int64())})
    with mysql_server.mysql_server() as my:
        values = ", ".join("(" + ", ".join(_sql_value(v) for v in r.values()) + ")" for r in data["p1.t"].to_pylist())
        my.sql(f"CREATE DATABASE bank; CREATE TABLE bank.t ({TYPES}); INSERT INTO bank.t VALUES {values}; "
               "GRANT SELECT ON bank.* TO fedsql_reader")
        config = write_config(d, _config(my.url("bank")), {"u.parquet": u})
        state = d / ".fedsql" / "p1"
        state.mkdir(parents=True, exist_ok=True)
        secrets = state / "secrets.toml"
        secrets.write_text("".join(f'[tables.{t}]\npassword = "{PASSWORD}"\n' for t in ("t", "v", "gone")))
        secrets.chmod(0o600)
        os.environ["FEDSQL_SOURCE_PASSWORD_P1_LOCKED"] = "not-the-password"
        try:
            with running(config) as fed:
                db = reference_db(data, u=u)
                yield fed, my, db
        finally:
            os.environ.pop("FEDSQL_SOURCE_PASSWORD_P1_LOCKED", None)





def test_union_aggregates_with_a_mysql_party_and_pushdown(myfed):
    fed, my, db = myfed
    assert query(fed, "p2", UNION) == db.execute(UNION).fetchall()
    pushed = [line for line in my.log().splitlines() if "`x` > -777" in line]
    assert pushed, "the fragment's WHERE predicate never reached MariaDB"
    assert any("GROUP BY `k`" in line and "`g` >= 2" in line and "SUM(`x`)" in line for line in pushed), pushed
    assert not any("COALESCE" in line for line in pushed)


def test_cross_party_join_and_dp_over_mysql(myfed):
    fed, _, db = myfed
    sql = "SELECT a.k, COUNT(*), SUM(b.y) FROM p1.t a JOIN p2.u b ON a.id = b.id GROUP BY a.k ORDER BY a.k NULLS FIRST"
    assert query(fed, "p3", sql) == db.execute(sql.replace("p1.t", "p1_t").replace("p2.u", "u")).fetchall()
    (n, s), = query(fed, "p1", "SELECT COUNT(*) AS n, SUM(x) AS s FROM v", ("SET fedsql.epsilon = 1000",))
    (tn, ts), = db.execute("SELECT COUNT(*), SUM(x) FROM (SELECT x FROM p1_t UNION ALL SELECT "
                           "CASE WHEN x IS NOT NULL THEN LEAST(GREATEST(x, -1000), 1000) END "
                           "FROM (SELECT x FROM p2_t UNION ALL SELECT x FROM p3_t))").fetchall()
    assert abs(n - tn) <= 1 and abs(float(s) - float(ts)) <= 100



def _error(fed, party: str, sql: str) -> errors.Error:
    return error(fed, party, sql, PASSWORD)


def test_changed_schema_is_noticed(myfed):
    fed, my, db = myfed
    want = db.execute("SELECT COUNT(d) FROM p1_t").fetchall()
    assert query(fed, "p2", "SELECT COUNT(d) FROM p1.t") == want
    my.sql("ALTER TABLE bank.t RENAME COLUMN d TO d_old")
    try:
        err = _error(fed, "p2", "SELECT SUM(d) FROM p1.t")
        assert "'t'" in str(err) and "schema changed" in str(err) and "d" in str(err)
    finally:
        my.sql("ALTER TABLE bank.t RENAME COLUMN d_old TO d")
    assert query(fed, "p2", "SELECT COUNT(d) FROM p1.t") == want


def test_wrong_password_missing_table_and_down_are_clear(myfed):
    fed, my, _ = myfed
    url = my.url("bank")
    err = _error(fed, "p2", "SELECT SUM(x) FROM p1.locked")
    assert "'locked'" in str(err) and url in str(err) and "refused the login" in str(err)
    assert "not-the-password" not in str(err)
    err = _error(fed, "p2", "SELECT COUNT(*) FROM p1.gone")
    assert "'gone'" in str(err) and url in str(err) and "does not exist" in str(err)
    for p in ("p1", "p2", "p3"):
        assert PASSWORD not in fed.node_log(p) + fed.audit_text(p) and "not-the-password" not in fed.node_log(p)
    my.stop()
    try:
        err = _error(fed, "p2", "SELECT COUNT(*) FROM p1.t")
        assert "'t'" in str(err) and url in str(err) and "cannot connect" in str(err)
        assert query(fed, "p3", "SELECT COUNT(*) FROM p2.u") == [(67,)]  # the rest still served
    finally:
        my.start()
    assert query(fed, "p2", "SELECT COUNT(*) FROM p1.t") == [(120,)]


def test_text_under_a_folding_collation_is_not_pushed(myfed, tmp_path):
    """MySQL's default collation folds case and trailing spaces ('a' = 'A' = 'a '): grouping or
    comparing such a column there would merge what DuckDB keeps apart."""
    _, my, _ = myfed
    my.sql("CREATE TABLE bank.c (c VARCHAR(10) COLLATE utf8mb4_general_ci, x BIGINT); "
           "INSERT INTO bank.c VALUES ('a', 1), ('A', 2), ('a ', 3), (NULL, 4)")
    ex = one_table_executor(tmp_path, my.url("bank"), "bank.c", "c", PASSWORD)
    got = ex.query('SELECT c, SUM(x) AS s FROM "c" AS "c" WHERE c = \'a\' OR c IS NULL OR x > 1 GROUP BY c')
    assert sorted(got.to_pylist(), key=lambda r: (r["c"] is None, r["c"] or "")) == [
        {"c": "A", "s": 2}, {"c": "a", "s": 1}, {"c": "a ", "s": 3}, {"c": None, "s": 4}]


def test_a_long_statement_is_cancelled_at_the_deadline(myfed):
    import time

    from connectors.sources import SourceError, open_source

    _, my, _ = myfed
    source = open_source("p1", "t", my.url("bank"), "bank.t", PASSWORD, statement_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"table 't' .*ran longer than 1 s .*server cancelled it"):
        source.scan("SELECT SUM(a.seq * b.seq) AS s FROM seq_1_to_100000 a, seq_1_to_100000 b")
    assert time.monotonic() - started < 10


def test_decimal_date_datetime_and_nulls_are_exact(myfed, tmp_path, caplog):
    """Types come from MariaDB: decimal(p,s), date, datetime(6) and NULLs, read as rows and
    through a pushed aggregate, equal to DuckDB over the same values."""
    import logging

    import duckdb

    _, my, _ = myfed
    rows = ("(1, -1.25, '2024-01-02', '2024-01-02 03:04:05.123456'), (2, 0.00, '1969-12-31', NULL), "
            "(3, NULL, NULL, '2038-01-19 03:14:08'), (4, 12345678.99, '2000-02-29', '1999-12-31 23:59:59.999999')")
    my.sql("CREATE TABLE bank.typed (n BIGINT, d DECIMAL(10,2), day DATE, ts DATETIME(6)); "
           f"INSERT INTO bank.typed VALUES {rows}")
    ref = duckdb.connect()
    ref.execute("CREATE TABLE typed (n BIGINT, d DECIMAL(10,2), day DATE, ts TIMESTAMP)")
    ref.execute(f"INSERT INTO typed VALUES {rows}")
    ex = one_table_executor(tmp_path, my.url("bank"), "bank.typed", "typed", PASSWORD)
    assert [tuple(c) for c in ex.schema("typed")] == [("n", "BIGINT"), ("d", "DECIMAL(10,2)"), ("day", "DATE"),
                                                      ("ts", "TIMESTAMP")]
    read = ex.query('SELECT * FROM "typed" ORDER BY n')
    want = ref.execute("SELECT * FROM typed ORDER BY n").to_arrow_table()
    assert read.schema.types == want.schema.types and read.to_pylist() == want.to_pylist()
    agg = ('SELECT SUM(d) AS s, MIN(day) AS a, MAX(day) AS b, MIN(ts) AS c, MAX(ts) AS e, COUNT(day) AS m, '
           'COUNT(*) AS k FROM "typed" AS "typed" WHERE n > 1')
    with caplog.at_level(logging.INFO, logger="fedsql.node"):
        got = ex.query(agg)
    assert "pushed into its mysql source" in caplog.text and "could not run" not in caplog.text
    assert any("MAX(`ts`)" in line and "`n` > 1" in line for line in my.log().splitlines())
    want = ref.execute(agg.replace('"typed" AS "typed"', "typed")).to_arrow_table()
    assert got.schema.types == want.schema.types and got.to_pylist() == want.to_pylist()
