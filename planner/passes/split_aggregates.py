"""Pass: split each aggregate into per-owner partials and a secure combine.

SUM/COUNT partials add up, MIN/MAX partials reduce by secure comparison, AVG
is carried as (sum, count). NULL semantics follow DuckDB: a SUM over no
non-NULL value is NULL (known from the combined count), a MIN/MAX partial with
no value carries a sentinel beyond the encodable range.
"""

from __future__ import annotations

from dataclasses import dataclass, field


from fedsql.errors import UnsupportedSql
from planner.analyze import SPREAD, QueryBlock, canonical, spread_sql
from plan.physical import SENTINEL, VALUE_LIMIT
from planner.encodings import (clamped_encode_sql, encode_sql, key_encoding,
                               saturated_sum_sql, value_encoding)
from planner.parse import DIALECT
from plan.physical import Combine, Encoding, NoiseSpec, RevealColumn, ShareColumn
from plan.schemas import quote

COUNT = Encoding("int", 0, "BIGINT")

DP_KEY_WORDS = 5
"""String GROUP BY keys under DP partition selection are shared in this many 7-byte words (35
bytes), fixed by the plan: agreeing the width from the data would reveal an un-noised maximum.
Longer keys are dropped by their owner (docs/dp.md §5.4)."""

WORD_BYTES = 7  # executors.codec.WORD: string key bytes per 64-bit word


@dataclass(frozen=True)
class AggregateSplit:
    select_items: tuple[str, ...]  # partial SELECT list run by each owner
    group_sql: tuple[str, ...]  # GROUP BY expressions of the partial query
    shares: tuple[ShareColumn, ...]
    combine: tuple[Combine, ...]
    reveal: tuple[RevealColumn, ...]
    replacements: dict[str, str]  # canonical expr → SQL over the revealed table
    has_string_key: bool
    local_sql: dict[str, str] = field(default_factory=dict)  # DP: member table (qualified) → its own partial SQL
    noise: tuple[NoiseSpec, ...] = ()  # DP: noise added to combined columns before the reveal


def sum_outputs(func: str, a: str, enc: Encoding):
    """SUM/AVG: combine SUM and COUNT; open SUM (NULL when COUNT is 0), and COUNT for AVG."""
    combine = [Combine(f"{a}_sum", "sum"), Combine(f"{a}_cnt", "sum")]
    reveal = [RevealColumn(f"{a}_sum", "sum_or_null", f"{a}_sum", enc, count=f"{a}_cnt")]
    if func == "sum":
        return combine, reveal, quote(f"{a}_sum")
    reveal.append(RevealColumn(f"{a}_cnt", "value", f"{a}_cnt", COUNT))
    return combine, reveal, f"(CAST({quote(a + '_sum')} AS DOUBLE) / {quote(a + '_cnt')})"


def median_outputs(agg, a: str, enc: Encoding, what: str):
    """MEDIAN: the compute parties sort each group's values (rows weighted by `{a}_cnt`, how many
    rows hold that value) and add up the two middle ones; the issuer halves the sum as DuckDB
    does (a DECIMAL keeps its scale, rounded toward zero). QUANTILE_CONT(x, a/b): they open the
    values at the two ranks around its position and the remainder r; the issuer interpolates
    lower + (r/b)(upper - lower) in DOUBLE as DuckDB does. NULL when the group has no value."""
    cnt = f"{a}_cnt"
    if agg.func == "quantile_cont":
        if enc.kind != "int":
            raise UnsupportedSql(f"{what} is not supported under MPC yet: QUANTILE_CONT takes integer values "
                                 "(MEDIAN takes DECIMAL values too)")
        hi, r = f"{a}_hi", f"{a}_r"
        combine = [Combine(cnt, "sum"), Combine(a, "quantile", weight=cnt, fraction=agg.fraction, outputs=(hi, r))]
        reveal = [RevealColumn(a, "sum_or_null", a, enc, count=cnt), RevealColumn(hi, "value", hi, enc),
                  RevealColumn(r, "value", r, COUNT)]
        lo = f"CAST({quote(a)} AS DOUBLE)"
        return combine, reveal, (f"({lo} + CAST({quote(r)} AS DOUBLE) / {agg.fraction[1]} * "
                                 f"(CAST({quote(hi)} AS DOUBLE) - {lo}))")
    if enc.kind not in ("int", "decimal"):
        raise UnsupportedSql(f"{what} is not supported under MPC yet: MEDIAN takes integer and DECIMAL values")
    combine = [Combine(cnt, "sum"), Combine(a, "median", weight=cnt)]
    reveal = [RevealColumn(a, "sum_or_null", a, enc, count=cnt)]
    twice = f"CAST({quote(a)} AS DOUBLE)"
    half = f"({twice} / 2)" if enc.kind == "int" else f"(trunc({twice} * {10 ** enc.scale} / 2) / {10 ** enc.scale})"
    return combine, reveal, half


