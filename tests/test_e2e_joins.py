"""Cross-party joins over real nodes, compared with DuckDB over the pooled tables.

Parties a, b, c compute; d holds data but does not compute (it deals shares).
Keys have duplicates on both sides, NULLs, values only one side has, and a
skewed key; `sizes` and `reveal` modes must give the same, exact answers.
"""

from __future__ import annotations

import decimal

import numpy as np
import pyarrow as pa
import pytest

from fedsql import errors as fedsql_errors
from tests.federation_harness import running_federation
from tests.result_compare import assert_matches, duckdb_arrow, pooled_duckdb

pytestmark = pytest.mark.e2e

CONFIG = """\
[federation]
name = "joins"
compute = ["a", "b", "c"]
deadline_seconds = 120

[parties.a]
address = "127.0.0.1:{p0}"
[parties.a.tables.cust]
source = "a_cust.parquet"
columns = {{ cid = "join_key", seg = "group_key", credit = "aggregate", region = "public" }}

[parties.b]
address = "127.0.0.1:{p1}"
[parties.b.tables.acct]
source = "b_acct.parquet"
columns = {{ cid = "join_key", bal = "aggregate", opened = "aggregate", vip = "aggregate", branch = "group_key" }}

[parties.c]
address = "127.0.0.1:{p2}"
[parties.c.tables.txn]
source = "c_txn.parquet"
columns = {{ cid = "join_key", amount = "aggregate", kind = "group_key", secret = "private" }}

[parties.c.tables.profile]
source = "c_profile.parquet"
columns = {{ cid = "join_key", tier = "group_key", lim = "aggregate" }}
unique = ["cid"]

[parties.a.tables.visits]
source = "a_visits.parquet"
columns = {{ cid = "join_key", cost = "aggregate", kind = "group_key" }}
[parties.b.tables.visits]
source = "b_visits.parquet"
columns = {{ cid = "join_key", cost = "aggregate", kind = "group_key" }}
[parties.c.tables.visits]
source = "c_visits.parquet"
columns = {{ cid = "join_key", cost = "aggregate", kind = "group_key" }}

[federated.visits]
union = ["a.visits", "b.visits", "c.visits"]

[parties.d]
address = "127.0.0.1:{p3}"
[parties.d.tables.score]
source = "d_score.parquet"
columns = {{ cid = "join_key", score = "aggregate" }}
"""


def _tables(rng: np.random.Generator) -> dict[str, pa.Table]:
    n_a, n_b, n_c, n_d = 60, 90, 120, 40

    def keys(n: int, hi: int) -> list:
        k = rng.integers(0, hi, n).tolist()
        k[:5] = [7] * 5  # a skewed key present everywhere
        k[5] = None
        return k

    cust = pa.table({
        "cid": pa.array(keys(n_a, 50), pa.int64()),
        "seg": pa.array([["retail", "sme", "corp"][i % 3] if i % 11 else None for i in range(n_a)]),
        "credit": pa.array([decimal.Decimal(int(v)).scaleb(-2) for v in rng.integers(-5000, 90000, n_a)],
                           pa.decimal128(10, 2)),
        "region": pa.array(rng.integers(1, 4, n_a), pa.int32()),
    })
    bal = rng.integers(-300, 1000, n_b).tolist()
    bal[3] = None
    acct = pa.table({
        "cid": pa.array(keys(n_b, 60), pa.int32()),
        "bal": pa.array(bal, pa.int64()),
        "opened": pa.array([None if i % 13 == 0 else 18000 + int(v) for i, v in enumerate(rng.integers(0, 2000, n_b))],
                           pa.date32()),
        "vip": pa.array(rng.random(n_b) < 0.3),
        "branch": pa.array([f"br{int(v)}" for v in rng.integers(0, 3, n_b)]),
    })
    txn = pa.table({
        "cid": pa.array(keys(n_c, 55), pa.int64()),
        "amount": pa.array(np.round(rng.normal(50, 30, n_c), 3)),
        "kind": pa.array([["card", "wire"][int(v)] for v in rng.integers(0, 2, n_c)]),
        "secret": pa.array(rng.integers(0, 100, n_c), pa.int64()),
    })
    score = pa.table({
        "cid": pa.array(keys(n_d, 50), pa.int64()),
        "score": pa.array(rng.integers(300, 850, n_d), pa.int64()),
    })
    ids = rng.permutation(70)[:45]  # unique keys; some customers have no profile
    profile = pa.table({
        "cid": pa.array(ids, pa.int64()),
        "tier": pa.array([["gold", "silver", None][int(v)] for v in rng.integers(0, 3, len(ids))]),
        "lim": pa.array(rng.integers(0, 800, len(ids)), pa.int64()),
    })
    tables = {"a.cust": cust, "b.acct": acct, "c.txn": txn, "d.score": score, "c.profile": profile}
    for party, n in (("a", 30), ("b", 25), ("c", 0)):  # a hospital-style union; c has no rows
        tables[f"{party}.visits"] = pa.table({
            "cid": pa.array([None if i == 3 else int(v) for i, v in enumerate(rng.integers(0, 75, n))], pa.int64()),
            "cost": pa.array(rng.integers(10, 500, n), pa.int64()),
            "kind": pa.array([["er", "gp"][int(v)] for v in rng.integers(0, 2, n)], pa.string()),
        })
    return tables


