"""Arithmetic sharing over Z_2^64: input, reveal, linear ops, multiply, truncation.

Component convention: party i holds (x_i, x_{i+1}). Local ops act on both
components; a public constant is added to component 0 only (held by parties 0
and 2).
"""

from __future__ import annotations

import os
from collections.abc import Collection

import numpy as np

from executors.mpc.context import MPC, check_arrays
from executors.mpc.prg import PRG, bound_key
from executors.mpc.shares import AShare, U64
from executors.transport_errors import MessageError



def _u64(values) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype != np.uint64:
        arr = arr.astype(np.int64).view(np.uint64)
    return np.ascontiguousarray(arr)


# -- input ------------------------------------------------------------------------


def share_input(mpc: MPC, owner: str, values: np.ndarray | None, n: int) -> AShare:
    """A compute party inputs a column (1 round, two messages from the owner).

    Components x_o and x_{o+1} come from the owner's two pairwise PRGs (so the
    parties that hold them draw them locally); only x_{o+2} = v - x_o - x_{o+1}
    is sent, to the two parties that hold it.
    """
    o = mpc.compute.index(owner)
    i = mpc.i
    if i == o:
        v = _u64(values)
        if len(v) != n:
            raise ValueError(f"share_input: {len(v)} values given but n={n}")
        x_o = mpc.prg(o).words(n)
        x_o1 = mpc.prg(o + 1).words(n)
        x_o2 = v - x_o - x_o1
        mpc.exchange({mpc.party(o + 1): [x_o2], mpc.party(o + 2): [x_o2]}, [])
        return AShare(x_o, x_o1)
    if i == (o + 1) % 3:  # holds (x_{o+1}, x_{o+2})
        x_o1 = mpc.prg(o + 1).words(n)
        got = mpc.exchange({}, [owner])[owner]
        (x_o2,) = check_arrays(got, [((n,), U64)], owner)
        return AShare(x_o1, x_o2)
    x_o = mpc.prg(o).words(n)  # i == o+2: holds (x_{o+2}, x_o)
    got = mpc.exchange({}, [owner])[owner]
    (x_o2,) = check_arrays(got, [((n,), U64)], owner)
    return AShare(x_o2, x_o)


def deal_to_compute(channel, compute, tag: str, values_u64: np.ndarray) -> None:
    """A NON-compute data party secret-shares a column to the three compute parties.

    x_0 and x_1 are expanded from fresh seeds (bound to the query's agreed plan), so only
    x_2 travels as data: party 0 gets (seed0, seed1), party 1 gets (seed1, x_2), party 2
    gets (x_2, seed0). The receivers check the length against the plan (receive_dealt).
    """
    if not isinstance(values_u64, np.ndarray) or values_u64.ndim != 1:
        raise ValueError(f"deal_to_compute({tag!r}) needs a 1-D array of values, got {type(values_u64).__name__}")
    v = _u64(values_u64)
    n = len(v)
    s0, s1 = os.urandom(16), os.urandom(16)
    x0, x1 = PRG(bound_key(s0, channel.binding)).words(n), PRG(bound_key(s1, channel.binding)).words(n)
    x2 = v - x0 - x1
    size = np.array([n], dtype=U64)
    seed = lambda s: np.frombuffer(s, dtype=np.uint8)  # noqa: E731
    channel.send(compute[0], tag, [size, seed(s0), seed(s1)])
    channel.send(compute[1], tag, [size, seed(s1), x2])
    channel.send(compute[2], tag, [size, x2, seed(s0)])


def receive_dealt(mpc: MPC, owner: str, tag: str, n: int) -> AShare:
    """The compute-party side of deal_to_compute (no round counted: the dealer is outside the
    lockstep). `n` is the number of values the plan expects (rows announced × words per row):
    a dealer that claims another count is refused before anything is expanded or allocated."""
    got = mpc.channel.recv(owner, tag)
    if len(got) != 3 or got[0].dtype != U64 or got[0].shape != (1,):
        raise MessageError(f"party '{owner}' sent a malformed dealt column for {tag!r}")
    if int(got[0][0]) != n:
        raise MessageError(f"party '{owner}' dealt {int(got[0][0])} values for {tag!r} where the plan expects {n}; "
                           "refused (is it running the same plan and data it announced?)")

    def part(arr: np.ndarray) -> np.ndarray:
        if arr.dtype == np.uint8 and arr.shape == (16,):
            return PRG(bound_key(arr.tobytes(), mpc.channel.binding)).words(n)
        if arr.dtype == U64 and arr.shape == (n,):
            return arr
        raise MessageError(f"party '{owner}' sent a malformed dealt column for {tag!r}")

    return AShare(part(got[1]), part(got[2]))