def quantile_leakage(aggs, issuer: str) -> list[str]:
    """What QUANTILE_CONT opens beyond its result: the two values it interpolates between."""
    keys = [a.key for a in aggs if a.func == "quantile_cont"]
    return [f"to {issuer}: for {', '.join(keys)}, the two values it interpolates between (as MIN/MAX open a "
            "value) and how far between them the position lies"] if keys else []


MIDDLE = ("median", "quantile_cont")
"""Aggregates computed from each group's sorted values (executors/secure_table.py segmented_middle)."""


def median_refusal(dp: bool) -> UnsupportedSql:
    """Where MEDIAN / QUANTILE_CONT cannot run: on DP tables, and per group in oblivious mode (the
    groups it sorts within are the ones sizes mode opens to the compute parties)."""
    return UnsupportedSql("MEDIAN and QUANTILE_CONT " + (
        "are not available on DP tables (fedsql adds noise to sums and counts only)" if dp else
        "per group run in 'sizes' or 'reveal' mode only (they sort each group's values within the groups those "
        "modes open to the compute parties; without GROUP BY they run in every mode); SET fedsql.mode = 'sizes'"))


def spread_outputs(func: str, a: str, enc: Encoding, sq_enc: Encoding):
    """VAR/STDDEV: combine and open SUM, SUM of squares and COUNT; the issuer finishes the formula."""
    combine = [Combine(f"{a}_sum", "sum"), Combine(f"{a}_sq", "sum"), Combine(f"{a}_cnt", "sum")]
    reveal = [RevealColumn(f"{a}_sum", "value", f"{a}_sum", enc),
              RevealColumn(f"{a}_sq", "value", f"{a}_sq", sq_enc),
              RevealColumn(f"{a}_cnt", "value", f"{a}_cnt", COUNT)]
    return combine, reveal, spread_sql(func, quote(a + "_sum"), quote(a + "_sq"), quote(a + "_cnt"))


def distinct_value_sql(arg_sql: str, arg_type: str) -> str:
    """An exact-equality ring value for COUNT(DISTINCT x): the integer itself, else 61 bits of MD5."""
    t = arg_type.upper()
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "BOOLEAN", "DATE"):
        return encode_sql(f"({arg_sql})", Encoding("date" if t == "DATE" else "int"))
    return f"CAST(md5_number_lower(CAST(({arg_sql}) AS VARCHAR)) >> 3 AS BIGINT)"


BY_VALUE = ("count_distinct", "median", "quantile_cont")
"""Aggregates the owners cannot pre-aggregate over a group: they group by (keys, x) instead."""


