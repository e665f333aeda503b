"""The secure join operators (executors/operators/joins.py) against plaintext, on the
in-process transport (executors/transport.py): three parties in threads, no sockets."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from executors.operators import SECURE_OPERATORS, oblivious_join, oblivious_semi_join, secure_join
from fedsql import errors
from plan.physical import MATCH_TAG_BITS, SORT_TAG_BITS, ObliviousJoin, ObliviousSemiJoin, SecureJoin
from tests.operator_harness import rows, run_chain, run_operator, tagged

LEFT_KEYS = [1, 2, 2, 3, None, 5, 7]
RIGHT_KEYS = [2, 3, 3, 4, None, 7, 9]


def plain_pairs(left: list, right: list) -> list[tuple[int, int]]:
    return [(i, j) for i, a in enumerate(left) for j, b in enumerate(right) if a is not None and a == b]


@pytest.mark.parametrize("shuffle", [False, True])
def test_secure_join_inner(shuffle: bool) -> None:
    step = SecureJoin("j_1", "L", "R", "t", "t", matcher="c1", shuffle=shuffle)
    left = tagged(LEFT_KEYS, MATCH_TAG_BITS, x=[10 * i for i in range(7)])
    right = tagged(RIGHT_KEYS, MATCH_TAG_BITS, y=[-i for i in range(7)])
    n, out = run_operator(secure_join, step, {"L": left, "R": right})
    want = Counter((10 * i, -j) for i, j in plain_pairs(LEFT_KEYS, RIGHT_KEYS))
    assert set(out) == {"x", "y"} and n == sum(want.values())
    assert rows(out, ["x", "y"]) == want


def test_secure_join_left_keeps_unmatched_rows_with_zero_padding() -> None:
    step = SecureJoin("j_1", "L", "R", "t", "t", matcher="c2", shuffle=False, kind="left")
    left = tagged(LEFT_KEYS, MATCH_TAG_BITS, x=list(range(1, 8)))
    right = tagged(RIGHT_KEYS, MATCH_TAG_BITS, y=list(range(100, 107)))
    n, out = run_operator(secure_join, step, {"L": left, "R": right})
    pairs = plain_pairs(LEFT_KEYS, RIGHT_KEYS)
    matched = {i for i, _ in pairs}
    want = Counter([(i + 1, 100 + j) for i, j in pairs] + [(i + 1, 0) for i in range(7) if i not in matched])
    assert rows(out, ["x", "y"]) == want and n == sum(want.values())


@pytest.mark.parametrize("left_keys", [LEFT_KEYS, []])
def test_secure_join_full_keeps_unmatched_rows_of_both_sides(left_keys: list) -> None:
    step = SecureJoin("j_1", "L", "R", "t", "t", matcher="c2", shuffle=True, kind="full")
    left = tagged(left_keys, MATCH_TAG_BITS, x=list(range(1, len(left_keys) + 1)))
    right = tagged(RIGHT_KEYS, MATCH_TAG_BITS, y=list(range(100, 107)))
    n, out = run_operator(secure_join, step, {"L": left, "R": right})
    pairs = plain_pairs(left_keys, RIGHT_KEYS)
    lhit, rhit = {i for i, _ in pairs}, {j for _, j in pairs}
    want = Counter([(i + 1, 100 + j) for i, j in pairs] + [(i + 1, 0) for i in range(len(left_keys)) if i not in lhit]
                   + [(0, 100 + j) for j in range(7) if j not in rhit])  # NULL keys match nothing: padded
    assert rows(out, ["x", "y"]) == want and n == sum(want.values())


@pytest.mark.parametrize("kind", ["semi", "anti"])
def test_secure_join_semi_and_anti(kind: str) -> None:
    step = SecureJoin("j_1", "L", "R", "t", "t", matcher="c0", shuffle=True, kind=kind)
    n, out = run_operator(secure_join, step, {"L": tagged(LEFT_KEYS, MATCH_TAG_BITS, x=list(range(7))),
                                              "R": tagged(RIGHT_KEYS, MATCH_TAG_BITS, y=[0] * 7)})
    hit = {i for i, _ in plain_pairs(LEFT_KEYS, RIGHT_KEYS)}
    want = Counter((i,) for i in range(7) if (i in hit) == (kind == "semi"))
    assert set(out) == {"x"} and rows(out, ["x"]) == want


@pytest.mark.parametrize("sub_nulls, sub_empty", [(False, False), (True, False), (False, True)])
def test_secure_join_not_in_follows_sql_null_rules(sub_nulls: bool, sub_empty: bool) -> None:
    step = SecureJoin("j_1", "L", "R", "t", "t", matcher="c1", shuffle=False, kind="not_in")
    left = tagged(LEFT_KEYS, MATCH_TAG_BITS, x=list(range(7)), __skv1=[int(k is not None) for k in LEFT_KEYS])
    rkeys = [] if sub_empty else [k for k in RIGHT_KEYS if k is not None] + ([None] if sub_nulls else [])
    right = tagged(rkeys, MATCH_TAG_BITS, __snull1=[int(k is None) for k in rkeys])
    n, out = run_operator(secure_join, step, {"L": left, "R": right})
    unmatched = [i for i in range(7) if i not in {i for i, _ in plain_pairs(LEFT_KEYS, rkeys)}]
    assert out["x"].tolist() == unmatched  # the matcher's anti-join rows, in order
    if sub_empty:
        want = [1] * len(unmatched)  # NOT IN (empty) keeps every row, NULLs too
    elif sub_nulls:
        want = [0] * len(unmatched)  # a NULL in the subquery: nothing is NOT IN it
    else:
        want = [int(LEFT_KEYS[i] is not None) for i in unmatched]
    assert out["__nin1"].tolist() == want


def test_a_malformed_pairs_message_from_the_matcher_is_refused() -> None:
    from executors.operators.joins import received_pairs
    from executors.transport_errors import MessageError

    with pytest.raises(MessageError, match="malformed join matches"):
        received_pairs([np.array([0, 9], np.int64), np.array([0, 0], np.int64)], 3, 3, "inner", "c1")
    for kind in ("inner", "left"):  # "no left row" is a FULL JOIN's alone
        with pytest.raises(MessageError, match="malformed join matches"):
            received_pairs([np.array([-1], np.int64), np.array([0], np.int64)], 3, 3, kind, "c1")
    with pytest.raises(MessageError, match="malformed join matches"):  # a pair of two padding rows
        received_pairs([np.array([0, -1], np.int64), np.array([0, -1], np.int64)], 3, 3, "full", "c1")
    received_pairs([np.array([0, -1], np.int64), np.array([-1, 2], np.int64)], 3, 3, "full", "c1")


@pytest.fixture(params=["differences", "scan"])
def copy_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the oblivious join gives FK rows their PK values, whatever the sizes would choose."""
    import executors.operators.joins as joins

    monkeypatch.setattr(joins, "copy_by_differences", lambda *a: request.param == "differences")
    return request.param


