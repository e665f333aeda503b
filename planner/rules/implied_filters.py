"""Rule: from an OR whose every branch constrains table T, add the OR of those constraints
on T alone (TPC-H Q7); the original OR stays.

`(n1.name = 'FRANCE' AND n2.name = 'GERMANY') OR (n1.name = 'GERMANY' AND n2.name = 'FRANCE')`
implies `n1.name = 'FRANCE' OR n1.name = 'GERMANY'`: whenever the OR is true one branch is,
and so are its conjuncts on n1. Each party then filters its own rows before anything is
shared, while the cross-party OR is still evaluated on what remains. The added filter reads
only columns the original predicate reads, in the same (WHERE) role, so the policy check
sees no new column. Top-level WHERE conjuncts of inner-join SELECTs only.

>>> import sqlglot
>>> from planner.rules.context import example_context
>>> from planner.rules.implied_filters import implied_filters
>>> sql = ("SELECT count(*) FROM a.nation n1, c.nation n2 "
...        "WHERE (n1.name = 'X' AND n2.name = 'Y') OR (n1.name = 'Y' AND n2.name = 'X')")
>>> print(implied_filters(sqlglot.parse_one(sql), example_context()).sql())
SELECT COUNT(*) FROM a.nation AS n1, c.nation AS n2 WHERE ((n1.name = 'X' AND n2.name = 'Y') OR (n1.name = 'Y' AND n2.name = 'X')) AND (n1.name = 'X' OR n1.name = 'Y') AND (n2.name = 'Y' OR n2.name = 'X')
"""

from __future__ import annotations

from sqlglot import exp

from planner.join_analyze import conjuncts
from planner.rules.context import RuleContext
from planner.rules.or_factor import branches, volatile
from planner.rules.scope import Source, inner_only, members_of, selects, sources, where_conjuncts


def implied_filters(ast: exp.Expression, ctx: RuleContext) -> exp.Expression:
    """Add each table's implied single-table filter next to every cross-table OR in WHERE."""
    ast = ast.copy()
    for select in selects(ast):
        srcs = sources(select, ctx)
        if srcs is None or not inner_only(select):
            continue
        conds = where_conjuncts(select)
        have = {c.sql(dialect="duckdb", normalize=True) for c in conds}
        add: list[exp.Expression] = []
        for cond in conds:
            for implied in _implied(cond, srcs):
                key = implied.sql(dialect="duckdb", normalize=True)
                if key not in have:
                    have.add(key)
                    add.append(implied)
        if add:
            select.set("where", exp.Where(this=exp.and_(*[c.copy() for c in conds], *add)))
    return ast


def _single_table(node: exp.Expression, srcs: dict[str, Source]) -> str | None:
    """The one table a deterministic, subquery-free condition reads, else None."""
    if node.find(exp.Subquery, exp.Select, exp.AggFunc, exp.Window):
        return None
    members = members_of(node, srcs)
    if not members or volatile(node) or len({a for a, _ in members}) != 1:
        return None
    return next(iter(members))[0]


def _implied(cond: exp.Expression, srcs: dict[str, Source]) -> list[exp.Expression]:
    parts = [conjuncts(b) for b in branches(cond)]
    if len(parts) < 2:
        return []
    tables = [[_single_table(c, srcs) for c in p] for p in parts]
    if all(len(set(t)) == 1 and t[0] is not None for t in tables) and \
            len({t[0] for t in tables}) == 1:
        return []  # the OR reads one table already: it is that table's filter
    out = []
    for alias in srcs:
        mine = [[c for c, t in zip(p, ts) if t == alias] for p, ts in zip(parts, tables)]
        if all(mine):
            out.append(exp.or_(*[exp.and_(*[c.copy() for c in m]) if len(m) > 1 else m[0].copy()
                                 for m in mine]))
    return out
