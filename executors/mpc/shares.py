"""Share containers and local layout helpers.

Party i of the compute triple holds the pair (x_i, x_{i+1}) of a 3-out-of-3
sharing x = x_0 + x_1 + x_2 (arithmetic, mod 2^64) or x_0 ^ x_1 ^ x_2
(boolean, XOR per bit). `a` is x_i and `b` is x_{i+1}. Any two parties
together know all three components, one alone knows nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

U64 = np.uint64


@dataclass
class AShare:
    """This party's pair of an arithmetic sharing over Z_2^64 (uint64 arrays)."""

    a: np.ndarray  # x_i
    b: np.ndarray  # x_{i+1}

    def __len__(self) -> int:
        return len(self.a)


@dataclass
class BShare:
    """This party's pair of a boolean (XOR) sharing; 64 bits per uint64 word.

    Comparison results are single bits: bit 0 of each word, other bits zero.
    Internally the comparison trees also use narrower unsigned dtypes.
    """

    a: np.ndarray
    b: np.ndarray

    def __len__(self) -> int:
        return len(self.a)


def concat(xs: list):
    """Concatenate shares of one kind row-wise (for batching many columns into one round)."""
    if not xs:
        return AShare(np.zeros(0, U64), np.zeros(0, U64))
    cls = type(xs[0])
    return cls(np.concatenate([x.a for x in xs]), np.concatenate([x.b for x in xs]))


def split(x, lengths: list[int]) -> list:
    """Inverse of concat."""
    cuts = np.cumsum(lengths)[:-1]
    return [type(x)(a, b) for a, b in zip(np.split(x.a, cuts), np.split(x.b, cuts))]


def take(x, idx: np.ndarray):
    """Select rows by a public index array."""
    return type(x)(x.a[idx], x.b[idx])


def slice_rows(x, start: int, stop: int):
    """Rows start..stop-1 of a share, as a copy (so the slice does not pin the whole column)."""
    return type(x)(x.a[start:stop].copy(), x.b[start:stop].copy())


def zeros_like_share(cls, n: int, dtype=U64):
    return cls(np.zeros(n, dtype), np.zeros(n, dtype))
