"""Every query through real nodes must equal plain DuckDB over the pooled data.

The federation (tests/conftest.py) has three parties p1, p2, p3; p3's table is
empty. `t` is their union. Data has negatives, zeros, NULLs, duplicate keys.
Exact comparison for integers and decimals; DOUBLE results within the
fixed-point tolerance documented in docs/decisions.md.
"""

from __future__ import annotations

import pytest

from tests.result_compare import assert_matches

pytestmark = pytest.mark.e2e

FIXED_POINT_TOLERANCE = 1e-4  # |error| per partial value is 2^-21; a handful of partials per group

QUERIES = [
    # global aggregates over the union (secure combine)
    "SELECT COUNT(*) FROM t",
    "SELECT COUNT(x), COUNT(d), COUNT(f) FROM t",
    "SELECT SUM(x), SUM(d), MIN(x), MAX(x), MIN(d), MAX(d) FROM t",
    "SELECT AVG(x), AVG(d) FROM t",
    "SELECT SUM(f), AVG(f), MIN(f), MAX(f) FROM t",
    "SELECT MIN(b), MAX(b), COUNT(b) FROM t",
    "SELECT SUM(x * 2 + 1) AS s, SUM(x) - SUM(d) AS diff FROM t",
    "SELECT SUM(x) FROM t WHERE x > 0",
    "SELECT COUNT(*) FROM t WHERE x BETWEEN -100 AND 100 AND b",
    "SELECT COUNT(*), SUM(x), MIN(x) FROM t WHERE x > 100000",  # no row matches: NULLs
    "SELECT COUNT(*) AS n FROM t WHERE d IS NULL OR x = 0",
    "SELECT VAR_SAMP(x), VAR_POP(x), STDDEV(x), STDDEV_POP(d), VARIANCE(f) FROM t",
    # GROUP BY on group_key / public columns (shuffle + opened keys)
    "SELECT k, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k",
    "SELECT k, AVG(d), MIN(d), MAX(d) FROM t GROUP BY k ORDER BY k NULLS FIRST",
    "SELECT g, k, COUNT(x) FROM t GROUP BY g, k ORDER BY g, k",
    "SELECT g, SUM(f) FROM t GROUP BY 1 ORDER BY 1",
    "SELECT k AS key, COUNT(*) AS n FROM t GROUP BY key HAVING COUNT(*) > 20 ORDER BY n DESC, key",
    "SELECT k, MAX(x) - MIN(x) AS spread FROM t WHERE b GROUP BY k ORDER BY spread DESC NULLS LAST LIMIT 2",
    "SELECT g FROM t GROUP BY g ORDER BY g",
    "SELECT k, STDDEV_SAMP(x), VAR_POP(d) FROM t GROUP BY k",
    "SELECT k, SUM(x) FROM t WHERE x < -2000 GROUP BY k",  # empty result
    "SELECT upper(k) AS uk, COUNT(*) FROM t GROUP BY k ORDER BY uk",
    "SELECT g + 1 AS g1, COUNT(*) FROM t GROUP BY g + 1 ORDER BY g1",
    # HAVING and ORDER BY … LIMIT under MPC: only the result rows are opened
    "SELECT g, SUM(x) AS s FROM t GROUP BY g HAVING SUM(x) > 0 AND COUNT(*) >= 5",
    "SELECT g, COUNT(*) AS n FROM t GROUP BY g ORDER BY n DESC, g LIMIT 2",
    "SELECT g, SUM(d) FROM t GROUP BY g ORDER BY 2 DESC LIMIT 2 OFFSET 1",
    "SELECT g, MIN(x) FROM t WHERE x > 900 GROUP BY g HAVING MIN(x) IS NULL OR MIN(x) > 0 ORDER BY g",
    # public rows of a union: filtered and sent in plaintext
    "SELECT g FROM t WHERE x > 500 ORDER BY g",
    "SELECT g, g * 2 FROM t ORDER BY g LIMIT 5",
    # CTEs and derived tables fold into the outer query
    "WITH pos AS (SELECT k, x FROM t WHERE x > 0) SELECT k, SUM(x) AS s FROM pos GROUP BY k",
    "SELECT kk, COUNT(*) FROM (SELECT k AS kk, x FROM t WHERE b) s GROUP BY kk",
    "WITH big AS (SELECT * FROM p2.t WHERE x > 100) SELECT COUNT(*), MAX(d) FROM big",
    # uncorrelated scalar subqueries run first as queries of their own
    "SELECT COUNT(*) FROM t WHERE x > (SELECT AVG(x) FROM t)",
    "SELECT k, COUNT(*) FROM t WHERE d < (SELECT MAX(d) FROM p2.t) / 2 GROUP BY k",
    "SELECT k, COUNT(*) FILTER (WHERE b) AS nb, SUM(x) FILTER (WHERE x > 0) FROM t GROUP BY k",
    # COUNT(DISTINCT x): an oblivious sort marks each distinct value once
    "SELECT COUNT(DISTINCT x) FROM t",
    "SELECT k, COUNT(DISTINCT g) AS dg FROM t GROUP BY k",
    "SELECT g, COUNT(DISTINCT k) FROM t WHERE x > 0 GROUP BY g ORDER BY g",
    "SELECT COUNT(DISTINCT d) FROM t WHERE x > 100000",
    # DISTINCT: a GROUP BY of the select list, or on the final rows
    "SELECT DISTINCT k FROM t ORDER BY k",
    "SELECT DISTINCT g, k FROM t WHERE x > 0",
    "SELECT DISTINCT COUNT(*) > 10 AS many FROM t GROUP BY g",
    # the field's "password reuse" shape: keys that occur more than once
    "SELECT DISTINCT k FROM t GROUP BY k, g HAVING COUNT(*) > 1",
    # set operations: each branch a query of its own, combined at the issuer
    "SELECT k, COUNT(*) AS n FROM t GROUP BY k UNION ALL SELECT 'all', COUNT(*) FROM t ORDER BY n, k",
    "SELECT g FROM p1.t WHERE g > 1 UNION SELECT g FROM t WHERE x > 900 ORDER BY g",
    "SELECT g FROM p1.t INTERSECT SELECT g FROM p2.t",
    # one party's table: the owner runs it
    "SELECT COUNT(*), SUM(x), AVG(d) FROM p2.t",
    "SELECT k, COUNT(*) FROM p2.t GROUP BY k ORDER BY k",
    "SELECT * FROM p1.t ORDER BY id LIMIT 7",  # own table: unrestricted
    "SELECT COUNT(*), SUM(x) FROM p3.t",  # empty table
]


