"""Oblivious sort: secure shuffle, then quicksort with opened comparison bits.

sort_by(mpc, keys, columns, descending) sorts the rows of `keys` + `columns`
by the key columns (lexicographic, most significant first; signed int64 with
|a - b| < 2^63 between values of one key column).

Method
------
1. Tiebreak. Each row gets a secret-to-be index t = 0..n-1 (its position
   BEFORE the shuffle, a public constant shared trivially). It is the least
   significant key, so the extended keys (k_1, ..., k_m, t) are pairwise
   distinct and the sort is stable.
2. Secure shuffle of keys, tiebreak and carried columns together (3 rounds):
   row j moves to secret position pi^-1(j), pi uniform and unknown to any
   single party. After it, t is a secret.
3. Quicksort on public indices. The state is a public arrangement `perm` of
   the shuffled rows and a list of unsorted segments. Each round compares
   EVERY non-pivot element of EVERY unsorted segment with its segment's
   pivot (first element) in one batched `compare_many` (per key: lt/gt and eq;
   plus lt of the tiebreak), folds them into "element before pivot" bits with
   a log-depth AND tree, opens the bits, and partitions all segments locally
   (stable, O(n) numpy). Only public indices move; the shares are gathered
   by index (`take`) for the comparisons and once at the end.

Leakage (semi-honest, any single party)
----------------------------------------
Let rho be the fixed rank of each ORIGINAL row in the order of the extended
keys (k, t) — a total order because t is unique. The shuffled position i holds
original row pi(i), so the rank vector of the shuffled array is
sigma = rho o pi. pi is uniform and independent of the input, hence sigma is a
uniform permutation of 0..n-1 whatever the data (including duplicates). Every
opened bit is "position e before position p in sigma", and the pivots,
segments and the final arrangement are deterministic functions of sigma. So
the whole transcript is simulatable from n alone: it reveals nothing about
the values, their order, or how many are equal. The output is a fresh sharing
in sorted order.

Why not the PUBLIC post-shuffle position as tiebreak (cheaper by one lt per
comparison): then equal keys always compare in position order, so the
revealed order is no longer uniform — e.g. an all-equal column always yields
the identity (probability 1/n! for distinct keys); the transcript leaks the
duplicate structure. `unique_keys=True` drops the tiebreak when the caller
guarantees distinct keys (e.g. a unique row id is among them); with
duplicates it still sorts correctly but then leaks the tie pattern.

Rounds and traffic
------------------
shuffle 3 + per quicksort level [8 (compare_many) + ceil(log2(#key bits)) AND
rounds to fold the lexicographic bits (1 for one key with tiebreak) + 1 open]
+ 0 for the final gather. Levels = recursion depth of randomized quicksort,
O(log n) expected (about 2-4 ln n; measured ~45 for 10^5). Comparisons
~2 n ln n in total; each costs one lt + one eq per key + one lt for the
tiebreak (~27 + 10 + 27 bytes per party); the bits are packed 8 per byte for
the AND tree and the opening.
"""

from __future__ import annotations

import numpy as np

from executors.mpc.arithmetic import add_public
from executors.mpc.boolean import b_and_many, b_reveal, b_xor
from executors.mpc.compare import compare_many
from executors.mpc.context import MPC
from executors.mpc.shares import AShare, BShare, U64, take
from executors.mpc.shuffle import shuffle


# -- packed single-bit boolean shares (bit 0 of uint64 words -> 8 bits per byte) ----------


def pack_bits(x: BShare) -> BShare:
    """Bit 0 of each word, packed 8 per uint8 (XOR-linear, so local on each component)."""
    return BShare(np.packbits((x.a & 1).astype(np.uint8)), np.packbits((x.b & 1).astype(np.uint8)))


def unpack_bits(x: BShare, n: int) -> BShare:
    """Inverse of pack_bits: back to bit 0 of uint64 words."""
    return BShare(np.unpackbits(x.a, count=n).astype(U64), np.unpackbits(x.b, count=n).astype(U64))


def lex_fold(mpc: MPC, pairs: list[tuple[BShare, BShare | None]]) -> BShare:
    """Fold (before_j, equal_j) pairs, most significant first, into one "before" bit.

    The lexicographic monoid (L1, E1) o (L2, E2) = (L1 ^ E1 & L2, E1 & E2)
    (L and E exclusive, so OR is XOR) is associative: a balanced tree needs
    ceil(log2 len) AND rounds, each one batched message. E of the last pair
    may be None (never needed). Bits may be packed (any unsigned dtype).
    """
    while len(pairs) > 1:
        xs, ys, plan = [], [], []
        for k in range(0, len(pairs) - 1, 2):
            (l1, e1), (l2, e2) = pairs[k], pairs[k + 1]
            xs.append(e1)
            ys.append(l2)
            if e2 is not None:
                xs.append(e1)
                ys.append(e2)
            plan.append((l1, e2 is not None))
        outs = b_and_many(mpc, xs, ys)
        nxt, pos = [], 0
        for l1, has_e in plan:
            left = b_xor(l1, outs[pos])
            nxt.append((left, outs[pos + 1] if has_e else None))
            pos += 2 if has_e else 1
        if len(pairs) % 2:
            nxt.append(pairs[-1])
        pairs = nxt
    return pairs[0][0]


# -- sort ------------------------------------------------------------------------------------


def _norm_desc(descending, m: int) -> list[bool]:
    if isinstance(descending, (bool, np.bool_)):
        return [bool(descending)] * m
    desc = [bool(d) for d in descending]
    if len(desc) != m:
        raise ValueError(f"sort_by: {len(desc)} descending flags for {m} key columns")
    return desc


