"""EXPLAIN: the plan as lines of text — each step, where it runs, what it reveals."""

from __future__ import annotations

import re

from planner.passes.dp import explain_lines as dp_explain_lines
from plan.physical import PhysicalPlan, Step


def _where(step: Step, plan: PhysicalPlan) -> str:
    op = step.op
    if op in ("local_query", "final_query"):
        return f"{step.party} (local DuckDB, plaintext)"
    if op == "send_plain":
        return f"{step.party} -> {step.to} (plaintext, permitted by policy)"
    if op == "share_table":
        return f"{step.party} -> {', '.join(plan.compute)} (secret shares)"
    if op == "reveal_result":
        return f"secure ({', '.join(plan.compute)}) -> {step.to} only"
    if op == "compute_tags":
        return f"{step.party} (local: keyed PRF of its own join keys)"
    if op == "agree_tag_key":
        return f"{', '.join(step.parties)} (the key owners only)"
    return f"secure ({', '.join(plan.compute)})"


def _what(step: Step) -> str:
    op = step.op
    if op in ("local_query", "final_query"):
        return f"{step.purpose + ': ' if getattr(step, 'purpose', '') else ''}{step.sql}"
    if op == "send_plain":
        return step.purpose
    if op == "share_table":
        return "columns " + ", ".join(c.name for c in step.columns)
    if op == "secure_union":
        return "concatenate shared partials of " + ", ".join(s.split("_", 1)[1] for s in step.inputs)
    if op == "group_combine":
        how = ", ".join(f"{c.how}({c.column})" for c in step.combine)
        if step.keys:
            return f"shuffle, open keys {', '.join(k for k in step.keys if not k.endswith('_valid'))}, reduce: {how}"
        return f"reduce: {how}"
    if op == "reveal_result":
        own = [c.name for c in step.columns if c.how in ("local_key", "local_row")]
        opened = [c.name for c in step.columns if c.how not in ("local_key", "local_row")] + (
            ["__grank"] if step.local_keys else [])
        if step.rows:
            how = (f"{' and '.join(step.count_to)} open {step.rows}, then open {', '.join(opened)} of the real rows"
                   if step.count_to else f"zero those not in the result, open {', '.join(opened + [step.rows])}")
            return (f"shuffle the rows (unless in an owner's random order), {how} to {step.to} only"
                    + (f"; {step.to} attaches its own columns {', '.join(own)} by row number" if own else ""))
        return "open " + ", ".join(opened) + (
            f"; {step.to} attaches its own group labels {', '.join(own)} by rank" if own else "")
    if op == "secure_join":
        if step.mark:
            return (f"{step.kind}: keyed tags opened to {step.matcher} (outer rows in an order it does not know, "
                    "inner rows shuffled); it inputs which outer rows are kept as a secret flag, nothing gathered")
        how = "after a secret shuffle of both sides" if step.shuffle else "unshuffled (reveal mode)"
        return (f"{step.kind} join: keyed tags opened to {step.matcher} {how}; it sends the matching row pairs to "
                "every compute party")
    if op == "oblivious_join":
        return (f"sort both sides by keyed tag (unique side first), copy the unique side's row onto each match "
                f"(segmented scan){'; unmatched rows kept with NULLs' if step.outer else ''}; opens one bit: "
                "does the unique side's key repeat (then the query fails)")
    if op == "oblivious_semi_join":
        return (f"{step.kind}: sort outer and inner tags together (or, for outer × inner ≤ 2^22 rows, compare "
                "every pair), mark the outer rows with (without) a match; nothing opened" + ("; one bit: does the subquery yield a NULL"
                                                       if step.kind == "not_in" else ""))
    if op == "agree_width":
        return f"secure max of {step.column} width, opened to the compute parties and sent to the owners"
    if op == "add_noise":
        return "each compute party inputs its DP noise part as shares, added before any reveal: " + ", ".join(
            f"{n.column} (epsilon {n.epsilon:.4g}, sensitivity {n.sensitivity})" for n in step.noise)
    if op == "oblivious_group":
        how = ", ".join(f"{c.how}({c.column})" for c in step.combine)
        opened = "open nothing, mark each group's last row" if step.mark else "open which rows end a group"
        return f"oblivious sort by {', '.join(step.keys)}, segmented {how}; {opened}"
    if op == "bound_per_unit":
        return (f"oblivious sort by the privacy unit {step.unit}, segmented running count of {step.flag}; "
                f"clear {step.flag} after each unit's first {step.bound} kept rows (compared on shares); nothing opened")
    if op == "partition_select":
        return (f"keep groups whose noisy {step.count} >= tau = {step.threshold} (compared on shares), shuffle, "
                "open only the keep bits")
    return ""


