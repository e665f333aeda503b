"""Run a secure operator (executors/operators/) on plaintext tables at three parties over the
in-process transport (executors/transport.py) and open its whole output: operator unit tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from executors import codec
from executors import mpc as ops
from executors.mpc import MPC
from executors.secure_table import SecretTable
from executors.transport import run_in_process

C = ("c0", "c1", "c2")
KEY = bytes(range(16))
Plain = dict[str, np.ndarray]


def tagged(keys: list[int | None], bits: int, **cols: list[int]) -> Plain:
    """A plaintext table with join tag `t` (columns t#0, t#1) of `keys` and int columns."""
    tags = codec.keyed_tags(KEY, [pa.array(keys, pa.int64())], bits)
    out = {"t#0": tags[:, 0], "t#1": tags[:, 1]}
    out.update({c: np.array(v, dtype=np.int64).view(np.uint64) for c, v in cols.items()})
    return out


def run_operator(operator: Any, step: Any, tables: dict[str, Plain]) -> tuple[int, dict[str, np.ndarray]]:
    """Share `tables` from c0, run the operator at the three parties, open its whole output."""
    return run_chain([(operator, step)], tables)


def run_chain(chain: list[tuple[Any, Any]], tables: dict[str, Plain]) -> tuple[int, dict[str, np.ndarray]]:
    """Share `tables` from c0, run the operators one after another at the three parties (each
    step's output is an input of the later ones, by step id) and open the last output: its
    secret columns opened, its public columns as they are (key names never collide)."""

    def party(t: Any) -> tuple[int, dict[str, list[int]]]:
        mpc = MPC(t, C)
        mpc.setup()
        inputs = {}
        for name in sorted(tables):
            cols = tables[name]
            n = len(next(iter(cols.values())))
            inputs[name] = SecretTable(n=n, secret={
                c: ops.share_input(mpc, "c0", v if t.me == "c0" else None, n) for c, v in sorted(cols.items())})
        for operator, step in chain:
            inputs[step.id] = out = operator(mpc, inputs, step)
        names = sorted(out.secret)
        opened = ops.reveal_many(mpc, [out.secret[c] for c in names], None) if names and out.n else []
        got = {c: (o.view(np.int64).tolist() if out.n else []) for c, o in
               zip(names, opened or [np.zeros(0, np.uint64)] * len(names))}
        got.update({c: np.asarray(v, np.uint64).view(np.int64).tolist() for c, v in out.public.items()})
        return out.n, got

    results = run_in_process({p: party for p in C})
    assert results["c0"] == results["c1"] == results["c2"]  # every party opened the same table
    n, cols = results["c0"]
    return n, {c: np.array(v, dtype=np.int64) for c, v in cols.items()}


def duckdb_rows(sql: str, t: pa.Table) -> list[tuple]:
    """Plain DuckDB's answer to `sql` over the table `t`: what the secure operators must match."""
    con = duckdb.connect()
    con.register("t", t)
    return con.execute(sql).fetchall()


def u64(values: list[int]) -> np.ndarray:
    """int64 values as the ring's uint64 words (two's complement)."""
    return np.array(values, dtype=np.int64).view(np.uint64)


def encoded(values: list[int | None]) -> tuple[np.ndarray, np.ndarray]:
    """A nullable int column as shared: (value with NULL as 0, validity 0/1)."""
    return u64([0 if v is None else v for v in values]), u64([int(v is not None) for v in values])


def rows(cols: dict[str, np.ndarray], names: list[str], where: str | None = None) -> Counter:
    keep = cols[where] != 0 if where else np.ones(len(cols[names[0]]), bool)
    return Counter(zip(*(cols[c][keep].tolist() for c in names)))