def _before_pivot(mpc: MPC, keys: list[AShare], desc: list[bool], tie: AShare | None,
                  e_idx: np.ndarray, p_idx: np.ndarray) -> np.ndarray:
    """Opened bits: does row e_idx[k] come strictly before row p_idx[k]? (8 + fold + 1 rounds)."""
    m = len(keys)
    items = []
    for j, (k, d) in enumerate(zip(keys, desc)):
        ke, kp = take(k, e_idx), take(k, p_idx)
        items.append(("gt" if d else "lt", ke, kp))
        if j < m - 1 or tie is not None:
            items.append(("eq", ke, kp))
    if tie is not None:
        items.append(("lt", take(tie, e_idx), take(tie, p_idx)))
    bits = [pack_bits(b) for b in compare_many(mpc, items)]
    pairs: list[tuple[BShare, BShare | None]] = []
    pos = 0
    for j in range(m):
        if j < m - 1 or tie is not None:
            pairs.append((bits[pos], bits[pos + 1]))
            pos += 2
        else:
            pairs.append((bits[pos], None))
            pos += 1
    if tie is not None:
        pairs.append((bits[pos], None))
    before = b_reveal(mpc, lex_fold(mpc, pairs), None)
    return np.unpackbits(before, count=len(e_idx)).astype(bool)


def quicksort_perm(mpc: MPC, keys: list[AShare], desc: list[bool], tie: AShare | None,
                   stats: dict | None = None) -> np.ndarray:
    """Public arrangement sorting (already shuffled) rows; comparison bits are opened.

    Only safe when the rows were securely shuffled and the extended keys are
    distinct (see module docstring).
    """
    n = len(keys[0])
    perm = np.arange(n, dtype=np.int64)
    seg_start = np.zeros(1 if n > 1 else 0, dtype=np.int64)
    seg_len = np.full(len(seg_start), n, dtype=np.int64)
    levels = comparisons = 0
    while len(seg_start):
        S = len(seg_start)
        total = int(seg_len.sum())
        offs = np.cumsum(seg_len) - seg_len
        seg_of = np.repeat(np.arange(S), seg_len)
        pos = np.arange(total, dtype=np.int64) - offs[seg_of] + seg_start[seg_of]
        nonpivot = pos != seg_start[seg_of]
        epos, eseg = pos[nonpivot], seg_of[nonpivot]
        e_idx = perm[epos]
        piv_rows = perm[seg_start]
        before = _before_pivot(mpc, keys, desc, tie, e_idx, piv_rows[eseg])
        levels += 1
        comparisons += len(e_idx)
        # stable partition of every segment: [before...] pivot [after...]
        n_before = np.bincount(eseg, weights=before, minlength=S).astype(np.int64)
        np_offs = offs - np.arange(S)  # first non-pivot of each segment in e_* arrays
        cb = np.concatenate(([0], np.cumsum(before)))
        ca = np.concatenate(([0], np.cumsum(~before)))
        k = np.arange(len(e_idx))
        rank_b = cb[k] - cb[np_offs[eseg]]
        rank_a = ca[k] - ca[np_offs[eseg]]
        base = seg_start[eseg]
        new_pos = np.where(before, base + rank_b, base + n_before[eseg] + 1 + rank_a)
        perm[new_pos] = e_idx
        perm[seg_start + n_before] = piv_rows
        right_len = seg_len - n_before - 1
        starts = np.concatenate((seg_start, seg_start + n_before + 1))
        lens = np.concatenate((n_before, right_len))
        keep = lens >= 2
        order = np.argsort(starts[keep], kind="stable")
        seg_start, seg_len = starts[keep][order], lens[keep][order]
    if stats is not None:
        stats.update(levels=levels, comparisons=comparisons)
    return perm


def sort_by(mpc: MPC, keys: list[AShare], columns: list[AShare], descending: bool | list[bool] = False,
            unique_keys: bool = False, stats: dict | None = None) -> tuple[list[AShare], list[AShare]]:
    """Oblivious sort of rows by key columns (lexicographic), carrying `columns` along.

    Returns (sorted keys, sorted columns) as fresh sharings. Stable (equal keys
    keep their input order) unless unique_keys=True, which skips the tiebreak
    and is only leak-free if the keys really are distinct. `stats` (optional
    dict) receives levels, comparisons and rounds.
    """
    if not keys:
        raise ValueError("sort_by needs at least one key column")
    n = len(keys[0])
    if any(len(c) != n for c in list(keys) + list(columns)):
        raise ValueError("sort_by: all key and carried columns must have the same length")
    desc = _norm_desc(descending, len(keys))
    r0 = mpc.rounds
    if n <= 1:
        copy = lambda c: AShare(c.a.copy(), c.b.copy())  # noqa: E731
        if stats is not None:
            stats.update(levels=0, comparisons=0, rounds=0)
        return [copy(k) for k in keys], [copy(c) for c in columns]
    m = len(keys)
    cols = list(keys) + list(columns)
    if not unique_keys:
        zero = AShare(np.zeros(n, U64), np.zeros(n, U64))
        cols.append(add_public(mpc, zero, np.arange(n, dtype=np.int64)))
    shuffled = shuffle(mpc, cols)
    skeys = shuffled[:m]
    tie = None if unique_keys else shuffled[-1]
    perm = quicksort_perm(mpc, skeys, desc, tie, stats)
    out = [take(c, perm) for c in shuffled[:m + len(columns)]]
    if stats is not None:
        stats["rounds"] = mpc.rounds - r0
    return out[:m], out[m:]
