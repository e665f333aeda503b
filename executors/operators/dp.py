"""Secure DP operators on shares: contribution bounding after a join and partition selection
(docs/dp.md §5.4–5.5). The noise itself is executors/operators/noise.py."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from executors import mpc as ops
from executors.mpc import MPC
from executors.operators.base import MemoryCheck, no_memory_limit
from executors.secure_table import SecretTable
from fedsql import errors
from plan.physical import BoundPerUnit, PartitionSelect


def bound_per_unit(mpc: MPC, inputs: Mapping[str, SecretTable], step: BoundPerUnit, *,
                   check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """Keep at most `bound` kept rows per privacy unit after a join (docs/dp.md §5.5). The sort is
    stable, so a unit's rows keep their relative order from the joins (keyed tags with a fresh
    per-query key, then the other parties' fragment order): which of its rows survive never
    depends on another unit's rows. Nothing is opened."""
    table = inputs[step.input]
    n = table.n
    if table.public:
        raise errors.InternalError("bound_per_unit reorders rows: its input must have no public columns")
    if n == 0:
        return SecretTable(n=0, secret=dict(table.secret))
    names = [c for c in table.secret if c != step.unit]
    bits = [n.bit_length() + 1]  # unit numbers are in 0..n_D <= n (0: padding rows), public bound
    (unit,), moved = ops.sort_by(mpc, [table.secret[step.unit]], [table.secret[c] for c in names], key_bits=bits)
    cols = dict(zip(names, moved))
    starts = ops.segment_starts(mpc, [unit])
    (running,) = ops.segmented_scan(mpc, starts, [cols[step.flag]], ["sum"])  # kept rows so far, this unit
    within = ops.compare_many(mpc, [("le", running, step.bound)])[0]
    cols[step.flag] = ops.mul(mpc, cols[step.flag], ops.b2a_bit(mpc, within))
    cols[step.unit] = unit
    return SecretTable(n=n, secret=cols)


def partition_select(mpc: MPC, inputs: Mapping[str, SecretTable], step: PartitionSelect, *,
                     check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """Keep the groups whose noisy count reaches τ (docs/dp.md §5.4): the comparison runs on
    shares, the rows are shuffled, and only the keep bits are opened — so the compute parties
    learn the number of released groups and nothing about the others."""
    table = inputs[step.input]
    names = [c for c in table.secret if c != step.mark]
    if table.n == 0:
        return SecretTable(n=0, secret={c: table.secret[c] for c in names})
    above = ops.compare_many(mpc, [("ge", table.secret[step.count], step.threshold)])[0]
    keep = ops.mul(mpc, table.secret[step.mark], ops.b2a_bit(mpc, above))
    shuffled = ops.shuffle(mpc, [table.secret[c] for c in names] + [keep])
    kept = np.flatnonzero(ops.reveal(mpc, shuffled[-1], None) != 0)
    return SecretTable(n=len(kept), secret={c: ops.take(v, kept) for c, v in zip(names, shuffled[:-1])})