@pytest.mark.parametrize("sql", QUERIES)
def test_query_matches_duckdb(conn, reference, sql):
    cur = conn.cursor()
    cur.execute(sql)
    got = cur.fetch_arrow_table()
    want = reference(sql)
    assert [str(f.type) for f in got.schema] == [str(f.type) for f in want.schema]
    assert_matches(got, want, sql, abs_tol=FIXED_POINT_TOLERANCE)


def test_description_matches_duckdb_names_and_types(conn, reference):
    sql = "SELECT k, COUNT(*) AS n, SUM(d), AVG(x) FROM t GROUP BY k"
    cur = conn.cursor()
    cur.execute(sql)
    want = reference(sql)
    assert [d[0] for d in cur.description] == want.column_names
    assert cur.rowcount == want.num_rows


def test_leakage_report_names_what_is_revealed(conn):
    cur = conn.cursor()
    cur.execute("SELECT k, SUM(x) FROM t GROUP BY k")
    report = " ".join(cur.leakage)
    assert "shuffle" in report and "p1 only" in report


def test_top_k_and_having_run_under_mpc(conn):
    cur = conn.cursor()
    cur.execute("EXPLAIN SELECT g, SUM(x) AS s FROM t GROUP BY g HAVING COUNT(*) > 3 ORDER BY s DESC LIMIT 1")
    text = "\n".join(r[0] for r in cur.fetchall())
    assert "secure_finish" in text and "never opened" in text and "before HAVING" not in text


def test_explain_shows_placement_and_leakage(conn):
    cur = conn.cursor()
    cur.execute("EXPLAIN SELECT k, COUNT(*) FROM t WHERE x > 0 GROUP BY k")
    text = "\n".join(r[0] for r in cur.fetchall())
    assert "local_query" in text and "at p2 (local DuckDB" in text
    assert "group_combine" in text and "secure (p1, p2, p3)" in text
    assert "leakage report:" in text


REFUSED = [
    ("SELECT id FROM t", "PolicyViolation", "p2.t.id"),
    ("SELECT id, COUNT(*) FROM t GROUP BY id", "PolicyViolation", "GROUP BY"),
    ("SELECT SUM(id) FROM t", "PolicyViolation", "private"),
    ("SELECT COUNT(*) FROM t WHERE id > 3", "PolicyViolation", "WHERE"),
    ("SELECT x FROM p2.t", "PolicyViolation", "public"),
    ("SELEC COUNT(*) FROM t", "ProgrammingError", "syntax"),
    ("SELECT COUNT(*) FROM nowhere", "ProgrammingError", "unknown table"),
    ("SELECT COUNT(*) FROM p9.t", "ProgrammingError", "unknown party"),
    ("SELECT nope FROM t", "ProgrammingError", "nope"),
    ("SELECT SUM(DISTINCT x) FROM t", "NotSupportedError", "DISTINCT"),
    ("SELECT DISTINCT x FROM t", "PolicyViolation", "GROUP BY"),
    ("SELECT COUNT(*) FROM t a JOIN p2.t b ON a.id = b.id", "PolicyViolation", "join_key"),
]


@pytest.mark.parametrize("sql,kind,fragment", REFUSED)
def test_refusals_are_clear_and_node_keeps_serving(conn, sql, kind, fragment):
    import fedsql

    cur = conn.cursor()
    with pytest.raises(getattr(fedsql, kind)) as info:
        cur.execute(sql)
    assert fragment.lower() in str(info.value).lower()
    assert "Traceback" not in str(info.value)
    cur.execute("SELECT COUNT(*) FROM t")
    assert cur.fetchone()[0] == 200


OBLIVIOUS = [
    "SELECT k, COUNT(DISTINCT g) AS dg FROM t GROUP BY k",
    "SELECT g, COUNT(*) AS n FROM t GROUP BY g ORDER BY n DESC, g LIMIT 2",
    "SELECT k, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k",
    "SELECT k, AVG(d), MIN(d), MAX(d) FROM t GROUP BY k ORDER BY k NULLS FIRST",
    "SELECT g, k, COUNT(x) FROM t GROUP BY g, k ORDER BY g, k",
    "SELECT k, SUM(x) FROM t WHERE x < -2000 GROUP BY k",
    "SELECT COUNT(*), SUM(f) FROM t",
]


@pytest.mark.parametrize("sql", OBLIVIOUS)
def test_oblivious_mode_matches_duckdb(conn, reference, sql):
    """Secret GROUP BY: keys never opened to the compute parties, same answers."""
    cur = conn.cursor()
    cur.execute("SET fedsql.mode = 'oblivious'")
    try:
        cur.execute(sql)
        got = cur.fetch_arrow_table()
        assert not any("group key values" in line for line in cur.leakage)
    finally:
        cur.execute("SET fedsql.mode = 'sizes'")
    assert_matches(got, reference(sql), sql, abs_tol=FIXED_POINT_TOLERANCE)
