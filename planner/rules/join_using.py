"""Rule: `JOIN … USING (k, …)` becomes `JOIN … ON l.k = r.k AND …`.

The later passes place equi-joins written with ON. SQL's USING also merges the columns: an
unqualified `k` names the left table's column (the right one's in a RIGHT JOIN, and
COALESCE of both in a FULL JOIN), so those references are qualified the same way. The left
table is the first earlier table that has the column. `SELECT *` over a USING join (which
lists the merged column once) is left as written: the analysis refuses it by name.

>>> import sqlglot
>>> from planner.rules.context import example_context
>>> from planner.rules.join_using import join_using
>>> sql = "SELECT okey, SUM(i.qty) FROM a.orders o LEFT JOIN b.items i USING (okey) GROUP BY okey"
>>> join_using(sqlglot.parse_one(sql), example_context()).sql()
'SELECT o.okey AS okey, SUM(i.qty) FROM a.orders AS o LEFT JOIN b.items AS i ON o.okey = i.okey GROUP BY o.okey'
>>> sql = "SELECT okey FROM a.orders o FULL JOIN b.items i USING (okey)"
>>> join_using(sqlglot.parse_one(sql), example_context()).sql()
'SELECT COALESCE(o.okey, i.okey) AS okey FROM a.orders AS o FULL JOIN b.items AS i ON o.okey = i.okey'
"""

from __future__ import annotations

from sqlglot import exp

from planner.rules.context import RuleContext
from planner.rules.scope import column_node, from_items, sources


def join_using(ast: exp.Expression, ctx: RuleContext) -> exp.Expression:
    """Rewrite every USING join of the statement whose tables the rules can describe."""
    ast = ast.copy()
    for select in list(ast.find_all(exp.Select)):
        joins = select.args.get("joins") or []
        if not any(j.args.get("using") for j in joins) or any(
                isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
                for e in select.expressions):
            continue
        srcs = sources(select, ctx)
        if srcs is None:
            continue
        aliases = [item.alias_or_name for item in from_items(select)]
        merged: dict[str, exp.Expression] = {}  # lower-case name → what an unqualified reference means
        for i, join in enumerate(joins, 1):
            using = join.args.get("using")
            if not using:
                continue
            right = aliases[i]
            conds = []
            for ident in using:
                name = ident.name.lower()
                left = next((a for a in aliases[:i] if _column(srcs, a, name)), None)
                if left is None or not _column(srcs, right, name):
                    return ast  # an unknown column: the analysis names it
                lcol = column_node((left, _column(srcs, left, name)), srcs)
                rcol = column_node((right, _column(srcs, right, name)), srcs)
                conds.append(exp.EQ(this=lcol, expression=rcol))
                side = (join.side or "").upper()
                merged[name] = (rcol.copy() if side == "RIGHT" else
                                exp.Coalesce(this=lcol.copy(), expressions=[rcol.copy()]) if side == "FULL"
                                else lcol.copy())
            join.set("using", None)
            join.set("on", exp.and_(*conds) if len(conds) > 1 else conds[0])
        for col in list(select.find_all(exp.Column)):
            if col.table or col.name.lower() not in merged or col.find_ancestor(exp.Select) is not select \
                    or col.find_ancestor(exp.Join):
                continue
            new = merged[col.name.lower()].copy()
            if isinstance(col.parent, exp.Select) and col.arg_key == "expressions":
                new = exp.alias_(new, col.name)  # the output keeps the name as written
            col.replace(new)
    return ast


def _column(srcs, alias: str, name: str) -> str | None:
    """The column of `alias`'s table called `name` (case-insensitive), as its schema spells it."""
    return next((c for c, _ in srcs[alias].ref.schema if c.lower() == name), None)
