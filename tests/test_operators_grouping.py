"""The secure GROUP BY operators (executors/operators/grouping.py) against DuckDB over the same
plaintext, on the in-process transport: NULL keys, duplicates, negatives, WHERE flags, string
keys of several words, one global row over no rows, empty inputs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from executors.operators import SECURE_OPERATORS, group_combine, oblivious_group
from plan.physical import SENTINEL
from plan.physical import Combine, GroupCombine, ObliviousGroup
from tests.operator_harness import duckdb_rows, encoded, rows, run_operator, u64

K = [3, None, -2, 3, 3, None, -2, 7, 0]
X = [5, -1, 4, 0, -7, 2, 10, -3, 8]
Y = [-9, 4, 4, 6, -1, 0, -8, 2, 3]
F = [1, 1, 0, 1, 1, 1, 1, 0, 1]
COMBINE = (Combine("x", "sum"), Combine("lo", "min"), Combine("hi", "max"))


def table(keys=K, x=X, y=Y) -> dict[str, np.ndarray]:
    k, kv = encoded(keys)
    return {"k": k, "k__v": kv, "x": u64(x), "lo": u64(y), "hi": u64(y)}


def duck(sql: str, **cols: list) -> Counter:
    return Counter(duckdb_rows(sql, pa.table({c: pa.array(v, pa.int64()) for c, v in cols.items()})))


GROUPED = ("SELECT coalesce(k, 0), (k IS NOT NULL)::INT, sum(x), min(y), max(y) FROM t {where} "
           "GROUP BY ALL")


def test_group_combine_matches_duckdb_with_null_keys_duplicates_and_negatives() -> None:
    n, out = run_operator(group_combine, GroupCombine("g", "T", ("k", "k__v"), COMBINE), {"T": table()})
    want = duck(GROUPED.format(where=""), k=K, x=X, y=Y)
    assert n == len(want) and set(out) == {"k", "k__v", "x", "lo", "hi"}
    assert rows(out, ["k", "k__v", "x", "lo", "hi"]) == want


def test_group_combine_drops_the_rows_the_where_flag_drops() -> None:
    tables = {"T": {**table(), "f": u64(F)}}
    n, out = run_operator(group_combine, GroupCombine("g", "T", ("k", "k__v"), COMBINE, flag="f"), tables)
    want = duck(GROUPED.format(where="WHERE f = 1"), k=K, x=X, y=Y, f=F)
    assert rows(out, ["k", "k__v", "x", "lo", "hi"]) == want and "f" not in out


def test_group_combine_groups_by_every_word_of_a_string_key() -> None:
    words0 = [1, 1, 2, 1, 2]
    words1 = [9, 8, 9, 9, 9]  # (1, 9) twice, (2, 9) twice, (1, 8) once
    x = [1, 2, 3, 4, -5]
    tables = {"T": {"s#0": u64(words0), "s#1": u64(words1), "x": u64(x)}}
    n, out = run_operator(group_combine, GroupCombine("g", "T", ("s",), (Combine("x", "sum"),)), tables)
    assert n == 3 and rows(out, ["s#0", "s#1", "x"]) == Counter([(1, 9, 5), (1, 8, 2), (2, 9, -2)])


def test_a_global_aggregate_is_one_row_also_over_no_rows() -> None:
    n, out = run_operator(group_combine, GroupCombine("g", "T", (), COMBINE), {"T": table()})
    assert n == 1 and (out["x"][0], out["lo"][0], out["hi"][0]) == (sum(X), min(Y), max(Y))
    n, out = run_operator(group_combine, GroupCombine("g", "T", (), COMBINE), {"T": table([], [], [])})
    assert n == 1 and (out["x"][0], out["lo"][0], out["hi"][0]) == (0, SENTINEL, -SENTINEL)


def test_group_combine_of_no_rows_has_no_groups() -> None:
    n, out = run_operator(group_combine, GroupCombine("g", "T", ("k", "k__v"), COMBINE), {"T": table([], [], [])})
    assert n == 0 and set(out) == {"k", "k__v", "x", "lo", "hi"}


@pytest.mark.parametrize("by_rank", [False, True])
def test_oblivious_group_matches_duckdb(by_rank: bool) -> None:
    tables = {"T": table()}
    if by_rank:  # one owner's dense rank of its keys (0 for a NULL key), the only sort key
        ranks = {k: i + 1 for i, k in enumerate(sorted({k for k in K if k is not None}))}
        tables["T"]["r"] = u64([ranks.get(k, 0) for k in K])
    step = ObliviousGroup("g", "T", ("k", "k__v"), COMBINE, rank="r" if by_rank else "")
    n, out = run_operator(oblivious_group, step, tables)
    want = duck(GROUPED.format(where=""), k=K, x=X, y=Y)
    assert n == len(want) and set(out) == {"k", "k__v", "x", "lo", "hi"}  # keys stay secret, not public
    assert rows(out, ["k", "k__v", "x", "lo", "hi"]) == want


def test_oblivious_group_drops_groups_without_a_kept_row() -> None:
    x = [v if f else 0 for v, f in zip(X, F)]  # the planner zeroes the partials of dropped rows
    keys = [3, None, 11, 3, 3, None, -2, 12, 0]  # 11 and 12 only have dropped rows
    tables = {"T": {**table(keys, x, Y), "f": u64(F)}}
    step = ObliviousGroup("g", "T", ("k", "k__v"), (Combine("x", "sum"),), flag="f")
    n, out = run_operator(oblivious_group, step, tables)
    want = duck("SELECT coalesce(k, 0), (k IS NOT NULL)::INT, sum(x) FROM t WHERE f = 1 GROUP BY ALL",
                k=keys, x=x, f=F)
    assert rows(out, ["k", "k__v", "x"]) == want and "f" not in out


def test_oblivious_group_with_a_mark_opens_nothing_and_marks_each_groups_last_row() -> None:
    keys = [3, None, -2, 3, 3, None, 5, 7, 0]
    x = [v if f else 0 for v, f in zip(X, F)]
    tables = {"T": {**table(keys, x, Y), "f": u64(F)}}
    step = ObliviousGroup("g", "T", ("k", "k__v"), (Combine("x", "sum"),), flag="f", mark="m")
    n, out = run_operator(oblivious_group, step, tables)
    assert n == len(keys) and set(out) == {"k", "k__v", "x", "m"}  # every row stays
    want = duck("SELECT coalesce(k, 0), (k IS NOT NULL)::INT, sum(x) FROM t WHERE f = 1 GROUP BY ALL",
                k=keys, x=x, f=F)
    assert rows(out, ["k", "k__v", "x"], where="m") == want  # marked rows: one per non-empty group, its total


def test_oblivious_group_of_no_rows() -> None:
    step = ObliviousGroup("g", "T", ("k", "k__v"), COMBINE, mark="m")
    n, out = run_operator(oblivious_group, step, {"T": table([], [], [])})
    assert n == 0 and set(out) == {"k", "k__v", "x", "lo", "hi", "m"}


def test_the_dispatch_table_names_the_grouping_operators() -> None:
    assert SECURE_OPERATORS[GroupCombine] is group_combine and SECURE_OPERATORS[ObliviousGroup] is oblivious_group


def test_group_combine_median_matches_duckdb_with_weights_nulls_and_flags() -> None:
    """MEDIAN per group: each row's value stands for `w` rows (an owner's count of that value;
    0 for NULL). The combined column is the sum of the two middle values: DuckDB's median × 2."""
    rng = np.random.default_rng(4)
    n = 200
    keys = rng.integers(0, 6, n).tolist()
    keys[:3] = [None, None, 9]  # a NULL group, a group of one row
    x = rng.integers(-50, 50, n).tolist()
    w = rng.integers(0, 3, n).tolist()  # weight 0: a NULL value or a row a filter dropped
    w[2] = 1
    f = (rng.random(n) < 0.8).astype(int).tolist()
    k, kv = encoded(keys)
    tables = {"T": {"k": k, "k__v": kv, "x": u64(x), "x_cnt": u64(w), "f": u64(f)}}
    step = GroupCombine("g", "T", ("k", "k__v"), (Combine("x_cnt", "sum"), Combine("x", "median", weight="x_cnt")),
                        flag="f")
    n_out, out = run_operator(group_combine, step, tables)
    expanded = [(kk, xx) for kk, xx, ww, ff in zip(keys, x, w, f) if ff for _ in range(ww)]
    table_ = pa.table({"k": pa.array([e[0] for e in expanded], pa.int64()),
                       "x": pa.array([e[1] for e in expanded], pa.int64())})
    want = dict(((kk if kk is not None else 0, int(kk is not None)), (cnt, med)) for kk, cnt, med in duckdb_rows(
        "SELECT k, count(x), median(x) FROM t GROUP BY k", table_))
    got = {(kk, v): (cnt, xx) for kk, v, cnt, xx in zip(out["k"], out["k__v"], out["x_cnt"], out["x"])}
    for group, (cnt, twice) in got.items():
        if cnt:
            assert group in want and want[group] == (cnt, twice / 2), group
        else:  # rows kept by the flag, all of weight 0: no value, NULL at the issuer
            assert group not in want or want[group][0] == 0
    assert {g for g, (c, _) in got.items() if c} == set(want)