@pytest.fixture(scope="module")
def joinfed(tmp_path_factory):
    import fedsql

    d = tmp_path_factory.mktemp("joins")
    tables = _tables(np.random.default_rng(11))
    ref = pooled_duckdb(tables)
    ref.execute("CREATE VIEW visits AS SELECT * FROM a.visits UNION ALL SELECT * FROM b.visits "
                "UNION ALL SELECT * FROM c.visits")
    with running_federation(d, CONFIG, tables) as config:
        conn = fedsql.connect(str(config), party="a")
        yield conn, ref
        conn.close()


QUERIES = [
    "SELECT COUNT(*) FROM a.cust x JOIN b.acct y ON x.cid = y.cid",
    # JOIN … USING and GROUP BY ALL (planner/rules/join_using.py, group_all.py)
    "SELECT x.seg, COUNT(*), SUM(y.bal) FROM a.cust x JOIN b.acct y USING (cid) GROUP BY ALL",
    "SELECT x.region, y.branch, COUNT(*) AS n FROM a.cust x LEFT JOIN b.acct y USING (cid) GROUP BY ALL",
    "SELECT x.seg, COUNT(*), SUM(y.bal), AVG(y.bal), MIN(y.bal), MAX(y.bal) FROM a.cust x JOIN b.acct y "
    "ON x.cid = y.cid GROUP BY x.seg",
    "SELECT SUM(x.credit * y.bal) AS exposure, SUM(x.credit) FROM a.cust x JOIN b.acct y ON x.cid = y.cid",
    "SELECT y.branch, COUNT(y.opened), MIN(y.opened), MAX(x.credit) FROM a.cust x, b.acct y "
    "WHERE x.cid = y.cid AND x.credit > 100 AND y.bal < 500 GROUP BY y.branch ORDER BY y.branch",
    "SELECT COUNT(*), SUM(y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid WHERE y.bal > x.credit",
    "SELECT x.seg, COUNT(*) FROM a.cust x JOIN b.acct y ON x.cid = y.cid WHERE y.bal * 2 > x.credit OR y.vip "
    "GROUP BY x.seg",
    "SELECT SUM(CASE WHEN y.vip THEN x.credit ELSE 0 END) FROM a.cust x JOIN b.acct y ON x.cid = y.cid",
    "SELECT z.kind, COUNT(*), SUM(z.amount), SUM(y.bal - z.amount) FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "JOIN c.txn z ON y.cid = z.cid GROUP BY z.kind ORDER BY z.kind",
    "SELECT COUNT(*), SUM(w.score), AVG(x.credit) FROM a.cust x JOIN d.score w ON x.cid = w.cid",
    "SELECT COUNT(*), SUM(y.bal), MIN(y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid WHERE x.cid < 0",
    "SELECT x.region, y.branch, COUNT(*) AS n FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "GROUP BY x.region, y.branch HAVING COUNT(*) > 2 ORDER BY n DESC, x.region, y.branch LIMIT 4",
    "SELECT COUNT(*) FROM a.cust x JOIN b.acct y ON x.cid = y.cid AND x.region = 2",
    # semi- and anti-joins (IN / EXISTS / NOT EXISTS), decorrelated into keyed-tag matches
    "SELECT COUNT(*), SUM(x.credit) FROM a.cust x WHERE x.cid IN (SELECT y.cid FROM b.acct y WHERE y.vip)",
    "SELECT x.seg, COUNT(*) FROM a.cust x WHERE EXISTS (SELECT 1 FROM c.txn z WHERE z.cid = x.cid "
    "AND z.kind = 'wire') GROUP BY x.seg",
    "SELECT COUNT(*) FROM a.cust x WHERE NOT EXISTS (SELECT 1 FROM b.acct y WHERE y.cid = x.cid)",
    # MIN/MAX per group after a cross-party filter drops rows (was an IndexError: found by random testing)
    "SELECT x.region, MIN(y.opened), MAX(y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "WHERE y.bal > x.credit / 100 GROUP BY x.region",
    # COUNT(DISTINCT x) across parties: marked by an oblivious sort, next to other aggregates
    "SELECT x.seg, COUNT(DISTINCT y.branch), COUNT(*), SUM(y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "GROUP BY x.seg",
    "SELECT COUNT(DISTINCT z.kind), COUNT(*), COUNT(DISTINCT z.kind) AS again FROM a.cust x JOIN c.txn z ON x.cid = z.cid "
    "WHERE z.amount > x.credit / 1000",
    # correlated COUNT subqueries: a LEFT JOIN onto the grouped view; no group (and a NULL key) means 0
    "SELECT COUNT(*), SUM(x.credit) FROM a.cust x WHERE x.region < (SELECT COUNT(*) FROM c.txn z WHERE z.cid = x.cid)",
    "SELECT x.seg, COUNT(*) FROM a.cust x WHERE 2 * (SELECT COUNT(z.kind) FROM c.txn z WHERE z.cid = x.cid "
    "AND z.amount > 40) + 1 >= x.region GROUP BY x.seg",
    # subqueries over the outer table's own party run in its DuckDB (any correlation, joins, aggregates)
    "SELECT z.kind, COUNT(*), SUM(x.credit) FROM c.txn z JOIN a.cust x ON x.cid = z.cid WHERE EXISTS "
    "(SELECT * FROM c.txn z2 WHERE z2.cid = z.cid AND z2.kind <> z.kind) GROUP BY z.kind",
    "SELECT COUNT(*), SUM(y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid WHERE NOT EXISTS "
    "(SELECT 1 FROM b.acct y2 WHERE y2.cid = y.cid AND y2.bal > y.bal)",
    "SELECT COUNT(*) FROM a.cust x JOIN c.txn z ON x.cid = z.cid WHERE z.cid IN "
    "(SELECT p.cid FROM c.profile p JOIN c.txn t ON p.cid = t.cid GROUP BY p.cid HAVING SUM(t.amount) > 60)",
    # NOT IN with SQL's NULL rules: b.acct.cid has a NULL (so nothing passes), c.profile none
    "SELECT COUNT(*) FROM a.cust x WHERE x.cid NOT IN (SELECT y.cid FROM b.acct y)",
    "SELECT COUNT(*) FROM a.cust x WHERE x.cid NOT IN (SELECT y.cid FROM b.acct y WHERE y.cid IS NOT NULL)",
    "SELECT x.seg, COUNT(*) FROM a.cust x WHERE x.cid NOT IN (SELECT p.cid FROM c.profile p WHERE p.lim > 300) "
    "GROUP BY x.seg",
    "SELECT COUNT(*) FROM a.cust x WHERE x.cid NOT IN (SELECT p.cid FROM c.profile p WHERE p.lim < 0)",
    "WITH v AS (SELECT cid, bal FROM b.acct WHERE vip) SELECT COUNT(*), SUM(v.bal) FROM a.cust x "
    "JOIN v ON x.cid = v.cid",
    # CASE / COALESCE / NULLIF / BETWEEN / IN lists / strings across parties, under MPC
    "SELECT COUNT(*) FROM a.cust x JOIN b.acct y ON x.cid = y.cid WHERE COALESCE(y.bal, 0) + x.credit BETWEEN 0 AND 500",
    "SELECT SUM(CASE WHEN y.bal > 500 THEN 1 WHEN x.credit > 100 THEN 2 END), COUNT(NULLIF(y.bal, x.region)) "
    "FROM a.cust x JOIN b.acct y ON x.cid = y.cid",
    "SELECT COUNT(*) FROM a.cust x JOIN c.txn z ON x.cid = z.cid WHERE x.seg <> z.kind AND (z.amount + x.region) "
    "IN (50, 51, 52) OR x.seg = z.kind",
    "SELECT SUM(NULLIF(y.bal, 0) + x.credit), COUNT(*) FILTER (WHERE y.vip) FROM a.cust x JOIN b.acct y "
    "ON x.cid = y.cid",
    "SELECT x.seg, STDDEV(y.bal), VAR_POP(x.credit + y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "GROUP BY x.seg",
    # LEFT JOIN: unmatched left rows survive with NULLs on the right
    "SELECT COUNT(*), COUNT(y.bal), SUM(y.bal), MIN(y.opened) FROM a.cust x LEFT JOIN b.acct y ON x.cid = y.cid",
    "SELECT x.seg, COUNT(y.cid), AVG(y.bal) FROM a.cust x LEFT JOIN b.acct y ON x.cid = y.cid AND y.vip "
    "GROUP BY x.seg",
    "SELECT y.branch, COUNT(*) FROM a.cust x LEFT JOIN b.acct y ON x.cid = y.cid WHERE x.region = 1 "
    "GROUP BY y.branch",
    "SELECT COUNT(*) FROM a.cust x LEFT JOIN b.acct y ON x.cid = y.cid WHERE y.bal > 0",
    "SELECT COUNT(*), SUM(x.credit) FROM a.cust x LEFT JOIN b.acct y ON x.cid = y.cid WHERE y.bal IS NULL",
    "SELECT SUM(COALESCE(y.bal, -1)), COUNT(*) FILTER (WHERE y.vip IS NOT TRUE) FROM a.cust x "
    "LEFT JOIN b.acct y ON x.cid = y.cid",
    "SELECT y.branch, SUM(y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "WHERE EXISTS (SELECT 1 FROM c.txn z WHERE z.cid = y.cid) GROUP BY y.branch",
    # one party's OR next to its other filters: its fragment's WHERE needs the OR's parentheses
    "SELECT COUNT(*), SUM(y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "WHERE y.vip AND (y.bal > 300 OR y.branch = 'br0')",
    # planner/rules/: SQL as written (transitive equalities, OR-factoring, implied filters, GROUP BY alias)
    "SELECT x.seg, COUNT(*), SUM(z.amount) FROM a.cust x, b.acct y, c.txn z, c.profile p "
    "WHERE x.cid = y.cid AND y.cid = z.cid AND y.cid = p.cid GROUP BY x.seg",
    "SELECT COUNT(*), SUM(y.bal) FROM a.cust x, b.acct y "
    "WHERE (x.cid = y.cid AND y.bal > 100) OR (x.cid = y.cid AND x.region = 2)",
    "SELECT x.region, COUNT(*) FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "WHERE (x.region = 1 AND y.vip) OR (x.region = 2 AND y.bal > 100) OR (x.seg IS NULL AND y.bal IS NULL) "
    "GROUP BY x.region",
    "SELECT x.region + 1 AS r, COUNT(*), SUM(y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid GROUP BY r",
    # GREATEST/LEAST (NULLs ignored), ABS, simple CASE across parties: rewritten to CASE under MPC
    "SELECT x.seg, SUM(LEAST(y.bal, x.region, 100)) AS l, MAX(ABS(y.bal - x.credit)) AS a, "
    "SUM(CASE x.region WHEN 1 THEN y.bal WHEN 2 THEN -y.bal END) AS c FROM a.cust x JOIN b.acct y "
    "ON x.cid = y.cid GROUP BY x.seg",
    "SELECT COUNT(*), MIN(GREATEST(y.opened, DATE '2003-01-01')) FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "WHERE GREATEST(y.bal, x.credit) > 300",
]


