"""Conversions between arithmetic and boolean sharings.

Shared trick ("split"): with replicated sharing, party 0 knows A = x_0 + x_1
and parties 1 and 2 both know B = x_2, so x = A + B is a 2-party sum whose
boolean sharing costs one one-way message (party 0 -> party 2), instead of
the 3->2 carry-save adder round of ABY3. All of A2B, MSB, equality, bit
injection and truncation build on it.
"""

from __future__ import annotations

import numpy as np

from executors.mpc.arithmetic import _local_product, mul, mul_many
from executors.mpc.boolean import b_and, b_and_many, b_xor
from executors.mpc.context import MPC, check_arrays
from executors.mpc.shares import AShare, BShare, U64

_ONE = np.uint64(1)


def split_sum(mpc: MPC, x: AShare) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(A, B) with x = A + B: A = x_0 + x_1 at party 0, B = x_2 at parties 1 and 2."""
    if mpc.i == 0:
        return x.a + x.b, None
    if mpc.i == 1:
        return None, x.b
    return None, x.a


def xor_input_prepare(mpc: MPC, A: np.ndarray | None, B: np.ndarray | None, n: int,
                      dtype=U64) -> tuple[BShare, np.ndarray | None]:
    """Boolean sharing of A ^ B (A at party 0, B at parties 1, 2; None means zero).

    Components e_0 = A ^ rho, e_1 = rho (key k_1 of parties 0 and 1), e_2 = B.
    Returns this party's share and, at party 0, the array e_0 to send to
    party 2; party 2's share is completed by `xor_input_finish`.
    """
    dt = np.dtype(dtype)
    zeros = lambda: np.zeros(n, dt)  # noqa: E731
    if mpc.i == 0:
        rho = mpc.prg(1).words(n, dt)
        e0 = rho ^ A if A is not None else rho.copy()
        return BShare(e0, rho), e0
    if mpc.i == 1:
        rho = mpc.prg(1).words(n, dt)
        return BShare(rho, B if B is not None else zeros()), None
    return BShare(B if B is not None else zeros(), zeros()), None  # .b filled on receipt


def xor_local(mpc: MPC, B: np.ndarray | None, n: int, dtype=U64) -> BShare:
    """Boolean sharing (0, 0, B) of a value B known to parties 1 and 2: no communication."""
    dt = np.dtype(dtype)
    if mpc.i == 0:
        return BShare(np.zeros(n, dt), np.zeros(n, dt))
    if mpc.i == 1:
        return BShare(np.zeros(n, dt), B)
    return BShare(B, np.zeros(n, dt))


def xor_input_finish(mpc: MPC, shares: list[BShare], received: list[np.ndarray]) -> None:
    """Party 2 stores the e_0 components it received from party 0."""
    if mpc.i == 2:
        check_arrays(received, [(s.a.shape, s.a.dtype) for s in shares], mpc.party(0))
        for s, e0 in zip(shares, received):
            s.b = e0


def xor_input_round(mpc: MPC, shares: list[BShare], outgoing: list[np.ndarray | None]) -> None:
    """The one-way round 0 -> 2 completing prepared xor-inputs."""
    if mpc.i == 0:
        mpc.exchange({mpc.party(2): outgoing}, [])
    elif mpc.i == 2:
        frm = mpc.party(0)
        xor_input_finish(mpc, shares, mpc.exchange({}, [frm])[frm])
    else:
        mpc.exchange({}, [])


def a2b(mpc: MPC, x: AShare) -> BShare:
    """Arithmetic -> boolean sharing of all 64 bits (8 rounds).

    Round 1 shares A bitwise (B needs nothing), round 2 computes generate
    G = A & B, then a Kogge–Stone parallel-prefix carry over 64-bit words
    (6 rounds, G and P updated in one batched AND per level).
    """
    n = len(x)
    A, B = split_sum(mpc, x)
    sa, out = xor_input_prepare(mpc, A, None, n)
    sb = xor_local(mpc, B, n)
    xor_input_round(mpc, [sa], [out])
    g = b_and(mpc, sa, sb)
    p = b_xor(sa, sb)
    p0 = p
    for s in (1, 2, 4, 8, 16, 32):
        sh = np.uint64(s)
        gs = BShare(g.a << sh, g.b << sh)
        if s < 32:
            x_and, p_new = b_and_many(mpc, [p, p], [gs, BShare(p.a << sh, p.b << sh)])
            g, p = b_xor(g, x_and), p_new
        else:
            g = b_xor(g, b_and(mpc, p, gs))
    return BShare(p0.a ^ (g.a << _ONE), p0.b ^ (g.b << _ONE))


def b2a_bit(mpc: MPC, bit: BShare) -> AShare:
    """Bit 0 of a boolean sharing -> arithmetic 0/1 (bit injection, 2 rounds).

    c = b_0 ^ b_1 is known to party 0, e = b_2 to parties 1 and 2, and
    c ^ e = c + e - 2ce: party 0 arithmetic-shares c (round 1), one mul (round 2).
    """
    c_arith, e_arith = _bit_parts(mpc, bit)
    ce = mul(mpc, c_arith, e_arith)
    two = np.uint64(2)
    return AShare(c_arith.a + e_arith.a - two * ce.a, c_arith.b + e_arith.b - two * ce.b)


def _bit_parts(mpc: MPC, bit: BShare) -> tuple[AShare, AShare]:
    """Arithmetic sharings of c = (b_0^b_1)&1 (round 1, 0 -> 2) and e = b_2&1 (local)."""
    c_arith, e_arith = _bit_parts_prepare(mpc, bit)
    if mpc.i == 0:
        mpc.exchange({mpc.party(2): [c_arith.a]}, [])
    elif mpc.i == 2:
        frm = mpc.party(0)
        (c0,) = check_arrays(mpc.exchange({}, [frm])[frm], [((len(bit),), U64)], frm)
        c_arith.b = c0
    else:
        mpc.exchange({}, [])
    return c_arith, e_arith


def _bit_parts_prepare(mpc: MPC, bit: BShare) -> tuple[AShare, AShare]:
    """Local half of _bit_parts; at party 0, c_arith.a is the message for party 2."""
    n = len(bit)
    z = np.zeros(n, U64)
    if mpc.i == 0:
        c = ((bit.a ^ bit.b) & 1).astype(U64)
        rho = mpc.prg(1).words(n)
        return AShare(c - rho, rho), AShare(z, z.copy())
    if mpc.i == 1:
        rho = mpc.prg(1).words(n)
        return AShare(rho, z), AShare(z.copy(), (bit.b & 1).astype(U64))
    return AShare(z, z.copy()), AShare((bit.a & 1).astype(U64), z.copy())


def mux_many(mpc: MPC, cond: BShare, xs: list[AShare], ys: list[AShare]) -> list[AShare]:
    """cond ? x : y for several columns under one condition bit (2 rounds).

    With c, e as in b2a_bit and d = x - y: cond*d = e*d + c*(d - 2ed).
    Round 1 carries both party 0's sharing of c and the resharing of the
    products e*d (party 0's predecessor is party 2, so it is one message);
    round 2 the products c*(d - 2ed).
    """
    n = len(cond)
    c_arith, e_arith = _bit_parts_prepare(mpc, cond)
    ds = [AShare(x.a - y.a, x.b - y.b) for x, y in zip(xs, ys)]
    zs = [_local_product(mpc, e_arith, d) for d in ds]
    sends = [c_arith.a] + zs if mpc.i == 0 else zs
    got = mpc.exchange({mpc.prev: sends}, [mpc.next])[mpc.next]
    extra = 1 if mpc.i == 2 else 0  # party 2 hears from party 0
    got = check_arrays(got, [((n,), U64)] * (len(zs) + extra), mpc.next)
    if extra:
        c_arith.b = got[0]
    eds = [AShare(z, g) for z, g in zip(zs, got[extra:])]
    two = np.uint64(2)
    sds = [AShare(d.a - two * ed.a, d.b - two * ed.b) for d, ed in zip(ds, eds)]
    csds = mul_many(mpc, [c_arith] * len(sds), sds)
    return [AShare(y.a + ed.a + cs.a, y.b + ed.b + cs.b) for y, ed, cs in zip(ys, eds, csds)]


def mux(mpc: MPC, cond: BShare, x: AShare, y: AShare) -> AShare:
    """cond ? x : y elementwise, cond a bit sharing (bit 0). 2 rounds."""
    return mux_many(mpc, cond, [x], [y])[0]
