"""Join tags are at least 96 bits wide (issue #11, Low: 64-bit truncations collided with
probability ~n^2/2^65, and string keys were first hashed to 64 bits).

Matched tags are two full words (128 bits: AES is a permutation, so keys of up to two words
never collide); sorted tags are a 62-bit and a 34-bit signed field (96 bits) that the
oblivious sort packs into as many comparison words as the old 62-bit tag took.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from executors import codec
from executors.mpc.sort import pack_words
from executors.mpc.shares import AShare
from executors.operators.joins import SORT_KEY_BITS, match_tags
from plan.physical import MATCH_TAG_BITS, SORT_TAG_BITS, SORT_TAG_LOW_BITS

KEY = bytes(range(16))


def test_matched_tags_are_128_bits_and_distinct() -> None:
    ids = pa.array(np.arange(200_000, dtype=np.int64))
    tags = codec.keyed_tags(KEY, [ids], MATCH_TAG_BITS)
    assert tags.shape == (200_000, 2) and tags.dtype == np.uint64
    assert len(np.unique(tags, axis=0)) == 200_000
    assert len(np.unique(tags[:, 1])) > 199_000  # the second word is key material, not padding


def test_string_keys_are_hashed_to_128_bits() -> None:
    words, nulls = codec.key_words(pa.array(["a", "b", None]))
    assert len(words) == 2 and not nulls[:2].any() and nulls[2]
    tags = codec.keyed_tags(KEY, [pa.array(["x", "y", "x"])], MATCH_TAG_BITS)
    assert (tags[0] == tags[2]).all() and not (tags[0] == tags[1]).all()


def test_sorted_tags_keep_96_bits_in_signed_fields() -> None:
    tags = codec.keyed_tags(KEY, [pa.array(np.arange(50_000, dtype=np.int64))], SORT_TAG_BITS).view(np.int64)
    hi, lo = tags[:, 0], tags[:, 1]
    assert hi.min() >= -(1 << 61) and hi.max() < 1 << 61
    low = 1 << (SORT_TAG_LOW_BITS - 1)
    assert lo.min() >= -low and lo.max() < low and lo.min() < -(low >> 1) and lo.max() > low >> 1
    assert len(np.unique(tags, axis=0)) == 50_000


def test_a_collision_of_the_high_words_is_not_a_match() -> None:
    left = [np.array([7, 7, 9], np.uint64), np.array([1, 2, 3], np.uint64)]
    right = [np.array([7, 9, 7], np.uint64), np.array([2, 4, 1], np.uint64)]
    li, ri = match_tags(left, right)
    assert sorted(zip(li.tolist(), ri.tolist())) == [(0, 2), (1, 0)]  # (2, 1): same high word, other low word


def test_the_wider_sort_tag_costs_no_extra_comparison_word() -> None:
    n = 1 << 20  # the low field, the side flag and the tiebreak still fit one 63-bit word

    class _Mpc:
        i = 0

    zero = AShare(np.zeros(4, np.uint64), np.zeros(4, np.uint64))
    words = pack_words(_Mpc(), [zero, zero, zero], [False, False, True], SORT_KEY_BITS, zero, n)
    assert len(words) == 2  # as many as (62-bit tag, flag) + tiebreak before
