"""A row-level result opened compactly (RevealResult.count_to, executors/reveal.py compact_rows):
two compute parties open which rows are real and only those rows reach the issuer; the third
party — an owner, say, who must not learn how many of its rows matched — holds none of them and
sends nothing after the shuffle. Run on the in-process transport at three parties."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from executors import mpc as ops
from executors.mpc import MPC
from executors.reveal import Seat, conceal_rows, open_to
from executors.secure_table import SecretTable
from executors.transport import run_in_process
from executors.transport_errors import MessageError
from plan.physical import GROUP_RANK, RevealResult
from tests.operator_harness import C, u64


def _run(n_keep: list[int], payload: list[int], count_to: tuple[str, ...], order_of: str | None = None,
         tamper: bool = False):
    n = len(n_keep)
    step = RevealResult("r", "t", count_to[0], (), local_keys="f", rows="__show", count_to=count_to)

    def party(t):
        mpc = MPC(t, C)
        mpc.setup()
        cols = {GROUP_RANK: u64(payload), "__show": u64(n_keep)}
        table = SecretTable(n=n, secret={c: ops.share_input(mpc, "c0", v if t.me == "c0" else None, n)
                                         for c, v in sorted(cols.items())}, order_of=order_of)
        if tamper and t.me == count_to[1]:  # a modified node: a wrong component of one row's flag
            flag = table.secret["__show"]
            flag.a[0] += np.uint64(7)
            flag.b[0] += np.uint64(7)
        sent0 = t.bytes_sent
        out = conceal_rows(mpc, table, step)
        shares = [out.secret[GROUP_RANK]]
        opened = open_to(Seat(t.me, C, t, mpc), step.to, shares, "r", 1, step.count_to)
        after_shuffle = t.bytes_sent - sent0
        return out.n, [int(v) for v in opened[0].view(np.int64)] if opened else None, after_shuffle

    return run_in_process({p: party for p in C})


def test_only_the_real_rows_reach_the_issuer_and_the_third_party_holds_none() -> None:
    rng = np.random.default_rng(11)
    n = 50
    keep = (rng.random(n) < 0.3).astype(int).tolist()
    payload = rng.integers(1, 1 << 40, n).tolist()
    got = _run(keep, payload, ("c0", "c2"))
    real = [p for p, k in zip(payload, keep) if k]
    assert got["c0"][0] == got["c2"][0] == len(real) and got["c1"][0] == 0
    assert Counter(got["c0"][1]) == Counter(real) and got["c0"][1] != real  # shuffled (p ≈ 1/10^9 to fail)
    assert got["c1"][1] is None and got["c2"][1] is None  # opened to the issuer alone


def test_rows_in_the_blind_owners_order_skip_the_shuffle_and_the_owner_sends_nothing() -> None:
    keep = [1, 0, 0, 1, 1, 0, 1, 0]
    payload = [10, 20, 30, 40, 50, 60, 70, 80]
    got = _run(keep, payload, ("c0", "c2"), order_of="c1")
    assert got["c0"][1] == [10, 40, 50, 70]  # in the owner's (random) order: no shuffle
    assert got["c1"] == (0, None, 0)  # the owner sends not a byte after its rows are shared
    got = _run(keep, payload, ("c0", "c2"), order_of="c2")  # an order a seeing party knows: shuffled
    assert sorted(got["c0"][1]) == [10, 40, 50, 70]


def test_an_empty_result_opens_nothing() -> None:
    got = _run([0, 0, 0], [1, 2, 3], ("c1", "c0"))
    assert got["c1"][:2] == (0, []) and got["c2"][0] == 0


def test_flags_that_do_not_open_to_0_or_1_are_refused() -> None:
    with pytest.raises(MessageError, match="other than 0 and 1"):
        _run([1, 0, 1, 0], [5, 6, 7, 8], ("c0", "c2"), order_of="c1", tamper=True)


@pytest.mark.parametrize("to,senders", [("c1", None), (("c0", "c2"), None), ("c0", ("c0", "c2")),
                                        ("c2", ("c0", "c2")), (None, None)])
def test_reveal_many_opens_to_the_named_parties_from_the_allowed_senders(to, senders) -> None:
    x = u64([3, -4, 1 << 62])
    silent = next((p for p in C if senders and p not in senders), None)

    def party(t):
        mpc = MPC(t, C)
        mpc.setup()
        share = ops.share_input(mpc, "c1", x if t.me == "c1" else None, 3)
        sent0 = t.bytes_sent
        got = ops.reveal_many(mpc, [share] if t.me != silent else [], to, senders)
        return (got[0].tolist() if got else None), t.bytes_sent - sent0

    out = run_in_process({p: party for p in C})
    wanted = set(C) if to is None else {to} if isinstance(to, str) else set(to)
    for p in C:
        assert out[p][0] == (x.tolist() if p in wanted else None), p
    if silent:
        assert out[silent][1] == 0


def test_an_issuer_outside_the_compute_parties_gets_the_real_rows_from_two_helpers() -> None:
    """Dedicated compute nodes: two of them open which rows are real and send the issuer the real
    rows' parts; the third (here an owner) sends nothing after the shuffle."""
    keep = [int(i % 3 != 1) for i in range(30)]
    payload = [11 * (i + 1) for i in range(30)]
    real = [p for p, k in zip(payload, keep) if k]  # 20 rows: left in order by a shuffle with p = 1/20!
    n = len(keep)
    for helpers in (("c0", "c2"), ("c2", "c1")):
        step = RevealResult("r", "t", "d", (), local_keys="f", rows="__show", count_to=helpers)

        def compute(t):
            mpc = MPC(t, C)
            mpc.setup()
            cols = {GROUP_RANK: u64(payload), "__show": u64(keep)}
            table = SecretTable(n=n, secret={c: ops.share_input(mpc, "c0", v if t.me == "c0" else None, n)
                                             for c, v in sorted(cols.items())})
            out = conceal_rows(mpc, table, step)
            sent0 = t.bytes_sent
            open_to(Seat(t.me, C, t, mpc), "d", [out.secret[GROUP_RANK]], "r", 1, step.count_to)
            return out.n, t.bytes_sent - sent0

        def issuer(t):
            (got,) = open_to(Seat("d", C, t, None), "d", [], "r", 1, step.count_to)
            return [int(v) for v in got.view(np.int64)]

        out = run_in_process({**{p: compute for p in C}, "d": issuer})
        assert sorted(out["d"]) == real and out["d"] != real, helpers  # shuffled
        blind = next(p for p in C if p not in helpers)
        assert out[blind] == (0, 0) and all(out[p][0] == len(real) for p in helpers)
