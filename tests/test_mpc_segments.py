"""Local per-segment ops of the arithmetic sharing (executors/mpc/arithmetic.py): running sums
within runs that begin at public starts, against numpy, on the in-process transport."""

from __future__ import annotations

import numpy as np
import pytest

from executors import mpc as ops
from executors.mpc import MPC
from executors.transport import run_in_process
from tests.operator_harness import C, u64


@pytest.mark.parametrize("starts", [[0], [0, 1, 2, 3, 4, 5], [0, 3, 4, 9], [0, 7]])
def test_cumsum_segments_restarts_at_every_start(starts) -> None:
    rng = np.random.default_rng(len(starts))
    x = rng.integers(-(1 << 40), 1 << 40, 10).tolist()
    x[2] = -(1 << 62)  # wraps in the ring exactly as int64 two's complement

    def party(t):
        mpc = MPC(t, C)
        mpc.setup()
        share = ops.share_input(mpc, "c0", u64(x) if t.me == "c0" else None, len(x))
        out = ops.cumsum_segments(share, np.array(starts))
        return ops.reveal(mpc, out, None).view(np.int64).tolist()

    got = run_in_process({p: party for p in C})["c1"]
    want = []
    bounds = list(starts) + [len(x)]
    for lo, hi in zip(bounds, bounds[1:]):
        want += np.cumsum(np.array(x[lo:hi], dtype=np.int64)).tolist()
    assert got == want


def test_cumsum_segments_of_nothing() -> None:
    def party(t):
        mpc = MPC(t, C)
        mpc.setup()
        return len(ops.cumsum_segments(ops.zeros(0), np.zeros(1, dtype=np.int64)))

    assert set(run_in_process({p: party for p in C}).values()) == {0}