def assert_same(got, ref, sql: str) -> None:
    """`got` equals DuckDB's answer to `sql` over the pooled tables (order too when ORDER BY)."""
    assert_matches(got, duckdb_arrow(ref, sql), sql)


@pytest.mark.parametrize("mode", ["sizes", "reveal"])
@pytest.mark.parametrize("sql", QUERIES)
def test_join_matches_duckdb(joinfed, sql, mode):
    conn, ref = joinfed
    cur = conn.cursor()
    cur.execute(f"SET fedsql.mode = '{mode}'")
    cur.execute(sql)
    got = cur.fetch_arrow_table()
    assert_same(got, ref, sql)


def test_join_leakage_report_names_matcher_and_sizes(joinfed):
    conn, _ = joinfed
    cur = conn.cursor()
    cur.execute("SET fedsql.mode = 'sizes'")
    cur.execute("EXPLAIN SELECT COUNT(*) FROM a.cust x JOIN b.acct y ON x.cid = y.cid")
    text = "\n".join(r[0] for r in cur.fetchall())
    assert "secure_join" in text and "to c: which rows match in a random permutation" in text
    assert "the number of rows of the a–b join" in text


@pytest.mark.parametrize(
    "sql,fragment",
    [
        ("SELECT COUNT(*) FROM a.cust x JOIN c.txn z ON x.cid = z.secret", "join_key"),
        ("SELECT SUM(z.secret) FROM a.cust x JOIN c.txn z ON x.cid = z.cid", "private"),
        ("SELECT y.bal FROM a.cust x JOIN b.acct y ON x.cid = y.cid", "public"),
    ],
)
def test_join_policy_refusals(joinfed, sql, fragment):
    import fedsql

    conn, _ = joinfed
    with pytest.raises(fedsql.ProgrammingError) as info:
        conn.cursor().execute(sql)
    assert fragment in str(info.value)