def split_by_value(block: QueryBlock, types: dict[str, str], fixed_bits: int) -> AggregateSplit:
    """COUNT(DISTINCT x), MEDIAN(x), QUANTILE_CONT(x, q) (with or without other aggregates): owners
    group by (keys, x) and send those rows with the other aggregates' partials; under MPC a sort
    marks each (keys, x) once (executors/runtime.py DistinctMark), or sorts each group's values for
    MEDIAN/QUANTILE_CONT, and marks and partials are combined per group — partials over (keys, x)
    add up to the partials over keys."""
    distinct = [a for a in block.aggs if a.func in BY_VALUE]
    base = split_aggregates(_without(block, distinct), types, fixed_bits)
    items, shares, reveal = list(base.select_items), list(base.shares), list(base.reveal)
    group_sql, combine, replacements = list(base.group_sql), list(base.combine), dict(base.replacements)
    grouped = set(base.group_sql)
    for agg in (a for a in distinct if a.func in MIDDLE):
        a, arg_sql = f"__{agg.name}", agg.arg.sql(dialect=DIALECT)
        what = f"{agg.key} over {types[canonical(agg.arg)]}"
        enc = value_encoding(types[canonical(agg.arg)], fixed_bits, what)
        more_combine, more_reveal, replacements[agg.key] = median_outputs(agg, a, enc, what)
        items += [f"COALESCE({encode_sql(f'({arg_sql})', enc)}, 0) AS {a}", f"COUNT({arg_sql}) AS {a}_cnt"]
        shares += [ShareColumn(a, enc), ShareColumn(f"{a}_cnt", COUNT)]
        combine += more_combine
        reveal += more_reveal
        if arg_sql not in grouped:
            grouped.add(arg_sql)
            group_sql.append(arg_sql)
    distinct = [a for a in distinct if a.func == "count_distinct"]
    args: dict[str, str] = {}  # canonical x → suffix; owners group by (keys, x1, x2, …), a sort per x marks it
    for agg in distinct:
        key = canonical(agg.arg)
        if key not in args:
            args[key] = suffix = str(len(args) or "")
            arg_sql = agg.arg.sql(dialect=DIALECT)
            items += [f"COALESCE({distinct_value_sql(arg_sql, types[key])}, 0) AS __dx{suffix}",
                      f"CAST(({arg_sql}) IS NOT NULL AS BIGINT) AS __dxv{suffix}"]  # NULL x: counted by none
            shares += [ShareColumn(f"__dx{suffix}", COUNT, "distinct"), ShareColumn(f"__dxv{suffix}", COUNT, "distinct")]
            reveal.append(RevealColumn(f"__dmark{suffix}", "value", f"__dmark{suffix}", COUNT))
            if arg_sql not in grouped:
                grouped.add(arg_sql)
                group_sql.append(arg_sql)
            combine.append(Combine(f"__dmark{suffix}", "sum"))
        replacements[agg.key] = quote(f"__dmark{args[key]}")
    return AggregateSplit(tuple(items), tuple(group_sql), tuple(shares), tuple(combine), tuple(reveal), replacements,
                          base.has_string_key)


def distinct_marks(split: AggregateSplit) -> list[tuple[str, str, str]]:
    """(x, mark, x-is-not-NULL) columns of each COUNT(DISTINCT x) of a split, for `DistinctMark` steps."""
    return [(c.name, c.name.replace("__dx", "__dmark", 1), c.name.replace("__dx", "__dxv", 1))
            for c in split.shares if c.role == "distinct" and not c.name.startswith("__dxv")]


def _without(block: QueryBlock, aggs: list) -> QueryBlock:
    import copy

    clone = copy.copy(block)
    clone.aggs = [a for a in block.aggs if a not in aggs]
    return clone


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
            more_combine, more_reveal, replacements[agg.key] = sum_outputs(agg.func, a, enc)
            combine += more_combine
            reveal += more_reveal
        elif agg.func in SPREAD:  # SUM, SUM of squares, COUNT; the issuer finishes the formula
            if enc.kind not in ("int", "decimal", "fixed"):
                raise UnsupportedSql(f"{agg.func.upper()} over {arg_type} is not supported")
            sq_enc = Encoding("decimal", 2 * enc.scale, f"DECIMAL(38,{2 * enc.scale})") if enc.kind == "decimal" else enc
            items.append(f"COALESCE({encode_sql(f'SUM({arg})', enc)}, 0) AS {a}_sum")
            items.append(f"COALESCE({encode_sql(f'SUM(({arg}) * ({arg}))', sq_enc)}, 0) AS {a}_sq")
            items.append(f"COUNT({arg}) AS {a}_cnt")
            shares += [ShareColumn(f"{a}_sum", enc), ShareColumn(f"{a}_sq", sq_enc), ShareColumn(f"{a}_cnt", COUNT)]
            more_combine, more_reveal, replacements[agg.key] = spread_outputs(agg.func, a, enc, sq_enc)
            combine += more_combine
            reveal += more_reveal
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


# -- differential privacy -----------------------------------------------------------


