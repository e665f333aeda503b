"""Mixed-case table and column names through cross-party queries, over real nodes, equal to DuckDB.

DuckDB matches column names ignoring case, quoted or not: `o.custid`, `o.CUSTID` and `o."CustId"`
all name column CustId. The join planner (planner/join_analyze.py) brings every column to its
table's spelling before qualification and the policy lookup; before, any mixed-case column in a
cross-party query failed with "Unknown column". Covered: joins with GROUP BY in every mode,
LEFT, RIGHT and FULL JOIN, several COUNT(DISTINCT …), IN subqueries, a federated union, set operations, and DP over a join (noisy: within
its stated interval). The data has NULL keys, negatives, zeros, duplicates and an empty table.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pytest

from tests.federation_harness import parquet_name, running_federation
from tests.result_compare import assert_matches, duckdb_arrow, pooled_duckdb

pytestmark = pytest.mark.e2e

CONFIG = """\
[federation]
name = "MixedCase"
compute = ["a", "b", "c"]
deadline_seconds = 120

[parties.a]
address = "127.0.0.1:{p0}"
[parties.a.tables.Orders]
source = "a_orders.parquet"
columns = {{ CustId = "join_key", Amount = "aggregate", Region = "group_key" }}
[parties.a.tables.Sales]
source = "a_sales.parquet"
columns = {{ CustId = "join_key", Total = "aggregate", Kind = "group_key" }}

[parties.b]
address = "127.0.0.1:{p1}"
[parties.b.tables.Customers]
source = "b_customers.parquet"
columns = {{ CustId = "join_key", Segment = "group_key", Score = "aggregate" }}
unique = ["CustId"]
[parties.b.tables.NoRows]
source = "b_norows.parquet"
columns = {{ CustId = "join_key", Score = "aggregate" }}
unique = ["CustId"]
[parties.b.tables.Sales]
source = "b_sales.parquet"
columns = {{ CustId = "join_key", Total = "aggregate", Kind = "group_key" }}

[parties.c]
address = "127.0.0.1:{p2}"
[parties.c.tables.Visits]
source = "c_visits.parquet"
columns = {{ VisitorId = "private", CustId = "private", Minutes = "private" }}
[parties.c.tables.Visits.dp]
unit = "VisitorId"
max_rows = 3
bounds = {{ Minutes = [0, 100] }}
epsilon = 1000.0
max_epsilon_per_query = 8.0
delta = 1e-3
max_delta_per_query = 1e-6

