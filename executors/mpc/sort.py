"""Oblivious sort: secure shuffle, then quicksort with opened comparison bits.

sort_by(mpc, keys, columns, descending) sorts the rows of `keys` + `columns`
by the key columns (lexicographic, most significant first; signed int64 with
|a - b| < 2^63 between values of one key column).

Method
------
1. Tiebreak. Each row gets an index t = 0..n-1 (its position BEFORE the
   shuffle, a public constant shared trivially) as the least significant key,
   so the extended keys (k_1, ..., k_m, t) are pairwise distinct and the sort
   is stable.
2. Secure shuffle of keys, tiebreak and carried columns together (3 rounds).
   Afterwards t is secret: a uniformly random permutation of 0..n-1 nobody knows.
3. Comparison words (pack_words, local): descending keys become ~k; keys with
   declared bit widths and the tiebreak are packed into as few 64-bit words as
   fit, so that one signed comparison of words is the lexicographic comparison.
4. Quicksort on public indices (quicksort_perm / order_by_comparisons). The state
   is a public arrangement `perm` of the shuffled rows and the list of unsorted
   segments. Each level compares, in ONE batched comparison, every element of every
   unsorted segment with its segment's pivot, and all pairs of a small sample of
   each segment (~2 len^(1/3) elements); a child's pivot is the median of the sample
   elements that fell into it, so splits are near halves. Segments of at most
   `small` (8) elements compare all their pairs and finish at once. The per-word
   lt/eq bits are folded lexicographically, opened, and all segments are
   partitioned locally (stable, O(n) numpy). Only public indices move; the shares
   are gathered by index (`take`) for the comparisons and once at the end to
   produce the output.

Leakage (semi-honest, any single party)
----------------------------------------
Let rho be the fixed rank of each ORIGINAL row in the order of the extended
keys (k, t) — a strict total order because t is unique. The shuffled position
i holds original row pi(i), so the rank vector of the shuffled array is
sigma = rho o pi. pi is uniform and independent of the data, hence sigma is a
uniform permutation of 0..n-1 whatever the data (including duplicates). Every
opened bit is "position x before position y in sigma"; which pairs are
compared next (pivots, samples, buckets, small segments), the number of levels
and the final arrangement are deterministic functions of sigma and n. So the whole
transcript is simulatable from n alone: it reveals nothing about the values,
their order relative to the input, or how many are equal. The shares a party
sees are fresh (comparison trees, shuffle) and the output is the shuffled sharing
rearranged, i.e. uniformly random shares of the sorted rows.

Why not the PUBLIC post-shuffle position as tiebreak (it would save the
tiebreak comparison): equal keys would then always compare in
position order, so the opened order is not uniform — an all-equal column
always yields the identity arrangement (probability 1/n! with distinct keys).
The transcript would leak the duplicate structure (number and sizes of ties).
`unique_keys=True` drops the tiebreak only when the caller guarantees
distinct keys (e.g. a unique row id is a key).

Rounds and traffic
------------------
shuffle: 3 rounds. Per quicksort level: 8 (one batched comparison) +
ceil(log2 W) (fold of W comparison words; its last AND shares the opening
round) — 9 for one or two words. Levels: O(log n), measured ~24 at 10^5 and
~29 at 10^6; comparisons ~19.5 n at 10^5 and ~23 n at 10^6 (the random
dual-pivot scheme this replaced: 24 n and 30 n, ~21 and ~26-30 levels).
Per comparison and party:
- a key declared <= 63 - log2(n) bits packs with the tiebreak into one word:
  one 64-bit lt (~27 bytes);
- a full-width key + tiebreak: one 64-bit carry tree that also keeps the
  group propagate, plus one 32-bit sign tree for the tiebreak, joined by the
  carry-in trick (see _before): ~47 bytes, instead of lt + eq + lt (~64).
Opened bits travel packed 8 per byte.
"""

from __future__ import annotations

import numpy as np

