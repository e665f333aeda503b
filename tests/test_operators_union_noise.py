"""UNION ALL of secret tables (executors/operators/union.py) and DP noise inside the MPC
(executors/operators/noise.py) against plaintext, on the in-process transport."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from executors.dp import noise_variance
from executors.operators import SECURE_OPERATORS, add_noise, secure_union
from executors.secure_table import SecretTable
from fedsql import errors
from plan.physical import AddNoise, NoiseSpec, SecureUnion
from tests.operator_harness import encoded, rows, run_operator, u64


def test_union_concatenates_in_input_order_with_duplicates_nulls_and_empty_inputs() -> None:
    parts = {"A": [3, None, -1], "B": [], "C": [3, 3, 0, None]}
    tables = {}
    for name, values in parts.items():
        x, xv = encoded(values)
        tables[name] = {"x": x, "x__v": xv, "src": u64([ord(name)] * len(values))}
    n, out = run_operator(secure_union, SecureUnion("u", ("C", "B", "A")), tables)
    want = [(v or 0, int(v is not None), ord(name)) for name in "CBA" for v in parts[name]]
    assert n == 7 and list(zip(out["x"].tolist(), out["x__v"].tolist(), out["src"].tolist())) == want


def test_union_refuses_inputs_whose_columns_differ() -> None:
    empty = np.zeros(0, np.uint64)
    with pytest.raises(errors.InternalError, match="same secret columns"):
        run_operator(secure_union, SecureUnion("u", ("A", "B")), {"A": {"x": empty}, "B": {"y": empty}})
    with pytest.raises(errors.InternalError, match="no public ones"):
        secure_union(None, {"A": SecretTable(n=0, public={"k": empty})}, SecureUnion("u", ("A",)))  # type: ignore[arg-type]


def test_noise_is_added_to_the_named_columns_only_with_the_stated_variance() -> None:
    n = 4000
    truth = np.arange(-n // 2, n // 2, dtype=np.int64) * 3  # negatives and zero
    specs = (NoiseSpec("s", "laplace", 0.5, 0.0, 4), NoiseSpec("c", "skellam", 1.0, 1e-6, 1))
    tables = {"T": {"s": truth.view(np.uint64), "c": np.zeros(n, np.uint64), "other": truth.view(np.uint64)}}
    got, out = run_operator(add_noise, AddNoise("z", "T", specs), tables)
    assert got == n and set(out) == {"s", "c", "other"}
    assert out["other"].tolist() == truth.tolist()  # a column without a spec is untouched
    for spec, base in zip(specs, (truth, np.zeros(n, np.int64))):
        err = (out[spec.column] - base).astype(float)
        var = noise_variance(spec.family, spec.epsilon, spec.sensitivity, 2, delta=spec.delta)
        assert abs(err.mean()) < 5 * np.sqrt(var / n)
        assert 0.8 * var < err.var() < 1.25 * var  # relative sd of the estimate ~0.03


def test_noise_is_fresh_per_run_and_a_table_of_no_rows_stays_empty() -> None:
    spec = (NoiseSpec("s", "laplace", 1.0, 0.0, 1),)
    tables = {"T": {"s": np.zeros(50, np.uint64)}}
    first, second = (run_operator(add_noise, AddNoise("z", "T", spec), tables)[1]["s"] for _ in range(2))
    assert Counter(first.tolist()) != Counter(second.tolist())
    n, out = run_operator(add_noise, AddNoise("z", "T", spec), {"T": {"s": np.zeros(0, np.uint64)}})
    assert n == 0 and rows(out, ["s"]) == Counter()


def test_the_dispatch_table_names_union_and_noise() -> None:
    assert SECURE_OPERATORS[SecureUnion] is secure_union and SECURE_OPERATORS[AddNoise] is add_noise
