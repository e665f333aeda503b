"""Arrow columns ↔ 64-bit ring words, per the plan's Encoding.

The owner's DuckDB already turned numbers into scaled BIGINTs (see
planner/encodings.py); this module checks their range, splits string keys
into words and, on the issuer's side, turns opened words back into typed
Arrow columns. Errors name the column, never a value.
"""

from __future__ import annotations

import hashlib
import os
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedsql.errors import EncodingError
from plan.physical import SENTINEL, VALUE_LIMIT
from plan.physical import MATCH_TAG_BITS, SORT_TAG_BITS, SORT_TAG_LOW_BITS, TAG_WORDS, Encoding

WORD = 7
"""String key bytes per 64-bit word: the top byte stays 0, so every word is below 2^56 and
compares correctly as a signed ring value (oblivious sorts order keys by these words)."""


def words_per_value(enc: Encoding, width: int) -> int:
    """Ring words one value takes: `width` for a string key, TAG_WORDS for a join tag, else 1."""
    return width if enc.kind == "string" else TAG_WORDS if enc.kind == "tag" else 1


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
    if enc.kind == "tag":  # keyed join tags: TAG_WORDS full words, no range limit
        return _tag_words(column, name)
    if enc.kind == "float_bits":
        values = column.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        return [values.view(np.uint64).copy()]
    if enc.kind == "word":  # an integer only ever opened, never computed on: its whole 64-bit word
        return [column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64).copy()]
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
    n = len(raw)
    fixed = np.array(raw, dtype=f"S{width * WORD}") if raw else np.zeros(0, dtype=f"S{width * WORD}")
    padded = np.zeros((n, width, 8), dtype=np.uint8)
    padded[:, :, :WORD] = fixed.view(np.uint8).reshape(n, width, WORD) if n else padded[:, :, :WORD]
    words = padded.view(np.uint64).reshape(n, width)
    return [np.ascontiguousarray(words[:, i]) for i in range(width)]


def decode_words(words: list[np.ndarray], enc: Encoding, valid: np.ndarray | None = None) -> pa.Array:
    """Opened ring words → a typed Arrow column; `valid` False gives NULL."""
    mask = None if valid is None else ~valid.astype(bool)
    if enc.kind == "string":
        n = len(words[0]) if words else 0
        mat = np.stack(words, axis=1) if words else np.zeros((0, 1), np.uint64)
        width = mat.shape[1]
        data = np.ascontiguousarray(mat).view(np.uint8).reshape(n, width, 8)[:, :, :WORD]
        raw = np.ascontiguousarray(data).reshape(n, width * WORD).view(f"S{width * WORD}").reshape(n)
        values = [b.decode("utf-8", errors="replace") for b in raw.tolist()]
        return pa.array(values, type=pa.string(), mask=mask)
    value = words[0]
    if enc.kind == "float_bits":
        return pa.array(value.view(np.float64), mask=mask)
    signed = value.view(np.int64)
    if enc.kind in ("int", "word"):
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


def key_words(column: pa.ChunkedArray | pa.Array) -> tuple[list[np.ndarray], np.ndarray]:
    """A join key column → (its 64-bit words, NULL mask); equal keys give equal words on every
    party. Integers, dates and timestamps are one exact word; anything else (strings, decimals)
    is two words of a 128-bit BLAKE2b hash of the canonical text (equality only)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    nulls = column.is_null().to_numpy(zero_copy_only=False).astype(bool)
    t = column.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        words = pc.cast(column, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    elif pa.types.is_date32(t):
        words = pc.cast(column, pa.int32()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    elif pa.types.is_timestamp(t) or pa.types.is_date64(t):
        words = pc.cast(column, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    else:
        texts = pc.cast(column, pa.string()).fill_null("").to_pylist()
        digests = b"".join(hashlib.blake2b(v.encode(), digest_size=16).digest() for v in texts)
        pairs = np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2) if texts else np.zeros((0, 2), np.uint64)
        return [np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])], nulls
    return [np.ascontiguousarray(words, dtype=np.int64).view(np.uint64)], nulls


def keyed_tags(key: bytes, columns: list, bits: int = MATCH_TAG_BITS) -> np.ndarray:
    """PRF_key(join key) per row as an (n, 2) array of 64-bit words: AES-128 of the key's words,
    a permutation of 128-bit blocks, so keys of at most two words (one or two integer columns,
    one string column) never collide; longer keys are hashed to 128 bits first (collisions
    about n^2 / 2^129). bits = MATCH_TAG_BITS keeps both words (a matcher compares them);
    bits = SORT_TAG_BITS keeps a signed 62-bit high word and a signed SORT_TAG_LOW_BITS low
    word (the oblivious sorts compare ring values, |a - b| < 2^63): about n^2 / 2^97. Rows with
    a NULL key get a random tag that matches nothing."""
    per_column = [key_words(c) for c in columns]
    words = [w for ws, _ in per_column for w in ws]
    nulls = [m for _, m in per_column]
    n = len(words[0]) if words else 0
    if len(words) <= 2:
        block = np.zeros((n, 2), dtype=np.uint64)
        for i, w in enumerate(words):
            block[:, i] = w
        if len(words) == 1:
            block[:, 1] = 0x9E3779B97F4A7C15  # domain separation from two-word keys
    else:
        joined = np.stack(words, axis=1)
        digests = b"".join(hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in joined)
        block = np.frombuffer(digests, dtype=np.uint64).reshape(n, 2).copy()
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    out = np.frombuffer(encryptor.update(block.tobytes()) + encryptor.finalize(), dtype=np.uint64)
    tags = out.reshape(n, 2).copy() if n else np.zeros((0, 2), np.uint64)
    null_rows = np.logical_or.reduce(nulls) if nulls else np.zeros(n, bool)
    if null_rows.any():
        tags[null_rows] = np.frombuffer(os.urandom(16 * int(null_rows.sum())), dtype=np.uint64).reshape(-1, 2)
    if bits == MATCH_TAG_BITS:
        return tags
    if bits != SORT_TAG_BITS:
        raise EncodingError(f"join tags have {MATCH_TAG_BITS} or {SORT_TAG_BITS} bits, not {bits}")
    signed = tags.view(np.int64)  # arithmetic shifts: signed fields of 62 and SORT_TAG_LOW_BITS bits
    signed[:, 0] >>= 2
    signed[:, 1] >>= 64 - SORT_TAG_LOW_BITS
    return tags


def tag_column(tags: np.ndarray) -> pa.Array:
    """(n, 2) tag words → one Arrow column of 16-byte values (the owner's fragment table)."""
    n = len(tags)
    data = np.ascontiguousarray(tags, dtype=np.uint64)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(data.tobytes())])


def _tag_words(column: pa.Array, name: str) -> list[np.ndarray]:
    if column.type != pa.binary(16) or column.null_count:
        raise EncodingError(f"column {name}: not a join tag column (internal planning error)")
    n = len(column)
    if n == 0:
        return [np.zeros(0, np.uint64), np.zeros(0, np.uint64)]
    words = np.frombuffer(column.buffers()[1], dtype=np.uint64, count=2 * n, offset=16 * column.offset).reshape(n, 2)
    return [words[:, 0].copy(), words[:, 1].copy()]