OBLIVIOUS = [
    "SELECT COUNT(*), SUM(p.lim), COUNT(p.tier) FROM a.cust x JOIN c.profile p ON x.cid = p.cid",
    "SELECT p.tier, COUNT(*), SUM(x.credit), MIN(x.credit), MAX(p.lim) FROM a.cust x JOIN c.profile p "
    "ON x.cid = p.cid GROUP BY p.tier",
    "SELECT x.seg, COUNT(*) FROM a.cust x JOIN c.profile p ON x.cid = p.cid WHERE x.credit > p.lim * 10 "
    "GROUP BY x.seg ORDER BY x.seg NULLS LAST",
    "SELECT SUM(x.credit * p.lim) FROM a.cust x, c.profile p WHERE p.cid = x.cid AND x.region = 1",
    "SELECT p.tier, SUM(GREATEST(x.credit, p.lim)), MIN(ABS(x.credit - p.lim)) FROM a.cust x "
    "JOIN c.profile p ON x.cid = p.cid GROUP BY p.tier",
    # the issuer's own labels (string with NULLs, number) stay with it: looked up by the opened group rank
    "SELECT x.seg, x.region, SUM(p.lim), COUNT(*) FROM a.cust x JOIN c.profile p ON x.cid = p.cid "
    "GROUP BY x.seg, x.region HAVING COUNT(*) > 1",
    "SELECT p.tier, COUNT(*) FROM a.cust x JOIN c.profile p ON x.cid = p.cid WHERE NOT EXISTS "
    "(SELECT 1 FROM c.txn z WHERE z.cid = p.cid AND z.amount > p.lim / 10) GROUP BY p.tier",
    "SELECT p.tier, COUNT(DISTINCT x.region), SUM(p.lim) FROM a.cust x JOIN c.profile p ON x.cid = p.cid "
    "WHERE x.credit > p.lim GROUP BY p.tier",
    # LEFT JOIN onto the unique side: unmatched rows keep NULLs (and group with the real NULL tiers)
    "SELECT COUNT(*), COUNT(p.lim), SUM(p.lim), MIN(p.lim) FROM a.cust x LEFT JOIN c.profile p ON x.cid = p.cid",
    "SELECT p.tier, COUNT(*), SUM(x.credit), COUNT(p.cid) FROM a.cust x LEFT JOIN c.profile p ON x.cid = p.cid "
    "GROUP BY p.tier",
    "SELECT x.seg, COUNT(p.cid), AVG(p.lim) FROM a.cust x LEFT JOIN c.profile p ON x.cid = p.cid AND p.lim > 300 "
    "GROUP BY x.seg",
    "SELECT COUNT(*), SUM(x.credit) FROM a.cust x LEFT JOIN c.profile p ON x.cid = p.cid WHERE p.lim IS NULL",
    # semi-/anti-joins without a matcher: sort-based, every outer row stays (duplicates and NULLs inside)
    "SELECT COUNT(*), SUM(x.credit) FROM a.cust x WHERE x.cid IN (SELECT y.cid FROM b.acct y WHERE y.vip)",
    "SELECT x.seg, COUNT(*) FROM a.cust x WHERE EXISTS (SELECT 1 FROM c.txn z WHERE z.cid = x.cid "
    "AND z.kind = 'wire') GROUP BY x.seg",
    "SELECT COUNT(*) FROM a.cust x WHERE NOT EXISTS (SELECT 1 FROM b.acct y WHERE y.cid = x.cid)",
    "SELECT COUNT(*) FROM a.cust x WHERE x.cid NOT IN (SELECT y.cid FROM b.acct y)",
    "SELECT x.seg, COUNT(*) FROM a.cust x WHERE x.cid NOT IN (SELECT p.cid FROM c.profile p WHERE p.lim > 300) "
    "GROUP BY x.seg",
    "SELECT COUNT(*) FROM a.cust x WHERE x.cid NOT IN (SELECT p.cid FROM c.profile p WHERE p.lim < 0)",
    "SELECT p.tier, COUNT(*), SUM(x.credit) FROM a.cust x JOIN c.profile p ON x.cid = p.cid "
    "WHERE EXISTS (SELECT 1 FROM b.acct y WHERE y.cid = x.cid) GROUP BY p.tier",
]


