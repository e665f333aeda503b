"""Logical query block → physical plan: choose where each step runs.

Four shapes, cheapest first:
- the issuer owns every member table: run the query in its own DuckDB;
- one owner (not the issuer): the owner runs it and sends the permitted result;
- a union, non-aggregate: owners filter locally, send public rows to the issuer;
- a union, aggregate: owners compute partial aggregates locally, share them,
  the compute parties combine them under MPC, only the issuer sees the result.
"""

from __future__ import annotations

from planner.analyze import QueryBlock, canonical
from planner.parse import DIALECT
from planner.passes.finalize import final_sql, issuer_side_note
from planner.passes.secure_finish import finish_leakage, plan_secure_finish
from planner.passes.pushdown import rewrite_source, row_fragment_sql, source_sql, where_sql
from planner.passes.dp import DPRequest, interval_items, leakage_lines
from planner.passes.split_aggregates import (
    DP_KEY_WORDS,
    AggregateSplit,
    split_aggregates,
    BY_VALUE,
    MIDDLE,
    median_refusal,
    quantile_leakage,
    split_by_value,
    distinct_marks,
    split_dp,
    split_dp_rows,
)
from plan.physical import (
    AddNoise,
    AgreeWidth,
    FinalQuery,
    DistinctMark,
    GroupCombine,
    ObliviousGroup,
    LocalQuery,
    PartitionSelect,
    RevealResult,
    SecureUnion,
    SendPlain,
    ShareTable,
    Step,
)
from plan.schemas import quote
from planner.validate import OutputSchema, describe

PUBLIC_TEXT = "public to every participating party: the SQL text, the plan and the table schemas"


def lower(
    block: QueryBlock,
    issuer: str,
    compute: tuple[str, str, str],
    output: OutputSchema,
    mode: str,
    fixed_bits: int,
    dp: DPRequest | None = None,
) -> tuple[tuple[Step, ...], str, tuple[str, ...]]:
    """Return (steps, result step id, leakage report). With `dp` (planner/passes/dp.py) the
    aggregates are noised inside the MPC, whoever owns the tables."""
    owners = block.table.owners
    if dp is not None and dp.selection is not None:
        return _dp_selection(block, issuer, compute, output, dp)
    if dp is not None:
        return _union_aggregate(block, issuer, compute, output, fixed_bits, dp)
    if set(owners) == {issuer} and len(owners) == 1:
        sql = rewrite_source(block, block.table.members[0])
        return (LocalQuery("result", issuer, sql, "whole query at the owner"),), "result", (
            f"nothing leaves {issuer}: it owns the table and runs the query in its own DuckDB",
        )
    if len(owners) == 1:
        return _single_owner(block, issuer)
    if not block.is_aggregate:
        return _union_rows(block, issuer, output)
    return _union_aggregate(block, issuer, compute, output, fixed_bits, oblivious=mode == "oblivious")


def _single_owner(block: QueryBlock, issuer: str):
    member = block.table.members[0]
    sql = rewrite_source(block, member)
    steps = (
        LocalQuery("q", member.party, sql, "whole query at the owner"),
        SendPlain("result", "q", member.party, issuer, "permitted result to the issuer"),
    )
    what = "aggregates" if block.is_aggregate else "public row values"
    leakage = (
        f"{member.party} runs the query over its own table and sends the result ({what}) to {issuer} only",
        f"{issuer} learns the result; no other party takes part",
    )
    return steps, "result", leakage


def _union_rows(block: QueryBlock, issuer: str, output: OutputSchema):
    columns = [c for c, _ in block.table.schema if c in block.uses.get("row", set()) | block.uses.get("where", set())]
    needed = [c for c in columns if c in block.uses.get("row", set())]
    steps: list[Step] = []
    received = []
    for m in block.table.members:
        steps.append(LocalQuery(f"q_{m.party}", m.party, row_fragment_sql(block, m, needed), "filter and project own rows"))
        if m.party != issuer:
            steps.append(SendPlain(f"rows_{m.party}", f"q_{m.party}", m.party, issuer, "public rows to the issuer"))
            received.append(f"rows_{m.party}")
        else:
            received.append(f"q_{m.party}")
    sql = final_sql(block, "__rows", {}, output)
    steps.append(FinalQuery("result", issuer, sql, (("__rows", "*" + ",".join(received)),)))
    others = [m.party for m in block.table.members if m.party != issuer]
    leakage = (
        f"{', '.join(others)} send their rows matching the WHERE clause, columns {', '.join(needed) or '(none)'} "
        f"(all 'public'), in plaintext to {issuer}",
        f"{issuer} learns how many rows each of {', '.join(others)} contributed",
    )
    return tuple(steps), "result", leakage