def test_the_cheaper_copy_is_chosen_on_public_sizes() -> None:
    from executors.operators.joins import copy_by_differences

    assert copy_by_differences(15_000, 600_000, 3)  # a small PK side: its own sort is cheap
    assert not copy_by_differences(150_000, 30_000, 3)  # alike sizes: the scan is cheaper
    assert not copy_by_differences(1, 10, 3) and not copy_by_differences(0, 0, 1)


PK_KEYS = [1, 2, 3, 5, 8]
FK_KEYS = [2, 2, 3, 4, 8, 8, 8, None]


@pytest.mark.parametrize("pk_side", ["left", "right"])
def test_oblivious_join_pk_fk(pk_side: str, copy_path: str) -> None:
    pk = tagged(PK_KEYS, SORT_TAG_BITS, a=[11, 22, 33, 55, 88])
    fk = tagged(FK_KEYS, SORT_TAG_BITS, b=list(range(8)))
    tables = {"L": pk, "R": fk} if pk_side == "left" else {"L": fk, "R": pk}
    step = ObliviousJoin("j_1", "L", "R", "t", "t", pk=pk_side)
    n, out = run_operator(oblivious_join, step, tables)
    assert n == len(PK_KEYS) + len(FK_KEYS)  # only the input sizes show
    want = Counter((11 * k, j) for j, k in enumerate(FK_KEYS) if k in PK_KEYS)
    assert rows(out, ["a", "b"], where="__rows") == want