@pytest.mark.parametrize("sql", OBLIVIOUS)
def test_oblivious_pk_fk_join_matches_duckdb(joinfed, sql):
    conn, ref = joinfed
    cur = conn.cursor()
    cur.execute("SET fedsql.mode = 'oblivious'")
    try:
        cur.execute(sql)
        got = cur.fetch_arrow_table()
        assert any("only the input sizes" in line for line in cur.leakage)
    finally:
        cur.execute("SET fedsql.mode = 'sizes'")
    assert_same(got, ref, sql)


UNION_JOINS = [
    "SELECT p.tier, COUNT(*), SUM(v.cost) FROM visits v JOIN c.profile p ON v.cid = p.cid GROUP BY p.tier",
    # semi-joins with a union on either side: every compute party owns keys, so they run sort-based
    "SELECT COUNT(*), SUM(x.credit) FROM a.cust x WHERE x.cid IN (SELECT v.cid FROM visits v WHERE v.cost > 100)",
    "SELECT v.kind, COUNT(*), SUM(v.cost) FROM visits v WHERE EXISTS (SELECT 1 FROM b.acct y WHERE y.cid = v.cid "
    "AND y.vip) GROUP BY v.kind",
    "SELECT COUNT(*) FROM a.cust x WHERE x.cid NOT IN (SELECT v.cid FROM visits v)",
    "SELECT COUNT(*) FROM a.cust x WHERE NOT EXISTS (SELECT 1 FROM visits v WHERE v.cid = x.cid)",
    "SELECT v.kind, COUNT(*), AVG(p.lim + v.cost) FROM visits v JOIN c.profile p ON v.cid = p.cid "
    "WHERE v.cost > 100 GROUP BY v.kind",
]