from executors.mpc.arithmetic import add_public, sub
from executors.mpc.boolean import _local_and, b_and_many, b_reveal, b_xor, bit_not
from executors.mpc.compare import U32, _msb_tree, _run_trees, _zero_tree, bitrev_index_perm
from executors.mpc.convert import split_sum, xor_input_prepare, xor_input_round, xor_local
from executors.mpc.context import MPC, check_arrays
from executors.mpc.shares import AShare, BShare, U64, take
from executors.mpc.shuffle import shuffle


# -- packed single-bit boolean shares (bit 0 of uint64 words -> 8 bits per byte) ----------


def pack_bits(x: BShare) -> BShare:
    """Bit 0 of each word, packed 8 per uint8 (XOR-linear, so local on each component)."""
    return BShare(np.packbits((x.a & 1).astype(np.uint8)), np.packbits((x.b & 1).astype(np.uint8)))


def unpack_bits(x: BShare, n: int) -> BShare:
    """Inverse of pack_bits: back to bit 0 of uint64 words."""
    return BShare(np.unpackbits(x.a, count=n).astype(U64), np.unpackbits(x.b, count=n).astype(U64))


def _fold_level(mpc: MPC, pairs: list[tuple[BShare, BShare | None]]) -> list[tuple[BShare, BShare | None]]:
    """One batched AND round of the lexicographic monoid over adjacent pairs.

    (L1, E1) o (L2, E2) = (L1 ^ E1 & L2, E1 & E2): L and E are exclusive, so
    OR is XOR; the operation is associative. E may be None (not needed).
    """
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
        nxt.append((b_xor(l1, outs[pos]), outs[pos + 1] if has_e else None))
        pos += 2 if has_e else 1
    if len(pairs) % 2:
        nxt.append(pairs[-1])
    return nxt


def lex_fold(mpc: MPC, pairs: list[tuple[BShare, BShare | None]]) -> BShare:
    """Fold (before_j, equal_j) pairs, most significant first, into one shared "before" bit.

    Balanced tree: ceil(log2 len) AND rounds. Bits may be packed (any unsigned dtype).
    """
    while len(pairs) > 1:
        pairs = _fold_level(mpc, pairs)
    return pairs[0][0]


def lex_open(mpc: MPC, pairs: list[tuple[BShare, BShare | None]]) -> np.ndarray:
    """Open the folded "before" bit to all parties; the last AND shares the opening round.

    For the last step L1 ^ E1 & L2 every party forms its 3-out-of-3 share
    z_i = l1_i ^ (e1 & l2)_i, re-randomised by a fresh XOR zero-sharing (so the
    three opened z_i are uniform given the result), and sends z_i to both
    peers: one round instead of an AND round plus an opening round.
    """
    while len(pairs) > 2:
        pairs = _fold_level(mpc, pairs)
    if len(pairs) == 1:
        return b_reveal(mpc, pairs[0][0], None)
    (l1, e1), (l2, _) = pairs
    z = _local_and(mpc, e1, l2)  # includes the zero-sharing
    z ^= l1.a
    got = mpc.exchange({mpc.prev: [z], mpc.next: [z]}, [mpc.prev, mpc.next])
    (zp,) = check_arrays(got[mpc.prev], [(z.shape, z.dtype)], mpc.prev)
    (zn,) = check_arrays(got[mpc.next], [(z.shape, z.dtype)], mpc.next)
    return z ^ zp ^ zn


# -- sort ------------------------------------------------------------------------------------


def _norm_desc(descending, m: int) -> list[bool]:
    if isinstance(descending, (bool, np.bool_)):
        return [bool(descending)] * m
    desc = [bool(d) for d in descending]
    if len(desc) != m:
        raise ValueError(f"sort_by: {len(desc)} descending flags for {m} key columns")
    return desc


