"""`x op ANY/ALL (subquery)` (planner/passes/quantified.py, issue #12).

The rewrite is SQL to SQL, so DuckDB itself is the oracle: on random tables with NULLs, empty
and all-NULL subqueries, duplicates and negatives, the rewritten statement must return exactly
what DuckDB returns for the original, as a value in SELECT (three-valued logic visible) and as a
filter. Then a few run through a real federation, where the subquery reads another party.
"""

from __future__ import annotations

import doctest
import itertools

import duckdb
import numpy as np
import pyarrow as pa
import pytest
import sqlglot

from planner.passes import quantified
from planner.passes.quantified import rewrite_quantified
from tests.result_compare import assert_matches, duckdb_arrow, pooled_duckdb

OPS = ["=", "<>", "<", "<=", ">", ">="]
QUANTIFIERS = ["ANY", "ALL", "SOME"]
SUBQUERIES = [
    "SELECT y FROM b.u",
    "SELECT y FROM b.u WHERE y > 2",
    "SELECT y FROM b.u WHERE y > 1000",  # empty
    "SELECT y FROM b.u WHERE y IS NULL",  # only NULLs
    "SELECT y FROM b.u WHERE y IS NOT NULL AND y < 0",
    "SELECT DISTINCT y FROM b.u",
    "SELECT y + 1 AS z FROM b.u WHERE y <> 3 OR y IS NULL",
    "SELECT MAX(y) FROM b.u GROUP BY g",  # aggregates: wrapped as a derived table
    "SELECT y FROM b.u WHERE b.u.g = a.t.g",  # correlated
]


def test_doctests() -> None:
    assert doctest.testmod(quantified).failed == 0


@pytest.fixture(scope="module")
def db():
    rng = np.random.default_rng(3)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA a; CREATE SCHEMA b")
    x = [None if r < 0.15 else int(v) for v, r in zip(rng.integers(-4, 8, 40), rng.random(40))]
    y = [None if r < 0.1 else int(v) for v, r in zip(rng.integers(-3, 6, 25), rng.random(25))]
    con.register("tx", pa.table({"x": pa.array(x, pa.int64()), "g": pa.array(rng.integers(0, 4, 40))}))
    con.register("uy", pa.table({"y": pa.array(y, pa.int64()), "g": pa.array(rng.integers(0, 3, 25))}))
    con.execute("CREATE TABLE a.t AS SELECT * FROM tx; CREATE TABLE b.u AS SELECT * FROM uy")
    return con


@pytest.mark.parametrize("op, q", list(itertools.product(OPS, QUANTIFIERS)))
@pytest.mark.parametrize("sub", SUBQUERIES)
def test_rewrite_equals_duckdb(db, op: str, q: str, sub: str) -> None:
    for sql in (f"SELECT x, g, x {op} {q} ({sub}) AS v FROM a.t ORDER BY ALL",
                f"SELECT x, g FROM a.t WHERE x {op} {q} ({sub}) ORDER BY ALL",
                f"SELECT x, g FROM a.t WHERE g >= 1 AND (x {op} {q} ({sub})) ORDER BY ALL",  # an AND-term
                f"SELECT x, g FROM a.t WHERE g >= 1 OR x {op} {q} ({sub}) ORDER BY ALL",
                f"SELECT COUNT(*) FROM a.t WHERE NOT (x {op} {q} ({sub}))"):
        rewritten = rewrite_quantified(sqlglot.parse_one(sql, read="duckdb"), "a").sql(dialect="duckdb")
        assert "ANY" not in rewritten.upper().replace("COMPANY", "") and " ALL (" not in rewritten.upper()
        assert db.sql(rewritten).fetchall() == db.sql(sql).fetchall(), (sql, rewritten)


def test_the_issuers_own_statement_is_left_to_its_duckdb() -> None:
    ast = sqlglot.parse_one("SELECT COUNT(*) FROM a.t WHERE x > ALL (SELECT y FROM a.u)", read="duckdb")
    assert rewrite_quantified(ast, "a") is ast


def test_a_subquery_of_two_columns_is_refused() -> None:
    from fedsql.errors import UnsupportedSql

    ast = sqlglot.parse_one("SELECT COUNT(*) FROM a.t WHERE x > ALL (SELECT y, g FROM b.u)", read="duckdb")
    with pytest.raises(UnsupportedSql, match="one column"):
        rewrite_quantified(ast, "a")


CONFIG = """\
[federation]
name = "quantified"
compute = ["a", "b", "c"]
deadline_seconds = 120

[parties.a]
address = "127.0.0.1:{p0}"
[parties.a.tables.t]
source = "a_t.parquet"
columns = {{ x = "join_key", g = ["join_key", "group_key"] }}

[parties.b]
address = "127.0.0.1:{p1}"
[parties.b.tables.u]
source = "b_u.parquet"
columns = {{ y = "join_key", g = "join_key" }}

[parties.c]
address = "127.0.0.1:{p2}"
"""

FEDERATED = [
    "SELECT COUNT(*) FROM a.t WHERE x > ALL (SELECT y FROM b.u WHERE y < 3)",
    "SELECT g, COUNT(*) FROM a.t WHERE x <= ANY (SELECT y FROM b.u) GROUP BY g ORDER BY g",
    "SELECT COUNT(*) FROM a.t WHERE x = ANY (SELECT y FROM b.u)",
    "SELECT COUNT(*) FROM a.t WHERE x <> ALL (SELECT y FROM b.u WHERE y IS NOT NULL)",
    "SELECT COUNT(*) FROM a.t WHERE x > ANY (SELECT y FROM b.u WHERE y > 1000)",
    # correlated: an AND-term of WHERE needs only the bound, decorrelated as a grouped join
    "SELECT g, COUNT(*) FROM a.t WHERE x >= ANY (SELECT y FROM b.u WHERE b.u.g = a.t.g) AND x > -3 GROUP BY g "
    "ORDER BY g",
]


@pytest.mark.e2e
def test_quantified_comparisons_across_parties_match_duckdb(tmp_path) -> None:
    import fedsql
    from tests.federation_harness import running_federation

    rng = np.random.default_rng(8)
    x = [None if r < 0.1 else int(v) for v, r in zip(rng.integers(-4, 8, 30), rng.random(30))]
    y = [None if r < 0.1 else int(v) for v, r in zip(rng.integers(-3, 6, 20), rng.random(20))]
    tables = {"a.t": pa.table({"x": pa.array(x, pa.int64()), "g": pa.array(rng.integers(0, 3, 30))}),
              "b.u": pa.table({"y": pa.array(y, pa.int64()), "g": pa.array(rng.integers(0, 3, 20))})}
    ref = pooled_duckdb(tables)
    with running_federation(tmp_path, CONFIG, tables) as config:
        with fedsql.connect(str(config), party="a") as conn:
            for sql in FEDERATED:
                cur = conn.cursor()
                got = cur.execute(sql).fetch_arrow_table()
                assert_matches(got, duckdb_arrow(ref, sql), sql)
            cur = conn.cursor()
            cur.execute("EXPLAIN " + FEDERATED[0])
            assert any("MAX(y)" in line for line in cur.leakage), cur.leakage  # what the issuer learns