# -- output -------------------------------------------------------------------------


def reveal_many(mpc: MPC, xs: list[AShare], to: str | Collection[str] | None,
                senders: Collection[str] | None = None) -> list[np.ndarray] | None:
    """Open several columns in one round: to all (to=None), to one or to two compute parties.

    Party t lacks x_{t+2}, which parties t+1 (second component) and t+2 (first) both hold; the
    one that sends it is chosen among `senders` (default: all), so that a party outside both
    `to` and `senders` takes no part and may pass no shares (it cannot tell which rows are opened).
    Parties outside `to` get None."""
    names = mpc.compute
    receivers = set(range(3)) if to is None else {names.index(p) for p in ([to] if isinstance(to, str) else to)}
    allowed = set(range(3)) if senders is None else {names.index(p) for p in senders}

    def sender(t: int) -> tuple[int, int]:
        for d in (1, 2):
            if (t + d) % 3 in allowed:
                return (t + d) % 3, d
        raise ValueError(f"no compute party may send {names[t]} its missing component")

    i = mpc.i
    sends = {}
    for t in sorted(receivers):
        s, d = sender(t)
        if s == i:
            sends[names[t]] = [x.b if d == 1 else x.a for x in xs]
    frm = names[sender(i)[0]] if i in receivers else None
    got = mpc.exchange(sends, [frm] if frm else [])
    if frm is None:
        return None
    check_arrays(got[frm], [(x.a.shape, U64) for x in xs], frm)
    return [x.a + x.b + g for x, g in zip(xs, got[frm])]


def reveal(mpc: MPC, x: AShare, to: str | None) -> np.ndarray | None:
    """Open one column (1 round); parties other than `to` get None."""
    out = reveal_many(mpc, [x], to)
    return None if out is None else out[0]


def reveal_to_outsider(mpc: MPC, x: AShare, to: str, tag: str, senders: tuple[str, str] | None = None) -> None:
    """Send this party's part of x to a result receiver that does not compute: each compute
    party its first component; or, from two `senders` only (the third may hold no shares), the
    first the sum of its two components and the second the component the first lacks."""
    if senders is None:
        mpc.channel.send(to, tag, [x.a])
        return
    if mpc.me not in senders:
        return
    first = mpc.compute.index(senders[0])
    if mpc.i == first:
        mpc.channel.send(to, tag, [x.a + x.b])
    else:  # holds x_{first+2}: second component at first+1, first component at first+2
        mpc.channel.send(to, tag, [x.b if (mpc.i - first) % 3 == 1 else x.a])


def receive_revealed(channel, senders, tag: str) -> np.ndarray:
    """The outsider side of reveal_to_outsider: sum the parts of the compute parties that send."""
    parts = [channel.recv(p, tag) for p in senders]
    if any(len(p) != 1 or p[0].dtype != U64 or p[0].ndim != 1 for p in parts) or \
            len({p[0].shape for p in parts}) != 1:
        raise MessageError(f"compute parties sent inconsistent revealed columns for {tag!r}")
    total = parts[0][0].copy()
    for p in parts[1:]:
        total += p[0]
    return total


# -- local linear ops ----------------------------------------------------------------


def add(x: AShare, y: AShare) -> AShare:
    return AShare(x.a + y.a, x.b + y.b)


def sub(x: AShare, y: AShare) -> AShare:
    return AShare(x.a - y.a, x.b - y.b)


def neg(x: AShare) -> AShare:
    return AShare(-x.a, -x.b)  # uint64 negation wraps: two's complement


def add_public(mpc: MPC, x: AShare, c) -> AShare:
    """x + c for a public int scalar or uint64/int64 array (component 0 absorbs c)."""
    cu = np.asarray(c)
    cu = cu.astype(np.int64).view(U64) if cu.dtype != U64 else cu
    if mpc.i == 0:
        return AShare(x.a + cu, x.b.copy())
    if mpc.i == 2:
        return AShare(x.a.copy(), x.b + cu)
    return AShare(x.a.copy(), x.b.copy())


def zeros(n: int) -> AShare:
    """A public all-zero column as a (trivial) sharing: no randomness, no communication."""
    return AShare(np.zeros(n, U64), np.zeros(n, U64))


