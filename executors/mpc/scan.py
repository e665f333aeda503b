"""Group boundaries and segmented prefix scans over sorted secret columns.

segment_starts(mpc, sorted_keys) -> arithmetic 0/1 sharing of "row i starts a
group" (i == 0 or some key differs from row i-1): one batched equality of
every key column with its shifted self (7 rounds), an AND tree across key
columns (ceil(log2 m) rounds, bits packed 8 per byte), bit injection (2).

segmented_scan(mpc, starts, columns, ops) -> inclusive prefix aggregate within
segments, Hillis–Steele: at level d = 1, 2, 4, ... < n every row i >= d
combines the aggregate of row i-d (left) with its own (right) through the
segmented operator  (f1, v1) o (f2, v2) = (f1 | f2, f2 ? v2 : v1 (+) v2):
  sum:   v1 + v2 - f2*v1
  copy:  v1 + f2*(v2 - v1)         (the value at the segment's first row)
  min:   lt(v1, v2) ? v1 + f2*(v2 - v1) : v2     (max: gt instead of lt)
  flags: f1 + f2 - f1*f2
Per level ONE mul_many carries the flag update and every column's product
(1 round); if any min/max column is present, ONE compare_many over all of them
concatenated (8 rounds) and ONE mux_many (2 rounds) follow. log2(n) levels:
sum/copy only ~ceil(log2 n) rounds, with min/max 11 per level. Values for
min/max must satisfy |a - b| < 2^63. Nothing is opened.
"""

from __future__ import annotations

import numpy as np

from executors.mpc.arithmetic import add_public, mul_many
from executors.mpc.boolean import b_and_many, bit_not
from executors.mpc.compare import compare_many
from executors.mpc.context import MPC
from executors.mpc.convert import b2a_bit, mux_many
from executors.mpc.shares import AShare, BShare, U64, concat, split
from executors.mpc.sort import pack_bits, unpack_bits

SCAN_OPS = ("sum", "min", "max", "copy")


def _const(mpc: MPC, n: int, value: int) -> AShare:
    return add_public(mpc, AShare(np.zeros(n, U64), np.zeros(n, U64)), value)


def segment_starts(mpc: MPC, sorted_keys: list[AShare]) -> AShare:
    """0/1 arithmetic sharing: row i starts a new group (row 0 always does)."""
    if not sorted_keys:
        raise ValueError("segment_starts needs at least one key column")
    n = len(sorted_keys[0])
    if any(len(k) != n for k in sorted_keys):
        raise ValueError("segment_starts: all key columns must have the same length")
    if n <= 1:
        return _const(mpc, n, 1)
    later = [AShare(k.a[1:], k.b[1:]) for k in sorted_keys]
    earlier = [AShare(k.a[:-1], k.b[:-1]) for k in sorted_keys]
    return concat([_const(mpc, 1, 1), rows_equal(mpc, later, earlier, negate=True)])


def rows_equal(mpc: MPC, xs: list[AShare], ys: list[AShare], negate: bool = False) -> AShare:
    """0/1 arithmetic sharing: row i of every xs column equals row i of its ys column (with
    `negate`: differs somewhere). One batched equality (7 rounds), an AND tree across columns,
    bit injection (2)."""
    n = len(xs[0])
    if n == 0:
        return _const(mpc, 0, 0)
    same = [pack_bits(b) for b in compare_many(mpc, [("eq", x, y) for x, y in zip(xs, ys)])]
    while len(same) > 1:  # AND across key columns, a balanced tree of batched rounds
        half = len(same) // 2
        anded = b_and_many(mpc, same[0:2 * half:2], same[1:2 * half:2])
        same = anded + same[2 * half:]
    bits = unpack_bits(same[0], n)
    return b2a_bit(mpc, bit_not(mpc, bits) if negate else bits)


def segmented_scan(mpc: MPC, starts: AShare, columns: list[AShare], ops: list[str]) -> list[AShare]:
    """Inclusive prefix sum/min/max/copy of each column within the segments given by `starts`."""
    if len(ops) != len(columns):
        raise ValueError(f"segmented_scan: {len(ops)} ops for {len(columns)} columns")
    for op in ops:
        if op not in SCAN_OPS:
            raise ValueError(f"unknown scan op {op!r}; expected one of {SCAN_OPS}")
    n = len(starts)
    if any(len(c) != n for c in columns):
        raise ValueError("segmented_scan: starts and all columns must have the same length")
    vals = [AShare(c.a.copy(), c.b.copy()) for c in columns]
    if not columns or n <= 1:
        return vals
    f = AShare(starts.a.copy(), starts.b.copy())
    mm = [k for k, op in enumerate(ops) if op in ("min", "max")]
    d = 1
    while d < n:
        last = 2 * d >= n
        L = lambda x: AShare(x.a[:n - d], x.b[:n - d])  # noqa: E731  (row i-d)
        R = lambda x: AShare(x.a[d:], x.b[d:])  # noqa: E731  (row i)
        f1, f2 = L(f), R(f)
        xs, ys = [], []
        if not last:
            xs.append(f1)
            ys.append(f2)
        for v, op in zip(vals, ops):
            v1, v2 = L(v), R(v)
            xs.append(f2)
            ys.append(v1 if op == "sum" else AShare(v2.a - v1.a, v2.b - v1.b))
        prods = mul_many(mpc, xs, ys)
        if not last:
            ff = prods.pop(0)
            f = AShare(f.a.copy(), f.b.copy())
            f.a[d:] = f1.a + f2.a - ff.a
            f.b[d:] = f1.b + f2.b - ff.b
        new_right = []
        for v, op, p in zip(vals, ops, prods):
            v1, v2 = L(v), R(v)
            if op == "sum":
                new_right.append(AShare(v1.a + v2.a - p.a, v1.b + v2.b - p.b))
            else:  # copy, and the candidate w = f2 ? v2 : v1 of min/max
                new_right.append(AShare(v1.a + p.a, v1.b + p.b))
        if mm:
            # one item per op kind so all min (lt) and all max (gt) columns share the rounds
            lt_idx = [k for k in mm if ops[k] == "min"]
            gt_idx = [k for k in mm if ops[k] == "max"]
            m1 = n - d
            items, order = [], []
            for op_name, idx in (("lt", lt_idx), ("gt", gt_idx)):
                if idx:
                    items.append((op_name, concat([L(vals[k]) for k in idx]), concat([R(vals[k]) for k in idx])))
                    order += idx
            conds = compare_many(mpc, items)
            cond = BShare(np.concatenate([c.a for c in conds]), np.concatenate([c.b for c in conds]))
            ws = concat([new_right[k] for k in order])
            v2s = concat([R(vals[k]) for k in order])
            (picked,) = mux_many(mpc, cond, [ws], [v2s])
            for k, part in zip(order, split(picked, [m1] * len(order))):
                new_right[k] = part
        nxt = []
        for v, nr in zip(vals, new_right):
            a, b = v.a.copy(), v.b.copy()
            a[d:], b[d:] = nr.a, nr.b
            nxt.append(AShare(a, b))
        vals = nxt
        d *= 2
    return vals