[federated.AllSales]
union = ["a.Sales", "b.Sales"]
"""


def _tables() -> dict[str, pa.Table]:
    sales = lambda ids, totals, kinds: pa.table({  # noqa: E731
        "CustId": pa.array(ids, pa.int64()), "Total": pa.array(totals, pa.int64()), "Kind": pa.array(kinds)})
    return {
        "a.Orders": pa.table({
            "CustId": pa.array([1, 2, 2, 3, None, 7, 4, 4, 1], pa.int64()),
            "Amount": pa.array([10, -5, 0, 7, 3, 2, None, -1, 0], pa.int64()),
            "Region": pa.array(["N", "S", "N", None, "S", "N", "S", "S", "N"]),
        }),
        "a.Sales": sales([1, 2, None, 3], [5, -2, 0, 9], ["web", "shop", "web", None]),
        "b.Customers": pa.table({
            "CustId": pa.array([1, 2, 3, 4, 5, None], pa.int64()),
            "Segment": pa.array(["x", "y", "x", None, "y", "x"]),
            "Score": pa.array([1.5, -2.0, 0.0, 3.25, 1.0, 9.0]),
        }),
        "b.NoRows": pa.table({"CustId": pa.array([], pa.int64()), "Score": pa.array([], pa.float64())}),
        "b.Sales": sales([2, 2, 5], [1, 1, -4], ["shop", "shop", "web"]),
        "c.Visits": pa.table({  # every visitor within max_rows: the DP result is the exact one plus noise
            "VisitorId": pa.array([i // 2 for i in range(40)], pa.int64()),
            "CustId": pa.array([(i % 6) + 1 for i in range(40)], pa.int64()),
            "Minutes": pa.array([(i * 7) % 90 for i in range(40)], pa.int64()),
        }),
    }


QUERIES = [
    'SELECT c."Segment", COUNT(*), SUM(o."Amount") FROM a."Orders" o JOIN b."Customers" c '
    'ON o."CustId" = c."CustId" GROUP BY c."Segment"',
    "SELECT c.segment, COUNT(*) AS n, SUM(o.AMOUNT) AS total FROM a.Orders o JOIN b.Customers c "
    "ON o.custid = c.CUSTID GROUP BY c.segment",
    "SELECT o.Region, AVG(c.Score), MIN(o.Amount) FROM a.Orders o JOIN b.Customers c ON o.CustId = c.CustId "
    "WHERE c.Score > -5 GROUP BY o.Region ORDER BY 1",
    "SELECT COUNT(*), COUNT(c.Score), SUM(c.Score) FROM a.Orders o LEFT JOIN b.Customers c ON o.CustId = c.CustId",
    "SELECT COUNT(*), SUM(o.Amount) FROM a.Orders o WHERE o.CustId IN (SELECT c.CustId FROM b.Customers c "
    "WHERE c.Segment = 'x')",
    "SELECT COUNT(*), SUM(n.Score) FROM a.Orders o JOIN b.NoRows n ON o.CustId = n.CustId",
    "SELECT s.Kind, COUNT(*), SUM(s.Total) FROM AllSales s GROUP BY s.Kind",
    "SELECT c.Segment, SUM(s.Total) FROM AllSales s JOIN b.Customers c ON s.CustId = c.CustId GROUP BY c.Segment",
    "SELECT c.Segment, SUM(o.Amount) AS t FROM a.Orders o JOIN b.Customers c ON o.CustId = c.CustId "
    "GROUP BY c.Segment UNION ALL SELECT s.Kind, SUM(s.Total) FROM AllSales s GROUP BY s.Kind",
    "SELECT o.Region FROM a.Orders o JOIN b.Customers c ON o.CustId = c.CustId GROUP BY o.Region "
    "EXCEPT SELECT c.Segment FROM a.Orders o JOIN b.Customers c ON o.CustId = c.CustId GROUP BY c.Segment",
]


# outer joins whose unmatched rows the oblivious join cannot keep here: `sizes` and `reveal`
OUTER = [
    "SELECT c.Segment, COUNT(*), COUNT(o.Amount), SUM(o.amount) FROM a.Orders o RIGHT JOIN b.Customers c "
    "ON o.CustId = c.custid GROUP BY c.Segment",
    'SELECT o."Region", c.segment, COUNT(*), SUM(c."Score") FROM a."Orders" o FULL JOIN b."Customers" c '
    'ON o.CUSTID = c."CustId" GROUP BY o."Region", c.segment',
    "SELECT COUNT(DISTINCT o.Region), COUNT(DISTINCT c.Segment), COUNT(*) FROM a.Orders o JOIN b.Customers c "
    "ON o.CustId = c.CustId",
]


@pytest.fixture(scope="module")
def mixedfed(tmp_path_factory):
    import fedsql

    d = tmp_path_factory.mktemp("mixed")
    tables = _tables()
    ref = pooled_duckdb(tables)
    ref.execute('CREATE VIEW "AllSales" AS SELECT * FROM a."Sales" UNION ALL SELECT * FROM b."Sales"')
    with running_federation(d, CONFIG, tables, file_name=lambda name: parquet_name(name).lower()) as config:
        conn = fedsql.connect(str(config), party="a")
        yield conn, ref
        conn.close()


@pytest.mark.parametrize("mode", ["sizes", "reveal", "oblivious"])
@pytest.mark.parametrize("sql", QUERIES)
def test_mixed_case_names_match_duckdb(mixedfed, sql, mode):
    conn, ref = mixedfed
    cur = conn.cursor()
    cur.execute(f"SET fedsql.mode = '{mode}'")
    cur.execute(sql)
    want = duckdb_arrow(ref, sql)
    assert want.num_rows, f"the reference result of {sql} is empty: the test would prove little"
    assert_matches(cur.fetch_arrow_table(), want, f"{mode}: {sql}")


@pytest.mark.parametrize("mode", ["sizes", "reveal"])
@pytest.mark.parametrize("sql", OUTER)
def test_mixed_case_outer_joins_match_duckdb(mixedfed, sql, mode):
    test_mixed_case_names_match_duckdb(mixedfed, sql, mode)


def test_mixed_case_dp_over_a_join_is_within_its_stated_interval(mixedfed):
    conn, ref = mixedfed
    sql = ("SELECT COUNT(*) AS n, SUM(v.Minutes) AS m FROM c.Visits v JOIN b.Customers cu "
           "ON v.custid = cu.CustId WHERE cu.Segment = 'x'")
    (n_true, m_true), = ref.execute(sql).fetchall()
    cur = conn.cursor()
    cur.execute("SET fedsql.epsilon = '6.0'")
    cur.execute(sql)
    (n, m), = [tuple(r) for r in cur.fetchall()]
    notes = {col["name"]: col["note"] for col in cur.meta["columns"]}
    for got, true, name, part in ((n, n_true, "n", "count"), (m, m_true, "m", "sum")):
        half = float(re.search(part + r" epsilon [0-9.e+-]+, noise std [0-9.e+-]+, 95% interval ±([0-9.e+-]+)",
                               notes[name]).group(1))
        assert abs(float(got) - float(true)) <= 3 * half, (name, got, true, notes[name])
    assert "clamped to [0, 100]" in notes["m"]