def constant(mpc: MPC, n: int, c) -> AShare:
    """A public column (int scalar or uint64/int64 array of length n) as a trivial sharing."""
    return add_public(mpc, zeros(n), c)


def mul_public(x: AShare, c) -> AShare:
    """x * c for a public int scalar or array (exact in the ring)."""
    cu = np.asarray(c)
    cu = cu.astype(np.int64).view(U64) if cu.dtype != U64 else cu
    return AShare(x.a * cu, x.b * cu)


def sum_all(x: AShare) -> AShare:
    """Sum of a whole column as a 1-element sharing (local)."""
    return AShare(np.array([x.a.sum(dtype=U64)], U64), np.array([x.b.sum(dtype=U64)], U64))


def sum_segments(x: AShare, starts: np.ndarray) -> AShare:
    """Sums of the runs of a column that begin at the public, increasing `starts` (local): a
    grouped SUM over rows already ordered by group. No runs give an empty column."""
    if len(starts) == 0:
        return zeros(0)
    return AShare(np.add.reduceat(x.a, starts), np.add.reduceat(x.b, starts))


def diff_rows(x: AShare) -> AShare:
    """Row i minus row i-1 (row 0 kept), local: the inverse of a running sum, so that
    cumsum_segments(diff_rows(x), [0]) == x and zeros between rows keep the previous value."""
    if len(x) == 0:
        return zeros(0)
    return AShare(np.diff(x.a, prepend=np.uint64(0)), np.diff(x.b, prepend=np.uint64(0)))


def cumsum_segments(x: AShare, starts: np.ndarray) -> AShare:
    """Inclusive running sums within the runs of a column that begin at the public, increasing
    `starts` (local: a sum of shares is a share of the sum)."""
    if len(x) == 0:
        return zeros(0)
    run = np.zeros(len(x), dtype=np.int64)
    run[starts[1:]] = 1
    first = starts[np.cumsum(run)]  # the first row of each row's run

    def within(c: np.ndarray) -> np.ndarray:
        total = np.cumsum(c, dtype=U64)
        return total - np.where(first > 0, total[np.maximum(first - 1, 0)], np.uint64(0))

    return AShare(within(x.a), within(x.b))


# -- multiplication --------------------------------------------------------------------


def _local_product(mpc: MPC, x: AShare, y: AShare) -> np.ndarray:
    """z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + zero-share: a 3-out-of-3 sharing of x*y."""
    z = x.a * (y.a + y.b)
    z += x.b * y.a
    z += mpc.zero_arith(len(z))
    return z


def mul_many(mpc: MPC, xs: list[AShare], ys: list[AShare]) -> list[AShare]:
    """Elementwise products of several column pairs in one round."""
    zs = [_local_product(mpc, x, y) for x, y in zip(xs, ys)]
    got = mpc.reshare_prev(zs)
    return [AShare(z, g) for z, g in zip(zs, got)]


def mul(mpc: MPC, x: AShare, y: AShare) -> AShare:
    """x * y mod 2^64 (1 round, one word per element to one peer)."""
    return mul_many(mpc, [x], [y])[0]


# -- truncation ---------------------------------------------------------------------------


def _sar(v: np.ndarray, bits: int) -> np.ndarray:
    return (v.view(np.int64) >> np.int64(bits)).view(U64)


def trunc_many(mpc: MPC, xs: list[AShare], bits: int) -> list[AShare]:
    """Probabilistic truncation x -> x / 2^bits of signed values (1 round, one message).

    ABY3-style (semi-honest): view x as the 2-out-of-2 sharing A + B with
    A = x_0 + x_1 (party 0) and B = x_2 (parties 1 and 2); shift A and B
    arithmetically; reshare with t_1 = rho (key k_1 of parties 0,1),
    t_2 = B >> d, t_0 = (A >> d) - rho, sent by party 0 to party 2.

    Error bound: the result is floor(x / 2^d) or floor(x / 2^d) - 1, except
    with probability at most (|x| + 1) / 2^64 per element (A is uniform), when
    the signed sum A + B overflows and the result is off by about 2^(64-d).
    For a fixed-point product with f fractional bits, |x| = |u*v| 2^(2f):
    with f = 20 that is |u*v| / 2^24 per element.
    """
    if not 0 < bits < 64:
        raise ValueError(f"truncation bits must be in 1..63, got {bits}")
    i = mpc.i
    if i == 0:
        rhos = [mpc.prg(1).words(len(x)) for x in xs]
        t0s = [_sar(x.a + x.b, bits) - r for x, r in zip(xs, rhos)]
        mpc.exchange({mpc.party(2): t0s}, [])
        return [AShare(t0, r) for t0, r in zip(t0s, rhos)]
    if i == 1:
        rhos = [mpc.prg(1).words(len(x)) for x in xs]
        mpc.exchange({}, [])
        return [AShare(r, _sar(x.b, bits)) for x, r in zip(xs, rhos)]
    frm = mpc.party(0)
    got = mpc.exchange({}, [frm])[frm]
    check_arrays(got, [((len(x),), U64) for x in xs], frm)
    return [AShare(_sar(x.a, bits), t0) for x, t0 in zip(xs, got)]


