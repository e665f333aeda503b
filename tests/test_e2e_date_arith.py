"""Date arithmetic across parties (issue #12): `date - date`, `date_diff('day', …)`, `date ± n`,
compared with DuckDB over the pooled tables; mixes DuckDB would give another type are refused.

Party a holds orders (a DATE and a TIMESTAMP), party b shipments (a DATE); the join key has
duplicates and NULLs, dates have NULLs and span years (and a leap day).
"""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pytest

from tests.federation_harness import running_federation
from tests.result_compare import assert_matches, duckdb_arrow, pooled_duckdb

pytestmark = pytest.mark.e2e

CONFIG = """\
[federation]
name = "dates"
compute = ["a", "b", "c"]
deadline_seconds = 120

[parties.a]
address = "127.0.0.1:{p0}"
[parties.a.tables.orders]
source = "a_orders.parquet"
columns = {{ oid = "join_key", ordered = "aggregate", placed = "aggregate", region = "group_key" }}

[parties.b]
address = "127.0.0.1:{p1}"
[parties.b.tables.ships]
source = "b_ships.parquet"
columns = {{ oid = "join_key", shipped = "aggregate", carrier = "group_key" }}

[parties.c]
address = "127.0.0.1:{p2}"
"""


def _tables(rng: np.random.Generator) -> dict[str, pa.Table]:
    base = datetime.date(2019, 12, 20)
    n_a, n_b = 50, 70

    def day(v: int | None) -> datetime.date | None:
        return None if v is None else base + datetime.timedelta(days=int(v))

    ordered = [day(v) for v in rng.integers(0, 800, n_a)]
    ordered[3] = None
    ordered[4] = datetime.date(2020, 2, 29)
    placed = [None if d is None else datetime.datetime.combine(d, datetime.time(int(h), 30))
              for d, h in zip(ordered, rng.integers(0, 24, n_a))]
    a_keys = list(range(n_a))
    a_keys[7] = None
    b_keys = rng.integers(-5, n_a + 5, n_b).tolist()
    b_keys[:6] = [4] * 6  # a skewed key
    b_keys[6] = None
    shipped = [day(v) for v in rng.integers(-30, 830, n_b)]
    shipped[10] = None
    return {
        "a.orders": pa.table({
            "oid": pa.array(a_keys, pa.int64()),
            "ordered": pa.array(ordered, pa.date32()),
            "placed": pa.array(placed, pa.timestamp("us")),
            "region": pa.array([f"r{int(v)}" for v in rng.integers(0, 3, n_a)]),
        }),
        "b.ships": pa.table({
            "oid": pa.array(b_keys, pa.int64()),
            "shipped": pa.array(shipped, pa.date32()),
            "carrier": pa.array([f"c{int(v)}" for v in rng.integers(0, 2, n_b)]),
        }),
    }


@pytest.fixture(scope="module")
def datefed(tmp_path_factory):
    import fedsql

    d = tmp_path_factory.mktemp("dates")
    tables = _tables(np.random.default_rng(5))
    with running_federation(d, CONFIG, tables) as config:
        conn = fedsql.connect(str(config), party="a")
        yield conn, pooled_duckdb(tables)
        conn.close()


JOIN = "FROM a.orders o JOIN b.ships s ON o.oid = s.oid"

QUERIES = [
    f"SELECT SUM(s.shipped - o.ordered) AS days, COUNT(*) {JOIN}",
    f"SELECT o.region, SUM(date_diff('day', o.ordered, s.shipped)) AS d, MIN(s.shipped - o.ordered), "
    f"MAX(datediff('day', o.ordered, s.shipped)) {JOIN} GROUP BY o.region ORDER BY o.region",
    f"SELECT COUNT(*) {JOIN} WHERE s.shipped - o.ordered > 30",
    f"SELECT s.carrier, COUNT(*) {JOIN} WHERE date_diff('day', o.ordered, s.shipped) BETWEEN 0 AND 100 "
    "GROUP BY s.carrier ORDER BY s.carrier",
    f"SELECT COUNT(*) {JOIN} WHERE s.shipped < o.ordered + 7",
    f"SELECT MIN(o.ordered + 3), MAX(s.shipped - 2), COUNT(*) {JOIN} WHERE s.shipped >= o.ordered - 10",
    f"SELECT AVG(s.shipped - o.ordered) {JOIN} WHERE s.shipped > o.ordered",
    # a DATE meets a TIMESTAMP as its midnight (DuckDB's rule); date_diff('day') counts day boundaries
    f"SELECT COUNT(*) {JOIN} WHERE s.shipped > o.placed",
    f"SELECT s.carrier, COUNT(*) {JOIN} WHERE o.placed <= s.shipped + 1 GROUP BY s.carrier ORDER BY s.carrier",
    f"SELECT SUM(date_diff('day', o.placed, s.shipped)), MAX(date_diff('day', s.shipped, o.placed)) {JOIN}",
]


@pytest.mark.parametrize("mode", ["sizes", "reveal"])
@pytest.mark.parametrize("sql", QUERIES)
def test_date_arithmetic_across_parties_matches_duckdb(datefed, sql: str, mode: str) -> None:
    conn, ref = datefed
    cur = conn.cursor()
    cur.execute(f"SET fedsql.mode = '{mode}'")
    got = cur.execute(sql).fetch_arrow_table()
    assert_matches(got, duckdb_arrow(ref, sql), sql)


@pytest.mark.parametrize("sql, says", [
    (f"SELECT SUM(date_diff('month', o.ordered, s.shipped)) {JOIN}", "date_diff"),
    (f"SELECT COUNT(*) {JOIN} WHERE s.shipped + o.ordered > 0", r"\+\(DATE, DATE\)"),  # DuckDB's own binder says it
    (f"SELECT MIN(o.placed - s.shipped) {JOIN}", "TIMESTAMP values"),
    (f"SELECT COUNT(*) {JOIN} WHERE o.placed - s.shipped > INTERVAL 1 DAY", "TIMESTAMP values"),
])
def test_date_mixes_that_are_not_day_arithmetic_are_refused(datefed, sql: str, says: str) -> None:
    import fedsql

    conn, _ = datefed
    with pytest.raises(fedsql.Error, match=says):
        conn.cursor().execute(sql)
