"""Pass: `AGG(x) FILTER (WHERE c)` → `AGG(CASE WHEN c THEN x END)`.

Same result in SQL (aggregates skip NULLs; COUNT(*) counts the rows where c
holds), and the rest of the planner only needs to know plain aggregates.
"""

from __future__ import annotations

from sqlglot import exp


def _rewrite(node: exp.Expression) -> exp.Expression:
    if not isinstance(node, exp.Filter) or not isinstance(node.this, exp.AggFunc):
        return node
    agg = node.this.copy()
    cond = node.expression.this if isinstance(node.expression, exp.Where) else node.expression
    arg = agg.this
    value = exp.Literal.number(1) if arg is None or isinstance(arg, exp.Star) else arg.copy()
    agg.set("this", exp.Case(ifs=[exp.If(this=cond.copy(), true=value)]))
    return agg


def inline_aggregate_filters(ast: exp.Expression) -> exp.Expression:
    if not any(isinstance(f.this, exp.AggFunc) for f in ast.find_all(exp.Filter)):
        return ast
    return ast.copy().transform(_rewrite)