def trunc(mpc: MPC, x: AShare, bits: int) -> AShare:
    """Single-column truncation; see trunc_many for the error bound."""
    return trunc_many(mpc, [x], bits)[0]


def trunc_exact_many(mpc: MPC, xs: list[AShare], bits: int) -> list[AShare]:
    """Truncation without the probabilistic failure: floor(x / 2^d) or that minus 1 (2 rounds).

    Requires |x| < 2^62. With x' = x + 2^62 in [0, 2^63) and the split
    x' = A + B (A at party 0, B at parties 1, 2), the wrap of the unsigned sum
    is w = msb(A) OR msb(B) = a + b - ab, so
    x' >> d = (A >> d) + (B >> d) - w 2^(64-d) + {0, 1}.
    Round 1 (party 0 -> party 2) shares A >> d and a; round 2 multiplies a*b.
    """
    if not 0 < bits <= 62:
        raise ValueError(f"truncation bits must be in 1..62, got {bits}")
    i, d = mpc.i, np.uint64(bits)
    shifted = [add_public(mpc, x, 1 << 62) for x in xs]
    ts, as_, bs = [], [], []
    sends: list[np.ndarray] = []
    for x in shifted:
        n = len(x)
        zero = np.zeros(n, U64)
        if i == 0:
            A = x.a + x.b
            rho, rho2 = mpc.prg(1).words(n), mpc.prg(1).words(n)
            t0, a0 = (A >> d) - rho, (A >> np.uint64(63)) - rho2
            ts.append(AShare(t0, rho))
            as_.append(AShare(a0, rho2))
            bs.append(AShare(zero, zero.copy()))
            sends += [t0, a0]
        elif i == 1:
            rho, rho2 = mpc.prg(1).words(n), mpc.prg(1).words(n)
            ts.append(AShare(rho, x.b >> d))
            as_.append(AShare(rho2, zero))
            bs.append(AShare(zero.copy(), x.b >> np.uint64(63)))
        else:
            ts.append(AShare(x.a >> d, zero))
            as_.append(AShare(zero.copy(), zero.copy()))
            bs.append(AShare(x.a >> np.uint64(63), zero.copy()))
    if i == 0:
        mpc.exchange({mpc.party(2): sends}, [])
    elif i == 2:
        frm = mpc.party(0)
        got = check_arrays(mpc.exchange({}, [frm])[frm], [((len(x),), U64) for x in xs for _ in (0, 1)], frm)
        for k in range(len(xs)):
            ts[k].b, as_[k].b = got[2 * k], got[2 * k + 1]
    else:
        mpc.exchange({}, [])
    abs_ = mul_many(mpc, as_, bs)
    high = np.uint64(1) << np.uint64(64 - bits)
    out = []
    for t, a, b, ab in zip(ts, as_, bs, abs_):
        w = sub(add(a, b), ab)
        out.append(add_public(mpc, sub(t, mul_public(w, high)), -(1 << (62 - bits))))
    return out


def trunc_exact(mpc: MPC, x: AShare, bits: int) -> AShare:
    """Single-column exact truncation; see trunc_exact_many."""
    return trunc_exact_many(mpc, [x], bits)[0]


def mul_fixed(mpc: MPC, x: AShare, y: AShare, frac_bits: int, exact: bool = True) -> AShare:
    """Fixed-point product: mul then truncation.

    exact=True (default, 3 rounds) never fails for |x*y| 2^f < 2^62;
    exact=False uses the 1-round ABY3 truncation (2 rounds) with the
    probabilistic error bound of trunc_many.
    """
    prod = mul(mpc, x, y)
    return trunc_exact(mpc, prod, frac_bits) if exact else trunc(mpc, prod, frac_bits)