@pytest.mark.parametrize("mode", ["sizes", "oblivious"])
@pytest.mark.parametrize("sql", UNION_JOINS)
def test_federated_union_joins(joinfed, sql, mode):
    """Every compute party owns keys of the union: no tag matcher exists, so the join runs obliviously."""
    conn, ref = joinfed
    cur = conn.cursor()
    cur.execute(f"SET fedsql.mode = '{mode}'")
    try:
        cur.execute(sql)
        got = cur.fetch_arrow_table()
    finally:
        cur.execute("SET fedsql.mode = 'sizes'")
    assert_same(got, ref, sql)


def test_union_join_without_unique_side_is_refused(joinfed):
    import fedsql

    conn, _ = joinfed
    with pytest.raises(fedsql.NotSupportedError, match="unique"):
        conn.cursor().execute("SELECT COUNT(*) FROM visits v JOIN d.score w ON v.cid = w.cid")


def test_oblivious_join_needs_a_declared_unique_side(joinfed):
    import fedsql

    conn, _ = joinfed
    cur = conn.cursor()
    cur.execute("SET fedsql.mode = 'oblivious'")
    with pytest.raises(fedsql.NotSupportedError, match="unique"):
        cur.execute("SELECT COUNT(*) FROM a.cust x JOIN b.acct y ON x.cid = y.cid")
    cur.execute("SET fedsql.mode = 'sizes'")