def split_dp(block: QueryBlock, types: dict[str, str], dp) -> AggregateSplit:
    """The split of a query over DP tables (planner/passes/dp.py gives `dp`, a DPRequest).

    Each owner's SQL: filter (WHERE), contribution bounding at DP members (at most
    max_rows rows per privacy unit, chosen deterministically by a hash of the row),
    clamping of summed values into the declared bounds (in scaled integer units, so
    the sensitivity is exact), and one partial row per declared group, empty or not.
    SUM reveals no NULL bit and AVG no exact count: only noisy columns are opened.
    """
    from planner.passes.pushdown import where_sql

    shares: list[ShareColumn] = []
    combine: list[Combine] = []
    reveal: list[RevealColumn] = []
    replacements: dict[str, str] = {}
    has_string = False
    key_items, key_encs = [], []
    for i, ((column, typ, _), g) in enumerate(zip(dp.groups, block.group_by)):
        enc = key_encoding(typ, f"GROUP BY {column}")
        has_string |= enc.kind == "string"
        name = f"__g{i}"
        grp_key = "__grp." + quote(f"__k{i}")
        key_items += [f"CAST(1 AS BIGINT) AS {quote(name + '_valid')}",
                      f"{encode_sql(grp_key, enc)} AS {quote(name)}"]
        key_encs.append(enc)
        shares += [ShareColumn(f"{name}_valid", COUNT, "key"), ShareColumn(name, enc, "key")]
        reveal.append(RevealColumn(name, "key", name, enc, count=f"{name}_valid"))
        replacements[canonical(g)] = quote(name)
    partials: list[str] = []
    for agg in block.aggs:
        info = dp.aggs[agg.key]
        a = f"__{agg.name}"
        v = quote(f"__v_{agg.name}")
        if agg.func == "count_star":
            partials.append(f"COUNT(__r.{quote('__one')}) AS {quote(a)}")
        elif agg.func == "count":
            partials.append(f"COUNT(__r.{v}) AS {quote(a)}")
        else:
            partials.append(saturated_sum_sql(f"SUM(__r.{v})") + f" AS {quote(a + '_sum')}")
            if agg.func in SPREAD:
                square = square_sql(f"__r.{v}", info)
                partials.append(saturated_sum_sql(f"SUM({square})") + f" AS {quote(a + '_sq')}")
            if agg.func != "sum":
                partials.append(f"COUNT(__r.{v}) AS {quote(a + '_cnt')}")
        if agg.func in ("count_star", "count"):
            shares.append(ShareColumn(a, COUNT))
            combine.append(Combine(a, "sum"))
            reveal.append(RevealColumn(a, "value", a, COUNT))
            replacements[agg.key] = quote(a)
            continue
        more_shares, more_reveal, replacements[agg.key] = dp_value_outputs(agg.func, a, info)
        shares += more_shares
        reveal += more_reveal
        combine += [Combine(c.name, "sum") for c in more_shares]

    columns = [c for c, _ in block.table.schema]
    local: dict[str, str] = {}
    for m in block.table.members:
        policy = dp.members.get(m.qualified)
        rows = ["1 AS " + quote("__one")]
        rows += [f"{g.sql(dialect=DIALECT)} AS {quote(f'__k{i}')}" for i, g in enumerate(block.group_by)]
        for agg in block.aggs:
            v = quote(f"__v_{agg.name}")
            if agg.func == "count":
                rows.append(f"({agg.arg.sql(dialect=DIALECT)}) AS {v}")
            elif agg.func in ("sum", "avg") + SPREAD:
                rows.append(f"{dp_value_sql(agg, dp.aggs[agg.key], m.qualified if policy else None)} AS {v}")
        source = f"{quote(m.name)} AS {quote(block.alias)}{where_sql(block)}"
        if policy is not None and not policy.row_level:
            order = ", ".join(quote(c) for c in columns)
            source = (f"(SELECT *, ROW_NUMBER() OVER (PARTITION BY {quote(policy.unit)} ORDER BY hash({order})) "
                      f"AS {quote('__fedsql_rn')} FROM {source}) AS {quote(block.alias)} "
                      f"WHERE {quote('__fedsql_rn')} <= {policy.max_rows}")
        inner = f"SELECT {', '.join(rows)} FROM {source}"
        if not dp.groups:
            local[m.qualified] = f"SELECT {', '.join(partials)} FROM ({inner}) AS __r"
            continue
        dims = []
        for i, (_, typ, values) in enumerate(dp.groups):
            vals = ", ".join(f"(CAST({_literal(v)} AS {typ}))" for v in values)
            dims.append(f"(VALUES {vals}) AS {quote(f'__d{i}')}({quote(f'__k{i}')})")
        grp = f"(SELECT * FROM {' CROSS JOIN '.join(dims)}) AS __grp"
        on = " AND ".join(f"__r.{quote(f'__k{i}')} = __grp.{quote(f'__k{i}')}" for i in range(len(dp.groups)))
        group_by = ", ".join(f"__grp.{quote(f'__k{i}')}" for i in range(len(dp.groups)))
        local[m.qualified] = (f"SELECT {', '.join(key_items + partials)} FROM {grp} LEFT JOIN ({inner}) AS __r "
                              f"ON {on} GROUP BY {group_by}")
    noise = tuple(spec for agg in block.aggs for spec in dp.aggs[agg.key].noise)
    return AggregateSplit((), (), tuple(shares), tuple(combine), tuple(reveal), replacements, has_string,
                          local, noise)


