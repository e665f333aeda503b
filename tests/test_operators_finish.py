"""The finishing operator (executors/operators/finish.py) after a secure GROUP BY, against
DuckDB on the same rows, on the in-process transport: NULL sums (groups of only NULLs), MIN/MAX
sentinels, a NULL group key, HAVING in three-valued logic, ORDER BY with NULLS FIRST/LAST in
both directions, LIMIT/OFFSET, no groups at all."""

from __future__ import annotations

import pyarrow as pa
import pytest

from executors.operators import SECURE_OPERATORS, group_combine, secure_finish
from plan.physical import SENTINEL
from plan.physical import Combine, GroupCombine, SecureFinish, ValidityPrep
from plan.expressions import SNode
from tests.operator_harness import duckdb_rows, encoded, run_chain, u64

K = [1, 1, None, 2, 3, 3, 4, None, 5, 6, 6]
X = [4, -1, 7, None, -5, 2, None, -9, 0, 8, -8]

GROUP = GroupCombine("g", "T", ("k", "k__v"), (Combine("s", "sum"), Combine("c", "sum"),
                                                Combine("lo", "min"), Combine("hi", "max")))
PREPS = (ValidityPrep("k", "copy", "k__v"), ValidityPrep("s", "count", "c"),
         ValidityPrep("lo", "sentinel"), ValidityPrep("hi", "sentinel"))


def col(name: str) -> SNode:
    return SNode("col", column=name)


def partials(keys: list, x: list) -> dict:
    """What the owner's local query shares per row: SUM/COUNT partials, MIN/MAX with sentinels."""
    k, kv = encoded(keys)
    return {"T": {"k": k, "k__v": kv, "s": u64([v or 0 for v in x]), "c": u64([int(v is not None) for v in x]),
                  "lo": u64([SENTINEL if v is None else v for v in x]),
                  "hi": u64([-SENTINEL if v is None else v for v in x])}}


def secure(step: SecureFinish, keys=K, x=X) -> list[tuple]:
    n, out = run_chain([(group_combine, GROUP), (secure_finish, step)], partials(keys, x))
    assert set(out) >= {"k", "k__v", "s", "s__v"} | ({"lo__v", "hi__v"} if n else set())

    def value(c: str, i: int):
        return int(out[c][i]) if out[c + "__v"][i] else None

    return [(value("k", i), value("s", i), value("lo", i), value("hi", i)) for i in range(n)]


def plain(tail: str, keys=K, x=X) -> list[tuple]:
    t = pa.table({"k": pa.array(keys, pa.int64()), "x": pa.array(x, pa.int64())})
    return duckdb_rows(f"SELECT k, sum(x) AS s, min(x) AS lo, max(x) AS hi FROM t GROUP BY k {tail}", t)


@pytest.mark.parametrize("descending, nulls_first", [(True, True), (False, False), (True, False), (False, True)])
def test_having_order_limit_match_duckdb(descending: bool, nulls_first: bool) -> None:
    having = SNode("or", (SNode("isnull", (col("s"),)), SNode("gt", (col("s"), SNode("const", value=-2)))))
    order = ((col("lo"), descending, nulls_first), (col("k"), False, False))  # k breaks ties: a total order
    step = SecureFinish("f", "g", PREPS, having, order, limit=4, offset=1)
    direction = f"{'DESC' if descending else 'ASC'} NULLS {'FIRST' if nulls_first else 'LAST'}"
    want = plain(f"HAVING s IS NULL OR s > -2 ORDER BY lo {direction}, k ASC NULLS LAST LIMIT 4 OFFSET 1")
    assert secure(step) == want


def test_validity_alone_turns_counts_and_sentinels_into_nulls() -> None:
    got = secure(SecureFinish("f", "g", PREPS, None, (), limit=-1))
    assert sorted(got, key=repr) == sorted(plain(""), key=repr)
    assert (4, None, None, None) in got and (None, -2, -9, 7) in got


def test_limit_past_the_end_and_no_groups() -> None:
    order = ((col("s"), False, True),)
    assert secure(SecureFinish("f", "g", PREPS, None, order, limit=5, offset=100)) == []
    having = SNode("gt", (col("s"), SNode("const", value=0)))
    assert secure(SecureFinish("f", "g", PREPS, having, order, limit=2), [], []) == []


def test_the_dispatch_table_names_the_finish_operator() -> None:
    assert SECURE_OPERATORS[SecureFinish] is secure_finish
