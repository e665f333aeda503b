"""3-party replicated secret sharing over Z_2^64 (semi-honest, honest majority).

Party i of the three compute parties holds the pair (x_i, x_{i+1}) of
x = x_0 + x_1 + x_2 (arithmetic, mod 2^64 — numpy uint64 wraps for free) or
x = x_0 ^ x_1 ^ x_2 (boolean, 64 bits per word). Every operation works on
whole columns; each communication step is one message per peer ("round").

Randomness: per query, party i draws a fresh AES key k_i and sends it to
party i-1, so party i holds k_i and k_{i+1}; the pair (i, i+1) shares k_{i+1}.
AES-CTR streams of those keys give zero-sharings, shared masks and shared
permutations without communication.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

U64 = np.uint64
MASK_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


class PRG:
    """AES-128-CTR keystream as uint64 words; both holders of a key draw in lockstep."""

    def __init__(self, key: bytes):
        self._enc = Cipher(algorithms.AES(key), modes.CTR(b"\0" * 16)).encryptor()

    def words(self, n: int) -> np.ndarray:
        return np.frombuffer(self._enc.update(b"\0" * (8 * n)), dtype=U64).copy() if n else np.zeros(0, U64)

    def permutation(self, n: int) -> np.ndarray:
        return np.argsort(self.words(n), kind="stable")


def private_prg() -> PRG:
    return PRG(os.urandom(16))


@dataclass
class AShare:
    """This party's pair of an arithmetic sharing."""

    a: np.ndarray  # x_i
    b: np.ndarray  # x_{i+1}

    def __len__(self) -> int:
        return len(self.a)


@dataclass
class BShare:
    """This party's pair of a boolean (XOR) sharing, 64 bits per word."""

    a: np.ndarray
    b: np.ndarray

    def __len__(self) -> int:
        return len(self.a)


