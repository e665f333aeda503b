"""Tables held in secret shares by the compute parties, and their relational helpers.

A SecretTable is a set of equally long shared columns, plus columns that are
public to the compute parties (e.g. group keys opened after a shuffle).
Grouped reductions run over all groups at once: sums locally with
`np.add.reduceat`, MIN/MAX as a segmented tree of secure comparisons whose
depth is log2 of the largest group, one round batch per level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from executors import mpc as ops
from executors.mpc import MPC, AShare


@dataclass
class SecretTable:
    n: int
    secret: dict[str, AShare] = field(default_factory=dict)
    public: dict[str, np.ndarray] = field(default_factory=dict)
    # the rows are in a uniformly random order that only this party knows (it permuted its rows with
    # OS randomness before sharing them, ShareTable.permute); operators that keep the row order pass it on
    order_of: str = ""


def concat_tables(tables: list[SecretTable]) -> SecretTable:
    names = list(tables[0].secret)
    return SecretTable(
        n=sum(t.n for t in tables),
        secret={c: ops.concat([t.secret[c] for t in tables]) for c in names},
    )


def segments(keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort order, segment starts and the distinct key rows of opened key columns."""
    n = len(keys[0])
    mat = np.stack(keys, axis=1)
    distinct, inverse = np.unique(mat, axis=0, return_inverse=True)
    inverse = inverse.reshape(n)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(distinct)))
    return order, starts, distinct


def segmented_sum(x: AShare, order: np.ndarray, starts: np.ndarray) -> AShare:
    """Per-group sums of a shared column: local, no communication."""
    return ops.sum_segments(ops.take(x, order), starts)


def extreme_many(mpc: MPC, xs: list[AShare], ys: list[AShare], hows: list[str]) -> list[AShare]:
    """Elementwise MIN or MAX of several column pairs: one batched comparison, one batched mux."""
    if not xs:
        return []
    bits = ops.compare_many(mpc, [("lt" if h == "min" else "gt", x, y) for x, y, h in zip(xs, ys, hows)])
    lengths = [len(x) for x in xs]
    chosen = ops.mux(mpc, ops.concat(bits), ops.concat(xs), ops.concat(ys))
    return ops.split(chosen, lengths)


def max_of(mpc: MPC, columns: list[AShare]) -> AShare:
    """Elementwise MAX of equally long shared columns (one comparison round batch per column)."""
    best = columns[0]
    for other in columns[1:]:
        best = extreme_many(mpc, [best], [other], ["max"])[0]
    return best


def nonzero_flags(mpc: MPC, counts: list[AShare]) -> list[AShare]:
    """Arithmetic 0/1 sharings of (count > 0) for several columns, in one batch."""
    if not counts:
        return []
    bits = ops.compare_many(mpc, [("gt", c, 0) for c in counts])
    flags = ops.b2a_bit(mpc, ops.concat(bits))
    return ops.split(flags, [len(c) for c in counts])


def segmented_middle(mpc: MPC, value: AShare, weight: AShare, order: np.ndarray, starts: np.ndarray,
                     fraction: tuple[int, int] = (1, 2), remainder: bool = False) -> list[AShare]:
    """Per group, the values at the two ranks around position h = (a/b)(W - 1) of its W values
    (each row standing for `weight` rows; 0: NULL or filtered out): [lower + upper] — SQL's MEDIAN
    is half of it — or, with `remainder`, [lower, upper, r] with r = a(W - 1) - b·floor(h), so that
    QUANTILE_CONT = lower + (r / b)(upper - lower).

    The rows are sorted by (group, value) under MPC — the group numbers are public here, the values'
    order is never opened (sort_by shuffles first). With c the running sum of the weights in a group,
    the lower row is the first with b·c > a(W - 1) and the upper the first with b(c - 1) ≥ a(W - 1):
    one batched comparison, one batched multiplication, then local sums per group."""
    a, b = fraction
    n = len(order)
    if n == 0:
        return [ops.zeros(len(starts)) for _ in range(3 if remainder else 1)]
    group = np.zeros(n, dtype=np.int64)
    group[starts[1:]] = 1
    group = np.cumsum(group)  # the group number of each position once sorted by group
    numbers = ops.add_public(mpc, ops.zeros(n), group)
    (_, v), (w,) = ops.sort_by(mpc, [numbers, ops.take(value, order)], [ops.take(weight, order)],
                               key_bits=[int(len(starts)).bit_length() + 1, None])
    c = ops.cumsum_segments(w, starts)
    position = ops.mul_public(ops.add_public(mpc, ops.sum_segments(w, starts), -1), a)  # a(W - 1) per group
    bc_minus = ops.sub(ops.mul_public(c, b), ops.take(position, group))  # b·c - a(W - 1) per row
    lower, upper = ops.split(ops.b2a_bit(mpc, ops.concat(ops.compare_many(mpc, [
        ("ge", bc_minus, 1), ("ge", bc_minus, b)]))), [n, n])
    previous = np.maximum(np.arange(n) - 1, 0)
    not_first = np.ones(n, dtype=np.int64)
    not_first[starts] = 0

    def first(reached: AShare) -> AShare:  # 1 on the first row of its group where `reached` is 1
        return ops.sub(reached, ops.mul_public(ops.take(reached, previous), not_first))

    if not remainder:
        both = first(ops.add(lower, upper))  # 0, 1 or 2 at each of the two rows
        return [ops.sum_segments(ops.mul(mpc, both, v), starts)]
    lo, hi = first(lower), first(upper)
    lo_v, hi_v, lo_c = (ops.sum_segments(x, starts) for x in ops.mul_many(mpc, [lo, hi, lo], [v, v, c]))
    return [lo_v, hi_v, ops.sub(position, ops.mul_public(ops.add_public(mpc, lo_c, -1), b))]


def segmented_extreme(
    mpc: MPC, columns: list[AShare], hows: list[str], order: np.ndarray, starts: np.ndarray, n: int
) -> list[AShare]:
    """Per-group MIN/MAX of several shared columns, all columns batched per level."""
    if len(starts) == 0:
        return [ops.take(c, np.zeros(0, dtype=np.int64)) for c in columns]
    group = np.zeros(n, dtype=np.int64)
    group[starts[1:]] = 1
    group = np.cumsum(group)  # group id of each sorted position
    cols = [ops.take(c, order) for c in columns]
    while len(group) > len(starts):
        first = np.r_[True, group[1:] != group[:-1]]
        rank = np.arange(len(group)) - np.maximum.accumulate(np.where(first, np.arange(len(group)), 0))
        size = np.bincount(group)[group]
        left = np.flatnonzero((rank % 2 == 0) & (rank + 1 < size))
        right = left + 1
        single = np.flatnonzero((rank % 2 == 0) & (rank + 1 >= size))
        reduced = extreme_many(mpc, [ops.take(c, left) for c in cols], [ops.take(c, right) for c in cols], hows)
        keep = np.concatenate([left, single])
        new_order = np.argsort(keep, kind="stable")
        cols = [ops.take(ops.concat([r, ops.take(c, single)]), new_order) for r, c in zip(reduced, cols)]
        group = group[keep][new_order]
    return cols