def dp_value_sql(agg, info, member: str | None) -> str:
    """A row's encoded value for a DP SUM/AVG/VAR: clamped into the DP member's bounds (scaled
    units, so the sensitivity is exact), centred for VAR; `member` None: no policy binds the rows."""
    arg = f"({agg.arg.sql(dialect=DIALECT)})"
    if member is not None:
        value = clamped_encode_sql(arg, info.encoding, *info.bounds[member])
    else:
        value = encode_sql(arg, info.encoding)
    return f"({value} - {info.center})" if info.center else value


def square_sql(value: str, info) -> str:
    """floor(v^2 / divisor): a centred value's square at the value's own scale (exact in HUGEINT)."""
    from planner.passes.dp import _divisor

    square = f"(CAST({value} AS HUGEINT) * CAST({value} AS HUGEINT)) // {_divisor(info.encoding)}"
    return f"CAST(LEAST({square}, {VALUE_LIMIT - 1}) AS BIGINT)"  # saturated: never a data-dependent overflow


def dp_value_outputs(func: str, a: str, info) -> tuple[list[ShareColumn], list[RevealColumn], str]:
    """Shared and revealed columns of a DP SUM/AVG/VAR/STDDEV and the issuer's SQL over the noisy
    values: SUM as is (never NULL), AVG = sum / count clamped to the bounds, VAR from the centred sum,
    sum of squares and count, clamped to [0, the largest variance values in the bounds can have]."""
    enc = info.encoding
    names = [(f"{a}_sum", enc)]
    if func in SPREAD:
        names.append((f"{a}_sq", enc))
    if func != "sum":
        names.append((f"{a}_cnt", COUNT))
    shares = [ShareColumn(n, e) for n, e in names]
    reveal = [RevealColumn(n, "value", n, e) for n, e in names]
    s_, c_ = quote(a + "_sum"), quote(a + "_cnt")
    lo, hi = info.out_bounds
    if func == "sum":
        return shares, reveal, s_
    if func == "avg":
        return shares, reveal, (f"(CASE WHEN {c_} > 0 THEN LEAST(GREATEST(CAST({s_} AS DOUBLE) / {c_}, "
                                f"{float(lo)!r}), {float(hi)!r}) END)")
    pop = func.endswith("_pop")
    s, q, n = f"CAST({s_} AS DOUBLE)", f"CAST({quote(a + '_sq')} AS DOUBLE)", f"CAST({c_} AS DOUBLE)"
    widest = f"{((hi - lo) / 2) ** 2!r}" + ("" if pop else f" * {n} / ({n} - 1)")
    var = f"LEAST(GREATEST(({q} - {s} * {s} / {n}) / ({n}{'' if pop else ' - 1'}), 0), {widest})"
    value = f"sqrt({var})" if func.startswith("stddev") else var
    return shares, reveal, f"(CASE WHEN {c_} > {0 if pop else 1} THEN {value} END)"


