"""Rule: `GROUP BY ALL` becomes the select list's expressions that aggregate nothing.

DuckDB groups by every select item without an aggregate; constants count as none (`SELECT 1,
COUNT(*) … GROUP BY ALL` is one row, also over no rows), so a list with nothing else to group by
has no GROUP BY at all. Windows are not keys either (they run after the grouping).

>>> import sqlglot
>>> from planner.rules.context import example_context
>>> from planner.rules.group_all import group_all
>>> sql = "SELECT o.odate, 1, o.price * 2 AS p2, SUM(i.qty) FROM a.orders o JOIN b.items i ON o.okey = i.okey GROUP BY ALL"
>>> group_all(sqlglot.parse_one(sql), example_context()).sql()
'SELECT o.odate, 1, o.price * 2 AS p2, SUM(i.qty) FROM a.orders AS o JOIN b.items AS i ON o.okey = i.okey GROUP BY o.odate, o.price * 2'
>>> group_all(sqlglot.parse_one("SELECT 1, COUNT(*) FROM b.items GROUP BY ALL"), example_context()).sql()
'SELECT 1, COUNT(*) FROM b.items'
"""

from __future__ import annotations

from sqlglot import exp

from planner.rules.context import RuleContext
from planner.rules.scope import selects


def group_all(ast: exp.Expression, ctx: RuleContext) -> exp.Expression:
    """Spell out every `GROUP BY ALL` of the statement."""
    ast = ast.copy()
    for select in selects(ast):
        group = select.args.get("group")
        if group is None or not group.args.get("all") or group.expressions or any(
                isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star))
                for item in select.expressions):
            continue  # SELECT * … GROUP BY ALL: left to the analysis, which names it
        keys = [item.unalias().copy() for item in select.expressions
                if not isinstance(item.unalias(), (exp.Literal, exp.Boolean, exp.Null, exp.Star))
                and not item.find(exp.AggFunc, exp.Window)]
        select.set("group", exp.Group(expressions=keys) if keys else None)
    return ast
