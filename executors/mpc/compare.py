"""Comparisons of signed ring values: lt, le, gt, ge, eq, ne, min/max.

Inputs are signed int64 in the ring and must satisfy |x - y| < 2^63 (else
x - y wraps and the sign is wrong); comparing with a public value has the
same condition. Results are single-bit boolean sharings (bit 0).

Both kinds reduce to a 2-party sum z = A + B (see convert.split_sum):
- lt: the sign bit of z = A + B is a_63 ^ b_63 ^ carry-into-bit-63. The carry
  is a prefix over (generate, propagate) pairs; the bits of A and B are first
  permuted locally (bit-reversed index order) so each tree level combines the
  high and low half of a word: words shrink 64 -> 32 -> 16 -> 8 bits, then
  within the byte. 1 + 1 + 6 = 8 rounds, ~27 bytes per element per party.
- eq: z = 0  <=>  A = -B, i.e. all bits of A ^ -B are zero: one sharing
  round, then an AND tree halving the word: 1 + 6 = 7 rounds, ~10 bytes/elem.
Many comparisons run side by side in the same rounds (compare_many).
"""

from __future__ import annotations

from typing import Generator

import numpy as np

from executors.mpc.arithmetic import add_public, sub
from executors.mpc.boolean import b_and_many, b_xor_public
from executors.mpc.context import MPC
from executors.mpc.convert import mux_many, split_sum, xor_input_prepare, xor_input_round, xor_local
from executors.mpc.shares import AShare, BShare, U64

U32, U16, U8 = np.uint32, np.uint16, np.uint8
BIT63 = np.uint64(1 << 63)
LOW63 = np.uint64((1 << 63) - 1)

# -- local bit permutation -----------------------------------------------------------

_DELTA_SWAPS = (  # (shift, mask): bits under mask swap with bits `shift` higher
    (3, 0x0A0A0A0A0A0A0A0A),   # rev3 of the bit index inside each byte (bits 1<->4, 3<->6)
    (24, 0x00000000FF00FF00),  # rev3 of the byte index (bytes 1<->4, 3<->6)
    (7, 0x00AA00AA00AA00AA),   # then transpose the 8x8 bit matrix (bytes x bits)
    (14, 0x0000CCCC0000CCCC),
    (28, 0x00000000F0F0F0F0),
)


def bitrev_index_perm(v: np.ndarray) -> np.ndarray:
    """Move bit rev6(p) of each uint64 to position p (rev6 reverses a 6-bit index).

    Writing p = 8*byte + bit, rev6 swaps the roles of byte and bit index and
    reverses each 3-bit part: rev3 inside bytes, rev3 of the byte order, then
    an 8x8 bit transpose. All five steps are delta swaps on whole words.
    """
    x = np.array(v, dtype=np.uint64, copy=True)
    t = np.empty_like(x)
    for shift, mask in _DELTA_SWAPS:
        s, m = np.uint64(shift), np.uint64(mask)
        np.right_shift(x, s, out=t)
        t ^= x
        t &= m
        x ^= t
        np.left_shift(t, s, out=t)
        x ^= t
    return x


# -- tree protocols as generators (yield AND requests, receive results) ---------------

AndRequest = tuple[list[BShare], list[BShare]]


def _halve(x: BShare, dtype) -> tuple[BShare, BShare]:
    """(high half, low half) of each word as the next narrower dtype."""
    bits = np.dtype(dtype).itemsize * 8
    s = x.a.dtype.type(bits)
    return (BShare((x.a >> s).astype(dtype), (x.b >> s).astype(dtype)),
            BShare(x.a.astype(dtype), x.b.astype(dtype)))


def _shr(x: BShare, k: int) -> BShare:
    s = x.a.dtype.type(k)
    return BShare(x.a >> s, x.b >> s)


def _bit0_u64(x: BShare) -> BShare:
    return BShare((x.a & 1).astype(U64), (x.b & 1).astype(U64))


_HALVINGS = {64: (U32, U16, U8), 32: (U16, U8)}
"""Word sizes a carry tree halves through before it shifts within one byte."""


def _msb_tree(mpc: MPC, sa: BShare, sb: BShare, *, bits: int = 64,
              keep_propagate: bool = False) -> Generator[AndRequest, list[BShare], BShare]:
    """Sign bit of A + B mod 2^bits from bit-permuted sharings of A and B (bitrev for 64 bits,
    rev5 for 32): a Kogge-Stone carry tree, log2(bits)+1 AND rounds. With `keep_propagate` it
    returns (a_top ^ b_top ^ G, P) over the low bits instead, so a caller can add a carry-in c
    later: msb(A + B + c) = (a_top ^ b_top ^ G) ^ (P & c) (the sort's carry comparisons)."""
    word = U64 if bits == 64 else U32
    (g,) = yield [sa], [sb]
    p = BShare(sa.a ^ sb.a, sa.b ^ sb.b)
    top = BShare(p.a >> word(bits - 1), p.b >> word(bits - 1))  # a_top ^ b_top
    low, high = word((1 << (bits - 1)) - 1), word(1 << (bits - 1))
    g = BShare(g.a & low, g.b & low)  # the top position is the identity (G=0, P=1): carry INTO the top bit
    p = b_xor_public(mpc, BShare(p.a & low, p.b & low), high)
    for dtype in _HALVINGS[bits]:
        (gh, gl), (ph, pl) = _halve(g, dtype), _halve(p, dtype)
        x, p = yield [ph, ph], [gl, pl]
        g = BShare(gh.a ^ x.a, gh.b ^ x.b)
    for k in (4, 2):
        gh, ph = _shr(g, k), _shr(p, k)
        x, p = yield [ph, ph], [g, p]
        g = BShare(gh.a ^ x.a, gh.b ^ x.b)
    gh, ph = _shr(g, 1), _shr(p, 1)
    if keep_propagate:
        x, p = yield [ph, ph], [g, p]
    else:
        (x,) = yield [ph], [g]
    g = BShare(gh.a ^ x.a, gh.b ^ x.b)
    msb = BShare(top.a.astype(U64, copy=False) ^ (g.a & 1).astype(U64),
                 top.b.astype(U64, copy=False) ^ (g.b & 1).astype(U64))
    return (msb, _bit0_u64(p)) if keep_propagate else msb