def test_oblivious_join_respects_fk_rows_and_outer(copy_path: str) -> None:
    pk = tagged(PK_KEYS, SORT_TAG_BITS, a=[11, 22, 33, 55, 88])
    fk_rows = [1, 0, 1, 1, 1, 0, 1, 1]
    fk = tagged(FK_KEYS, SORT_TAG_BITS, b=list(range(8)), __rows=fk_rows)
    _, inner = run_operator(oblivious_join, ObliviousJoin("j_1", "L", "R", "t", "t", pk="left"), {"L": pk, "R": fk})
    assert rows(inner, ["a", "b"], where="__rows") == Counter(
        (11 * k, j) for j, k in enumerate(FK_KEYS) if k in PK_KEYS and fk_rows[j])
    fresh = tagged(FK_KEYS, SORT_TAG_BITS, b=list(range(8)))
    _, outer = run_operator(oblivious_join, ObliviousJoin("j_1", "L", "R", "t", "t", pk="left", outer=True),
                            {"L": pk, "R": fresh})
    assert rows(outer, ["a", "b"], where="__rows") == Counter(
        (11 * k if k in PK_KEYS else 0, j) for j, k in enumerate(FK_KEYS))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_oblivious_join_random_keys_against_a_plain_join(seed: int, copy_path: str) -> None:
    """Unmatched FK keys before, between and after the PK keys, PK rows filtered out (`__rows` 0),
    negative values and NULL keys: inner rows carry their own key's PK values; outer rows without
    a PK row read zeros (NULL), never the values of the PK row sorted before them."""
    rng = np.random.default_rng(seed)
    pk_keys = [int(k) for k in rng.permutation(40)[:15] - 10]
    pk_a = [int(v) for v in rng.integers(-1000, 1000, len(pk_keys))]
    pk_ok = [int(v) for v in rng.random(len(pk_keys)) < 0.7]
    fk_keys = [None if r < 0.1 else int(v) for v, r in zip(rng.integers(-15, 35, 60), rng.random(60))]
    pk = tagged(pk_keys, SORT_TAG_BITS, a=pk_a, __rows=pk_ok)
    fk = tagged(fk_keys, SORT_TAG_BITS, b=list(range(len(fk_keys))))
    by_key = {k: (a, ok) for k, a, ok in zip(pk_keys, pk_a, pk_ok)}
    _, inner = run_operator(oblivious_join, ObliviousJoin("j_1", "L", "R", "t", "t", pk="right"), {"L": fk, "R": pk})
    assert rows(inner, ["a", "b"], where="__rows") == Counter(
        (by_key[k][0], j) for j, k in enumerate(fk_keys) if k in by_key and by_key[k][1])
    fresh = tagged(pk_keys, SORT_TAG_BITS, a=pk_a)
    _, outer = run_operator(oblivious_join, ObliviousJoin("j_1", "L", "R", "t", "t", pk="left", outer=True),
                            {"L": fresh, "R": fk})
    assert rows(outer, ["a", "b"], where="__rows") == Counter(
        (by_key[k][0] if k in by_key else 0, j) for j, k in enumerate(fk_keys))


def test_oblivious_join_refuses_a_unique_key_that_repeats(copy_path: str) -> None:
    pk = tagged([1, 2, 2], SORT_TAG_BITS, a=[1, 2, 3])
    fk = tagged([2], SORT_TAG_BITS, b=[0])
    with pytest.raises(errors.DataError, match="declared unique"):
        run_operator(oblivious_join, ObliviousJoin("j_1", "L", "R", "t", "t", pk="left"), {"L": pk, "R": fk})


def test_oblivious_join_of_empty_inputs(copy_path: str) -> None:
    empty = tagged([], SORT_TAG_BITS, a=[])
    n, out = run_operator(oblivious_join, ObliviousJoin("j_1", "L", "R", "t", "t", pk="left"),
                          {"L": empty, "R": tagged([], SORT_TAG_BITS, b=[])})
    assert n == 0 and set(out) == {"a", "b", "__rows"}


@pytest.mark.parametrize("scan", [True, False], ids=["pairwise-scan", "sort"])
@pytest.mark.parametrize("kind", ["semi", "anti"])
def test_oblivious_semi_join(kind: str, scan: bool, monkeypatch: pytest.MonkeyPatch, copy_path: str) -> None:
    """Small sides compare every pair of tags; larger ones sort (joins.SCAN_CELLS): same rows kept."""
    from executors.operators import joins

    monkeypatch.setattr(joins, "SCAN_CELLS", 1 << 22 if scan else 0)
    outer_keys = [1, 2, 2, 3, None, 6]
    inner_keys = [2, 2, 3, 4, None]
    step = ObliviousSemiJoin("j_1", "O", "I", "t", "t", kind=kind)
    n, out = run_operator(oblivious_semi_join, step, {"O": tagged(outer_keys, SORT_TAG_BITS, x=list(range(6))),
                                                      "I": tagged(inner_keys, SORT_TAG_BITS, pad=[0] * 5)})
    assert n == len(outer_keys) + (0 if scan else len(inner_keys)) and set(out) == {"x", "__rows"}
    hit = [k is not None and k in inner_keys for k in outer_keys]
    assert rows(out, ["x"], where="__rows") == Counter((i,) for i, h in enumerate(hit) if h == (kind == "semi"))


