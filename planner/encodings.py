"""Which ring encoding a DuckDB type gets, and the SQL that produces it at the owner.

Owners encode in their own DuckDB (exact decimal scaling, dates to days), so
what leaves a party is already a BIGINT column ready to be shared.
"""

from __future__ import annotations

import re

from fedsql.errors import UnsupportedSql
from plan.physical import VALUE_LIMIT, Encoding

INT_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "HUGEINT", "UHUGEINT"}
FLOAT_TYPES = {"DOUBLE", "FLOAT", "REAL"}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")



def value_encoding(duck_type: str, fixed_bits: int, what: str) -> Encoding:
    """Encoding of a numeric/temporal value that enters arithmetic or comparison."""
    t = duck_type.upper()
    if t in INT_TYPES:
        return Encoding("int", 0, "BIGINT")
    m = _DECIMAL.fullmatch(t)
    if m:
        return Encoding("decimal", int(m.group(2)), f"DECIMAL(38,{m.group(2)})")
    if t in FLOAT_TYPES:
        return Encoding("fixed", fixed_bits, "DOUBLE")
    if t == "DATE":
        return Encoding("date", 0, "DATE")
    if t.startswith("TIMESTAMP") and "TIME ZONE" not in t and t != "TIMESTAMPTZ":
        return Encoding("timestamp", 0, "TIMESTAMP")
    if t == "BOOLEAN":
        return Encoding("bool", 0, "BOOLEAN")
    raise UnsupportedSql(f"{what} over type {duck_type} is not supported under secret sharing yet")


def clamped_encode_sql(expr: str, enc: Encoding, lo: int, hi: int) -> str:
    """A DP value's ring form clamped into [lo, hi] (scaled units) by SQL that cannot fail on any
    row: an encoding that overflows BIGINT (a huge DOUBLE, a HUGEINT) clamps by its sign instead
    of raising, since an error there would be an un-noised bit about that row (issue #11, finding 3)."""
    encoded = f"TRY({encode_sql(expr, enc)})"  # DuckDB's LEAST/GREATEST skip NULLs: test for it first
    return (f"(CASE WHEN {expr} IS NULL THEN NULL WHEN {encoded} IS NULL THEN (CASE WHEN {expr} > 0 THEN {hi} "
            f"ELSE {lo} END) ELSE LEAST(GREATEST({encoded}, {lo}), {hi}) END)")


def saturated_sum_sql(total: str) -> str:
    """A DP partial sum (DuckDB's HUGEINT SUM; 0 when empty) as a BIGINT saturated below ±VALUE_LIMIT: many large rows
    can exceed BIGINT, and a data-dependent overflow error would be an un-noised bit. Saturation moves
    the sum by no more than the rows it cuts, so one unit's influence stays within its sensitivity."""
    limit = VALUE_LIMIT - 1  # the codec takes |x| < 2^61; COALESCE first: GREATEST(NULL, a) is a in DuckDB
    return f"CAST(LEAST(GREATEST(COALESCE({total}, 0), {-limit}), {limit}) AS BIGINT)"


def key_encoding(duck_type: str, what: str) -> Encoding:
    """Encoding of a GROUP BY key: exact, equality only."""
    t = duck_type.upper()
    if t == "VARCHAR":
        return Encoding("string", 0, "VARCHAR")
    if t in FLOAT_TYPES:
        return Encoding("float_bits", 0, "DOUBLE")
    return value_encoding(duck_type, 0, what)


def row_encoding(duck_type: str, what: str) -> Encoding:
    """Encoding of a column a row-level result shows: exact and only opened, so integers keep
    their whole 64-bit word (no arithmetic range to leave room for), the rest as a key."""
    if duck_type.upper() in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT"):
        return Encoding("word", 0, "BIGINT")
    return key_encoding(duck_type, what)


def encode_sql(expr: str, enc: Encoding) -> str:
    """DuckDB SQL turning a plaintext expression into its BIGINT ring form (NULL stays NULL)."""
    if enc.kind in ("int", "word"):
        return f"CAST({expr} AS BIGINT)"
    if enc.kind == "decimal":
        return f"CAST(CAST({expr} AS DECIMAL(38,{enc.scale})) * {10 ** enc.scale} AS BIGINT)"
    if enc.kind == "fixed":
        return f"CAST(round(CAST({expr} AS DOUBLE) * {float(1 << enc.scale)!r}) AS BIGINT)"
    if enc.kind == "date":
        return f"CAST(CAST({expr} AS DATE) - DATE '1970-01-01' AS BIGINT)"
    if enc.kind == "timestamp":
        return f"epoch_us(CAST({expr} AS TIMESTAMP))"
    if enc.kind == "bool":
        return f"CAST({expr} AS BIGINT)"
    if enc.kind in ("string", "float_bits"):
        return expr  # split into words by the owner's codec
    if enc.kind == "hash":  # equality only: 61 bits of MD5, the same at every party
        return f"CAST(md5_number_lower(CAST({expr} AS VARCHAR)) >> 3 AS BIGINT)"
    raise ValueError(enc.kind)
