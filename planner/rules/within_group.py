"""Rule: `PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY x)` becomes `QUANTILE_CONT(x, q)`.

The standard SQL spelling (PostgreSQL's, and what BI tools emit) of DuckDB's QUANTILE_CONT;
`ORDER BY x DESC` is the (1 - q) quantile. The planner's aggregate kinds read the QUANTILE_CONT
form; any other WITHIN GROUP is left as written (the analysis names what it does not support).

>>> import sqlglot
>>> from planner.rules.context import example_context
>>> from planner.rules.within_group import within_group
>>> sql = "SELECT PERCENTILE_CONT(0.9) WITHIN GROUP (ORDER BY i.qty) FROM a.orders o JOIN b.items i ON o.okey = i.okey"
>>> within_group(sqlglot.parse_one(sql, read="duckdb"), example_context()).sql("duckdb")
'SELECT QUANTILE_CONT(i.qty, 0.9) FROM a.orders AS o JOIN b.items AS i ON o.okey = i.okey'
>>> sql = "SELECT PERCENTILE_CONT(0.25) WITHIN GROUP (ORDER BY qty DESC) FROM b.items"
>>> within_group(sqlglot.parse_one(sql, read="duckdb"), example_context()).sql("duckdb")
'SELECT QUANTILE_CONT(qty, 0.75) FROM b.items'
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from sqlglot import exp

from planner.rules.context import RuleContext


def within_group(ast: exp.Expression, ctx: RuleContext) -> exp.Expression:
    """Spell every PERCENTILE_CONT … WITHIN GROUP of one ORDER BY key as QUANTILE_CONT."""
    ast = ast.copy()
    for node in list(ast.find_all(exp.WithinGroup)):
        inner, order = node.this, node.expression
        keys = order.expressions if isinstance(order, exp.Order) else []
        if not isinstance(inner, exp.PercentileCont) or inner.args.get("expression") is not None or len(keys) != 1 \
                or not isinstance(inner.this, exp.Literal) or inner.this.is_string:
            continue
        try:
            q = Decimal(inner.this.this)
        except InvalidOperation:
            continue
        if keys[0].args.get("desc"):
            q = 1 - q
        node.replace(exp.PercentileCont(this=keys[0].this.copy(), expression=exp.Literal.number(str(q))))
    return ast
