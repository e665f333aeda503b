"""Every MPC primitive against plaintext numpy, on 10^5-element vectors, over real gRPC."""

from __future__ import annotations

import numpy as np
import pytest

from executors import secure_ops as ops
from executors.peer_channel import MessageError, PeerTimeout, PeerUnavailable, decode_arrays, encode_arrays
from tests.three_parties import PARTIES, ThreeParties

N = 100_000
LIMIT = 1 << 62


@pytest.fixture(scope="module")
def parties():
    tp = ThreeParties()
    yield tp
    tp.close()


def _vectors(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(-(1 << 40), 1 << 40, N)
    y = rng.integers(-(1 << 40), 1 << 40, N)
    y[:1000] = x[:1000]  # equal pairs
    x[1000:1010] = 0
    y[1010:1020] = 0
    # near the comparison limit: |x - y| < 2^63
    x[2000:2010] = LIMIT - 1
    y[2000:2010] = -(LIMIT - 1)
    x[2010:2020] = -(LIMIT - 1)
    y[2010:2020] = LIMIT - 1
    x[2020:2030] = LIMIT - 1
    y[2020:2030] = LIMIT - 2
    return x, y


def _shared(mpc, x, y):
    X = ops.share_input(mpc, "c0", x.astype(np.uint64) if mpc.me == "c0" else None, len(x))
    Y = ops.share_input(mpc, "c1", y.astype(np.uint64) if mpc.me == "c1" else None, len(y))
    return X, Y


def _open_bits(mpc, b):
    """Open a boolean bit sharing (for tests): XOR of the three components."""
    return ops.reveal(mpc, ops.b2a_bit(mpc, b), None).view(np.int64)


def test_share_and_reveal_roundtrip_and_shares_look_random(parties):
    x, _ = _vectors()
    zeros = np.zeros(N, dtype=np.int64)

    def fn(mpc):
        X, _ = _shared(mpc, x, x)
        Z = ops.share_input(mpc, "c2", zeros.astype(np.uint64) if mpc.me == "c2" else None, N)
        return ops.reveal(mpc, X, None), Z

    results = parties.run(fn)
    for opened, zshare in results:
        assert np.array_equal(opened.view(np.int64), x)
        # a share of all-zero input is not all zero (it is a uniform mask)
        assert np.count_nonzero(zshare.a) > N - 10


def test_reveal_to_one_party_only(parties):
    x, _ = _vectors()

    def fn(mpc):
        X, _ = _shared(mpc, x, x)
        return ops.reveal(mpc, X, "c1")

    r = parties.run(fn)
    assert r[0] is None and r[2] is None
    assert np.array_equal(r[1].view(np.int64), x)


def test_arithmetic(parties):
    x, y = _vectors()
    small_x, small_y = x >> 32, y >> 32  # products must stay inside the ring

    def fn(mpc):
        X, Y = _shared(mpc, x, y)
        SX, SY = _shared(mpc, small_x, small_y)
        outs = [ops.add(X, Y), ops.sub(X, Y), ops.neg(X), ops.add_public(mpc, X, 7), ops.mul_public(SX, -3),
                ops.mul(mpc, SX, SY)]
        return ops.reveal_many(mpc, outs, None)

    add, sub, neg, addc, mulc, mul = (v.view(np.int64) for v in parties.run(fn)[0])
    with np.errstate(over="ignore"):
        assert np.array_equal(add, x + y)
        assert np.array_equal(sub, x - y)
    assert np.array_equal(neg, -x)
    assert np.array_equal(addc, x + 7)
    assert np.array_equal(mulc, small_x * -3)
    assert np.array_equal(mul, small_x * small_y)


def test_fixed_point_multiply_and_truncate(parties):
    rng = np.random.default_rng(5)
    f = 12  # products stay below 2^38: a wrap has probability ~2^-25 per element
    a = rng.uniform(-100, 100, N)
    b = rng.uniform(-100, 100, N)
    ea, eb = np.round(a * (1 << f)).astype(np.int64), np.round(b * (1 << f)).astype(np.int64)

    def fn(mpc):
        A, B = _shared(mpc, ea, eb)
        return ops.reveal(mpc, ops.trunc(mpc, ops.mul(mpc, A, B), f), None)

    got = parties.run(fn)[0].view(np.int64) / (1 << f)
    exact = (ea / (1 << f)) * (eb / (1 << f))
    err = np.abs(got - exact)
    # documented bound: at most 1 unit in the last place (2^-f), except a wrap with tiny probability
    assert np.count_nonzero(err > 1.0 / (1 << f) + 1e-12) <= 2


def test_comparisons_equality_and_mux(parties):
    x, y = _vectors()

    def fn(mpc):
        X, Y = _shared(mpc, x, y)
        bits = [ops.lt(mpc, X, Y), ops.le(mpc, X, Y), ops.gt(mpc, X, Y), ops.ge(mpc, X, Y),
                ops.eq(mpc, X, Y), ops.ne(mpc, X, Y), ops.lt(mpc, X, 0)]
        opened = [_open_bits(mpc, b) for b in bits]
        lt = bits[0]
        chosen = ops.reveal(mpc, ops.mux(mpc, lt, X, Y), None).view(np.int64)
        mins = ops.reveal(mpc, ops.extreme_many(mpc, [X, X], [Y, Y], ["min", "max"])[0], None).view(np.int64)
        maxs = ops.reveal(mpc, ops.extreme_many(mpc, [X], [Y], ["max"])[0], None).view(np.int64)
        return opened, chosen, mins, maxs

    opened, chosen, mins, maxs = parties.run(fn)[0]
    expect = [x < y, x <= y, x > y, x >= y, x == y, x != y, x < 0]
    for got, want in zip(opened, expect):
        assert np.array_equal(got, want.astype(np.int64))
    assert np.array_equal(chosen, np.where(x < y, x, y))
    assert np.array_equal(mins, np.minimum(x, y))
    assert np.array_equal(maxs, np.maximum(x, y))


def test_a2b_b2a_roundtrip(parties):
    x, _ = _vectors()

    def fn(mpc):
        X, _ = _shared(mpc, x, x)
        bits = ops.a2b(mpc, X)
        # open the boolean sharing directly: every party sends its .b to prev
        tag = mpc.tag()
        mpc.channel.send(mpc.prev, tag, [bits.b])
        other = mpc.channel.recv(mpc.next, tag)[0]
        low_bit = ops.reveal(mpc, ops.b2a_bit(mpc, bits), None)
        return bits.a ^ bits.b ^ other, low_bit

    words, low = parties.run(fn)[0]
    assert np.array_equal(words.view(np.int64), x)
    assert np.array_equal(low.view(np.int64), x & 1)


def test_shuffle_is_a_secret_permutation_applied_to_all_columns(parties):
    x = np.arange(N, dtype=np.int64)

    def fn(mpc):
        X, Y = _shared(mpc, x, -x)
        SX, SY = ops.shuffle(mpc, [X, Y])
        return ops.reveal_many(mpc, [SX, SY], None)

    sx, sy = (v.view(np.int64) for v in parties.run(fn)[0])
    assert np.array_equal(np.sort(sx), x)
    assert not np.array_equal(sx, x)
    assert np.array_equal(sy, -sx)  # the same permutation on both columns


def test_dealer_outside_the_compute_parties(parties):
    """A data party that is not a compute party deals its column to the three."""
    import threading
    import time

    from executors.peer_channel import Channel, Mailbox, PeerLinks

    x, _ = _vectors()
    dealer_links = PeerLinks("dealer", parties.addresses)

    def fn(mpc):
        if mpc.me == "c0":  # the dealer runs beside the parties
            dealer = Channel("dealer", mpc.channel.query_id, dealer_links, Mailbox(), time.monotonic() + 30)
            threading.Thread(target=ops.deal_to_compute, args=(dealer, PARTIES, "deal", x.astype(np.uint64))).start()
        X = ops.receive_dealt(mpc, "dealer", "deal")
        return ops.reveal(mpc, X, None)

    results = parties.run(fn)
    dealer_links.close()
    assert all(np.array_equal(r.view(np.int64), x) for r in results)


def test_dead_peer_fails_fast_naming_it():
    from executors.peer_channel import Channel, Mailbox, PeerLinks

    links = PeerLinks("c0", {"c1": "127.0.0.1:1"})
    import time

    ch = Channel("c0", "q", links, Mailbox(), time.monotonic() + 5)
    with pytest.raises(PeerUnavailable, match="'c1'"):
        ch.send("c1", "t", [np.zeros(3, np.uint64)])
    with pytest.raises(PeerTimeout, match="'c1'"):
        Channel("c0", "q", links, Mailbox(), time.monotonic() + 0.2).recv("c1", "t")
    links.close()


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x01\x00\x00\x00", encode_arrays([np.zeros(4, np.uint64)])[:-3], b"\x01\x00\x00\x00\x02<O"],
)
def test_malformed_payload_is_a_clear_error(payload):
    with pytest.raises(MessageError):
        decode_arrays(payload)


def test_payload_roundtrip():
    arrays = [np.arange(5, dtype=np.uint64), np.array([-1, 2], dtype=np.int64), np.zeros((0,), np.uint8)]
    out = decode_arrays(encode_arrays(arrays))
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(arrays, out))