def _zero_tree(mpc: MPC, e: BShare) -> Generator[AndRequest, list[BShare], BShare]:
    """1 iff all 64 bits of e are zero (6 AND rounds on shrinking words)."""
    w = b_xor_public(mpc, e, np.uint64(0xFFFFFFFFFFFFFFFF))
    for dtype in (U32, U16, U8):
        hi, lo = _halve(w, dtype)
        (w,) = yield [hi], [lo]
    for k in (4, 2, 1):
        (w,) = yield [_shr(w, k)], [w]
    return _bit0_u64(w)


def _run_trees(mpc: MPC, gens: list) -> list[BShare]:
    """Drive several tree generators in lockstep; all their ANDs of a round go in one message."""
    results: list[BShare | None] = [None] * len(gens)
    pending = {k: next(g) for k, g in enumerate(gens)}
    while pending:
        keys = list(pending)
        xs, ys, counts = [], [], []
        for k in keys:
            rx, ry = pending[k]
            xs += rx
            ys += ry
            counts.append(len(rx))
        outs = b_and_many(mpc, xs, ys)
        pos = 0
        for k, c in zip(keys, counts):
            try:
                pending[k] = gens[k].send(outs[pos:pos + c])
            except StopIteration as stop:
                results[k] = stop.value
                del pending[k]
            pos += c
    return results  # type: ignore[return-value]


# -- public API ---------------------------------------------------------------------------

_BASE = {  # op -> (kind, swap operands, negate result)
    "lt": ("msb", False, False), "gt": ("msb", True, False),
    "ge": ("msb", False, True), "le": ("msb", True, True),
    "eq": ("zero", False, False), "ne": ("zero", False, True),
}


def _as_share(mpc: MPC, y, like: AShare) -> AShare:
    if isinstance(y, AShare):
        return y
    zero = AShare(np.zeros(len(like), U64), np.zeros(len(like), U64))
    return add_public(mpc, zero, y)


def compare_many(mpc: MPC, items: list[tuple[str, AShare, object]]) -> list[BShare]:
    """Run many comparisons (op, x, y) together: 8 rounds in total whatever the mix.

    op is one of lt, le, gt, ge, eq, ne; y is an AShare or a public int/array.
    """
    preps, outs, kinds = [], [], []
    for op, x, y in items:
        if op not in _BASE:
            raise ValueError(f"unknown comparison {op!r}; expected one of {sorted(_BASE)}")
        kind, swap, _ = _BASE[op]
        ys = _as_share(mpc, y, x)
        z = sub(ys, x) if swap else sub(x, ys)
        n = len(z)
        A, B = split_sum(mpc, z)
        if kind == "msb":
            A = bitrev_index_perm(A) if A is not None else None
            B = bitrev_index_perm(B) if B is not None else None
            sa, out = xor_input_prepare(mpc, A, None, n)
            sb = xor_local(mpc, B, n)
            kinds.append(("msb", sa, sb))
        else:
            B = (-B) if B is not None else None  # z = 0 <=> A == -B <=> A ^ -B == 0
            sa, out = xor_input_prepare(mpc, A, B, n)
            kinds.append(("zero", sa, None))
        preps.append(sa)
        outs.append(out)
    xor_input_round(mpc, preps, outs)
    gens = [_msb_tree(mpc, sa, sb) if kind == "msb" else _zero_tree(mpc, sa) for kind, sa, sb in kinds]
    bits = _run_trees(mpc, gens)
    return [b_xor_public(mpc, b, 1) if _BASE[op][2] else b for (op, _, _), b in zip(items, bits)]


def msb(mpc: MPC, x: AShare) -> BShare:
    """Sign bit of x (8 rounds)."""
    return compare_many(mpc, [("lt", x, 0)])[0]


def lt(mpc: MPC, x: AShare, y) -> BShare:
    """x < y as a bit sharing (requires |x - y| < 2^63)."""
    return compare_many(mpc, [("lt", x, y)])[0]


def le(mpc: MPC, x: AShare, y) -> BShare:
    return compare_many(mpc, [("le", x, y)])[0]


def gt(mpc: MPC, x: AShare, y) -> BShare:
    return compare_many(mpc, [("gt", x, y)])[0]


def ge(mpc: MPC, x: AShare, y) -> BShare:
    return compare_many(mpc, [("ge", x, y)])[0]


def eq(mpc: MPC, x: AShare, y) -> BShare:
    """x == y as a bit sharing (7 rounds)."""
    return compare_many(mpc, [("eq", x, y)])[0]


def ne(mpc: MPC, x: AShare, y) -> BShare:
    return compare_many(mpc, [("ne", x, y)])[0]


def minimum(mpc: MPC, x: AShare, y: AShare) -> AShare:
    """Elementwise min (lt + mux: 10 rounds)."""
    return mux_many(mpc, lt(mpc, x, y), [x], [y])[0]


def maximum(mpc: MPC, x: AShare, y: AShare) -> AShare:
    """Elementwise max (lt + mux: 10 rounds)."""
    return mux_many(mpc, lt(mpc, x, y), [y], [x])[0]
