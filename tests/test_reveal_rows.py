"""A row-level result before it is opened (executors/reveal.py conceal_rows): the rows that are
not part of the result carry the other side's values (an oblivious join keeps both inputs' rows),
and the rows' order follows the keyed join tags; so every column is zeroed where the row is not
real and the rows are shuffled. Run on the in-process transport at three parties."""

from __future__ import annotations

from collections import Counter

import numpy as np

from executors.reveal import conceal_rows
from plan.physical import GROUP_RANK, RevealColumn, RevealResult
from plan.physical import Encoding
from tests.operator_harness import run_chain, u64

INT = Encoding("int", 0, "BIGINT")


def _conceal(mpc, inputs, step):
    return conceal_rows(mpc, inputs[step.input], step)


def test_rows_not_in_the_result_are_zeroed_and_all_rows_shuffled() -> None:
    n = 64
    rng = np.random.default_rng(5)
    payload = rng.integers(1, 1 << 40, n)  # never 0: a zero in the output is the zeroing's
    keep = (rng.random(n) < 0.5).astype(np.int64)
    rid = np.arange(1, n + 1)
    step = RevealResult("r", "t", "c0", (RevealColumn("p", "key", "p", INT, count="p__v"),),
                        secret_keys=True, local_keys="f", rows="__show")
    out_n, got = run_chain([(_conceal, step)], {"t": {
        "p": u64(payload.tolist()), "p__v": u64([1] * n), GROUP_RANK: u64(rid.tolist()),
        "__show": u64(keep.tolist()), "unrelated": u64([9] * n)}})
    assert out_n == n and "unrelated" not in got  # only what the reveal opens is carried
    real = got["__show"] != 0
    assert int(real.sum()) == int(keep.sum())
    for column in ("p", "p__v", GROUP_RANK):
        assert not got[column][~real].any(), column  # nothing of the rows that are not real
    want = Counter(zip(payload[keep == 1].tolist(), rid[keep == 1].tolist()))
    assert Counter(zip(got["p"][real].tolist(), got[GROUP_RANK][real].tolist())) == want
    assert got[GROUP_RANK][real].tolist() != sorted(got[GROUP_RANK][real].tolist())  # shuffled (p ≈ 1/32!)


def test_an_empty_result_stays_empty() -> None:
    step = RevealResult("r", "t", "c0", (RevealColumn("p", "value", "p", INT),), rows="__show")
    out_n, got = run_chain([(_conceal, step)], {"t": {"p": u64([]), "__show": u64([])}})
    assert out_n == 0


def _conceal_in_order_of(owner: str):
    def operator(mpc, inputs, step):
        table = inputs[step.input]
        table.order_of = owner  # as ShareTable(permute=True) at `owner` marks it
        return conceal_rows(mpc, table, step)
    return operator


def test_rows_in_their_owners_random_order_are_zeroed_but_not_shuffled_again() -> None:
    """Rows still in the order another party shared them in (its own random permutation) need no
    MPC shuffle; rows in an order the issuer itself chose are shuffled all the same."""
    n = 40
    keep = [i % 3 == 0 for i in range(n)]
    rid = list(range(1, n + 1))
    step = RevealResult("r", "t", "c0", (), local_keys="f", rows="__show")
    table = {GROUP_RANK: u64(rid), "__show": u64([int(k) for k in keep])}
    _, got = run_chain([(_conceal_in_order_of("c1"), step)], {"t": dict(table)})
    assert got[GROUP_RANK].tolist() == [r if k else 0 for r, k in zip(rid, keep)]  # same order, zeroed
    _, got = run_chain([(_conceal_in_order_of("c0"), step)], {"t": dict(table)})
    kept = [r for r in got[GROUP_RANK].tolist() if r]
    assert sorted(kept) == [r for r, k in zip(rid, keep) if k] and kept != sorted(kept)