def test_oblivious_join_refuses_a_unique_key_repeated_by_its_own_partys_cross_product(joinfed):
    import fedsql

    conn, _ = joinfed
    cur = conn.cursor()
    cur.execute("SET fedsql.mode = 'oblivious'")
    try:  # profile.cid is unique, but c's fragment profile × txn repeats every profile row
        with pytest.raises(fedsql.NotSupportedError, match="repeat its rows"):
            cur.execute("SELECT COUNT(*) FROM a.cust x JOIN c.profile p ON x.cid = p.cid, c.txn z WHERE z.amount > 0")
    finally:
        cur.execute("SET fedsql.mode = 'sizes'")


GROUPING_SETS = [  # planner/compose.py _grouping_sets: one federated part per grouping set
    "SELECT x.seg, y.branch, SUM(y.bal) AS s, COUNT(*), GROUPING(x.seg, y.branch) AS g FROM a.cust x "
    "JOIN b.acct y ON x.cid = y.cid GROUP BY ROLLUP (x.seg, y.branch) ORDER BY g, x.seg NULLS FIRST, "
    "y.branch NULLS FIRST LIMIT 9",
    "SELECT COALESCE(CAST(x.region AS VARCHAR), 'all') AS r, AVG(y.bal) FROM a.cust x JOIN b.acct y "
    "ON x.cid = y.cid GROUP BY CUBE (x.region) HAVING COUNT(*) > 2 ORDER BY r",
    "SELECT x.seg, y.branch, COUNT(*) AS n FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "GROUP BY GROUPING SETS ((x.seg), (y.branch), ()) ORDER BY ALL NULLS FIRST",
    "SELECT x.seg, y.branch, MAX(y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
    "GROUP BY x.seg, ROLLUP (y.branch) ORDER BY 1 NULLS FIRST, 2 NULLS FIRST",
]


