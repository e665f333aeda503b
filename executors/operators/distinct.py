"""COUNT(DISTINCT x) / SUM(DISTINCT x) on shares: mark the first row of each distinct value."""

from __future__ import annotations

from typing import Mapping

from executors import mpc as ops
from executors.mpc import MPC
from executors.operators.base import MemoryCheck, no_memory_limit
from executors.operators.grouping import key_columns
from executors.secure_table import SecretTable
from plan.physical import DistinctMark


def distinct_mark(mpc: MPC, inputs: Mapping[str, SecretTable], step: DistinctMark, *,
                  check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """Sort by (group keys, x, x is valid) and set `step.out` = 1 on the first row of each run,
    so a later SUM of `out` (or of `out` · x) counts (sums) each distinct value once per group.
    A NULL x (filled 0, valid 0) forms its own run and is never marked. Nothing is opened; the
    rows come out reordered, the other columns riding along."""
    table = inputs[step.input]
    # the 0/1 valid column packs with the sort's tiebreak into one word
    sort_cols = key_columns(table, step.keys) + [step.column] + ([step.valid] if step.valid else [])
    if table.n == 0:
        out = SecretTable(n=0, secret=dict(table.secret))
        out.secret[step.out] = table.secret[step.column]
        return out
    others = [c for c in table.secret if c not in sort_cols]  # other aggregates' partials ride along
    bits = [None] * (len(sort_cols) - 1) + [2 if step.valid else None]
    keys, carried = ops.sort_by(mpc, [table.secret[c] for c in sort_cols], [table.secret[c] for c in others],
                                key_bits=bits)
    out = SecretTable(n=table.n, secret={**dict(zip(sort_cols, keys)), **dict(zip(others, carried))})
    starts = ops.segment_starts(mpc, keys)
    out.secret[step.out] = ops.mul(mpc, starts, out.secret[step.valid]) if step.valid else starts
    return out
