"""Join edge cases in every mode over real nodes, compared with DuckDB over the pooled tables.

All rows matching, no row matching, an empty side, a key skewed onto one value, NULL
keys on both sides, duplicates on the FK side — each in `sizes`, `reveal` and
`oblivious` mode (the PK side `a.dim` declares its key unique, so every query has an
oblivious plan).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.federation_harness import running_federation
from tests.result_compare import assert_matches, duckdb_arrow, pooled_duckdb

pytestmark = pytest.mark.e2e

CONFIG = """\
[federation]
name = "edges"
compute = ["a", "b", "c"]
deadline_seconds = 120

[parties.a]
address = "127.0.0.1:{p0}"
[parties.a.tables.dim]
source = "a_dim.parquet"
columns = {{ k = "join_key", g = "group_key", v = "aggregate" }}
unique = ["k"]

[parties.b]
address = "127.0.0.1:{p1}"
[parties.b.tables.allm]
source = "b_allm.parquet"
columns = {{ k = "join_key", x = "aggregate" }}
[parties.b.tables.nomatch]
source = "b_nomatch.parquet"
columns = {{ k = "join_key", x = "aggregate" }}
[parties.b.tables.empty]
source = "b_empty.parquet"
columns = {{ k = "join_key", x = "aggregate" }}