def test_a_global_median_of_no_rows_has_count_zero() -> None:
    step = GroupCombine("g", "T", (), (Combine("x_cnt", "sum"), Combine("x", "median", weight="x_cnt")))
    n, out = run_operator(group_combine, step, {"T": {"x": u64([]), "x_cnt": u64([])}})
    assert n == 1 and out["x_cnt"][0] == 0
    n, out = run_operator(group_combine, step, {"T": {"x": u64([4, -3, 10, 7]), "x_cnt": u64([1, 1, 0, 2])}})
    assert n == 1 and out["x"][0] == 4 + 7  # -3, 4, 7, 7: the two middle values 4 and 7


@pytest.mark.parametrize("q", [0.0, 0.1, 0.25, 0.9, 0.999, 1.0])
def test_group_combine_quantile_matches_duckdb_quantile_cont(q) -> None:
    """QUANTILE_CONT(x, q): the values at the two ranks around q·(n - 1) and the remainder r of
    the rank; lower + (r / b)(upper - lower) is DuckDB's interpolation."""
    rng = np.random.default_rng(int(q * 1000))
    n = 120
    keys = rng.integers(0, 4, n).tolist()
    x = rng.integers(-80, 80, n).tolist()
    w = rng.integers(0, 4, n).tolist()
    k, kv = encoded(keys)
    a, b = int(round(q * 1000)), 1000
    step = GroupCombine("g", "T", ("k", "k__v"), (Combine("x_cnt", "sum"), Combine(
        "x", "quantile", weight="x_cnt", fraction=(a, b), outputs=("x_hi", "x_r"))))
    _, out = run_operator(group_combine, step, {"T": {"k": k, "k__v": kv, "x": u64(x), "x_cnt": u64(w)}})
    expanded = [(kk, xx) for kk, xx, ww in zip(keys, x, w) for _ in range(ww)]
    table_ = pa.table({"k": pa.array([e[0] for e in expanded], pa.int64()),
                       "x": pa.array([e[1] for e in expanded], pa.int64())})
    want = dict(duckdb_rows(f"SELECT k, quantile_cont(x, {q}) FROM t GROUP BY k", table_))
    got = {kk: lo + r / b * (hi - lo) for kk, lo, hi, r, c in
           zip(out["k"], out["x"], out["x_hi"], out["x_r"], out["x_cnt"]) if c}
    assert set(got) == set(want) and all(abs(got[g] - want[g]) < 1e-9 * max(1, abs(want[g])) for g in want), (got, want)
