"""Secure GROUP BY: combining partial aggregates per group, with the keys opened to the compute
parties after a shuffle (`group_combine`, sizes mode) or kept secret (`oblivious_group`).
docs/architecture.md §2 says what each reveals."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from executors import mpc as ops
from executors.mpc import MPC, AShare
from executors.operators.base import MemoryCheck, no_memory_limit
from executors.secure_table import (SecretTable, nonzero_flags, segmented_extreme, segmented_middle, segmented_sum,
                                    segments)
from plan.physical import SENTINEL
from plan.physical import Combine, GroupCombine, ObliviousGroup

EMPTY_FILL = {"sum": 0, "min": SENTINEL, "max": -SENTINEL, "median": 0, "quantile": 0}
"""What a combined column holds for a group with no rows: SUM 0, MIN/MAX the sentinels the
finishing step turns into NULL (executors/operators/finish.py)."""


def key_columns(table: SecretTable, keys: tuple[str, ...]) -> list[str]:
    """The secret columns of the group keys `keys`: a string key is several words `name#k`."""
    return [c for c in table.secret if c.split("#")[0] in keys]


def group_combine(mpc: MPC, inputs: Mapping[str, SecretTable], step: GroupCombine, *,
                  check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """Sizes-mode GROUP BY: shuffle the rows, open the keys (and the WHERE flag) to the compute
    parties, then SUM locally and MIN/MAX by a segmented comparison tree. The output's keys are
    public columns, one row per distinct key. Without keys it is one global row, also over no
    rows (SUM 0, MIN/MAX sentinels)."""
    table = inputs[step.input]
    key_cols = key_columns(table, step.keys)
    value_cols = list(dict.fromkeys([c.column for c in step.combine] + [c.weight for c in step.combine if c.weight]))
    if key_cols:
        opened_cols = key_cols + ([step.flag] if step.flag else [])
        shuffled = ops.shuffle(mpc, [table.secret[c] for c in opened_cols + value_cols])
        opened = ops.reveal_many(mpc, shuffled[: len(opened_cols)], None)
        values = dict(zip(value_cols, shuffled[len(opened_cols):]))
        if step.flag:  # rows the WHERE clause dropped form no group (sizes mode reveals the count)
            keep = np.flatnonzero(opened.pop() != 0)
            opened = [k[keep] for k in opened]
            values = {c: ops.take(v, keep) for c, v in values.items()}
        order, starts, distinct = segments(opened)
        public = {c: np.ascontiguousarray(distinct[:, i]) for i, c in enumerate(key_cols)}
    elif table.n == 0:  # a global aggregate over no rows is still one row
        return SecretTable(n=1, secret={name: ops.constant(mpc, 1, EMPTY_FILL[c.how])
                                        for c in step.combine for name in (c.column, *c.outputs)})
    else:
        values = {c: table.secret[c] for c in value_cols}
        order = np.arange(table.n)
        starts = np.zeros(1, dtype=np.int64)
        public = {}
    return SecretTable(n=len(starts), secret=_combined(mpc, step.combine, values, order, starts), public=public)


def _combined(mpc: MPC, combine: tuple[Combine, ...], values: dict[str, AShare], order: np.ndarray,
              starts: np.ndarray) -> dict[str, AShare]:
    """Each combined column per group (rows in `order`, groups beginning at `starts`)."""
    out: dict[str, AShare] = {}
    for c in combine:
        if c.how == "sum":
            out[c.column] = segmented_sum(values[c.column], order, starts)
    for c in combine:
        if c.how == "median":
            (out[c.column],) = segmented_middle(mpc, values[c.column], values[c.weight], order, starts)
        elif c.how == "quantile":
            stats = segmented_middle(mpc, values[c.column], values[c.weight], order, starts, c.fraction, True)
            out.update(zip((c.column, *c.outputs), stats))
    extremes = [c for c in combine if c.how in ("min", "max")]
    if extremes:
        reduced = segmented_extreme(mpc, [values[c.column] for c in extremes], [c.how for c in extremes],
                                    order, starts, len(order))
        out.update({c.column: r for c, r in zip(extremes, reduced)})
    return out


def oblivious_group(mpc: MPC, inputs: Mapping[str, SecretTable], step: ObliviousGroup, *,
                    check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """GROUP BY keeping the keys secret: sort by the keys (or by one owner's dense rank of them,
    `step.rank`, with the keys riding along), scan each group's total onto its last row, then
    open only "this row ends a non-empty group" of a shuffle — the number of groups. With
    `step.mark` nothing is opened: every row stays, `mark` = 1 on each non-empty group's last
    row, for DP partition selection (executors/operators/dp.py)."""
    table = inputs[step.input]
    key_cols = key_columns(table, step.keys)
    value_cols = [c.column for c in step.combine]
    hows = [c.how for c in step.combine]
    carried = [table.secret[c] for c in value_cols]
    if step.flag:
        carried.append(table.secret[step.flag])
        hows.append("sum")
    n = table.n
    if n == 0:
        empty = {c: table.secret[c] for c in key_cols + value_cols}
        if step.mark:
            empty[step.mark] = ops.zeros(0)
        return SecretTable(n=0, secret=empty)
    if step.rank:  # one narrow sort key (the owner's dense rank); the key columns ride along
        bits = [n.bit_length() + 1]  # ranks are in 0..n: the plan's inputs bound them
        (rank,), moved = ops.sort_by(mpc, [table.secret[step.rank]], [table.secret[c] for c in key_cols] + carried,
                                     key_bits=bits)
        keys, carried = moved[:len(key_cols)], moved[len(key_cols):]
        starts = ops.segment_starts(mpc, [rank])
    else:
        keys, carried = ops.sort_by(mpc, [table.secret[c] for c in key_cols], carried)
        starts = ops.segment_starts(mpc, keys)
    totals = ops.segmented_scan(mpc, starts, carried, hows)  # a group's last row holds its total
    last = ops.concat([ops.slice_rows(starts, 1, n), ops.constant(mpc, 1, 1)])
    if step.flag:  # keep groups with at least one kept row
        nonempty = nonzero_flags(mpc, [totals.pop()])[0]
        last = ops.mul(mpc, last, nonempty)
    if step.mark:  # DP partition selection decides later which groups are opened: open nothing here
        out = SecretTable(n=n, secret=dict(zip(key_cols + value_cols, keys + totals)))
        out.secret[step.mark] = last
        return out
    shuffled = ops.shuffle(mpc, keys + totals + [last])
    keep = np.flatnonzero(ops.reveal(mpc, shuffled[-1], None) != 0)
    return SecretTable(n=len(keep), secret={name: ops.take(col, keep)
                                            for name, col in zip(key_cols + value_cols, shuffled[:-1])})
