"""The secure DP operators (executors/operators/dp.py) against plaintext, on the in-process
transport: contribution bounding per privacy unit and partition selection."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from executors.operators import SECURE_OPERATORS, bound_per_unit, partition_select
from fedsql import errors
from plan.physical import BoundPerUnit, PartitionSelect
from tests.operator_harness import rows, run_operator, u64


def test_bound_per_unit_keeps_each_units_first_kept_rows() -> None:
    unit = [3, 1, 3, 2, 3, 1, 3, 0, 3]
    flag = [1, 1, 0, 1, 1, 1, 1, 1, 1]
    x = list(range(len(unit)))
    step = BoundPerUnit("b_1", "T", unit="u", flag="f", bound=2)
    n, out = run_operator(bound_per_unit, step, {"T": {"u": u64(unit), "f": u64(flag), "x": u64(x)}})
    assert n == len(unit) and set(out) == {"u", "f", "x"}
    assert out["u"].tolist() == sorted(unit)  # sorted by unit, stable within a unit
    assert rows(out, ["u", "x"]) == Counter(zip(unit, x))  # every row rides along
    kept, seen = set(), Counter()
    for u, f, i in zip(unit, flag, x):  # plaintext: a unit's first `bound` kept rows, in input order
        if f and seen[u] < 2:
            kept.add(i)
            seen[u] += 1
    assert {int(i) for i, f in zip(out["x"], out["f"]) if f} == kept
    assert [i for i, u in zip(out["x"].tolist(), out["u"].tolist()) if u == 3] == [0, 2, 4, 6, 8]


def test_bound_per_unit_of_no_rows_and_of_public_columns() -> None:
    n, out = run_operator(bound_per_unit, BoundPerUnit("b_1", "T", unit="u", flag="f", bound=1),
                          {"T": {"u": u64([]), "f": u64([])}})
    assert n == 0 and set(out) == {"u", "f"}

    from executors.secure_table import SecretTable

    with pytest.raises(errors.InternalError, match="no public columns"):
        bound_per_unit(None, {"T": SecretTable(n=1, public={"k": np.zeros(1)})},  # type: ignore[arg-type]
                       BoundPerUnit("b_1", "T", unit="u", flag="f", bound=1))


def test_partition_select_keeps_marked_groups_at_or_over_the_threshold() -> None:
    count = [5, 9, 10, 11, -3, 10]
    mark = [1, 1, 1, 0, 1, 1]
    key = [100, 101, 102, 103, 104, 105]
    step = PartitionSelect("p_1", "T", count="c", threshold=10, mark="m")
    n, out = run_operator(partition_select, step, {"T": {"c": u64(count), "m": u64(mark), "k": u64(key)}})
    want = Counter((k, c) for k, c, m in zip(key, count, mark) if m and c >= 10)
    assert set(out) == {"c", "k"} and n == sum(want.values()) and rows(out, ["k", "c"]) == want


def test_partition_select_of_no_groups() -> None:
    n, out = run_operator(partition_select, PartitionSelect("p_1", "T", count="c", threshold=1, mark="m"),
                          {"T": {"c": u64([]), "m": u64([])}})
    assert n == 0 and set(out) == {"c"}


def test_the_dispatch_table_names_the_dp_operators() -> None:
    assert SECURE_OPERATORS[BoundPerUnit] is bound_per_unit and SECURE_OPERATORS[PartitionSelect] is partition_select