def pack_words(mpc: MPC, keys: list[AShare], desc: list[bool], key_bits: list[int | None] | None,
               tie: AShare | None, n: int) -> list[AShare]:
    """Ascending comparison words (most significant first) equivalent to the lexicographic key order.

    A descending key becomes ~k = -k - 1 (order reversed, differences kept).
    Keys declared narrow (key_bits[j] = b: -2^(b-1) <= k < 2^(b-1)) and the
    tiebreak (0 <= t < n) are packed greedily from the least significant end
    into one word while the total stays <= 63 bits: a lower field is offset to
    [0, 2^b), the top field stays signed, so any two words differ by < 2^63
    and one signed comparison of words = lexicographic comparison of fields.
    Local, no communication.
    """
    m = len(keys)
    bits = list(key_bits) if key_bits is not None else [None] * m
    if len(bits) != m:
        raise ValueError(f"sort_by: {len(bits)} key_bits for {m} key columns")
    fields: list[tuple[AShare, int | None, bool]] = []  # (value, bits, signed), most significant first
    for k, d, b in zip(keys, desc, bits):
        if b is not None and not 1 <= b <= 63:
            raise ValueError(f"key_bits must be in 1..63 or None, got {b}")
        v = add_public(mpc, AShare(-k.a, -k.b), -1) if d else k
        fields.append((v, b, True))
    if tie is not None:
        fields.append((tie, max(1, int(n - 1).bit_length()), False))
    words: list[AShare] = []  # least significant first
    cur: AShare | None = None
    used = 0
    for v, b, signed in reversed(fields):
        if b is None:  # a full 64-bit key is a word of its own
            if cur is not None:
                words.append(cur)
                cur, used = None, 0
            words.append(v)
            continue
        g = add_public(mpc, v, 1 << (b - 1)) if signed else v  # now in [0, 2^b)
        if cur is not None and used + b <= 63:
            sh = np.uint64(used)
            cur = AShare(cur.a + (g.a << sh), cur.b + (g.b << sh))
            used += b
        else:
            if cur is not None:
                words.append(cur)
            cur, used = g, b
    if cur is not None:
        words.append(cur)
    return words[::-1]


_REV5_SWAPS = ((15, 0x0000AAAA), (6, 0x00CC00CC))  # swap index bits 0<->4, then 1<->3


def bitrev5_index_perm(v: np.ndarray) -> np.ndarray:
    """uint32 words: move bit rev5(p) to position p (two delta swaps), as compare.bitrev_index_perm for 64."""
    x = np.array(v, dtype=U32, copy=True)
    t = np.empty_like(x)
    for shift, mask in _REV5_SWAPS:
        sh, mk = U32(shift), U32(mask)
        np.right_shift(x, sh, out=t)
        t ^= x
        t &= mk
        x ^= t
        np.left_shift(t, sh, out=t)
        x ^= t
    return x


def _before(mpc: MPC, words: list[AShare], x_idx: np.ndarray, y_idx: np.ndarray,
            tie_word: bool = False) -> np.ndarray:
    """Opened bits: does row x_idx[k] come strictly before row y_idx[k]?

    One batched comparison (8 rounds): lt and eq per word (the last word: lt
    only), then the lexicographic fold, whose last AND shares the opening
    round (ceil(log2 words) rounds in all; 1 for one or two words).

    tie_word: the last word is the bare tiebreak t (0 <= t < 2^31) after a
    full-width word K. Then (K, t) costs one 64-bit carry tree and one 32-bit
    sign tree instead of lt + eq + lt:  before = [K_x - K_y - beta < 0] with
    beta = [t_x < t_y] (K - beta < 0 iff K < 0 or K = 0 and beta), i.e.
    msb(A + (B - 1) + (1 - beta)) = (a63 ^ b'63 ^ G) ^ (P & NOT beta): the
    pair (a63 ^ b'63 ^ G, P) followed by NOT beta is exactly a lexicographic
    fold step, so the carry-in AND also shares the opening round.
    """
    n = len(x_idx)
    plain = words[:-2] if tie_word else words
    preps, outs, gens = [], [], []

    def add_tree(z: AShare, kind: str, b_minus_one: bool = False) -> None:
        A, B = split_sum(mpc, z)
        if b_minus_one and B is not None:
            B = B - np.uint64(1)
        if kind == "eq":
            sa, out = xor_input_prepare(mpc, A, (-B) if B is not None else None, n)
            gens.append(_zero_tree(mpc, sa))
        elif kind == "msb32":
            A32 = bitrev5_index_perm(A.astype(U32)) if A is not None else None
            B32 = bitrev5_index_perm(B.astype(U32)) if B is not None else None
            sa, out = xor_input_prepare(mpc, A32, None, n, U32)
            gens.append(_msb_tree(mpc, sa, xor_local(mpc, B32, n, U32), bits=32))
        else:
            A = bitrev_index_perm(A) if A is not None else None
            B = bitrev_index_perm(B) if B is not None else None
            sa, out = xor_input_prepare(mpc, A, None, n)
            gens.append(_msb_tree(mpc, sa, xor_local(mpc, B, n), keep_propagate=kind == "carry"))
        preps.append(sa)
        outs.append(out)

    for j, w in enumerate(plain):
        d = sub(take(w, x_idx), take(w, y_idx))
        add_tree(d, "lt")
        if j < len(plain) - 1 or tie_word:
            add_tree(d, "eq")
    if tie_word:
        add_tree(sub(take(words[-2], x_idx), take(words[-2], y_idx)), "carry", b_minus_one=True)
        add_tree(sub(take(words[-1], x_idx), take(words[-1], y_idx)), "msb32")
    xor_input_round(mpc, preps, outs)
    results = _run_trees(mpc, gens)
    pairs: list[tuple[BShare, BShare | None]] = []
    pos = 0
    for j in range(len(plain)):
        if j < len(plain) - 1 or tie_word:
            pairs.append((pack_bits(results[pos]), pack_bits(results[pos + 1])))
            pos += 2
        else:
            pairs.append((pack_bits(results[pos]), None))
            pos += 1
    if tie_word:
        lk, pk = results[pos]
        pairs.append((pack_bits(lk), pack_bits(pk)))
        pairs.append((pack_bits(bit_not(mpc, results[pos + 1])), None))
    return np.unpackbits(lex_open(mpc, pairs), count=n).astype(bool)