_PARTS = {"_sum": "sum part of {}", "_cnt": "count part of {}", "_sq": "sum-of-squares part of {}",
          "_valid": "{} IS NOT NULL", "__v": "{} IS NOT NULL"}
"""Suffixes the aggregate split adds to an internal name, and what each column holds."""

_INTERNAL = re.compile(r"__[agl]\d+(?:_sum|_cnt|_sq|_valid|__v)?\b")

_LEAF = re.compile(r"(?:SELECT |, )CAST\(\(((?:(?! AS __).)+?)\) IS NOT NULL AS BIGINT\) AS (__l\d+)__v")
"""A join fragment's validity column, which carries its leaf's own SQL (planner/lower_join.py `leaf`)."""


def plan_legend(group_by: list, aggs: list) -> tuple[tuple[str, str], ...]:
    """Internal column names of the aggregate split → the user's expressions, for EXPLAIN."""
    from planner.parse import DIALECT

    out = [(f"__g{i}", g.sql(dialect=DIALECT)) for i, g in enumerate(group_by)]
    for a in aggs:
        if a.func == "count_star":
            text = "COUNT(*)"
        elif a.func == "count_distinct":
            text = f"COUNT(DISTINCT {a.arg.sql(dialect=DIALECT)})"
        else:
            text = f"{a.func.upper()}({a.arg.sql(dialect=DIALECT)})"
        out.append((f"__{a.name}", text))
    return tuple(out)


def _legend_line(text: str, legend: dict[str, str]) -> str:
    """`legend: __a1_sum = sum part of AVG(cost), ...` for the internal names `text` uses."""
    seen: list[str] = []
    for name in _INTERNAL.findall(text):
        if name not in seen:
            seen.append(name)
    items = []
    for name in seen:
        if name in legend:
            base, suffix = name, ""
        elif name.endswith("__v"):
            base, suffix = name[:-3], "__v"
        else:
            base, suffix = name.rsplit("_", 1)[0], "_" + name.rsplit("_", 1)[1]
        if base not in legend:
            continue
        items.append(f"{name} = {_PARTS[suffix].format(legend[base]) if suffix else legend[base]}")
    return "legend: " + ", ".join(items) if items else ""


def explain_lines(plan: PhysicalPlan) -> list[str]:
    mode = dict(plan.settings).get("fedsql.mode", "")
    lines = [
        f"plan {plan.hash[:16]}  issuer={plan.issuer}  mode={mode}  compute={','.join(plan.compute)}",
        f"participants: {', '.join(plan.participants)}",
        "steps:",
    ]
    legend = dict(plan.legend)
    for step in plan.steps:  # join fragments: each leaf __l<i> is one party's expression
        if step.op == "local_query":
            legend.update((name, sql) for sql, name in _LEAF.findall(step.sql))
    for i, step in enumerate(plan.steps, 1):
        lines.append(f"  {i}. {step.op:<14} at {_where(step, plan)}")
        what = _what(step)
        if what:
            lines.append(f"       {what}")
            names = _legend_line(what, legend)
            if names:
                lines.append(f"       {names}")
    lines.append("output: " + ", ".join(f"{n} {t}" for n, t in plan.output))
    lines.extend(dp_explain_lines(plan.dp))
    lines.append("leakage report:")
    lines.extend(f"  - {item}" for item in plan.leakage)
    return lines