class MPC:
    """Per-query context of one compute party."""

    def __init__(self, channel, compute: tuple[str, str, str]):
        self.channel = channel
        self.compute = tuple(compute)
        self.me = channel.me
        self.i = self.compute.index(self.me)
        self.prev = self.compute[(self.i - 1) % 3]
        self.next = self.compute[(self.i + 1) % 3]
        self.rounds = 0
        self._step = 0
        self.own: PRG | None = None  # k_i, shared with prev
        self.nxt: PRG | None = None  # k_{i+1}, shared with next

    def setup(self) -> None:
        key = os.urandom(16)
        self.channel.send(self.prev, "keys", [np.frombuffer(key, dtype=np.uint8)])
        other = self.channel.recv(self.next, "keys")[0].tobytes()
        self.own, self.nxt = PRG(key), PRG(other)
        self.rounds += 1

    def tag(self) -> str:
        self._step += 1
        return f"r{self._step}"

    def party(self, k: int) -> str:
        return self.compute[k % 3]

    def exchange_prev(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Send to prev, receive the same-shaped message from next: the resharing round."""
        tag = self.tag()
        self.channel.send(self.prev, tag, arrays)
        self.rounds += 1
        return self.channel.recv(self.next, tag)

    def zero_arith(self, n: int) -> np.ndarray:
        return self.own.words(n) - self.nxt.words(n)

    def zero_bool(self, n: int) -> np.ndarray:
        return self.own.words(n) ^ self.nxt.words(n)


# -- layout helpers (local) -------------------------------------------------


def concat(xs: list[AShare]) -> AShare:
    cls = type(xs[0]) if xs else AShare
    if not xs:
        return AShare(np.zeros(0, U64), np.zeros(0, U64))
    return cls(np.concatenate([x.a for x in xs]), np.concatenate([x.b for x in xs]))


def take(x: AShare, idx: np.ndarray) -> AShare:
    return type(x)(x.a[idx], x.b[idx])


def slice_(x: AShare, start: int, stop: int) -> AShare:
    return type(x)(x.a[start:stop].copy(), x.b[start:stop].copy())


def reduceat_sum(x: AShare, starts: np.ndarray) -> AShare:
    return AShare(np.add.reduceat(x.a, starts), np.add.reduceat(x.b, starts))


def _stack(xs: list) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([x.a for x in xs]), np.concatenate([x.b for x in xs])


def _split(arr: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    return np.split(arr, np.cumsum(lengths)[:-1]) if lengths else []


# -- input and output -------------------------------------------------------


def share_input(mpc: MPC, owner: str, values: np.ndarray | None, n: int) -> AShare:
    """Owner (a compute party j) shares n words: x_j, x_{j+1} from PRGs, x_{j+2} sent."""
    j = mpc.compute.index(owner)
    tag = mpc.tag()
    mpc.rounds += 1
    if mpc.i == j:
        xj, xj1 = mpc.own.words(n), mpc.nxt.words(n)
        rest = np.asarray(values, dtype=U64) - xj - xj1
        mpc.channel.send(mpc.next, tag, [rest])
        mpc.channel.send(mpc.prev, tag, [rest])
        return AShare(xj, xj1)
    if mpc.i == (j + 1) % 3:  # holds (x_{j+1}, x_{j+2}); k_{j+1} is its own key
        return AShare(mpc.own.words(n), mpc.channel.recv(owner, tag)[0])
    # party j-1 holds (x_{j-1}, x_j) = (x_{j+2}, x_j); k_j is its next key
    return AShare(mpc.channel.recv(owner, tag)[0], mpc.nxt.words(n))


def deal_to_compute(channel, compute, tag: str, values: np.ndarray) -> None:
    """A data party outside the compute parties splits its column into three shares."""
    prg = private_prg()
    x = np.asarray(values, dtype=U64)
    s0, s1 = prg.words(len(x)), prg.words(len(x))
    parts = [s0, s1, x - s0 - s1]
    for i, party in enumerate(compute):
        channel.send(party, tag, [np.array([len(x)], dtype=np.int64), parts[i], parts[(i + 1) % 3]])


def receive_dealt(mpc: MPC, owner: str, tag: str) -> AShare:
    _, a, b = mpc.channel.recv(owner, tag)
    if len(a) != len(b):
        from executors.peer_channel import MessageError

        raise MessageError(f"party '{owner}' sent inconsistent shares")
    return AShare(a, b)


def reveal_many(mpc: MPC, xs: list[AShare], to: str | None) -> list[np.ndarray] | None:
    """Open several columns in one round, to every compute party (to=None) or to one."""
    lengths = [len(x) for x in xs]
    a, b = _stack(xs) if xs else (np.zeros(0, U64), np.zeros(0, U64))
    tag = mpc.tag()
    mpc.rounds += 1
    if to is None:
        mpc.channel.send(mpc.prev, tag, [b])
        missing = mpc.channel.recv(mpc.next, tag)[0]
        return _split(a + b + missing, lengths)
    t = mpc.compute.index(to)
    if mpc.i == (t + 1) % 3:
        mpc.channel.send(to, tag, [b])
    if mpc.i == t:
        missing = mpc.channel.recv(mpc.party(t + 1), tag)[0]
        return _split(a + b + missing, lengths)
    return None


def reveal(mpc: MPC, x: AShare, to: str | None) -> np.ndarray | None:
    out = reveal_many(mpc, [x], to)
    return None if out is None else out[0]


def reveal_many_to_outsider(mpc: MPC, xs: list[AShare], to: str, tag: str) -> None:
    a = np.concatenate([x.a for x in xs]) if xs else np.zeros(0, U64)
    mpc.channel.send(to, tag, [np.array([len(x) for x in xs], dtype=np.int64), a])


def receive_revealed_many(channel, compute, tag: str) -> list[np.ndarray]:
    total = None
    lengths = None
    for party in compute:
        lens, part = channel.recv(party, tag)
        total = part if total is None else total + part
        lengths = lens.tolist()
    return _split(total, lengths)


# -- arithmetic ---------------------------------------------------------------


def add(x: AShare, y: AShare) -> AShare:
    return AShare(x.a + y.a, x.b + y.b)


def sub(x: AShare, y: AShare) -> AShare:
    return AShare(x.a - y.a, x.b - y.b)


def neg(x: AShare) -> AShare:
    return AShare(-x.a, -x.b)


def add_public(mpc: MPC, x: AShare, c) -> AShare:
    """x + c: component 0 carries the constant (held by parties 0 and 2)."""
    c = np.asarray(c, dtype=np.int64).astype(U64) if not isinstance(c, np.ndarray) else c.astype(U64)
    a, b = x.a.copy(), x.b.copy()
    if mpc.i == 0:
        a = a + c
    if mpc.i == 2:
        b = b + c
    return AShare(a, b)


def mul_public(x: AShare, c) -> AShare:
    c = np.asarray(c, dtype=np.int64).astype(U64)
    return AShare(x.a * c, x.b * c)


def mul_many(mpc: MPC, xs: list[AShare], ys: list[AShare]) -> list[AShare]:
    """Elementwise products of several pairs in one round."""
    if not xs:
        return []
    lengths = [len(x) for x in xs]
    xa, xb = _stack(xs)
    ya, yb = _stack(ys)
    z = xa * ya + xa * yb + xb * ya + mpc.zero_arith(len(xa))
    other = mpc.exchange_prev([z])[0]
    return [AShare(a, b) for a, b in zip(_split(z, lengths), _split(other, lengths))]


def mul(mpc: MPC, x: AShare, y: AShare) -> AShare:
    return mul_many(mpc, [x], [y])[0]


def trunc(mpc: MPC, x: AShare, bits: int) -> AShare:
    """Divide by 2^bits (fixed point), ABY3's semi-honest 3-party method; one round.

    Parties 0 and 1 view x as the 2-out-of-2 sharing (x_0 + x_1, x_2) and shift
    locally; the result is exact up to 1 unit in the last place except with
    probability about |x| / 2^63 per element.
    """
    n = len(x)
    tag = mpc.tag()
    mpc.rounds += 1
    if mpc.i == 0:
        a_shift = ((x.a + x.b).view(np.int64) >> bits).view(U64)
        y0 = mpc.own.words(n)  # k_0 shared with party 2
        y1 = a_shift - y0
        mpc.channel.send(mpc.compute[1], tag, [y1])
        return AShare(y0, y1)
    if mpc.i == 1:
        b_shift = (-((-x.b).view(np.int64) >> bits)).view(U64)
        y1 = mpc.channel.recv(mpc.compute[0], tag)[0]
        return AShare(y1, b_shift)
    b_shift = (-((-x.a).view(np.int64) >> bits)).view(U64)
    return AShare(b_shift, mpc.nxt.words(n))


# -- boolean ----------------------------------------------------------------


def b_xor(x: BShare, y: BShare) -> BShare:
    return BShare(x.a ^ y.a, x.b ^ y.b)


def b_not(mpc: MPC, x: BShare) -> BShare:
    a, b = x.a.copy(), x.b.copy()
    if mpc.i == 0:
        a ^= MASK_ALL
    if mpc.i == 2:
        b ^= MASK_ALL
    return BShare(a, b)


def b_shift_left(x: BShare, k: int) -> BShare:
    return BShare(x.a << U64(k), x.b << U64(k))


def b_shift_right(x: BShare, k: int) -> BShare:
    return BShare(x.a >> U64(k), x.b >> U64(k))


def b_and_many(mpc: MPC, xs: list[BShare], ys: list[BShare]) -> list[BShare]:
    if not xs:
        return []
    lengths = [len(x) for x in xs]
    xa, xb = _stack(xs)
    ya, yb = _stack(ys)
    z = (xa & ya) ^ (xa & yb) ^ (xb & ya) ^ mpc.zero_bool(len(xa))
    other = mpc.exchange_prev([z])[0]
    return [BShare(a, b) for a, b in zip(_split(z, lengths), _split(other, lengths))]


def b_and(mpc: MPC, x: BShare, y: BShare) -> BShare:
    return b_and_many(mpc, [x], [y])[0]


# -- conversions ----------------------------------------------------------------


def _component(mpc: MPC, x: AShare | BShare, k: int) -> BShare:
    """Boolean sharing of the single share x_k (known to parties k and k-1), no communication."""
    zero = np.zeros(len(x), U64)
    a = x.a if mpc.i == k else zero
    b = x.b if (mpc.i + 1) % 3 == k else zero
    return BShare(a, b)


def a2b(mpc: MPC, x: AShare) -> BShare:
    """Arithmetic → boolean: a carry-save adder (1 round) then a Kogge–Stone adder (7 rounds)."""
    c0, c1, c2 = (_component(mpc, x, k) for k in range(3))
    # carry-save: s = c0^c1^c2, carry = maj(c0,c1,c2) = ((c0^c2)&(c1^c2))^c2
    s = b_xor(b_xor(c0, c1), c2)
    maj = b_xor(b_and(mpc, b_xor(c0, c2), b_xor(c1, c2)), c2)
    return add_boolean(mpc, s, b_shift_left(maj, 1))


def add_boolean(mpc: MPC, x: BShare, y: BShare) -> BShare:
    """x + y mod 2^64 on boolean shares (parallel prefix, log2(64) levels)."""
    p = b_xor(x, y)
    g = b_and(mpc, x, y)
    p_run = p
    for k in (1, 2, 4, 8, 16, 32):
        g_shift, p_shift = b_shift_left(g, k), b_shift_left(p_run, k)
        if k == 32:
            (t,) = b_and_many(mpc, [p_run], [g_shift])
            g = b_xor(g, t)
        else:
            t, p_run = b_and_many(mpc, [p_run, p_run], [g_shift, p_shift])
            g = b_xor(g, t)
    return b_xor(p, b_shift_left(g, 1))


def msb(mpc: MPC, x: AShare) -> BShare:
    """Sign bit of x (as bit 0 of a boolean sharing)."""
    bits = a2b(mpc, x)
    return b_shift_right(bits, 63)


def b2a_bit(mpc: MPC, bit: BShare) -> AShare:
    """Bit 0 of a boolean sharing → arithmetic 0/1 (bit injection; 2 rounds)."""
    one = U64(1)
    comps = []
    for k in range(3):
        c = _component(mpc, BShare(bit.a & one, bit.b & one), k)
        comps.append(AShare(c.a, c.b))
    t01 = mul(mpc, comps[0], comps[1])
    t = sub(add(comps[0], comps[1]), mul_public(t01, 2))
    t2 = mul(mpc, t, comps[2])
    return sub(add(t, comps[2]), mul_public(t2, 2))


# -- comparison -----------------------------------------------------------------


def _as_share(mpc: MPC, y, like: AShare) -> AShare:
    if isinstance(y, AShare):
        return y
    zero = AShare(np.zeros(len(like), U64), np.zeros(len(like), U64))
    return add_public(mpc, zero, np.broadcast_to(np.asarray(y, dtype=np.int64), (len(like),)))


def lt(mpc: MPC, x: AShare, y) -> BShare:
    """x < y for signed values with |x - y| < 2^63."""
    return msb(mpc, sub(x, _as_share(mpc, y, x)))


def gt(mpc: MPC, x: AShare, y) -> BShare:
    return msb(mpc, sub(_as_share(mpc, y, x), x))


def le(mpc: MPC, x: AShare, y) -> BShare:
    return b_xor_public(mpc, gt(mpc, x, y), 1)


def ge(mpc: MPC, x: AShare, y) -> BShare:
    return b_xor_public(mpc, lt(mpc, x, y), 1)


def b_xor_public(mpc: MPC, x: BShare, c: int) -> BShare:
    a, b = x.a.copy(), x.b.copy()
    if mpc.i == 0:
        a ^= U64(c)
    if mpc.i == 2:
        b ^= U64(c)
    return BShare(a, b)


def eq(mpc: MPC, x: AShare, y) -> BShare:
    """x == y: all 64 bits of x - y are zero (A2B, then an AND tree of depth 6)."""
    z = b_not(mpc, a2b(mpc, sub(x, _as_share(mpc, y, x))))
    for k in (32, 16, 8, 4, 2, 1):
        z = b_and(mpc, z, b_shift_right(z, k))
    return BShare(z.a & U64(1), z.b & U64(1))


def ne(mpc: MPC, x: AShare, y) -> BShare:
    return b_xor_public(mpc, eq(mpc, x, y), 1)


def mux(mpc: MPC, cond: BShare, x: AShare, y: AShare) -> AShare:
    """cond ? x : y."""
    c = b2a_bit(mpc, cond)
    return add(y, mul(mpc, c, sub(x, y)))


def greater_than_zero(mpc: MPC, x: AShare) -> AShare:
    """Arithmetic 0/1 sharing of (x > 0)."""
    return b2a_bit(mpc, gt(mpc, x, 0))


def extreme_many(mpc: MPC, xs: list[AShare], ys: list[AShare], hows: list[str]) -> list[AShare]:
    """Elementwise min or max of several column pairs, batched into one comparison."""
    if not xs:
        return []
    lengths = [len(x) for x in xs]
    xa, xb = _stack(xs)
    ya, yb = _stack(ys)
    # for max, compare the other way round: max(x, y) = x if y < x
    sign = np.concatenate([np.full(n, 1 if h == "min" else -1, dtype=np.int64) for n, h in zip(lengths, hows)]).astype(U64)
    x, y = AShare(xa, xb), AShare(ya, yb)
    d = AShare((x.a - y.a) * sign, (x.b - y.b) * sign)  # (x - y) for min, (y - x) for max
    pick_x = msb(mpc, d)  # min: x < y; max: y < x
    out = mux(mpc, pick_x, x, y)
    return [AShare(a, b) for a, b in zip(_split(out.a, lengths), _split(out.b, lengths))]


# -- shuffle --------------------------------------------------------------------


def shuffle(mpc: MPC, columns: list[AShare]) -> list[AShare]:
    """Apply one secret permutation to all columns: three reshare passes, each
    permutation known to exactly two parties, so no single party knows the composition."""
    if not columns:
        return []
    n = len(columns[0])
    a = np.stack([c.a for c in columns])
    b = np.stack([c.b for c in columns])
    for j in range(3):
        a, b = _shuffle_pass(mpc, j, a, b, n)
    return [AShare(a[k].copy(), b[k].copy()) for k in range(len(columns))]


def _shuffle_pass(mpc: MPC, j: int, a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair (j, j+1) permutes with their shared key k_{j+1}; party j+2 only receives."""
    tag = mpc.tag()
    mpc.rounds += 1
    shape = a.shape
    p, q, r = j, (j + 1) % 3, (j + 2) % 3
    if mpc.i == p:  # holds (x_j, x_{j+1}); k_{j+1} is its next key
        prg = mpc.nxt
        mask = prg.words(a.size).reshape(shape)
        perm = prg.permutation(n)
        fresh = prg.words(a.size).reshape(shape)
        masked = (a + b + mask)[:, perm]
        y_j = masked - fresh
        mpc.channel.send(mpc.party(r), tag, [y_j])
        return y_j, fresh
    if mpc.i == q:  # holds (x_{j+1}, x_{j+2}); k_{j+1} is its own key
        prg = mpc.own
        mask = prg.words(a.size).reshape(shape)
        perm = prg.permutation(n)
        fresh = prg.words(a.size).reshape(shape)
        y_j2 = (b - mask)[:, perm]
        mpc.channel.send(mpc.party(r), tag, [y_j2])
        return fresh, y_j2
    # party j+2 receives (y_{j+2}, y_j)
    y_j2 = mpc.channel.recv(mpc.party(q), tag)[0]
    y_j = mpc.channel.recv(mpc.party(p), tag)[0]
    return y_j2, y_j
