"""The DISTINCT marker (executors/operators/distinct.py) against DuckDB, on the in-process
transport: duplicates within and across groups, NULL values and keys, negatives, no rows."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from executors.operators import SECURE_OPERATORS, distinct_mark
from plan.physical import DistinctMark
from tests.operator_harness import duckdb_rows, encoded, rows, run_operator, u64

K = [1, 1, 1, None, None, 2, 2, 1, -4]
X = [5, 5, None, 5, 5, -3, 5, -3, None]
Y = list(range(len(K)))


def _tables(keys=K, x=X, y=Y) -> dict:
    k, kv = encoded(keys)
    xs, xv = encoded(x)
    return {"T": {"k": k, "k__v": kv, "x": xs, "x__v": xv, "y": u64(y)}}


def test_distinct_mark_marks_each_distinct_non_null_value_once_per_group() -> None:
    step = DistinctMark("d", "T", ("k", "k__v"), "x", "first", valid="x__v")
    n, out = run_operator(distinct_mark, step, _tables())
    assert n == len(K) and set(out) == {"k", "k__v", "x", "x__v", "y", "first"}
    t = pa.table({"k": pa.array(K, pa.int64()), "x": pa.array(X, pa.int64())})
    want = Counter(duckdb_rows("SELECT DISTINCT coalesce(k, 0), (k IS NOT NULL)::INT, x FROM t "
                               "WHERE x IS NOT NULL", t))
    assert rows(out, ["k", "k__v", "x"], where="first") == want
    per_group = duckdb_rows("SELECT coalesce(k, 0), (k IS NOT NULL)::INT, count(DISTINCT x), "
                            "coalesce(sum(DISTINCT x), 0) FROM t GROUP BY ALL", t)
    for k, kv, count, total in per_group:  # what the later SUM of `first` (and first · x) computes
        mine = (out["k"] == k) & (out["k__v"] == kv)
        assert (out["first"][mine].sum(), (out["first"] * out["x"])[mine].sum()) == (count, total)
    # every row rides along unchanged, only reordered
    assert rows(out, ["k", "x", "x__v", "y"]) == Counter(zip(*(_tables()["T"][c].view("int64").tolist()
                                                              for c in ("k", "x", "x__v", "y"))))


def test_distinct_mark_without_nulls_or_keys() -> None:
    x = [4, -1, 4, 4, 0, -1]
    n, out = run_operator(distinct_mark, DistinctMark("d", "T", (), "x", "first"), {"T": {"x": u64(x)}})
    assert rows(out, ["x"], where="first") == Counter([(4,), (-1,), (0,)])


def test_distinct_mark_of_no_rows() -> None:
    step = DistinctMark("d", "T", ("k", "k__v"), "x", "first", valid="x__v")
    n, out = run_operator(distinct_mark, step, _tables([], [], []))
    assert n == 0 and set(out) == {"k", "k__v", "x", "x__v", "y", "first"}


def test_the_dispatch_table_names_the_distinct_operator() -> None:
    assert SECURE_OPERATORS[DistinctMark] is distinct_mark