[parties.c]
address = "127.0.0.1:{p2}"
[parties.c.tables.skew]
source = "c_skew.parquet"
columns = {{ k = "join_key", y = "aggregate" }}
"""


def _tables(rng: np.random.Generator) -> dict[str, pa.Table]:
    dim_keys = list(range(20)) + [None]  # NULL key on the unique side: joins nothing
    skew = [3] * 60 + [None] * 5 + rng.integers(0, 30, 35).tolist()  # 60% one key; some keys absent from dim
    return {
        "a.dim": pa.table({
            "k": pa.array(dim_keys, pa.int64()),
            "g": pa.array([["n", "s", None][i % 3] for i in range(len(dim_keys))]),
            "v": pa.array(rng.integers(-50, 50, len(dim_keys)), pa.int64()),
        }),
        "b.allm": pa.table({  # every row matches a dim key, with duplicates
            "k": pa.array(rng.integers(0, 20, 70), pa.int64()),
            "x": pa.array(rng.integers(-10, 100, 70), pa.int64()),
        }),
        "b.nomatch": pa.table({
            "k": pa.array(rng.integers(100, 120, 25), pa.int64()),
            "x": pa.array(rng.integers(0, 9, 25), pa.int64()),
        }),
        "b.empty": pa.table({"k": pa.array([], pa.int64()), "x": pa.array([], pa.int64())}),
        "c.skew": pa.table({
            "k": pa.array(skew, pa.int64()),
            "y": pa.array(rng.integers(-5, 500, len(skew)), pa.int64()),
        }),
    }


QUERIES = [
    "SELECT COUNT(*), SUM(f.x), MIN(d.v) FROM a.dim d JOIN b.allm f ON d.k = f.k",
    "SELECT d.g, COUNT(*), SUM(f.x * d.v) FROM a.dim d JOIN b.allm f ON d.k = f.k GROUP BY d.g",
    "SELECT COUNT(*), SUM(f.x), MAX(d.v) FROM a.dim d JOIN b.nomatch f ON d.k = f.k",
    "SELECT d.g, COUNT(*) FROM a.dim d JOIN b.nomatch f ON d.k = f.k GROUP BY d.g",
    "SELECT COUNT(*), AVG(f.x) FROM a.dim d JOIN b.empty f ON d.k = f.k",
    "SELECT d.g, COUNT(*), SUM(s.y), AVG(s.y + d.v) FROM a.dim d JOIN c.skew s ON d.k = s.k GROUP BY d.g",
    "SELECT COUNT(*), SUM(d.v) FROM a.dim d WHERE d.k IN (SELECT s.k FROM c.skew s)",
    "SELECT COUNT(*) FROM a.dim d WHERE NOT EXISTS (SELECT 1 FROM b.nomatch f WHERE f.k = d.k)",
    "SELECT COUNT(*) FROM a.dim d WHERE d.k NOT IN (SELECT f.k FROM b.empty f)",
    "SELECT COUNT(*), COUNT(d.v), SUM(d.v) FROM c.skew s LEFT JOIN a.dim d ON s.k = d.k",
    # RIGHT JOIN = LEFT JOIN with the sides swapped; the output keeps the written column order
    "SELECT SUM(s.y), COUNT(*), COUNT(d.v), SUM(d.v) FROM a.dim d RIGHT JOIN c.skew s ON d.k = s.k",
    # several COUNT(DISTINCT …) columns: one oblivious marking sort each (NULLs count nowhere)
    "SELECT d.g, COUNT(DISTINCT f.x), COUNT(DISTINCT f.k), COUNT(*) FROM a.dim d JOIN b.allm f ON d.k = f.k "
    "GROUP BY d.g",
    "SELECT COUNT(DISTINCT s.y), COUNT(DISTINCT d.g), COUNT(DISTINCT s.y + d.v), SUM(d.v) "
    "FROM a.dim d JOIN c.skew s ON d.k = s.k WHERE s.y > 0",
]

# outer joins whose unmatched rows the oblivious join cannot keep: `sizes` and `reveal` only
OUTER_QUERIES = [
    "SELECT d.g, COUNT(*), COUNT(f.x), SUM(f.x) FROM b.allm f RIGHT JOIN a.dim d ON f.k = d.k GROUP BY d.g",
    "SELECT COUNT(*), COUNT(f.x), SUM(d.v) FROM b.empty f RIGHT JOIN a.dim d ON f.k = d.k",
    "SELECT COUNT(*), COUNT(d.k), COUNT(s.k), SUM(s.y), SUM(d.v) FROM a.dim d FULL JOIN c.skew s ON d.k = s.k",
    "SELECT SUM(s.y), d.g, COUNT(*) FROM a.dim d FULL OUTER JOIN c.skew s ON d.k = s.k GROUP BY d.g",
    "SELECT COUNT(*), SUM(d.v), COUNT(f.x) FROM a.dim d FULL JOIN b.empty f ON d.k = f.k",
    "SELECT COUNT(*), SUM(d.v), COUNT(f.x) FROM b.empty f FULL JOIN a.dim d ON f.k = d.k",
    "SELECT COUNT(*), SUM(f.x), MIN(d.v) FROM b.nomatch f FULL JOIN a.dim d ON f.k = d.k WHERE d.v > 0 OR d.v IS NULL",
    "SELECT d.g, COUNT(*), SUM(f.x), AVG(d.v) FROM a.dim d FULL JOIN b.allm f ON d.k = f.k GROUP BY d.g ORDER BY 1",
]


@pytest.fixture(scope="module")
def edgefed(tmp_path_factory):
    import fedsql

    d = tmp_path_factory.mktemp("edges")
    tables = _tables(np.random.default_rng(5))
    with running_federation(d, CONFIG, tables) as config:
        conn = fedsql.connect(str(config), party="a")
        yield conn, pooled_duckdb(tables)
        conn.close()


@pytest.mark.parametrize("mode", ["sizes", "reveal", "oblivious"])
@pytest.mark.parametrize("sql", QUERIES)
def test_join_edge_case_matches_duckdb(edgefed, sql, mode):
    conn, ref = edgefed
    cur = conn.cursor()
    cur.execute(f"SET fedsql.mode = '{mode}'")
    cur.execute(sql)
    assert_matches(cur.fetch_arrow_table(), duckdb_arrow(ref, sql), f"{mode}: {sql}")


@pytest.mark.parametrize("mode", ["sizes", "reveal"])
@pytest.mark.parametrize("sql", OUTER_QUERIES)
def test_outer_join_matches_duckdb(edgefed, sql, mode):
    conn, ref = edgefed
    cur = conn.cursor()
    cur.execute(f"SET fedsql.mode = '{mode}'")
    cur.execute(sql)
    assert_matches(cur.fetch_arrow_table(), duckdb_arrow(ref, sql), f"{mode}: {sql}")


@pytest.mark.parametrize("mode,sql,fragment", [
    ("oblivious", OUTER_QUERIES[2], "'sizes' or 'reveal' mode only"),
    ("oblivious", OUTER_QUERIES[0], "needs the oblivious join"),
    ("sizes", "SELECT COUNT(*) FROM a.dim d JOIN b.allm f ON d.k = f.k RIGHT JOIN c.skew s ON s.k = d.k",
     "must be the first join"),
    ("sizes", "SELECT COUNT(*) FROM a.dim d FULL JOIN b.allm f ON d.k = f.k JOIN c.skew s ON s.k = d.k",
     "exactly two tables"),
    ("sizes", "SELECT COUNT(*) FROM a.dim d FULL JOIN c.skew s ON d.k = s.k AND s.y > 0", "only hold equalities"),
])
def test_outer_joins_a_mode_cannot_run_are_refused_clearly(edgefed, mode, sql, fragment):
    import fedsql

    conn, _ = edgefed
    cur = conn.cursor()
    cur.execute(f"SET fedsql.mode = '{mode}'")
    with pytest.raises(fedsql.NotSupportedError, match=fragment):
        cur.execute(sql)