_PAIRS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _pairs(s: int) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (u < v) of range(s)."""
    if s not in _PAIRS:
        _PAIRS[s] = tuple(np.triu_indices(s, 1))
    return _PAIRS[s]


def _ranges(starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ranges [starts[j], starts[j] + lens[j]) and the segment number of each entry."""
    seg = np.repeat(np.arange(len(starts)), lens)
    offs = np.cumsum(lens) - lens
    return np.arange(int(lens.sum()), dtype=np.int64) - offs[seg] + starts[seg], seg


SAMPLE = 31
"""Most sample elements per segment and level whose pairwise order picks the children's pivots."""


def _sample_size(length: np.ndarray, cap: int) -> np.ndarray:
    """Odd sample size ~ 2 length^(1/3), at least 3, at most `cap`: all its pairs cost ~2 s^2
    comparisons, a small share of the segment's `length`, and each child's pivot is the median of
    its ~s/2 sample elements. Measured with a plaintext oracle (tests/test_mpc_sort.py): 19.8 n
    comparisons and 24 levels at n = 10^5, 22.9 n and 29 levels at 10^6 (the random dual-pivot
    scheme before: 24 n / 21 and 30 n / 26-30); c = 1 saves ~1 n more for ~4 more levels."""
    s = np.minimum((2 * np.cbrt(length.astype(np.float64))).astype(np.int64), cap)
    s -= 1 - (s & 1)  # odd
    return np.maximum(s, 3)


def quicksort_perm(mpc: MPC, words: list[AShare], small: int = 8, stats: dict | None = None,
                   tie_word: bool = False, sample: int = SAMPLE) -> np.ndarray:
    """Public arrangement sorting (already shuffled) rows; the comparison bits are opened.

    `words` are ascending comparison words (pack_words). Only safe when the rows were
    securely shuffled and the words are distinct (see module docstring)."""
    return order_by_comparisons(len(words[0]), lambda x, y: _before(mpc, words, x, y, tie_word),
                                small, stats, sample)