def split_dp_rows(block: QueryBlock, types: dict[str, str], dp) -> AggregateSplit:
    """The split of a DP query over secret GROUP BY keys (private partition selection).

    Every owner shares every row of its table — the table size is public, while the number of
    rows passing WHERE or of local groups is not — with a secret flag `__keep`: 1 when the row
    passes WHERE, the contribution bounding (DP members: at most max_rows rows per unit, by a hash
    of the row, among the rows passing WHERE) and the owner's declared values for keys it lists in
    public_groups. Dropped rows carry zeros. The oblivious GROUP BY sums these per group under MPC.
    """
    shares: list[ShareColumn] = []
    reveal: list[RevealColumn] = []
    replacements: dict[str, str] = {}
    key_items, key_sql, long_keys = [], [], []
    has_string = False
    for i, (g, typ) in enumerate(zip(block.group_by, dp.key_types)):
        g_sql = g.sql(dialect=DIALECT)
        enc = key_encoding(typ, f"GROUP BY {g_sql}")
        name = f"__g{i}"
        k = f"({g_sql})"
        key_sql.append(k)
        if enc.kind == "string":
            has_string = True
            limit = DP_KEY_WORDS * WORD_BYTES
            long_keys.append(f"({k} IS NULL OR strlen({k}) <= {limit})")
            value = f"COALESCE(CASE WHEN strlen({k}) <= {limit} THEN {k} END, '')"
        else:
            encoded = encode_sql(k, enc) if enc.kind == "float_bits" else f"TRY({encode_sql(k, enc)})"
            value = f"COALESCE({encoded}, {'0.0' if enc.kind == 'float_bits' else '0'})"  # TRY: no key raises
        key_items += [f"CAST({k} IS NOT NULL AS BIGINT) AS {quote(name + '_valid')}", f"{value} AS {quote(name)}"]
        shares += [ShareColumn(f"{name}_valid", COUNT, "key"), ShareColumn(name, enc, "key")]
        reveal.append(RevealColumn(name, "key", name, enc, count=f"{name}_valid"))
        replacements[canonical(g)] = quote(name)
    keep = quote("__keep")
    shares.append(ShareColumn("__keep", COUNT))
    for agg in block.aggs:
        a = f"__{agg.name}"
        if agg.func in ("count_star", "count"):
            shares.append(ShareColumn(a, COUNT))
            reveal.append(RevealColumn(a, "value", a, COUNT))
            replacements[agg.key] = quote(a)
            continue
        more_shares, more_reveal, replacements[agg.key] = dp_value_outputs(agg.func, a, dp.aggs[agg.key])
        shares += more_shares
        reveal += more_reveal
    if dp.selection.hidden:
        shares.append(ShareColumn("__sel", COUNT))
    combine = tuple(Combine(c.name, "sum") for c in shares if c.role != "key" and c.name != "__keep")

    def value_items(member: str | None) -> list[str]:
        items = [f"CAST({keep} AS BIGINT) AS {keep}"]
        for agg in block.aggs:
            a = f"__{agg.name}"
            arg_ok = f"{keep} AND ({agg.arg.sql(dialect=DIALECT)}) IS NOT NULL" if agg.arg is not None else keep
            if agg.func in ("count_star", "count"):
                items.append(f"CAST({arg_ok} AS BIGINT) AS {quote(a)}")
                continue
            info = dp.aggs[agg.key]
            v = dp_value_sql(agg, info, member)
            items.append(f"(CASE WHEN {arg_ok} THEN {v} ELSE 0 END) AS {quote(a + '_sum')}")
            if agg.func in SPREAD:
                items.append(f"(CASE WHEN {arg_ok} THEN {square_sql(v, info)} ELSE 0 END) AS {quote(a + '_sq')}")
            if agg.func != "sum":
                items.append(f"CAST({arg_ok} AS BIGINT) AS {quote(a + '_cnt')}")
        if dp.selection.hidden:
            items.append(f"CAST({keep} AS BIGINT) AS {quote('__sel')}")
        return items

    columns = [c for c, _ in block.table.schema]
    where = f"COALESCE(({block.where.sql(dialect=DIALECT)}), FALSE)" if block.where is not None else "TRUE"
    alias = quote(block.alias)
    local: dict[str, str] = {}
    for m in block.table.members:
        policy = dp.members.get(m.qualified)
        conds = [quote("__fedsql_w")] + long_keys
        source = f"(SELECT *, {where} AS {quote('__fedsql_w')} FROM {quote(m.name)} AS {alias}) AS {alias}"
        if policy is not None and not policy.row_level:
            order = ", ".join(quote(c) for c in columns)
            source = (f"(SELECT *, ROW_NUMBER() OVER (PARTITION BY {quote(policy.unit)}, {quote('__fedsql_w')} "
                      f"ORDER BY hash({order})) AS {quote('__fedsql_rn')} FROM {source}) AS {alias}")
            conds.append(f"{quote('__fedsql_rn')} <= {policy.max_rows}")
        for i, values in dp.key_filters.get(m.qualified, ()):
            vals = ", ".join(f"CAST({_literal(v)} AS {dp.key_types[i]})" for v in values)
            conds.append(f"COALESCE({key_sql[i]} IN ({vals}), FALSE)")
        select = ", ".join(key_items + value_items(m.qualified if policy else None))
        local[m.qualified] = (f"SELECT {select} FROM (SELECT *, ({' AND '.join(conds)}) AS {keep} "
                              f"FROM {source}) AS {alias}")
    noise = tuple(spec for agg in block.aggs for spec in dp.aggs[agg.key].noise)
    if dp.selection.hidden:
        noise += (dp.selection.count,)
    return AggregateSplit((), (), tuple(shares), combine, tuple(reveal), replacements, has_string, local, noise)


def _literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)
