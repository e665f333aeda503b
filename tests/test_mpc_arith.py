"""Arithmetic sharing vs plaintext numpy on 10^5-element vectors, over real gRPC."""

from __future__ import annotations

import numpy as np
import pytest

import executors.mpc as m
from executors.mpc.encoding import check_range, decode_fixed, encode_fixed, int_to_ring, ring_to_int
from tests.mpc_harness import Federation

N = 100_000
F = 20  # fractional bits
TOL = 2.0 ** -F * 2  # mul+trunc: 1 ulp of the truncation + rounding of the encodings


def _inputs():
    rng = np.random.default_rng(7)
    x = rng.integers(-2**62, 2**62, N, dtype=np.int64)
    y = rng.integers(-2**62, 2**62, N, dtype=np.int64)
    x[:4] = [0, -1, 2**62 - 1, -2**62]
    y[:4] = [0, 1, -2**62, 2**62 - 1]
    fx = rng.uniform(-1000, 1000, N)
    fy = rng.uniform(-1000, 1000, N)
    fx[:3] = [0.0, -0.5, 3.25]
    fy[:3] = [5.0, 0.0, -2.0]
    return x, y, fx, fy


X, Y, FX, FY = _inputs()


@pytest.fixture(scope="module")
def res():
    fed = Federation(others=("d0", "r0"))
    xr, yr = int_to_ring(X), int_to_ring(Y)
    fxr, fyr = encode_fixed(FX, F), encode_fixed(FY, F)
    dealt = np.arange(N, dtype=np.int64) - N // 2

    def compute(mpc):
        out = {}
        x = m.share_input(mpc, "c0", xr if mpc.i == 0 else None, N)
        y = m.share_input(mpc, "c1", yr if mpc.i == 1 else None, N)
        z = m.share_input(mpc, "c2", np.zeros(N, np.uint64) if mpc.i == 2 else None, N)
        out["zero_share"] = (z.a.copy(), z.b.copy())
        out["x_share"] = (x.a.copy(), x.b.copy())
        out["x"], out["y"] = m.reveal_many(mpc, [x, y], None)
        out["add"] = m.reveal(mpc, m.add(x, y), None)
        out["sub"] = m.reveal(mpc, m.sub(x, y), None)
        out["neg"] = m.reveal(mpc, m.neg(x), None)
        out["addp"] = m.reveal(mpc, m.add_public(mpc, x, -12345), None)
        out["addp_arr"] = m.reveal(mpc, m.add_public(mpc, x, Y), None)
        out["mulp"] = m.reveal(mpc, m.mul_public(x, -3), None)
        r0 = mpc.rounds
        prod = m.mul(mpc, x, y)
        out["mul_rounds"] = mpc.rounds - r0
        out["mul"] = m.reveal(mpc, prod, None)
        out["sum"] = m.reveal(mpc, m.sum_all(x), None)
        fx = m.share_input(mpc, "c0", fxr if mpc.i == 0 else None, N)
        fy = m.share_input(mpc, "c2", fyr if mpc.i == 2 else None, N)
        r0 = mpc.rounds
        fp = m.mul_fixed(mpc, fx, fy, F)
        out["fmul_rounds"] = mpc.rounds - r0
        out["fmul"] = m.reveal(mpc, fp, None)
        out["fmul_prob"] = m.reveal(mpc, m.mul_fixed(mpc, fx, fy, F, exact=False), None)
        out["trunc_x"] = m.reveal(mpc, m.trunc(mpc, x, 13), None)
        out["trunc_exact_x"] = m.reveal(mpc, m.trunc_exact(mpc, x, 13), None)
        out["to_c1"] = m.reveal(mpc, x, "c1")
        d = m.receive_dealt(mpc, "d0", "col", N)
        out["dealt"] = m.reveal(mpc, d, None)
        m.reveal_to_outsider(mpc, m.add(d, d), "r0", "res")
        out["stats"] = mpc.stats()
        return out

    def dealer(ch):
        m.deal_to_compute(ch, fed.compute, "col", int_to_ring(dealt))

    def receiver(ch):
        return m.receive_revealed(ch, fed.compute, "res")

    try:
        runs = fed.run({**{p: (lambda ch: _as_mpc(ch, fed.compute, compute)) for p in fed.compute},
                        "d0": dealer, "r0": receiver}, timeout=60)
    finally:
        fed.close()
    return {"parties": [runs[p] for p in fed.compute], "outsider": runs["r0"], "dealt": dealt}


def _as_mpc(ch, compute, fn):
    mpc = m.MPC(ch, compute)
    mpc.setup()
    return fn(mpc)


def I(v):  # noqa: E743 - ring -> int64
    return ring_to_int(v)


