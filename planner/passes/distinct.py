"""Pass: SELECT DISTINCT without aggregates is a GROUP BY of the select list.

Revealing distinct values is revealing group labels, so the policy check then
asks for `group_key` (or `public`) — the right rule. With aggregates, DISTINCT
applies to the result rows and runs in the issuer's final step.
"""

from __future__ import annotations

from sqlglot import exp


def distinct_to_group_by(ast: exp.Expression) -> exp.Expression:
    distinct = ast.args.get("distinct") if isinstance(ast, exp.Select) else None
    if distinct is None or distinct.args.get("on") or ast.args.get("group") or ast.find(exp.AggFunc):
        return ast
    if any(isinstance(e, exp.Star) for e in ast.expressions):
        return ast  # SELECT DISTINCT *: left to the row-level policy (public columns only)
    ast = ast.copy()
    ast.set("distinct", None)
    ast.set("group", exp.Group(expressions=[e.unalias().copy() for e in ast.expressions]))
    return ast
