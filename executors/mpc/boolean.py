"""Boolean (XOR) sharing: xor, and, not, shifts — bit-sliced over unsigned words.

The same code runs on uint64 words (64 bits per element) and on the narrower
uint32/16/8 words the comparison trees shrink to, which halves traffic per level.
"""

from __future__ import annotations

import numpy as np

from executors.mpc.context import MPC
from executors.mpc.shares import BShare

ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def b_xor(x: BShare, y: BShare) -> BShare:
    return BShare(x.a ^ y.a, x.b ^ y.b)


def b_xor_public(mpc: MPC, x: BShare, c) -> BShare:
    """x ^ c for a public constant (component 0, held by parties 0 and 2, absorbs it)."""
    c = np.asarray(c).astype(x.a.dtype)
    if mpc.i == 0:
        return BShare(x.a ^ c, x.b.copy())
    if mpc.i == 2:
        return BShare(x.a.copy(), x.b ^ c)
    return BShare(x.a.copy(), x.b.copy())


def b_not(mpc: MPC, x: BShare) -> BShare:
    """Bitwise NOT of every bit of the word."""
    return b_xor_public(mpc, x, np.iinfo(x.a.dtype).max)


def bit_not(mpc: MPC, x: BShare) -> BShare:
    """NOT of a single-bit sharing (bit 0), keeping the other bits zero."""
    return b_xor_public(mpc, x, 1)


def b_and_public(x: BShare, c) -> BShare:
    """x & c for a public mask (local)."""
    c = np.asarray(c).astype(x.a.dtype)
    return BShare(x.a & c, x.b & c)


def b_shift_left(x: BShare, k: int) -> BShare:
    s = x.a.dtype.type(k)
    return BShare(x.a << s, x.b << s)


def b_shift_right(x: BShare, k: int) -> BShare:
    """Logical right shift (unsigned words)."""
    s = x.a.dtype.type(k)
    return BShare(x.a >> s, x.b >> s)


def _local_and(mpc: MPC, x: BShare, y: BShare) -> np.ndarray:
    """z_i = x_i y_i ^ x_i y_{i+1} ^ x_{i+1} y_i ^ zero-share (3-out-of-3 sharing of x & y)."""
    z = y.a ^ y.b
    z &= x.a
    z ^= x.b & y.a
    z ^= mpc.zero_bool(len(z), z.dtype)
    return z


def b_and_many(mpc: MPC, xs: list[BShare], ys: list[BShare]) -> list[BShare]:
    """Several ANDs (any unsigned dtypes, any lengths) in one round: one message to one peer."""
    zs = [_local_and(mpc, x, y) for x, y in zip(xs, ys)]
    got = mpc.reshare_prev(zs)
    return [BShare(z, g) for z, g in zip(zs, got)]


def b_and(mpc: MPC, x: BShare, y: BShare) -> BShare:
    """x & y (1 round)."""
    return b_and_many(mpc, [x], [y])[0]


def b_or(mpc: MPC, x: BShare, y: BShare) -> BShare:
    """x | y = x ^ y ^ (x & y) (1 round)."""
    return b_xor(b_xor(x, y), b_and(mpc, x, y))


def b_reveal(mpc: MPC, x: BShare, to: str | None) -> np.ndarray | None:
    """Open a boolean sharing (1 round), to all or to one compute party; others get None."""
    from executors.mpc.context import check_arrays

    if to is None:
        got = mpc.exchange({mpc.next: [x.a]}, [mpc.prev])[mpc.prev]
        (g,) = check_arrays(got, [(x.a.shape, x.a.dtype)], mpc.prev)
        return x.a ^ x.b ^ g
    t = mpc.compute.index(to)
    if mpc.i == (t + 1) % 3:
        mpc.exchange({to: [x.b]}, [])
        return None
    if mpc.i == t:
        frm = mpc.party(t + 1)
        (g,) = check_arrays(mpc.exchange({}, [frm])[frm], [(x.a.shape, x.a.dtype)], frm)
        return x.a ^ x.b ^ g
    mpc.exchange({}, [])
    return None
