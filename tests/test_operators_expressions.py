"""Row expressions on shares (executors/operators/expressions.py) against DuckDB evaluating the
same SQL, on the in-process transport: NULLs (three-valued logic), negatives, zeros, decimal
scales, an output reading an earlier one, no rows."""

from __future__ import annotations

import pyarrow as pa
import pytest

from executors.operators import SECURE_OPERATORS, secure_eval
from plan.physical import Encoding, SecureEval
from plan.expressions import BOOL, SNode
from tests.operator_harness import duckdb_rows, encoded, run_operator

A = [3, None, -4, 0, 7, None, -1, 2]
B = [5, 2, None, 0, -7, None, -1, 9]
DEC2 = Encoding("decimal", 2, "DECIMAL(38,2)")


def a() -> SNode:
    return SNode("col", column="a")


def b() -> SNode:
    return SNode("col", column="b")


def const(v: int, enc: Encoding = Encoding("int")) -> SNode:
    return SNode("const", value=v, encoding=enc)


def op(name: str, *args: SNode, enc: Encoding = Encoding("int")) -> SNode:
    return SNode(name, tuple(args), encoding=enc)


CASES = [  # (secure expression, the same in SQL)
    (op("add", a(), b()), "a + b"),
    (op("sub", a(), op("mul", b(), const(3))), "a - b * 3"),
    (op("mul", a(), b()), "a * b"),
    (op("neg", a()), "-a"),
    (op("lt", a(), b(), enc=BOOL), "(a < b)::INT"),
    (op("eq", a(), const(0), enc=BOOL), "(a = 0)::INT"),
    (op("and", op("gt", a(), const(0), enc=BOOL), op("ne", b(), const(0), enc=BOOL), enc=BOOL),
     "(a > 0 AND b <> 0)::INT"),
    (op("or", op("gt", a(), const(0), enc=BOOL), op("isnull", b(), enc=BOOL), enc=BOOL),
     "(a > 0 OR b IS NULL)::INT"),
    (op("not", op("le", a(), b(), enc=BOOL), enc=BOOL), "(NOT a <= b)::INT"),
    (op("truth", op("ge", a(), b(), enc=BOOL)), "coalesce(a >= b, false)::INT"),
    (op("valid", a()), "(a IS NOT NULL)::INT"),
    (op("coalesce", a(), b()), "coalesce(a, b)"),
    (op("nullif", a(), b()), "nullif(a, b)"),
    (op("case", op("gt", a(), b(), enc=BOOL), a(), b()), "CASE WHEN a > b THEN a ELSE b END"),
    (op("add", const(125, DEC2), b(), enc=DEC2), "(1.25 + b) * 100"),  # b is aligned to the decimal's scale
]


@pytest.mark.parametrize("node, sql", CASES, ids=[sql for _, sql in CASES])
def test_each_expression_matches_duckdb(node: SNode, sql: str) -> None:
    (av, avalid), (bv, bvalid) = encoded(A), encoded(B)
    step = SecureEval("e", "T", (("out", node), ("ok", op("valid", node))))  # value, and "it is not NULL"
    n, out = run_operator(secure_eval, step, {"T": {"a": av, "a__v": avalid, "b": bv, "b__v": bvalid}})
    t = pa.table({"a": pa.array(A, pa.int64()), "b": pa.array(B, pa.int64())})
    want = [r[0] for r in duckdb_rows(f"SELECT ({sql})::BIGINT FROM t", t)]
    assert n == len(A) and out["ok"].tolist() == [int(w is not None) for w in want]
    assert [v if ok else None for v, ok in zip(out["out"].tolist(), out["ok"])] == want
    assert out["a"].tolist() == av.view("int64").tolist()  # the input columns stay


def test_a_later_output_reads_an_earlier_one_and_no_rows_give_no_rows() -> None:
    outputs = (("p", op("add", SNode("col", column="x"), const(-2))), ("q", op("mul", SNode("col", column="p"),
                                                                                    SNode("col", column="p"))))
    n, out = run_operator(secure_eval, SecureEval("e", "T", outputs), {"T": {"x": encoded([0, 5, -3])[0]}})
    assert out["p"].tolist() == [-2, 3, -5] and out["q"].tolist() == [4, 9, 25]
    n, out = run_operator(secure_eval, SecureEval("e", "T", outputs), {"T": {"x": encoded([])[0]}})
    assert n == 0 and set(out) == {"x", "p", "q"}


def test_the_dispatch_table_names_the_expression_operator() -> None:
    assert SECURE_OPERATORS[SecureEval] is secure_eval