def test_oblivious_not_in_with_a_null_in_the_subquery_keeps_nothing(copy_path: str) -> None:
    outer_keys, inner_keys = [1, 2, None], [2, None]
    step = ObliviousSemiJoin("j_1", "O", "I", "t", "t", kind="not_in")
    _, out = run_operator(oblivious_semi_join, step, {
        "O": tagged(outer_keys, SORT_TAG_BITS, x=[0, 1, 2], __skv1=[1, 1, 0]),
        "I": tagged(inner_keys, SORT_TAG_BITS, __snull1=[0, 1])})
    assert not (out["__nin1"] * out["__rows"]).any()


def test_the_dispatch_table_names_the_moved_operators() -> None:
    assert {SecureJoin: secure_join, ObliviousJoin: oblivious_join,
            ObliviousSemiJoin: oblivious_semi_join}.items() <= SECURE_OPERATORS.items()


@pytest.mark.parametrize("kind, kept", [("semi", 0), ("anti", 3)])
def test_oblivious_semi_join_against_no_rows(kind: str, kept: int, copy_path: str) -> None:
    step = ObliviousSemiJoin("j_1", "O", "I", "t", "t", kind=kind)
    n, out = run_operator(oblivious_semi_join, step, {"O": tagged([1, 2, None], SORT_TAG_BITS, x=[0, 1, 2]),
                                                      "I": tagged([], SORT_TAG_BITS)})
    assert n == 3 and int(out["__rows"].sum()) == kept


def _in_order_of(owner: str | None):
    def operator(mpc, inputs, step):
        inputs[step.left].order_of = owner  # as ShareTable(permute=True) at `owner` marks it
        return secure_join(mpc, inputs, step)
    return operator


@pytest.mark.parametrize("kind", ["semi", "anti"])
@pytest.mark.parametrize("order_of", ["c1", "c0", None], ids=["owners-order", "matchers-order", "no-order"])
@pytest.mark.parametrize("rows_in", [False, True])
def test_a_marked_semi_join_keeps_every_outer_row_and_marks_the_kept(kind, order_of, rows_in) -> None:
    """The hidden lookup's semi-join: the matcher inputs "kept" as a secret flag; nothing is
    gathered, so every outer row stays — in its order when the matcher cannot know that order."""
    outer_keys = [1, 2, 2, 3, None, 6, 2]
    inner_keys = [2, 2, 3, 4, None]
    real = [1, 1, 0, 1, 1, 1, 1] if rows_in else [1] * 7
    extra = {"__rows": real} if rows_in else {}
    step = SecureJoin("j_1", "O", "I", "t", "t", matcher="c0", shuffle=True, kind=kind, mark=True)
    n, out = run_chain([(_in_order_of(order_of), step)], {
        "O": tagged(outer_keys, MATCH_TAG_BITS, x=list(range(7)), **extra),
        "I": tagged(inner_keys, MATCH_TAG_BITS)})
    assert n == len(outer_keys) and set(out) == {"x", "__rows"}
    hit = [k is not None and k in inner_keys for k in outer_keys]
    want = [i for i, h in enumerate(hit) if h == (kind == "semi") and real[i]]
    assert sorted(out["x"][out["__rows"] == 1].tolist()) == want and set(out["__rows"].tolist()) <= {0, 1}
    if order_of == "c1":
        assert out["x"].tolist() == list(range(7))  # in the owner's order: not shuffled again


def test_a_marked_semi_join_of_empty_sides() -> None:
    step = SecureJoin("j_1", "O", "I", "t", "t", matcher="c2", shuffle=True, kind="semi", mark=True)
    n, out = run_operator(secure_join, step, {"O": tagged([1, None], MATCH_TAG_BITS, x=[5, 6]),
                                              "I": tagged([], MATCH_TAG_BITS)})
    assert n == 2 and not out["__rows"].any()
    n, out = run_operator(secure_join, step, {"O": tagged([], MATCH_TAG_BITS, x=[]),
                                              "I": tagged([1], MATCH_TAG_BITS)})
    assert n == 0