def order_by_comparisons(n: int, before, small: int = 8, stats: dict | None = None,
                         sample: int = SAMPLE) -> np.ndarray:
    """Quicksort on public indices: the arrangement of rows 0..n-1 that sorts them, asking
    `before(x_idx, y_idx)` (opened bits: row x before row y) once per level for a whole batch.

    Each level, in ONE batched call:
    - a segment longer than `small`: every element against the segment's pivot, and all pairs
      of a sample of ~len^(1/3) elements from its tail; it splits into (before, pivot, after),
      stable. Each child's pivot is the median of the sample elements that fell into it (their
      order is known from the pairs), so splits are near halves: ~n log2 n comparisons and
      ~log2(n / small) levels, where a random pivot costs 1.39 n log2 n and a random pair of
      pivots (dual-pivot, the previous scheme) ~1.5 n log2 n;
    - a segment of 2..small elements: all pairs are compared and it is finished at once (cuts
      the latency-bound tail of the recursion).
    The root's pivot is its first element (the shuffle made it a random one). Every choice is
    a function of n and of the bits opened so far.
    """
    perm = np.arange(n, dtype=np.int64)
    seg_start = np.zeros(1 if n > 1 else 0, dtype=np.int64)
    seg_len = np.full(len(seg_start), n, dtype=np.int64)
    seg_pivot = np.full(len(seg_start), -1, dtype=np.int64)  # position of the pivot; -1: the first
    levels = comparisons = 0
    while len(seg_start):
        big = seg_len > small
        b_start, b_len = seg_start[big], seg_len[big]
        b_piv = np.where(seg_pivot[big] >= 0, seg_pivot[big], b_start)
        nb = len(b_start)
        # (1) big segments: every other element against the pivot
        all_pos, all_seg = _ranges(b_start, b_len)
        keep = all_pos != b_piv[all_seg]
        e_pos, e_seg = all_pos[keep], all_seg[keep]
        xs, ys = [e_pos], [b_piv[e_seg]]
        # (2) their samples: the last s non-pivot positions of the segment, all pairs
        s_size = _sample_size(b_len - 1, sample)
        samples = []  # (segment numbers, positions [segments, s]) per sample size
        for sz in np.unique(s_size[s_size > 0]):
            segs = np.flatnonzero(s_size == sz)
            tail = b_start[segs, None] + b_len[segs, None] - 1 - np.arange(sz + 1)[None, ::-1]  # s + 1 last
            piv_in = tail == b_piv[segs, None]
            drop = np.where(piv_in.any(axis=1), np.argmax(piv_in, axis=1), 0)  # the pivot, else the first
            pos = tail[np.arange(sz + 1)[None, :] != drop[:, None]].reshape(len(segs), sz)
            u, v = _pairs(int(sz))
            xs.append(pos[:, u].reshape(-1))
            ys.append(pos[:, v].reshape(-1))
            samples.append((segs, pos))
        # (3) small segments: all pairs
        sm_start, sm_len = seg_start[~big], seg_len[~big]
        sm_groups = []
        for sz in np.unique(sm_len):
            st = sm_start[sm_len == sz]
            u, v = _pairs(int(sz))
            xs.append((st[:, None] + u[None, :]).reshape(-1))
            ys.append((st[:, None] + v[None, :]).reshape(-1))
            sm_groups.append((int(sz), st))
        x_pos, y_pos = np.concatenate(xs), np.concatenate(ys)
        bits = before(perm[x_pos], perm[y_pos])
        levels += 1
        comparisons += len(x_pos)
        new_perm = perm.copy()
        # decode big segments: before the pivot -> first child, stable; then the pivot; then the rest
        ne = len(e_pos)
        after = ~bits[:ne]
        n_before = np.bincount(e_seg[~after], minlength=nb).astype(np.int64)
        first_e = np.cumsum(b_len - 1) - (b_len - 1)  # index of each segment's first element in e_*
        rank = np.empty(ne, dtype=np.int64)
        for side in (False, True):
            mask = after == side
            cex = np.concatenate(([0], np.cumsum(mask)))
            rank[mask] = (cex[:-1] - cex[first_e][e_seg])[mask]
        new_pos = b_start[e_seg] + rank + np.where(after, n_before[e_seg] + 1, 0)
        new_perm[new_pos] = perm[e_pos]
        new_perm[b_start + n_before] = perm[b_piv]
        moved = np.empty(n, dtype=np.int64)  # old position -> new position (elements of big segments)
        moved[e_pos] = new_pos
        child_pivot = np.full((nb, 2), -1, dtype=np.int64)
        side_of = np.zeros(n, dtype=bool)
        side_of[e_pos] = after
        at = ne
        for segs, pos in samples:
            sz = pos.shape[1]
            u, v = _pairs(sz)
            pb = bits[at: at + len(segs) * len(u)].reshape(len(segs), len(u)).astype(np.int64)
            at += len(segs) * len(u)
            srank = np.zeros((len(segs), sz), dtype=np.int64)  # rank of each sample element in its sample
            np.add.at(srank, (slice(None), v), pb)
            np.add.at(srank, (slice(None), u), 1 - pb)
            sides = side_of[pos]
            for side in (False, True):
                member = sides == side
                count = member.sum(axis=1)
                # the member of middle rank among this side's members: sort ranks, non-members last
                key = np.where(member, srank, sz)
                order = np.argsort(key, axis=1)
                mid = np.take_along_axis(order, ((count - 1) // 2)[:, None].clip(0), axis=1)[:, 0]
                chosen = pos[np.arange(len(segs)), mid]
                child_pivot[segs, int(side)] = np.where(count > 0, moved[chosen], -1)
        # decode small segments: rank = number of segment members before the element
        for sz, st in sm_groups:
            u, v = _pairs(sz)
            pb = bits[at: at + len(st) * len(u)].reshape(len(st), len(u)).astype(np.int64)
            at += len(st) * len(u)
            r = np.zeros((len(st), sz), dtype=np.int64)
            for c in range(len(u)):  # sz <= small, so at most small^2/2 columns
                r[:, v[c]] += pb[:, c]
                r[:, u[c]] += 1 - pb[:, c]
            rows = perm[st[:, None] + np.arange(sz)[None, :]]
            placed = np.empty_like(rows)
            np.put_along_axis(placed, r, rows, axis=1)
            new_perm[(st[:, None] + np.arange(sz)[None, :]).reshape(-1)] = placed.reshape(-1)
        perm = new_perm
        # next level: both children of the big segments with >= 2 elements
        starts = np.stack([b_start, b_start + n_before + 1], axis=1).reshape(-1)
        lens = np.stack([n_before, b_len - 1 - n_before], axis=1).reshape(-1)
        pivs = child_pivot.reshape(-1)
        keep = lens >= 2
        seg_start, seg_len, seg_pivot = starts[keep], lens[keep], pivs[keep]
    if stats is not None:
        stats.update(levels=levels, comparisons=comparisons)
    return perm


def sort_by(mpc: MPC, keys: list[AShare], columns: list[AShare], descending: bool | list[bool] = False,
            key_bits: list[int | None] | None = None, unique_keys: bool = False,
            small: int = 8, stats: dict | None = None) -> tuple[list[AShare], list[AShare]]:
    """Oblivious sort of rows by key columns (lexicographic), carrying `columns` along.

    keys: signed int64 sharings, |a - b| < 2^63 within a column.
    descending: one flag for all keys or one per key.
    Returns (sorted keys, sorted columns) as fresh sharings. Stable (equal keys
    keep their input order).
    key_bits (optional, per key, None = full 64 bits): the caller GUARANTEES
    -2^(b-1) <= k < 2^(b-1) (e.g. from the column type or dictionary size);
    narrow keys and the tiebreak are then packed into fewer comparison words
    (pack_words) — a single key of <= 63 - log2(n) bits costs one lt per
    comparison instead of lt + eq + lt. Values outside the declared range give
    a wrong order and may leak; never derive key_bits from the data.
    unique_keys=True skips the tiebreak; only leak-free if the keys really are
    distinct (with duplicates it still sorts, but reveals the tie pattern).
    small: segments of at most this many rows compare all their pairs (order_by_comparisons).
    stats (optional dict) receives levels, comparisons, words and rounds.
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
    tie = None if unique_keys else shuffled[-1]
    words = pack_words(mpc, shuffled[:m], desc, key_bits, tie, n)
    tie_word = tie is not None and len(words) >= 2 and words[-1] is tie and n <= 2**31
    perm = quicksort_perm(mpc, words, small, stats, tie_word)
    out = [take(c, perm) for c in shuffled[:m + len(columns)]]
    if stats is not None:
        stats.update(rounds=mpc.rounds - r0, words=len(words))
    return out[:m], out[m:]
