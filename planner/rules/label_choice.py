"""Rule: a GROUP BY column the issuer may not see as a label is replaced by an equal column
of its equivalence class that it may see; the output keeps the name as written (TPC-H Q3).

On every row an inner equi-join keeps, `l.okey = o.okey` holds, so grouping by either column
forms the same groups with the same labels. The replacement must be a label the issuer may
see: its own column, or one at `group_key`/`public` for it (preferring one every compute
party may also see, as `sizes` mode opens the keys to them). The policy check then runs
on the rewritten query, so nothing is revealed that the chosen column's owner did not allow
(the value is the same one the issuer's own column holds). Never across an outer join, never
for a DP table (its declared public groups name its own columns).

>>> import sqlglot
>>> from planner.rules.context import example_context
>>> from planner.rules.label_choice import label_choice
>>> sql = ("SELECT i.okey, sum(qty) AS q FROM a.orders o, b.items i WHERE i.okey = o.okey "
...        "GROUP BY i.okey ORDER BY i.okey")
>>> label_choice(sqlglot.parse_one(sql), example_context("a")).sql()
'SELECT o.okey AS okey, SUM(qty) AS q FROM a.orders AS o, b.items AS i WHERE i.okey = o.okey GROUP BY o.okey ORDER BY o.okey'
"""

from __future__ import annotations

from sqlglot import exp

from fedsql.config import level_at_least
from planner.rules.context import RuleContext
from planner.rules.scope import (Member, Source, classes, column_node, equalities, inner_only, resolve,
                                 selects, sources)


def label_choice(ast: exp.Expression, ctx: RuleContext) -> exp.Expression:
    """Relabel GROUP BY columns the issuer may not see with visible equal columns."""
    ast = ast.copy()
    for select in selects(ast):
        group = select.args.get("group")
        srcs = sources(select, ctx) if group is not None else None
        if srcs is None or not inner_only(select) or any(m.dp is not None for s in srcs.values()
                                                          for m in s.ref.members if hasattr(m, "dp")):
            continue
        classes_ = classes(equalities(select, srcs))
        for key in list(group.expressions):
            member = resolve(key, srcs) if isinstance(key, exp.Column) else None
            if member is None or _rank(member, srcs, ctx) is not None:
                continue
            cls = next((c for c in classes_ if member in c), [])
            cands = sorted((r, i, m) for i, m in enumerate(cls) if (r := _rank(m, srcs, ctx)) is not None)
            if cands and _replaceable(select, member, srcs):
                _replace(select, member, cands[0][2], srcs)
    return ast


def _rank(m: Member, srcs: dict[str, Source], ctx: RuleContext) -> int | None:
    """None: not a label the issuer may see; 0: every compute party may see it too; 1: the issuer only."""
    src = srcs[m[0]]

    def sees(viewer: str) -> bool:
        return all(mem.party == viewer or level_at_least(mem.level(m[1], viewer), "group_key")
                   for mem in src.ref.members)

    if not sees(ctx.issuer):
        return None
    return 0 if all(sees(v) for v in ctx.fed.compute) else 1


def _outside_aggregates(node: exp.Expression) -> list[exp.Column]:
    return [c for c in node.find_all(exp.Column) if not c.find_ancestor(exp.AggFunc, exp.Window)]


def _replaceable(select: exp.Select, member: Member, srcs: dict[str, Source]) -> bool:
    """Each select item using the column outside aggregates is that column alone (its output
    name can then be kept with an alias); inside a larger expression its name would change."""
    for item in select.expressions:
        inner = item.this if isinstance(item, exp.Alias) else item
        if isinstance(inner, exp.Column) and resolve(inner, srcs) == member:
            continue
        if any(resolve(c, srcs) == member for c in _outside_aggregates(inner)) and not isinstance(item, exp.Alias):
            return False
    return True


def _replace(select: exp.Select, member: Member, new: Member, srcs: dict[str, Source]) -> None:
    for item in list(select.expressions):
        if isinstance(item, exp.Column) and resolve(item, srcs) == member:
            item.replace(exp.Alias(this=column_node(new, srcs), alias=item.this.copy()))
    for part in [select.args.get("group"), select.args.get("having"), select.args.get("order"),
                 *select.expressions]:
        if part is None:
            continue
        for col in _outside_aggregates(part):
            if resolve(col, srcs) == member:
                col.replace(column_node(new, srcs))
