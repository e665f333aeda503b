"""Secure joins: the keyed-tag join with a matcher, the oblivious PK–FK join and the
oblivious semi-join (IN / EXISTS / NOT EXISTS / NOT IN). docs/security.md ("What each mode
leaks") says what each leaks.

Tags are two-word keyed hashes of the join key (executors/codec.py keyed_tags), shared as the
columns `tag_words(name)`; `__rows` is a secret 0/1 "this row is real" column.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from executors import mpc as ops
from executors.mpc import MPC, AShare
from executors.operators.base import MemoryCheck, no_memory_limit
from executors.secure_table import SecretTable, nonzero_flags
from executors.transport_errors import MessageError
from fedsql import errors
from plan.physical import SORT_TAG_LOW_BITS, TAG_WORDS, ObliviousJoin, ObliviousSemiJoin, SecureJoin

SORT_KEY_BITS = [None, SORT_TAG_LOW_BITS, 2]
"""Sort keys of the oblivious joins: the tag's 62-bit high word (a comparison word of its own),
its low field and the 0/1 side flag (packed with the tiebreak into a second word)."""


def tag_words(name: str) -> list[str]:
    """The secret-table columns of join tag `name`, high word first (codec.keyed_tags)."""
    return [f"{name}#{k}" for k in range(TAG_WORDS)]


# -- the keyed-tag join: a matcher sees opened tags, the others gather -----------------


def secure_join(mpc: MPC, inputs: Mapping[str, SecretTable], step: SecureJoin, *,
                check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """Open both sides' tags to `step.matcher` (which knows no tag key), which sends the
    matching row pairs to the other compute parties; every party then gathers the rows.
    With `step.shuffle` both sides are shuffled first, so the matcher learns only an
    equality pattern of a random permutation."""
    left, right = inputs[step.left], inputs[step.right]
    if step.mark:
        return _semi_join_marked(mpc, left, right, step)
    lcols, rcols = list(left.secret), list(right.secret)
    lvals = [left.secret[c] for c in lcols]
    rvals = [right.secret[c] for c in rcols]
    if step.shuffle:
        lvals = ops.shuffle(mpc, lvals)
        rvals = ops.shuffle(mpc, rvals)
    lside, rside = dict(zip(lcols, lvals)), dict(zip(rcols, rvals))
    ltag, rtag = tag_words(step.left_tag), tag_words(step.right_tag)
    opened = ops.reveal_many(mpc, [lside[c] for c in ltag] + [rside[c] for c in rtag], step.matcher)
    tag = f"{step.id}.pairs"
    if mpc.me == step.matcher:
        li, ri = _matching_rows(opened[:TAG_WORDS], opened[TAG_WORDS:], step.kind)
        for p in mpc.compute:
            if p != mpc.me:
                mpc.channel.send(p, tag, [li, ri])
    else:
        li, ri = received_pairs(mpc.channel.recv(step.matcher, tag), left.n,
                                right.n if step.kind in ("inner", "left", "full") else 0, step.kind, step.matcher)
    if step.kind in ("semi", "anti", "not_in"):
        rside = {}
    check_memory(len(li), len(lside) + len(rside), "the join's output")
    out = SecretTable(n=len(li))
    for side, cols, tags, idx, padded in ((lside, lcols, ltag, li, step.kind == "full"),
                                          (rside, rcols, rtag, ri, step.kind in ("left", "full"))):
        present = (idx >= 0).astype(np.uint64)  # public: 0 where an outer join found no row on this side
        rows = np.where(idx >= 0, idx, 0)
        for c in cols:
            if c in side and c not in tags:
                got = ops.take(side[c], rows) if len(side[c]) else ops.zeros(len(rows))
                out.secret[c] = ops.mul_public(got, present) if padded else got
    if step.kind == "not_in":
        out.secret[f"__nin{step.id[2:]}"] = not_in_rule(mpc, step, right, out)
    return out


def _semi_join_marked(mpc: MPC, outer: SecretTable, inner: SecretTable, step: SecureJoin) -> SecretTable:
    """A semi/anti-join whose result size only the matcher may learn (a hidden lookup: the key's
    owner must not learn how many of the issuer's values it holds). The matcher sees both sides'
    tags — the outer rows in an order it cannot know (their owner's random order, else shuffled),
    the inner rows shuffled — and inputs "kept" as a secret 0/1 per outer row; every outer row
    stays, in its order, with `__rows` marking the kept ones."""
    otag, itag = tag_words(step.left_tag), tag_words(step.right_tag)
    own = {c: v for c, v in outer.secret.items() if c not in otag}  # freshly shared rows (no `__rows`) are real
    names = list(own)
    columns = [own[c] for c in names] + [outer.secret[c] for c in otag]
    order_of = outer.order_of if outer.order_of != step.matcher else None
    if outer.n and not order_of:
        columns = ops.shuffle(mpc, columns)
    inner_tags = [inner.secret[c] for c in itag]
    if inner.n:
        inner_tags = ops.shuffle(mpc, inner_tags)
    opened = ops.reveal_many(mpc, columns[len(names):] + inner_tags, step.matcher)
    kept = None
    if mpc.me == step.matcher:
        kept = np.zeros(outer.n, dtype=np.uint64)
        kept[_matching_rows(opened[:TAG_WORDS], opened[TAG_WORDS:], step.kind)[0]] = 1
    out = SecretTable(n=outer.n, secret=dict(zip(names, columns)), order_of=order_of)
    kept_s = ops.share_input(mpc, step.matcher, kept, outer.n)
    out.secret["__rows"] = ops.mul(mpc, out.secret["__rows"], kept_s) if "__rows" in out.secret else kept_s
    return out


def _matching_rows(lwords: list[np.ndarray], rwords: list[np.ndarray], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """At the matcher: the (left row, right row) pairs of a join of `kind`; right row -1 for a
    LEFT or FULL JOIN's unmatched left rows, left row -1 for a FULL JOIN's unmatched right rows,
    no right rows at all for semi / anti / not_in."""
    n_left = len(lwords[0])
    if kind in ("inner", "left", "full"):
        li, ri = match_tags(lwords, rwords)
        if kind in ("left", "full"):
            lonely = np.setdiff1d(np.arange(n_left, dtype=np.int64), li)
            li = np.concatenate([li, lonely])
            ri = np.concatenate([ri, np.full(len(lonely), -1, dtype=np.int64)])
        if kind == "full":  # and the right rows no left row matched, with left row -1
            lonely = np.setdiff1d(np.arange(len(rwords[0]), dtype=np.int64), ri)
            li = np.concatenate([li, np.full(len(lonely), -1, dtype=np.int64)])
            ri = np.concatenate([ri, lonely])
        return li, ri
    distinct = np.unique(np.stack(rwords, axis=1), axis=0)  # each left row matches ~one
    hit = np.zeros(n_left, dtype=bool)
    hit[match_tags(lwords, [np.ascontiguousarray(distinct[:, k]) for k in range(TAG_WORDS)])[0]] = True
    return np.flatnonzero(hit if kind == "semi" else ~hit).astype(np.int64), np.zeros(0, dtype=np.int64)


def received_pairs(arrays: list[np.ndarray], n_left: int, n_right: int, kind: str,
                   sender: str) -> tuple[np.ndarray, np.ndarray]:
    """Matching row indices from the matcher: int64, in range, as many left as right for joins."""
    ok = len(arrays) == 2 and all(a.dtype == np.int64 and a.ndim == 1 for a in arrays)
    if ok:
        li, ri = arrays
        ok = (not len(li) or (li.min() >= (-1 if kind == "full" else 0) and li.max() < n_left)) and (
            (kind in ("semi", "anti", "not_in") and len(ri) == 0)
            or (len(ri) == len(li) and (not len(ri) or (ri.min() >= (-1 if kind in ("left", "full") else 0)
                                                        and ri.max() < n_right))))
        if ok and kind == "full" and len(li):  # no pair without any real row
            ok = not bool(((li < 0) & (ri < 0)).any())
    if not ok:
        raise MessageError(f"party '{sender}' sent malformed join matches (wrong type, size or range)")
    return arrays[0], arrays[1]


def match_tags(left: list[np.ndarray], right: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) whose two-word tags are equal: the pairs of equal high words, kept when
    the low words agree too (a high-word collision only costs one extra candidate pair)."""
    li, ri = match_pairs(left[0], right[0])
    same = left[1][li] == right[1][ri]
    return li[same], ri[same]


def match_pairs(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with left[i] == right[j], vectorised (sort + searchsorted)."""
    order = np.argsort(right, kind="stable")
    sorted_right = right[order]
    lo = np.searchsorted(sorted_right, left, side="left")
    hi = np.searchsorted(sorted_right, left, side="right")
    counts = hi - lo
    total = int(counts.sum())
    li = np.repeat(np.arange(len(left), dtype=np.int64), counts)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    ri = order[np.repeat(lo, counts) + within].astype(np.int64)
    return li, ri


def not_in_rule(mpc: MPC, step: SecureJoin | ObliviousSemiJoin, right: SecretTable, out: SecretTable) -> AShare:
    """SQL's NOT IN over the unmatched rows: an empty subquery keeps every row (NULL outer
    values too); a NULL in the subquery keeps none; otherwise rows with a NULL outer value
    drop. Only "the subquery yields a NULL" is opened."""
    n = out.n
    if right.n == 0:
        return ops.constant(mpc, n, 1)
    nulls = right.secret[f"__snull{step.id[2:]}"]
    if ops.reveal(mpc, nonzero_flags(mpc, [ops.sum_all(nulls)])[0], None)[0] != 0:
        return ops.zeros(n)
    return out.secret[f"__skv{step.id[2:]}"]  # the unmatched rows' own "outer value is not NULL"


# -- oblivious joins: sort both sides together, nothing opened but sizes ----------------


def _ones_of(mpc: MPC):
    """k ↦ a public all-one column of length k, as a trivial sharing."""
    return lambda k: ops.constant(mpc, k, 1)


DUPLICATE_KEY = ("the join key declared unique (`unique` in the config) has duplicates; the oblivious join cannot "
                 "run on it — fix the declaration or use SET fedsql.mode = 'sizes'")


def oblivious_join(mpc: MPC, inputs: Mapping[str, SecretTable], step: ObliviousJoin, *,
                   check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """PK–FK join revealing only input sizes: sort the union of both sides by (tag, PK row first)
    and give every FK row the values of its key's PK row. Output: every input row, with `__rows`
    = 1 for the FK rows that found their PK row (or every FK row for LEFT JOIN).

    Two ways to give the values, chosen on the public sizes (`copy_by_differences`): a segmented
    copy scan after the sort (log2 n rounds, one multiplication per row and copied column and
    level), or sorting the PK side alone first and sharing each PK column as differences to the
    previous PK row, so that after the merge sort a local running sum does the copying — the PK
    rows keep their relative (tag) order — and one tag equality says whether a row got its own
    key's values. The second pays a sort of the PK side to save the scan: it wins when the PK
    side is small next to the FK side (Q3/Q5's lineitem joins), not when they are alike (Q12/Q14)."""
    sides = {"left": (inputs[step.left], step.left_tag), "right": (inputs[step.right], step.right_tag)}
    (pk, pk_tag), (fk, fk_tag) = sides[step.pk], sides["right" if step.pk == "left" else "left"]
    n_pk, n_fk = pk.n, fk.n
    n = n_pk + n_fk
    zeros = ops.zeros

    ones = _ones_of(mpc)
    pk_tag, fk_tag = tag_words(pk_tag), tag_words(fk_tag)
    pk_cols = [c for c in pk.secret if c not in pk_tag and c != "__rows"]
    fk_cols = [c for c in fk.secret if c not in fk_tag]
    if n == 0:
        return SecretTable(n=0, secret={c: zeros(0) for c in pk_cols + fk_cols + ["__rows"]})
    pk_key = [pk.secret[w] for w in pk_tag]
    pk_vals = [pk.secret.get("__rows", ones(n_pk))] + [pk.secret[c] for c in pk_cols]
    differences = copy_by_differences(n_pk, n_fk, len(pk_vals))
    if differences:  # the PK side in tag order, each column as differences to the previous PK row
        pk_key, pk_vals = ops.sort_by(mpc, pk_key, pk_vals, key_bits=SORT_KEY_BITS[:2])
        _refuse_repeats(mpc, ops.segment_starts(mpc, pk_key))
        copied_in = [ops.concat([ops.diff_rows(v), zeros(n_fk)]) for v in pk_key + pk_vals]
    else:
        copied_in = [ops.concat([ones(n_pk), zeros(n_fk)])] + [ops.concat([v, zeros(n_fk)]) for v in pk_vals]
    key = [ops.concat([p, fk.secret[f]]) for p, f in zip(pk_key, fk_tag)]  # high, low word
    is_pk = ops.concat([ones(n_pk), zeros(n_fk)])
    fk_in = [ops.concat([zeros(n_pk), fk.secret[c]]) for c in fk_cols]
    # PK row first within a key: sort by (tag ascending, is_pk descending)
    (*key_s, is_pk_s), carried = ops.sort_by(mpc, key + [is_pk], copied_in + fk_in, [False, False, True],
                                             key_bits=SORT_KEY_BITS)  # low word and flag pack with the tiebreak
    if differences:
        copied = [ops.cumsum_segments(c, np.zeros(1, dtype=np.int64)) for c in carried[: len(copied_in)]]
        has_pk = ops.rows_equal(mpc, copied[:len(pk_key)], key_s)  # the last PK row so far is this key's
        pk_ok, pk_values = copied[len(pk_key)], copied[len(pk_key) + 1:]
    else:  # the value at each key segment's first row, which is its PK row when it has one
        starts = ops.segment_starts(mpc, key_s)
        _refuse_repeats(mpc, starts, is_pk_s)
        copied = ops.segmented_scan(mpc, starts, carried[: len(copied_in)], ["copy"] * len(copied_in))
        has_pk, pk_ok, pk_values = copied[0], copied[1], copied[2:]
    fk_flag = ops.sub(ones(n), is_pk_s)
    fk_rows = fk.secret.get("__rows")
    if step.outer:  # every FK row stays; without a PK row its PK columns must read as NULL (zeros)
        rows = fk_flag
        if "__rows" in pk.secret:
            raise errors.InternalError("an oblivious LEFT JOIN needs a freshly shared unique side")
        if differences and pk_values:  # (the scan copied its own zero padding already)
            pk_values = ops.mul_many(mpc, pk_values, [has_pk] * len(pk_values))
    else:
        rows = ops.mul(mpc, ops.mul_many(mpc, [has_pk], [fk_flag])[0], pk_ok)
    if fk_rows is not None:
        fk_rows_s = carried[len(copied_in) + fk_cols.index("__rows")]
        rows = ops.mul(mpc, rows, fk_rows_s)
    out = SecretTable(n=n)
    for c, v in zip(pk_cols, pk_values):
        out.secret[c] = v
    for c, v in zip(fk_cols, carried[len(copied_in):]):
        if c != "__rows":
            out.secret[c] = v
    out.secret["__rows"] = rows
    return out


def copy_by_differences(n_pk: int, n_fk: int, pk_columns: int) -> bool:
    """Whether the PK side's own sort (~54 B per comparison and party, ~1.15 m log2 m comparisons)
    costs less than the copy scan it saves (log2 n levels of one 8-byte multiplication per row and
    copied column, the flags' included). Public: the sizes are public in oblivious mode."""
    n = n_pk + n_fk
    if n_pk < 2 or n < 2:
        return False
    scan = 8 * (pk_columns + 2) * n * np.log2(n)
    presort = 54 * 1.15 * n_pk * np.log2(n_pk)
    return bool(presort < scan)


def _refuse_repeats(mpc: MPC, starts: AShare, pk_flags: AShare | None = None) -> None:
    """A declared-unique key that repeats would silently drop rows: a PK row (every row when
    `pk_flags` is None) that does not start its key's segment is refused, revealing one bit
    ("some key repeats"), never the number of repeats."""
    repeats = ops.sub(_ones_of(mpc)(len(starts)), starts)
    if pk_flags is not None:
        repeats = ops.mul(mpc, pk_flags, repeats)
    if ops.reveal(mpc, nonzero_flags(mpc, [ops.sum_all(repeats)])[0], None)[0] != 0:
        raise errors.DataError(DUPLICATE_KEY)


def oblivious_semi_join(mpc: MPC, inputs: Mapping[str, SecretTable], step: ObliviousSemiJoin, *,
                        check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """IN / EXISTS / NOT EXISTS / NOT IN without a matcher: sort outer and inner tags together
    (inner rows first within a tag) and give the outer rows "an inner row has this tag" — by a
    copy scan, or, when the inner side is small (a hidden lookup's keys), by the inner tags
    sorted alone and shared as differences, a running sum and one tag equality (oblivious_join).
    Output: every input row, `__rows` = 1 for the outer rows kept."""
    outer, inner = inputs[step.outer], inputs[step.inner]
    n_in, n = inner.n, inner.n + outer.n
    zeros = ops.zeros

    ones = _ones_of(mpc)
    outer_tag, inner_tag = tag_words(step.outer_tag), tag_words(step.inner_tag)
    own = {c: v for c, v in outer.secret.items() if c not in outer_tag}
    own.setdefault("__rows", ones(outer.n))  # freshly shared rows are all real
    if outer.n == 0:
        return SecretTable(n=0, secret={c: zeros(0) for c in own})
    if step.kind in ("semi", "anti") and outer.n * n_in <= SCAN_CELLS:
        return _semi_join_by_scan(mpc, outer, inner, outer_tag, inner_tag, own, step.kind, check_memory)
    names = list(own)
    columns = [ops.concat([zeros(n_in), own[c]]) for c in names]  # inner rows carry nothing
    inner_key = [inner.secret[i] for i in inner_tag]
    differences = copy_by_differences(n_in, outer.n, 0)
    if differences:  # as oblivious_join: the inner tags sorted alone, shared as differences
        inner_key, _ = ops.sort_by(mpc, inner_key, [], key_bits=SORT_KEY_BITS[:2])
        flags = [ops.concat([ops.diff_rows(w), zeros(outer.n)]) for w in inner_key]
    else:
        flags = [ops.concat([ones(n_in), zeros(outer.n)])]
    key = [ops.concat([i, outer.secret[o]]) for i, o in zip(inner_key, outer_tag)]
    is_inner = ops.concat([ones(n_in), zeros(outer.n)])
    # inner rows first within a tag: "the tag's segment starts with an inner row" = it has a match
    (*key_s, is_inner_s), moved = ops.sort_by(mpc, key + [is_inner], flags + columns, [False, False, True],
                                              key_bits=SORT_KEY_BITS)
    if differences:  # the last inner tag so far is this row's own
        last_inner = [ops.cumsum_segments(w, np.zeros(1, dtype=np.int64)) for w in moved[:len(flags)]]
        matched = ops.rows_equal(mpc, last_inner, key_s)
    else:
        starts = ops.segment_starts(mpc, key_s)
        (matched,) = ops.segmented_scan(mpc, starts, [moved[0]], ["copy"])
    keep = matched if step.kind == "semi" else ops.sub(ones(n), matched)
    out = SecretTable(n=n, secret=dict(zip(names, moved[len(flags):])))
    outer_row = ops.mul(mpc, ops.sub(ones(n), is_inner_s), out.secret["__rows"])
    out.secret["__rows"] = ops.mul(mpc, outer_row, keep)
    if step.kind == "not_in":
        out.secret[f"__nin{step.id[2:]}"] = not_in_rule(mpc, step, inner, out)
    return out


SCAN_CELLS = 1 << 22
"""An oblivious semi-join whose outer × inner rows are at most this many compares every pair of
tags instead of sorting (a hidden lookup of a few keys: n·k equality tests in ~10 rounds, not an
oblivious sort of n + k rows). Both sizes are public, so the choice reveals nothing."""


def _semi_join_by_scan(mpc: MPC, outer: SecretTable, inner: SecretTable, outer_tag: list[str], inner_tag: list[str],
                       own: dict[str, AShare], kind: str, check_memory: MemoryCheck) -> SecretTable:
    """Every outer row against every inner tag: matched = (Σ_j [tag_i = tag'_j]) > 0, under MPC.
    Output: the outer rows in their order, `__rows` = 1 for those kept."""
    n, k = outer.n, inner.n
    check_memory(n * k, 2, "the semi-join's tag comparisons")
    matched = ops.zeros(n)
    if k:
        rows, cols = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)
        # the high word alone (62 PRF bits): a false match among n·k ≤ SCAN_CELLS pairs has
        # probability ≤ 2^22 / 2^62 = 2^-40, and the comparison costs half of both words'
        diff = ops.sub(ops.take(outer.secret[outer_tag[0]], rows), ops.take(inner.secret[inner_tag[0]], cols))
        pair = ops.b2a_bit(mpc, ops.eq(mpc, diff, 0))
        # one key: the pair flag is already 0/1; several may repeat, so "any" is a comparison
        (matched,) = [pair] if k == 1 else nonzero_flags(mpc, [ops.sum_segments(pair, np.arange(0, n * k, k))])
    keep = matched if kind == "semi" else ops.sub(ops.constant(mpc, n, 1), matched)
    out = SecretTable(n=n, secret=dict(own), order_of=outer.order_of)  # the outer rows, in their order
    out.secret["__rows"] = ops.mul(mpc, own["__rows"], keep)
    return out
