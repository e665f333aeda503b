"""Rule: `GROUP BY` a select alias becomes the aliased expression.

DuckDB accepts `SELECT x + 1 AS y … GROUP BY y`, but the fragments the planner generates
group inside other SELECTs where `y` is no longer an alias (a raw Binder Error). As in
DuckDB, a name that is a column of a FROM table is that column, not the alias; an alias
of an aggregate or window expression is left alone (DuckDB refuses it itself).

>>> import sqlglot
>>> from planner.rules.context import example_context
>>> from planner.rules.group_alias import group_alias
>>> sql = "SELECT o.odate AS d, sum(qty) FROM a.orders o, b.items i WHERE o.okey = i.okey GROUP BY d"
>>> group_alias(sqlglot.parse_one(sql), example_context()).sql()
'SELECT o.odate AS d, SUM(qty) FROM a.orders AS o, b.items AS i WHERE o.okey = i.okey GROUP BY o.odate'
"""

from __future__ import annotations

from sqlglot import exp

from planner.rules.context import RuleContext
from planner.rules.scope import selects, sources


def group_alias(ast: exp.Expression, ctx: RuleContext) -> exp.Expression:
    """Replace GROUP BY names that are select aliases (and no table's column) by their expressions."""
    ast = ast.copy()
    for select in selects(ast):
        group = select.args.get("group")
        if group is None:
            continue
        srcs = sources(select, ctx)
        if srcs is None:
            continue
        columns = {c.lower() for s in srcs.values() for c, _ in s.ref.schema}
        aliases: dict[str, exp.Expression] = {}
        for item in select.expressions:
            if isinstance(item, exp.Alias) and item.alias.lower() not in aliases:
                aliases[item.alias.lower()] = item.this
        for key in list(group.expressions):
            if not isinstance(key, exp.Column) or key.table or key.name.lower() in columns:
                continue
            target = aliases.get(key.name.lower())
            if target is None or target.find(exp.AggFunc, exp.Window):
                continue
            key.replace(target.copy())
    return ast
