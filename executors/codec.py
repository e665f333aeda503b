"""Arrow columns ↔ 64-bit ring words, per the plan's Encoding.

The owner's DuckDB already turned numbers into scaled BIGINTs (see
planner/encodings.py); this module checks their range, splits string keys
into words and, on the issuer's side, turns opened words back into typed
Arrow columns. Errors name the column, never a value.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedsql.errors import EncodingError
from planner.encodings import SENTINEL, VALUE_LIMIT
from planner.physical import Encoding

WORD = 8


def string_width(column: pa.Array | pa.ChunkedArray) -> int:
    """Words needed for the longest UTF-8 value (at least 1)."""
    if len(column) == 0:
        return 1
    lengths = pc.binary_length(pc.cast(column, pa.binary()))
    longest = pc.max(lengths).as_py() or 0
    return max(1, -(-longest // WORD))


def encode_column(column: pa.ChunkedArray | pa.Array, enc: Encoding, width: int, name: str) -> list[np.ndarray]:
    """One plaintext column → its ring words (a string key gives `width` words)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if enc.kind == "string":
        return _string_words(column, width, name)
    if enc.kind == "float_bits":
        values = column.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        return [values.view(np.uint64).copy()]
    if column.null_count:
        raise EncodingError(f"column {name}: unexpected NULL in an encoded column (internal planning error)")
    values = column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    inside = np.abs(values) < VALUE_LIMIT
    if not inside.all() and not np.isin(values[~inside], (SENTINEL, -SENTINEL)).all():
        raise EncodingError(
            f"column {name}: a value is outside the secure encoding range (|x| < 2^61 after scaling); "
            "use a smaller scale (fixed_point_bits) or pre-aggregate/clip the column"
        )
    return [values.view(np.uint64)]


def _string_words(column: pa.Array, width: int, name: str) -> list[np.ndarray]:
    raw = column.fill_null("").cast(pa.binary()).to_pylist()
    if any(len(v) > width * WORD for v in raw):
        raise EncodingError(f"column {name}: a string key is longer than the agreed width")
    fixed = np.array(raw, dtype=f"S{width * WORD}") if raw else np.zeros(0, dtype=f"S{width * WORD}")
    words = fixed.view(np.uint64).reshape(len(raw), width) if raw else np.zeros((0, width), np.uint64)
    return [np.ascontiguousarray(words[:, i]) for i in range(width)]


def decode_words(words: list[np.ndarray], enc: Encoding, valid: np.ndarray | None = None) -> pa.Array:
    """Opened ring words → a typed Arrow column; `valid` False gives NULL."""
    mask = None if valid is None else ~valid.astype(bool)
    if enc.kind == "string":
        n = len(words[0]) if words else 0
        mat = np.stack(words, axis=1) if words else np.zeros((0, 1), np.uint64)
        raw = np.ascontiguousarray(mat).view(f"S{WORD * mat.shape[1]}").reshape(n)
        values = [b.decode("utf-8", errors="replace") for b in raw.tolist()]
        return pa.array(values, type=pa.string(), mask=mask)
    value = words[0]
    if enc.kind == "float_bits":
        return pa.array(value.view(np.float64), mask=mask)
    signed = value.view(np.int64)
    if enc.kind == "int":
        return pa.array(signed, type=pa.int64(), mask=mask)
    if enc.kind == "bool":
        return pa.array(signed != 0, type=pa.bool_(), mask=mask)
    if enc.kind == "fixed":
        return pa.array(signed.astype(np.float64) / float(1 << enc.scale), mask=mask)
    if enc.kind == "date":
        return pa.array(signed.astype(np.int32), type=pa.date32(), mask=mask)
    if enc.kind == "timestamp":
        return pa.array(signed, type=pa.timestamp("us"), mask=mask)
    if enc.kind == "decimal":
        scaled = [Decimal(int(v)).scaleb(-enc.scale) for v in signed.tolist()]
        return pa.array(scaled, type=pa.decimal128(38, enc.scale), mask=mask)
    raise EncodingError(f"unknown encoding {enc.kind}")
