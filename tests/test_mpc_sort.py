"""Oblivious sort, segment starts and segmented scans vs plaintext numpy (three parties over loopback gRPC)."""

from __future__ import annotations

import numpy as np
import pytest

import executors.mpc as m
from executors.mpc.encoding import int_to_ring, ring_to_int
from tests.mpc_harness import Federation

N1 = 30_000  # single key, heavy duplicates and extremes
N2 = 10_000  # two keys (one descending) + carried columns
N3 = 20_000  # segment starts and scans
H = 2**62


def _data():
    rng = np.random.default_rng(5)
    k1 = rng.integers(-H, H, N1, dtype=np.int64)
    k1[: N1 // 2] = rng.integers(-20, 20, N1 // 2)  # many duplicates, negatives
    k1[N1 // 2: N1 // 2 + 3] = [H - 1, -H, 0]
    rng.shuffle(k1)
    a = rng.integers(-5, 5, N2)  # two-key sort: a ascending, b descending
    b = rng.integers(-3, 3, N2) * 2**40
    groups = np.sort(rng.integers(0, N3 // 7, N3))  # ~7 rows per group, some singletons
    g2 = rng.integers(0, 2, N3)  # a second key column that splits some groups
    order = np.lexsort((g2, groups))
    groups, g2 = groups[order], g2[order]
    vals = rng.integers(-2**40, 2**40, N3)
    vals[::5] = rng.integers(-3, 3, len(vals[::5]))
    return k1, a, b, groups, g2, vals


K1, A, B, G, G2, V = _data()


@pytest.fixture(scope="module")
def res():
    fed = Federation(others=())

    def inp(mpc, owner, v):
        return m.share_input(mpc, owner, int_to_ring(v) if owner == mpc.me else None, len(v))

    def compute(mpc):
        out = {}
        k1 = inp(mpc, "c0", K1)
        idx = inp(mpc, "c1", np.arange(N1))
        st: dict = {}
        r0 = mpc.rounds
        (sk,), (sidx,) = m.sort_by(mpc, [k1], [idx], stats=st)
        out["stats1"] = dict(st, rounds=mpc.rounds - r0)
        out["sort1"] = m.reveal_many(mpc, [sk, sidx], None)
        out["share1"] = sk.a.copy()
        # two keys, mixed directions, two carried columns
        a, b = inp(mpc, "c1", A), inp(mpc, "c2", B)
        pa, pb = inp(mpc, "c0", np.arange(N2)), inp(mpc, "c2", np.arange(N2) * 3 - 7)
        keys2, cols2 = m.sort_by(mpc, [a, b], [pa, pb], descending=[False, True])
        out["sort2"] = m.reveal_many(mpc, keys2 + cols2, None)
        st_packed: dict = {}
        keys3, cols3 = m.sort_by(mpc, [a, b], [pa], descending=[False, True], key_bits=[4, 43], stats=st_packed)
        out["packed_words"] = st_packed["words"]  # 4 + 43 + 14 tiebreak bits: one word, one lt per comparison
        out["sort3"] = m.reveal_many(mpc, keys3 + cols3, None)
        st_split: dict = {}
        keys4, cols4 = m.sort_by(mpc, [a, b], [pa], descending=[True, False], key_bits=[4, 60], stats=st_split)
        out["split_words"] = st_split["words"]
        out["sort4"] = m.reveal_many(mpc, keys4 + cols4, None)
        (dk,), () = m.sort_by(mpc, [k1], [], descending=True)
        out["sort_desc"] = m.reveal(mpc, dk, None)
        # segment starts and scans
        g, g2, v = inp(mpc, "c0", G), inp(mpc, "c1", G2), inp(mpc, "c2", V)
        r0 = mpc.rounds
        starts1 = m.segment_starts(mpc, [g])
        out["starts_rounds"] = mpc.rounds - r0
        starts2 = m.segment_starts(mpc, [g, g2])
        r0 = mpc.rounds
        scans = m.segmented_scan(mpc, starts2, [v, v, v, v], ["sum", "min", "max", "copy"])
        out["scan_rounds"] = mpc.rounds - r0
        r0 = mpc.rounds
        sums = m.segmented_scan(mpc, starts1, [v], ["sum"])
        out["sum_rounds"] = mpc.rounds - r0
        out["scan"] = m.reveal_many(mpc, [starts1, starts2] + scans + sums, None)
        # edge cases: empty and single row
        for n in (0, 1):
            x = inp(mpc, "c0", np.arange(n) - 5)
            (ek,), (ec,) = m.sort_by(mpc, [x], [x])
            st = m.segment_starts(mpc, [ek])
            sc = m.segmented_scan(mpc, st, [ec, ec], ["sum", "min"])
            out[f"edge{n}"] = m.reveal_many(mpc, [ek, ec, st] + sc, None)
        return out

    try:
        parties = fed.run_mpc(compute, timeout=120)
    finally:
        fed.close()
    return parties


def I(v):  # noqa: E743
    return ring_to_int(v)


def test_sort_single_key_matches_numpy(res):
    sk, sidx = (I(x) for x in res[0]["sort1"])
    order = np.argsort(K1, kind="stable")
    assert np.array_equal(sk, K1[order])
    assert np.array_equal(sidx, order)  # carried column aligned, and the sort is stable
    for p in res[1:]:
        assert all(np.array_equal(x, y) for x, y in zip(p["sort1"], res[0]["sort1"]))
    assert not np.array_equal(res[0]["share1"], int_to_ring(K1[order]))  # output is still shared


def test_sort_rounds_are_logarithmic(res):
    st = res[0]["stats1"]
    assert st["levels"] <= 4 * np.log(N1)  # expected ~2-3 ln n
    assert st["comparisons"] <= 4 * N1 * np.log(N1)  # O(n log n), never n^2
    assert st["words"] == 2  # full-range key + tiebreak: lt, eq, lt per comparison
    assert st["rounds"] == 3 + 9 * st["levels"]  # shuffle; compare 8 + fold-and-open 1 per level


def test_sort_multi_key_mixed_direction_carries_columns(res):
    a, b, pa, pb = (I(x) for x in res[1]["sort2"])
    order = np.lexsort((-B, A))  # A ascending, then B descending; stable
    assert np.array_equal(a, A[order]) and np.array_equal(b, B[order])
    assert np.array_equal(pa, order) and np.array_equal(pb, order * 3 - 7)


def test_sort_with_declared_key_bits_packs_words(res):
    assert res[0]["packed_words"] == 1 and res[0]["split_words"] == 3
    a, b, pa = (I(x) for x in res[0]["sort3"])
    order = np.lexsort((-B, A))
    assert np.array_equal(a, A[order]) and np.array_equal(b, B[order]) and np.array_equal(pa, order)
    a, b, pa = (I(x) for x in res[0]["sort4"])
    order = np.lexsort((B, -A))
    assert np.array_equal(a, A[order]) and np.array_equal(b, B[order]) and np.array_equal(pa, order)


def test_sort_descending(res):
    assert np.array_equal(I(res[2]["sort_desc"]), np.sort(K1)[::-1])


def _segments(starts: np.ndarray):
    seg = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    return seg, first, np.r_[first[1:], len(starts)]


def test_segment_starts(res):
    s1, s2 = (I(x) for x in res[0]["scan"][:2])
    assert np.array_equal(s1, np.r_[1, G[1:] != G[:-1]].astype(np.int64))
    assert np.array_equal(s2, np.r_[1, (G[1:] != G[:-1]) | (G2[1:] != G2[:-1])].astype(np.int64))
    assert res[0]["starts_rounds"] == 7 + 2  # one batched equality + bit injection


def test_segmented_scans_match_numpy(res):
    starts = I(res[1]["scan"][1])
    ssum, smin, smax, scopy, ssum1 = (I(x) for x in res[1]["scan"][2:])
    seg, first, ends = _segments(starts)
    csum = np.cumsum(V)
    assert np.array_equal(ssum, csum - np.r_[0, csum][first][seg])
    assert np.array_equal(scopy, V[first][seg])
    want_min, want_max = np.empty_like(V), np.empty_like(V)
    for s, e in zip(first, ends):
        want_min[s:e] = np.minimum.accumulate(V[s:e])
        want_max[s:e] = np.maximum.accumulate(V[s:e])
    assert np.array_equal(smin, want_min) and np.array_equal(smax, want_max)
    seg1, first1, _ = _segments(np.r_[1, G[1:] != G[:-1]])
    assert np.array_equal(ssum1, csum - np.r_[0, csum][first1][seg1])
    levels = int(np.ceil(np.log2(N3)))
    assert res[1]["sum_rounds"] == levels
    assert res[1]["scan_rounds"] == 11 * levels  # mul + compare + mux per level, all columns batched


def test_empty_and_single_row(res):
    e0 = res[0]["edge0"]
    assert all(len(x) == 0 for x in e0)
    k, c, st, ssum, smin = (I(x) for x in res[0]["edge1"])
    assert k.tolist() == [-5] and c.tolist() == [-5] and st.tolist() == [1]
    assert ssum.tolist() == [-5] and smin.tolist() == [-5]


@pytest.mark.parametrize("n", [2, 3, 8, 9, 10, 31, 100, 1000, 54321])
def test_quicksort_orders_by_opened_bits_only(n):
    """order_by_comparisons against a plaintext oracle: the arrangement sorts, every question is a
    pair of distinct rows, and what it asks is a function of n and the answers alone (the same
    answers give the same questions), which is what makes the transcript simulatable."""
    from executors.mpc.sort import order_by_comparisons

    sigma = np.random.default_rng(n).permutation(n)  # the rank of each shuffled row
    asked = []

    def before(x, y):
        assert len(x) and (x != y).all()
        asked.append((x.copy(), y.copy()))
        return sigma[x] < sigma[y]

    st: dict = {}
    perm = order_by_comparisons(n, before, stats=st)
    assert np.array_equal(sigma[perm], np.arange(n))
    first = asked[:]
    asked.clear()
    order_by_comparisons(n, before)
    assert len(asked) == len(first) and all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
                                            for a, b in zip(asked, first))
    if n >= 1000:  # median-of-sample pivots: near n log2 n comparisons (a random pivot: 1.39 n log2 n)
        assert st["comparisons"] <= 1.3 * n * np.log2(n) and st["levels"] <= 3 * np.log2(n)


def test_argument_errors():
    with pytest.raises(ValueError, match="at least one key"):
        m.sort_by(None, [], [])
    with pytest.raises(ValueError, match="unknown scan op"):
        m.segmented_scan(None, m.AShare(np.zeros(1, np.uint64), np.zeros(1, np.uint64)), [
            m.AShare(np.zeros(1, np.uint64), np.zeros(1, np.uint64))], ["avg"])