def _union_aggregate(block: QueryBlock, issuer: str, compute, output: OutputSchema, fixed_bits: int,
                     dp: DPRequest | None = None, oblivious: bool = False):
    types = _expression_types(block)
    distinct = dp is None and any(a.func in BY_VALUE for a in block.aggs)
    if any(a.func in MIDDLE for a in block.aggs) and (dp is not None or (oblivious and block.group_by)):
        raise median_refusal(dp is not None)
    if distinct:
        split = split_by_value(block, types, fixed_bits)
    else:
        split = split_aggregates(block, types, fixed_bits) if dp is None else split_dp(block, types, dp)
    members = block.table.members
    steps: list[Step] = []
    group_by = f" GROUP BY {', '.join(split.group_sql)}" if split.group_sql else ""
    where = where_sql(block)
    if distinct and all(a.func == "count_distinct" for a in block.aggs) and \
            len({canonical(a.arg) for a in block.aggs}) == 1:  # NULL x counts nowhere: skip its rows
        not_null = f"({block.aggs[0].arg.sql(dialect=DIALECT)}) IS NOT NULL"
        where = f"{where} AND {not_null}" if where else f" WHERE {not_null}"
    for m in members:
        if split.local_sql:
            purpose = ("DP partials: bounded rows per unit, clamped values, every declared group"
                       if m.qualified in dp.members else "partials for every declared group")
            steps.append(LocalQuery(f"p_{m.party}", m.party, split.local_sql[m.qualified], purpose))
            continue
        sql = f"SELECT {', '.join(split.select_items)} {source_sql(block, m)}{where}{group_by}"
        steps.append(LocalQuery(f"p_{m.party}", m.party, sql, "partial aggregates over own rows"))
    width = ""
    if split.has_string_key:
        width = "w"
        steps.append(AgreeWidth("w", tuple((m.party, f"p_{m.party}") for m in members), "string keys"))
    for m in members:
        steps.append(ShareTable(f"s_{m.party}", f"p_{m.party}", m.party, split.shares, width))
    steps.append(SecureUnion("u", tuple(f"s_{m.party}" for m in members)))
    keys = tuple(c.name for c in split.shares if c.role == "key")
    grouped_input = "u"
    for i, (column, mark, valid) in enumerate(distinct_marks(split) if distinct else ()):
        # mark the first row of every (keys, x) once, after an oblivious sort (one per distinct x)
        steps.append(DistinctMark(f"dm{i or ''}", grouped_input, keys, column, mark, valid))
        grouped_input = f"dm{i or ''}"
    secret_keys = oblivious and bool(keys)
    # oblivious mode: secret GROUP BY (sort + segmented scans); keys reach the issuer only
    steps.append(ObliviousGroup("g", grouped_input, keys, split.combine) if secret_keys
                 else GroupCombine("g", grouped_input, keys, split.combine))
    combined = "g"
    if split.noise:
        steps.append(AddNoise("n", "g", split.noise))
        combined = "n"
    finish = None if dp is not None else plan_secure_finish(
        block.ast, split.reveal, split.replacements, canonical, "h", combined)
    if finish is not None:  # HAVING / ORDER BY … LIMIT under MPC: the issuer gets only the result rows
        steps.append(finish)
        combined = "h"
    steps.append(RevealResult("r", combined, issuer, split.reveal, secret_keys=secret_keys or finish is not None))
    sql = final_sql(block, "__agg", split.replacements, output, drop_offset=finish is not None,
                    extra=interval_items(dp) if dp is not None else ())
    steps.append(FinalQuery("result", issuer, sql, (("__agg", "r"),)))
    if dp is not None:
        return tuple(steps), "result", _dp_leakage(block, issuer, compute, dp)
    leakage = _aggregate_leakage(block, issuer, compute, split)
    leakage += finish_leakage(finish, compute) if finish is not None else issuer_side_note(block.ast, issuer)
    if secret_keys:
        leakage = tuple(line for line in leakage if "group key values" not in line and "how many groups" not in line)
        leakage += (f"to {', '.join(compute)}: the number of groups (the result size); the keys stay secret "
                    "until the issuer gets the result (oblivious sort + segmented aggregation)",)
    return tuple(steps), "result", leakage


