"""The finishing step of a secure aggregate: validity of each output, HAVING, ORDER BY, LIMIT,
all on shares, so only the rows that survive reach the reveal."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from executors import mpc as ops
from executors.mpc import MPC, AShare
from executors.operators.base import MemoryCheck, no_memory_limit
from executors.secure_eval import Evaluator
from executors.secure_table import SecretTable, nonzero_flags
from plan.physical import SENTINEL
from plan.physical import SecureFinish


def secure_finish(mpc: MPC, inputs: Mapping[str, SecretTable], step: SecureFinish, *,
                  check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """Give each aggregate its validity column `c__v` (`step.preps`: copied, COUNT > 0, or MIN/MAX
    not a sentinel), then filter by HAVING (shuffled; the number of kept groups is opened), sort
    by ORDER BY on shares (NULLs first or last as asked) and cut LIMIT/OFFSET by public row
    numbers. Opened keys become trivial shares again, so the output is all secret."""
    table = inputs[step.input]
    n = table.n
    cols = dict(table.secret)
    for name, values in table.public.items():
        cols[name] = ops.constant(mpc, n, values.astype(np.uint64))
    _add_validity(mpc, step, cols, n)
    names = list(cols)
    if step.having is not None and n:
        keep = Evaluator(mpc, SecretTable(n=n, secret=cols)).truth(step.having).t
        shuffled = ops.shuffle(mpc, [cols[c] for c in names] + [keep])
        kept = np.flatnonzero(ops.reveal(mpc, shuffled[-1], None) != 0)
        cols = {c: ops.take(v, kept) for c, v in zip(names, shuffled[:-1])}
        n = len(kept)
    if step.order and n:
        keys, desc = _order_keys(mpc, step, cols, n)
        _, carried = ops.sort_by(mpc, keys, [cols[c] for c in names], desc)
        cols = dict(zip(names, carried))
    if step.limit >= 0:
        rows = np.arange(min(n, step.offset), min(n, step.offset + step.limit))
        cols = {c: ops.take(v, rows) for c, v in cols.items()}
        n = len(rows)
    return SecretTable(n=n, secret=cols)


def _add_validity(mpc: MPC, step: SecureFinish, cols: dict[str, AShare], n: int) -> None:
    """Add the preps' `c__v` columns to `cols`, one batch per kind (a copy may read a count's)."""
    out = cols
    counts = [p for p in step.preps if p.how == "count"]
    for p, flag in zip(counts, nonzero_flags(mpc, [cols[p.source] for p in counts])):
        out[p.column + "__v"] = flag
    for p in step.preps:
        if p.how == "copy":
            out[p.column + "__v"] = cols[p.source]
    sentinels = [p for p in step.preps if p.how == "sentinel"]
    if sentinels and n:  # -2^62 < v < 2^62: a MIN/MAX over no rows holds a sentinel
        bits = ops.compare_many(mpc, [(op, cols[p.column], bound) for p in sentinels
                                      for op, bound in (("lt", SENTINEL), ("gt", -SENTINEL))])
        both = ops.split(ops.b2a_bit(mpc, ops.concat(bits)), [n] * (2 * len(sentinels)))
        for i, p in enumerate(sentinels):
            out[p.column + "__v"] = ops.mul(mpc, both[2 * i], both[2 * i + 1])


def _order_keys(mpc: MPC, step: SecureFinish, cols: dict[str, AShare], n: int) -> tuple[list[AShare], list[bool]]:
    """Sort keys of ORDER BY: per item (NULLs-placement bit, value), with their directions."""
    ev = Evaluator(mpc, SecretTable(n=n, secret=cols))
    keys: list[AShare] = []
    desc: list[bool] = []
    for node, descending, nulls_first in step.order:
        value = ev.number(node)
        valid = value.valid if value.valid is not None else ops.constant(mpc, n, 1)
        keys.append(valid if nulls_first else ops.sub(ops.constant(mpc, n, 1), valid))
        keys.append(value.value)
        desc += [False, bool(descending)]
    return keys, desc