@pytest.mark.parametrize("sql", GROUPING_SETS)
def test_rollup_cube_and_grouping_sets_match_duckdb(joinfed, sql):
    conn, ref = joinfed
    cur = conn.cursor()
    cur.execute("SET fedsql.mode = 'sizes'")
    cur.execute(sql)
    assert_same(cur.fetch_arrow_table(), ref, sql)
    assert any("grouping set" in line for line in cur.leakage), cur.leakage


MEDIANS = [  # the compute parties sort each group's values under MPC (executors/secure_table.py segmented_median)
    ("SELECT x.seg, MEDIAN(y.bal), MEDIAN(x.credit), COUNT(*) FROM a.cust x JOIN b.acct y ON x.cid = y.cid "
     "GROUP BY x.seg", "sizes"),
    ("SELECT MEDIAN(y.bal) FROM a.cust x JOIN b.acct y ON x.cid = y.cid WHERE y.bal > x.credit", "sizes"),
    ("SELECT y.branch, MEDIAN(y.bal) AS m FROM a.cust x JOIN b.acct y ON x.cid = y.cid GROUP BY y.branch "
     "HAVING MEDIAN(y.bal) > 100 ORDER BY m", "sizes"),
    ("SELECT kind, MEDIAN(cost), SUM(cost) FROM visits GROUP BY kind", "sizes"),  # a union; c has no rows
    ("SELECT MEDIAN(cost) FROM visits WHERE cost > 10000", "sizes"),  # no rows: NULL
    ("SELECT MEDIAN(p.lim), MEDIAN(x.credit) FROM a.cust x JOIN c.profile p ON x.cid = p.cid", "oblivious"),
    ("SELECT MEDIAN(cost), COUNT(DISTINCT kind) FROM visits", "oblivious"),
    ("SELECT x.seg, QUANTILE_CONT(y.bal, 0.9) AS p90, QUANTILE_CONT(y.bal, 0.25), MEDIAN(y.bal) FROM a.cust x "
     "JOIN b.acct y ON x.cid = y.cid GROUP BY x.seg", "sizes"),
    ("SELECT kind, QUANTILE_CONT(cost, 0.75), QUANTILE_CONT(cost, 0) FROM visits GROUP BY kind", "sizes"),
    ("SELECT y.branch, PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY y.bal DESC) FROM a.cust x JOIN b.acct y "
     "ON x.cid = y.cid GROUP BY y.branch ORDER BY y.branch", "sizes"),  # planner/rules/within_group.py
]


@pytest.mark.parametrize("sql, mode", MEDIANS)
def test_median_matches_duckdb(joinfed, sql, mode):
    conn, ref = joinfed
    cur = conn.cursor()
    cur.execute(f"SET fedsql.mode = '{mode}'")
    try:
        cur.execute(sql)
        assert_same(cur.fetch_arrow_table(), ref, sql)
        quantile = "QUANTILE_CONT" in sql or "PERCENTILE_CONT" in sql
        assert quantile == any("the two values it interpolates between" in x for x in cur.leakage)
    finally:
        cur.execute("SET fedsql.mode = 'sizes'")


def test_median_per_group_in_oblivious_mode_is_refused_with_the_fix(joinfed):
    conn, _ = joinfed
    cur = conn.cursor()
    cur.execute("SET fedsql.mode = 'oblivious'")
    try:
        with pytest.raises(fedsql_errors.UnsupportedSql, match="SET fedsql.mode = 'sizes'"):
            cur.execute("SELECT kind, MEDIAN(cost) FROM visits GROUP BY kind")
        with pytest.raises(fedsql_errors.UnsupportedSql, match="at most 3 decimals"):
            cur.execute("SELECT QUANTILE_CONT(cost, 0.12345) FROM visits")
        with pytest.raises(fedsql_errors.UnsupportedSql, match="integer values"):
            cur.execute("SELECT QUANTILE_CONT(x.credit, 0.5) FROM a.cust x JOIN c.profile p ON x.cid = p.cid")
    finally:
        cur.execute("SET fedsql.mode = 'sizes'")