def _dp_selection(block: QueryBlock, issuer: str, compute, output: OutputSchema, dp: DPRequest):
    """DP over secret GROUP BY keys: every owner shares all its rows with a keep flag; an oblivious
    GROUP BY marks each group's last row without opening anything; each compute party adds its
    noise part to every row; only groups whose noisy count reaches τ are opened, keys to the
    issuer only (docs/dp.md §5.4)."""
    split = split_dp_rows(block, _expression_types(block), dp)
    members = block.table.members
    steps: list[Step] = []
    for m in members:
        purpose = ("DP rows: keep flag after WHERE and per-unit bounding, clamped values"
                   if m.qualified in dp.members else "rows with their WHERE flag")
        steps.append(LocalQuery(f"p_{m.party}", m.party, split.local_sql[m.qualified], purpose))
    width = DP_KEY_WORDS if split.has_string_key else 0
    for m in members:
        steps.append(ShareTable(f"s_{m.party}", f"p_{m.party}", m.party, split.shares, width=width))
    steps.append(SecureUnion("u", tuple(f"s_{m.party}" for m in members)))
    keys = tuple(c.name for c in split.shares if c.role == "key")
    sel = dp.selection
    steps.append(ObliviousGroup("g", "u", keys, split.combine, flag="__keep", mark="__last"))
    steps.append(AddNoise("n", "g", split.noise))
    steps.append(PartitionSelect("sel", "n", sel.count.column, sel.threshold, "__last"))
    steps.append(RevealResult("r", "sel", issuer, split.reveal, secret_keys=True))
    sql = final_sql(block, "__agg", split.replacements, output, extra=interval_items(dp))
    steps.append(FinalQuery("result", issuer, sql, (("__agg", "r"),)))
    leakage = (f"to {', '.join(compute)}: nothing but the input table sizes and the number of released groups; "
               "keys, flags and aggregates stay secret",)
    return tuple(steps), "result", leakage + leakage_lines(dp.info, issuer, ", ".join(block.table.owners))


def _dp_leakage(block: QueryBlock, issuer: str, compute, dp: DPRequest) -> tuple[str, ...]:
    owners = ", ".join(block.table.owners)
    out = []
    if not block.group_by:
        out.append(f"nothing to {', '.join(compute)}: each of {owners} shares exactly one row of partial aggregates")
    return tuple(out) + leakage_lines(dp.info, issuer, owners)


def _aggregate_leakage(block: QueryBlock, issuer: str, compute, split: AggregateSplit) -> tuple[str, ...]:
    owners = ", ".join(block.table.owners)
    cp = ", ".join(compute)
    out = []
    key_sql = [g.sql(dialect=DIALECT) for g in block.group_by]
    by_value = [g for g in split.group_sql if g not in key_sql]  # MEDIAN / COUNT(DISTINCT): a row per value
    if by_value:
        out.append(f"to {cp}: how many distinct ({', '.join(split.group_sql)}) each of {owners} has locally (the "
                   f"size of its shared partial table: MEDIAN and COUNT(DISTINCT …) need a row per value)")
    if block.group_by:
        keys = ", ".join(key_sql)
        if not by_value:
            out.append(f"to {cp}: how many groups ({keys}) each of {owners} has locally (the size of its shared "
                       "partial table)")
        out.append(
            f"to {cp}: the group key values ({keys}) after an oblivious shuffle, and how many parties hold each; "
            "which party holds which key stays hidden"
        )
        if split.has_string_key:  # AgreeWidth: opened to the compute parties, sent on to the other owners
            learners = ", ".join(dict.fromkeys(tuple(compute) + tuple(block.table.owners)))
            out.append(f"to {learners}: the length of the longest string group key, in 7-byte words")
    elif not by_value:
        out.append(f"nothing to {cp}: each of {owners} shares exactly one row of partial aggregates")
    avgs = [a.key for a in block.aggs if a.func == "avg"]
    sums = [a.key for a in block.aggs if a.func in ("sum", "avg")]
    out.append(f"to {issuer} only: the result (aggregates over the union of {owners}); no party sees another's partials")
    if avgs:
        out.append(f"to {issuer}: each of {', '.join(avgs)} as its SUM and COUNT (divided at the issuer)")
    if sums:
        out.append(f"to {issuer}: for {', '.join(sums)}, whether any input value was non-NULL")
    return tuple(out) + tuple(quantile_leakage(block.aggs, issuer))


def _expression_types(block: QueryBlock) -> dict[str, str]:
    """DuckDB types of the group keys and aggregate arguments (bound over empty tables)."""
    exprs = {canonical(g): g for g in block.group_by}
    exprs.update({canonical(a.arg): a.arg for a in block.aggs if a.arg is not None})
    if not exprs:
        return {}
    keys = list(exprs)
    items = ", ".join(f"{exprs[k].sql(dialect=DIALECT)} AS {quote(f'c{i}')}" for i, k in enumerate(keys))
    table = block.table
    sql = f"SELECT {items} FROM {quote(table.internal_name)} AS {quote(block.alias)}"
    described = describe(sql, {table.internal_name: table.schema}, {table.internal_name: table.name})
    return {k: typ for k, (_, typ) in zip(keys, described)}


__all__ = ["lower", "PUBLIC_TEXT"]
