"""Split an owner's fragment into the part its database runs and the part the node finishes.

The planner's fragments wrap plain relational work in DuckDB-specific finishing touches:

    SELECT COALESCE(CAST(SUM(x) AS BIGINT), 0) AS __a0_sum, CAST((k) IS NOT NULL AS BIGINT) AS __g0_valid, ...
    FROM "t" AS "t" WHERE g >= 2 GROUP BY k

`split` pushes the FROM/JOIN/WHERE/GROUP BY/HAVING and every aggregate and group expression into
the source (`SELECT k AS __p0, SUM(x) AS __p1 ... WHERE g >= 2 GROUP BY k`), and leaves the casts,
COALESCEs and scaling to DuckDB over that small output. Each pushed unit is cast to the type
DuckDB gives it, so the result is what DuckDB alone computes. A fragment `split` cannot cut this
way (subqueries, ORDER BY, windows, a construct the source lacks) returns None: the node then
reads the needed columns and runs the whole fragment itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

CLAUSES = {"expressions", "from_", "joins", "where", "group", "having"}  # sqlglot 30 arg names


@dataclass(frozen=True)
class Split:
    inner: exp.Select  # runs in the source; its outputs are "__p0", "__p1", ...
    outer: exp.Select  # runs in DuckDB over the inner output, named `relation`


class _Refused(Exception):
    pass


def split(ast: exp.Expression, can_run: Callable[[exp.Expression], bool], names: list[str],
          relation: str = "__fedsql_pushed") -> Split | None:
    """`ast` as inner (pushed) + outer (finished in DuckDB), or None. `names` are the fragment's
    output column names (as DuckDB names them), kept by the outer query."""
    if not isinstance(ast, exp.Select) or any(v for k, v in ast.args.items() if k not in CLAUSES and v):
        return None
    if any(isinstance(n, (exp.Select, exp.Subquery, exp.Window)) and n is not ast for n in ast.walk()):
        return None
    if any(not isinstance(n.parent, exp.Count) for n in ast.find_all(exp.Star)):  # SELECT *: read the columns
        return None
    if not ast.args.get("from_") or len(names) != len(ast.expressions):
        return None
    for clause in ("where", "having"):
        if ast.args.get(clause) is not None and not can_run(ast.args[clause].this):
            return None
    for join in ast.args.get("joins") or []:
        if join.side or (join.kind or "INNER").upper() != "INNER" or join.args.get("using") \
                or (join.args.get("on") is not None and not can_run(join.args["on"])):
            return None
    group = list(ast.args["group"].expressions) if ast.args.get("group") else []
    if any(not can_run(g) for g in group):
        return None
    aggregated = bool(group) or any(isinstance(n, exp.AggFunc) for e in ast.expressions for n in e.walk())
    units: list[exp.Expression] = []

    def unit(node: exp.Expression) -> exp.Expression:
        for i, u in enumerate(units):
            if u == node:
                break
        else:
            i = len(units)
            units.append(node.copy())
        return exp.column(f"__p{i}", quoted=True)

    def cut(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Alias):
            return node
        if any(node == g for g in group) or isinstance(node, exp.AggFunc) or (not aggregated and isinstance(node, exp.Column)):
            if not can_run(node):
                raise _Refused
            return unit(node)
        if isinstance(node, exp.Column):  # a column outside any aggregate or group key
            raise _Refused
        return node

    try:
        outer_exprs = [(e.this if isinstance(e, exp.Alias) else e).transform(cut) for e in ast.expressions]
    except _Refused:
        return None
    if not units:
        return None
    inner = exp.Select(expressions=[u.as_(f"__p{i}", quoted=True) for i, u in enumerate(units)])
    for clause in CLAUSES - {"expressions"}:
        if ast.args.get(clause):
            inner.set(clause, ast.args[clause].copy() if clause != "joins" else [j.copy() for j in ast.args[clause]])
    outer = exp.select(*[e.as_(n, quoted=True) for e, n in zip(outer_exprs, names)]).from_(relation)
    return Split(inner, outer)