def test_all_parties_agree_on_opened_values(res):
    a, b, c = res["parties"]
    for key in ("x", "add", "mul", "fmul"):
        assert np.array_equal(a[key], b[key]) and np.array_equal(a[key], c[key])


def test_share_and_reveal(res):
    p = res["parties"][0]
    assert np.array_equal(I(p["x"]), X) and np.array_equal(I(p["y"]), Y)


def test_linear_ops(res):
    p = res["parties"][1]
    with np.errstate(over="ignore"):
        assert np.array_equal(I(p["add"]), X + Y)
        assert np.array_equal(I(p["sub"]), X - Y)
        assert np.array_equal(I(p["neg"]), -X)
        assert np.array_equal(I(p["addp"]), X - 12345)
        assert np.array_equal(I(p["addp_arr"]), X + Y)
        assert np.array_equal(I(p["mulp"]), X * -3)
        assert I(p["sum"])[0] == X.sum()


def test_mul_is_exact_mod_2_64_and_one_round(res):
    p = res["parties"][2]
    with np.errstate(over="ignore"):
        assert np.array_equal(I(p["mul"]), X * Y)
    assert p["mul_rounds"] == 1


def _fixed_product_floor():
    return (ring_to_int(encode_fixed(FX, F)) * ring_to_int(encode_fixed(FY, F))) >> F


def test_fixed_point_mul_exact_trunc_within_one_ulp(res):
    p = res["parties"][0]
    d = I(p["fmul"]) - _fixed_product_floor()
    assert set(np.unique(d)) <= {-1, 0}
    # vs. the real product: floor and carry (2 ulp) + the input encodings' rounding (|u|+|v|) 2^-(F+1)
    err = np.abs(decode_fixed(p["fmul"], F) - FX * FY)
    bound = 2.0**-F * (2 + (np.abs(FX) + np.abs(FY)) / 2) + np.abs(FX * FY) * 2.0**-50
    assert np.all(err <= bound), (err / bound).max()
    assert p["fmul_rounds"] == 3


def test_fixed_point_mul_probabilistic_trunc_meets_its_bound(res):
    p = res["parties"][0]
    prod = ring_to_int(encode_fixed(FX, F)) * ring_to_int(encode_fixed(FY, F))
    d = I(p["fmul_prob"]) - (prod >> F)
    gross = ~np.isin(d, [-1, 0])
    expected = ((np.abs(prod).astype(np.float64) + 1) / 2.0**64).sum()  # documented per-element bound
    assert gross.sum() <= 2 * expected + 10


def test_trunc_of_large_signed_values(res):
    p = res["parties"][1]
    d = I(p["trunc_x"]) - (X >> 13)
    ok = (d == 0) | (d == -1)
    # |x| up to 2^62: failure probability <= |x|/2^64 <= 1/4 per element (documented bound)
    assert ok.mean() > 0.75
    assert np.all(ok[np.abs(X) < 2**40])
    d = I(p["trunc_exact_x"]) - (X >> 13)
    assert set(np.unique(d)) <= {-1, 0}


def test_reveal_to_one_party_only(res):
    a, b, c = res["parties"]
    assert a["to_c1"] is None and c["to_c1"] is None
    assert np.array_equal(I(b["to_c1"]), X)


def test_non_compute_dealer_and_outsider_receiver(res):
    p = res["parties"][0]
    assert np.array_equal(I(p["dealt"]), res["dealt"])
    assert np.array_equal(I(res["outsider"]), 2 * res["dealt"])


def test_single_share_looks_uniform(res):
    for p in res["parties"]:
        for a in p["zero_share"]:  # shares of an all-zero column
            assert np.count_nonzero(a) > 0.99 * N
            bits = np.unpackbits(a.view(np.uint8)).mean()
            assert abs(bits - 0.5) < 0.01
        for a in p["x_share"]:
            assert not np.array_equal(a, int_to_ring(X))


def test_communication_stats_are_counted(res):
    st = res["parties"][0]["stats"]
    assert st["rounds"] > 10 and st["bytes_sent"] > 8 * N


def test_encoding_limits_and_errors():
    v = np.array([0.0, 1.5, -2.25, 1e6])
    assert np.allclose(decode_fixed(encode_fixed(v, 20), 20), v)
    with pytest.raises(ValueError, match=r"2\^43"):
        encode_fixed(np.array([2.0**43]), 20)
    with pytest.raises(ValueError, match="NaN"):
        encode_fixed(np.array([np.nan]))
    with pytest.raises(ValueError, match=r"2\^62"):
        check_range(np.array([2**62], dtype=np.int64), 62, "comparison input")
    with pytest.raises(ValueError, match="floating"):
        int_to_ring(np.array([1.5]))
    assert np.array_equal(ring_to_int(int_to_ring(np.array([-5, 7]))), [-5, 7])
