"""Plaintext <-> ring encodings: int64 two's complement and fixed point.

Values live in Z_2^64 as uint64; signed values are two's complement so that
numpy's wrapping uint64 arithmetic is exact ring arithmetic.
"""

from __future__ import annotations

import numpy as np

DEFAULT_FRAC_BITS = 20


def int_to_ring(values) -> np.ndarray:
    """int64 (or anything safely castable) -> uint64 ring elements."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        raise ValueError("int_to_ring got floating-point values; use encode_fixed for DOUBLE columns")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        raise ValueError("integer value out of range: must be < 2^63 (signed 64-bit)")
    return arr.astype(np.int64, copy=False).view(np.uint64) if arr.dtype != np.uint64 else arr


def ring_to_int(values: np.ndarray) -> np.ndarray:
    """uint64 ring elements -> int64 (two's complement)."""
    return np.asarray(values, dtype=np.uint64).view(np.int64)


def fixed_limit(frac_bits: int = DEFAULT_FRAC_BITS) -> float:
    """Largest magnitude encodable with frac_bits fractional bits (exclusive)."""
    return float(2 ** (63 - frac_bits))


def encode_fixed(values, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """float64 -> fixed point round(x * 2^f) in the ring.

    Raises ValueError naming the limit for NaN/inf or |x| >= 2^(63-f). Note that
    a product of two encoded values has 2f fractional bits and must itself stay
    below 2^63 before truncation, i.e. |x*y| < 2^(63-2f) (2^23 for f=20).
    """
    if not 0 <= frac_bits <= 62:
        raise ValueError(f"fractional bits must be in [0, 62], got {frac_bits}")
    arr = np.asarray(values, dtype=np.float64)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError("cannot encode NaN or infinity as fixed point")
    limit = fixed_limit(frac_bits)
    if arr.size and float(np.abs(arr).max()) >= limit:
        raise ValueError(
            f"value {float(np.abs(arr).max()):.6g} out of fixed-point range: |x| must be < 2^{63 - frac_bits} "
            f"(= {limit:.6g}) with {frac_bits} fractional bits; use fewer fractional bits or scale the column"
        )
    return np.rint(arr * float(2**frac_bits)).astype(np.int64).view(np.uint64)


def decode_fixed(values: np.ndarray, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Fixed-point ring elements -> float64."""
    return ring_to_int(values).astype(np.float64) / float(2**frac_bits)


def check_range(values: np.ndarray, bits: int, what: str = "value") -> None:
    """Raise ValueError unless every signed value satisfies |v| < 2^bits."""
    v = ring_to_int(np.asarray(values, dtype=np.uint64)) if np.asarray(values).dtype == np.uint64 else np.asarray(values)
    if v.size == 0:
        return
    lim = 2**bits
    lo, hi = int(v.min()), int(v.max())
    if lo <= -lim or hi >= lim:
        raise ValueError(f"{what} out of range: |{what}| must be < 2^{bits}; got min {lo}, max {hi}")
