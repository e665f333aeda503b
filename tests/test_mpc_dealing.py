"""Dealing shares from a data party that does not compute (issue #11, Low).

Over real gRPC (tests/mpc_harness.py): a fragment that shares no columns still deals (it
crashed with a TypeError), and a dealer that claims more values than the plan says (rows it
announced × words per row) is refused with a MessageError naming it, before anything is
expanded or allocated (the count was trusted: a huge claim was a huge allocation).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from executors import mpc as ops
from executors.transport_errors import MessageError
from executors.runtime import PartyRun
from plan.physical import Encoding, PhysicalPlan, ShareColumn, ShareTable, with_hash
from tests.mpc_harness import COMPUTE, Federation

ROWS = 3


def _plan(columns: tuple[ShareColumn, ...]) -> PhysicalPlan:
    step = ShareTable("s_d0", "f_d0", "d0", columns)
    return with_hash(PhysicalPlan(issuer="c0", compute=COMPUTE, schemas=(), steps=(step,), result="",
                                  output=(), leakage=()))


def _compute(plan: PhysicalPlan):
    def party(ch):
        run = PartyRun(ch.me, plan, None, ch)
        run.run()
        table = run.secret["s_d0"]
        return table.n, sorted(table.secret)
    return party


def _honest_dealer(plan: PhysicalPlan, table: pa.Table):
    def dealer(ch):
        run = PartyRun(ch.me, plan, None, ch)
        run.plain["f_d0"] = table
        run.run()
    return dealer


def test_a_fragment_without_columns_deals_its_row_count() -> None:
    plan = _plan(())
    fed = Federation(others=("d0",))
    try:
        out = fed.run({**{p: _compute(plan) for p in COMPUTE},
                       "d0": _honest_dealer(plan, pa.table({"x": pa.array(range(ROWS), pa.int64())}))}, timeout=30)
    finally:
        fed.close()
    assert [out[p] for p in COMPUTE] == [(ROWS, [])] * 3


def test_a_dealer_claiming_more_values_than_the_plan_is_refused() -> None:
    plan = _plan((ShareColumn("x", Encoding("int")),))
    claimed = 1 << 20  # the plan expects ROWS values (ROWS rows announced, one word per row)

    def lying_dealer(ch):
        if hasattr(ch, "agree"):  # (the plan agreement of issue #11, when present)
            ch.agree(plan.participants, plan.hash, 10)
        for p in COMPUTE:
            ch.send(p, "s_d0.n", [np.array([ROWS], dtype=np.int64)])
        ops.deal_to_compute(ch, COMPUTE, "s_d0", np.zeros(claimed, np.uint64))

    fed = Federation(others=("d0",))
    try:
        with pytest.raises(MessageError, match=r"'d0' dealt 1048576 values .* plan expects 3"):
            fed.run({**{p: _compute(plan) for p in COMPUTE}, "d0": lying_dealer}, timeout=30)
    finally:
        fed.close()
