"""Boolean ops, conversions, comparisons, mux and shuffle vs plaintext numpy (10^5 elements)."""

from __future__ import annotations

import numpy as np
import pytest

import executors.mpc as m
from executors.mpc.encoding import int_to_ring, ring_to_int
from tests.mpc_harness import Federation

N = 100_000
H = 2**62


def _inputs():
    rng = np.random.default_rng(11)
    x = rng.integers(-H, H, N, dtype=np.int64)
    y = rng.integers(-H, H, N, dtype=np.int64)
    small = rng.integers(-3, 4, N // 4)
    x[: N // 4] = small  # many ties and tiny differences
    y[: N // 4] = rng.integers(-3, 4, N // 4)
    x[N // 4: N // 4 + 1000] = y[N // 4: N // 4 + 1000]  # equal large values
    edges = [(H - 1, -H), (-H, H - 1), (0, 0), (-1, 0), (0, -1), (H - 1, H - 1), (-H, -H), (1, -1)]
    for k, (a, b) in enumerate(edges):
        x[N - 1 - k], y[N - 1 - k] = a, b
    return x, y


X, Y = _inputs()
PUB = 17


@pytest.fixture(scope="module")
def res():
    fed = Federation(others=())
    xr, yr = int_to_ring(X), int_to_ring(Y)

    def compute(mpc):
        out = {}
        x = m.share_input(mpc, "c0", xr if mpc.i == 0 else None, N)
        y = m.share_input(mpc, "c1", yr if mpc.i == 1 else None, N)
        bx, by = m.a2b(mpc, x), m.a2b(mpc, y)
        out["a2b"] = m.b_reveal(mpc, bx, None)
        out["xor"] = m.b_reveal(mpc, m.b_xor(bx, by), None)
        out["and"] = m.b_reveal(mpc, m.b_and(mpc, bx, by), None)
        out["not"] = m.b_reveal(mpc, m.b_not(mpc, bx), None)
        out["shl"] = m.b_reveal(mpc, m.b_shift_left(bx, 5), None)
        out["shr"] = m.b_reveal(mpc, m.b_shift_right(bx, 5), None)
        r0 = mpc.rounds
        bits = m.compare_many(mpc, [(op, x, y) for op in ("lt", "le", "gt", "ge", "eq", "ne")]
                              + [("lt", x, PUB), ("eq", x, 0)])
        out["cmp_rounds"] = mpc.rounds - r0
        r0 = mpc.rounds
        single = m.lt(mpc, x, y)
        out["lt_rounds"] = mpc.rounds - r0
        out["lt_single"] = m.b_reveal(mpc, single, None)
        r0 = mpc.rounds
        e = m.eq(mpc, x, y)
        out["eq_rounds"] = mpc.rounds - r0
        out["eq_single"] = m.b_reveal(mpc, e, None)
        out["msb"] = m.b_reveal(mpc, m.msb(mpc, x), None)
        out["cmp"] = [m.b_reveal(mpc, b, None) for b in bits]
        r0 = mpc.rounds
        arith_bits = m.b2a_bit(mpc, bits[0])
        out["b2a_rounds"] = mpc.rounds - r0
        out["b2a"] = m.reveal(mpc, arith_bits, None)
        r0 = mpc.rounds
        mx = m.mux(mpc, bits[0], x, y)
        out["mux_rounds"] = mpc.rounds - r0
        out["mux"] = m.reveal(mpc, mx, None)
        out["min"] = m.reveal(mpc, m.minimum(mpc, x, y), None)
        out["max"] = m.reveal(mpc, m.maximum(mpc, x, y), None)
        r0 = mpc.rounds
        sx, sy = m.shuffle(mpc, [x, y])
        out["shuffle_rounds"] = mpc.rounds - r0
        out["shuffled"] = m.reveal_many(mpc, [sx, sy], None)
        out["shuffle_share"] = sx.a.copy()
        return out

    try:
        parties = fed.run_mpc(compute, timeout=90)
    finally:
        fed.close()
    return parties


def I(v):  # noqa: E743
    return ring_to_int(v)


def test_a2b_and_bitwise_ops(res):
    p = res[0]
    xu, yu = int_to_ring(X), int_to_ring(Y)
    assert np.array_equal(p["a2b"], xu)
    assert np.array_equal(p["xor"], xu ^ yu)
    assert np.array_equal(p["and"], xu & yu)
    assert np.array_equal(p["not"], ~xu)
    assert np.array_equal(p["shl"], xu << np.uint64(5))
    assert np.array_equal(p["shr"], xu >> np.uint64(5))


@pytest.mark.parametrize("k, op", list(enumerate([np.less, np.less_equal, np.greater, np.greater_equal, np.equal,
                                             np.not_equal])))
def test_comparisons_match_numpy(res, k, op):
    assert np.array_equal(res[1]["cmp"][k], op(X, Y).astype(np.uint64))


def test_comparisons_with_public_values(res):
    p = res[2]
    assert np.array_equal(p["cmp"][6], (X < PUB).astype(np.uint64))
    assert np.array_equal(p["cmp"][7], (X == 0).astype(np.uint64))
    assert np.array_equal(p["msb"], (X < 0).astype(np.uint64))


def test_single_ops_and_round_counts(res):
    p = res[0]
    assert np.array_equal(p["lt_single"], (X < Y).astype(np.uint64))
    assert np.array_equal(p["eq_single"], (X == Y).astype(np.uint64))
    assert p["lt_rounds"] == 8 and p["eq_rounds"] == 7
    assert p["cmp_rounds"] == 8  # eight comparisons of mixed kinds batched into the same 8 rounds
    assert p["b2a_rounds"] == 2 and p["mux_rounds"] == 2 and p["shuffle_rounds"] == 3


def test_b2a_and_mux_and_min_max(res):
    p = res[1]
    assert np.array_equal(p["b2a"], (X < Y).astype(np.uint64))
    assert np.array_equal(I(p["mux"]), np.where(X < Y, X, Y))
    assert np.array_equal(I(p["min"]), np.minimum(X, Y))
    assert np.array_equal(I(p["max"]), np.maximum(X, Y))


def test_shuffle_is_a_joint_nontrivial_permutation(res):
    sx, sy = (I(v) for v in res[0]["shuffled"])
    assert np.array_equal(np.sort(sx), np.sort(X))
    assert not np.array_equal(sx, X)
    # one joint permutation: the (x, y) row pairs survive together
    before = np.sort(X.astype(object) * 2**64 + Y.astype(object))
    after = np.sort(sx.astype(object) * 2**64 + sy.astype(object))
    assert np.array_equal(before, after)
    assert np.mean(sx == X) < 0.01
    for q in res:  # all parties open the same permutation
        assert np.array_equal(I(q["shuffled"][0]), sx)
    assert not np.array_equal(res[0]["shuffle_share"], int_to_ring(sx))


def test_unknown_comparison_is_refused():
    with pytest.raises(ValueError, match="unknown comparison"):
        m.compare_many(None, [("lte", None, None)])


def test_bit_reversal_permutation_is_rev6():
    from executors.mpc.compare import bitrev_index_perm

    rng = np.random.default_rng(3)
    v = rng.integers(0, 2**63, 64, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 64, dtype=np.uint64)
    r = bitrev_index_perm(v)
    rev6 = [int(format(p, "06b")[::-1], 2) for p in range(64)]
    for k in range(64):
        assert all((int(r[k]) >> p) & 1 == (int(v[k]) >> rev6[p]) & 1 for p in range(64))
