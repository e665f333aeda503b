"""Pass: split each aggregate into per-owner partials and a secure combine.

SUM/COUNT partials add up, MIN/MAX partials reduce by secure comparison, AVG
is carried as (sum, count). NULL semantics follow DuckDB: a SUM over no
non-NULL value is NULL (known from the combined count), a MIN/MAX partial with
no value carries a sentinel beyond the encodable range.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from fedsql.errors import UnsupportedSql
from planner.analyze import QueryBlock, canonical
from planner.encodings import SENTINEL, encode_sql, key_encoding, value_encoding
from planner.parse import DIALECT
from planner.physical import Combine, Encoding, RevealColumn, ShareColumn
from planner.validate import quote

COUNT = Encoding("int", 0, "BIGINT")


@dataclass(frozen=True)
class AggregateSplit:
    select_items: tuple[str, ...]  # partial SELECT list run by each owner
    group_sql: tuple[str, ...]  # GROUP BY expressions of the partial query
    shares: tuple[ShareColumn, ...]
    combine: tuple[Combine, ...]
    reveal: tuple[RevealColumn, ...]
    replacements: dict[str, str]  # canonical expr → SQL over the revealed table
    has_string_key: bool


def split_aggregates(block: QueryBlock, types: dict[str, str], fixed_bits: int) -> AggregateSplit:
    """`types` maps canonical SQL of each group key and aggregate argument to its DuckDB type."""
    items: list[str] = []
    shares: list[ShareColumn] = []
    combine: list[Combine] = []
    reveal: list[RevealColumn] = []
    replacements: dict[str, str] = {}
    group_sql = []
    has_string = False
    for i, g in enumerate(block.group_by):
        g_sql = g.sql(dialect=DIALECT)
        enc = key_encoding(types[canonical(g)], f"GROUP BY {g_sql}")
        has_string |= enc.kind == "string"
        name = f"__g{i}"
        valid = f"{name}_valid"
        fill = "''" if enc.kind == "string" else ("0.0" if enc.kind == "float_bits" else "0")
        items.append(f"CAST(({g_sql}) IS NOT NULL AS BIGINT) AS {valid}")
        items.append(f"COALESCE({encode_sql(f'({g_sql})', enc)}, {fill}) AS {name}")
        group_sql.append(g_sql)
        shares += [ShareColumn(valid, COUNT, "key"), ShareColumn(name, enc, "key")]
        reveal.append(RevealColumn(name, "key", name, enc, count=valid))
        replacements[canonical(g)] = quote(name)
    for agg in block.aggs:
        a = f"__{agg.name}"
        arg = agg.arg.sql(dialect=DIALECT) if agg.arg is not None else None
        if agg.func in ("count_star", "count"):
            items.append(f"COUNT({arg or '*'}) AS {a}")
            shares.append(ShareColumn(a, COUNT))
            combine.append(Combine(a, "sum"))
            reveal.append(RevealColumn(a, "value", a, COUNT))
            replacements[agg.key] = quote(a)
            continue
        arg_type = types[canonical(agg.arg)]
        enc = value_encoding(arg_type, fixed_bits, f"{agg.func.upper()}({arg})")
        if agg.func in ("sum", "avg"):
            if enc.kind not in ("int", "decimal", "fixed"):
                raise UnsupportedSql(f"{agg.func.upper()} over {arg_type} is not supported")
            items.append(f"COALESCE({encode_sql(f'SUM({arg})', enc)}, 0) AS {a}_sum")
            items.append(f"COUNT({arg}) AS {a}_cnt")
            shares += [ShareColumn(f"{a}_sum", enc), ShareColumn(f"{a}_cnt", COUNT)]
            combine += [Combine(f"{a}_sum", "sum"), Combine(f"{a}_cnt", "sum")]
            reveal.append(RevealColumn(f"{a}_sum", "sum_or_null", f"{a}_sum", enc, count=f"{a}_cnt"))
            if agg.func == "sum":
                replacements[agg.key] = quote(f"{a}_sum")
            else:
                reveal.append(RevealColumn(f"{a}_cnt", "value", f"{a}_cnt", COUNT))
                replacements[agg.key] = f"(CAST({quote(a + '_sum')} AS DOUBLE) / {quote(a + '_cnt')})"
        else:  # min / max
            fill = SENTINEL if agg.func == "min" else -SENTINEL
            items.append(f"COALESCE({encode_sql(f'{agg.func.upper()}({arg})', enc)}, {fill}) AS {a}")
            shares.append(ShareColumn(a, enc))
            combine.append(Combine(a, agg.func))
            reveal.append(RevealColumn(a, "minmax", a, enc))
            replacements[agg.key] = quote(a)
    return AggregateSplit(
        tuple(items), tuple(group_sql), tuple(shares), tuple(combine), tuple(reveal), replacements, has_string
    )
