"""Rule: equivalence classes of equi-join columns; same-party equalities added, redundant
cross-party ones dropped (TPC-H Q5, Q9).

From `x = y` conjuncts between columns of one type (WHERE, inner joins' ON) the columns fall
into classes of equal values. Each class is rewritten as a spanning tree: first the
columns of each party are linked among themselves (a party's tables then join in its own
DuckDB instead of forming a cross product), then the fewest cross-party equalities the user
wrote that connect the parties (each costs a secure join), preferring the table pairs that
carry the most equalities, so that they become one multi-column join. Equalities in ON are
kept as written (they still count as links); WHERE equalities implied by the tree are dropped. Inner joins only: an
outer join's nullable side does not satisfy its ON equalities on every row.

Q5's shape: `c.nkey = s.nkey AND s.nkey = n.nkey` (c, n at party a; s at c) ⇒ `c.nkey = n.nkey`
joins customer and nation locally at a; one of the two cross-party equalities is enough.

>>> import sqlglot
>>> from planner.rules.context import example_context
>>> from planner.rules.equivalence import equivalence
>>> sql = ("SELECT count(*) FROM a.customer c, c.supplier s, a.nation n "
...        "WHERE c.nkey = s.nkey AND s.nkey = n.nkey")
>>> equivalence(sqlglot.parse_one(sql), example_context()).sql()
'SELECT COUNT(*) FROM a.customer AS c, c.supplier AS s, a.nation AS n WHERE c.nkey = s.nkey AND c.nkey = n.nkey'
"""

from __future__ import annotations

from collections import Counter

from sqlglot import exp

from planner.rules.context import RuleContext
from planner.rules.scope import (Equality, Member, Source, UnionFind, classes, column_node, equalities,
                                 inner_only, selects, sources, where_conjuncts)


def equivalence(ast: exp.Expression, ctx: RuleContext) -> exp.Expression:
    """Every inner-join SELECT's equalities as one spanning tree per class."""
    ast = ast.copy()
    for select in selects(ast):
        srcs = sources(select, ctx)
        if srcs is not None and inner_only(select):
            _rewrite(select, srcs)
    return ast


def _pair(e: Equality) -> tuple[str, str]:
    return tuple(sorted((e.left[0], e.right[0])))  # type: ignore[return-value]


def _rewrite(select: exp.Select, srcs: dict[str, Source]) -> None:
    eqs = equalities(select, srcs)
    weight = Counter(_pair(e) for e in eqs)
    drop: list[exp.Expression] = []
    add: list[exp.Expression] = []
    for members in classes(eqs):
        if len(members) < 3:
            continue  # two columns: one equality, nothing to derive
        mine = [e for e in eqs if e.left in members]
        drop_c, add_c = _spanning_tree(members, mine, srcs, weight)
        drop += drop_c
        add += add_c
    if not drop and not add:
        return
    keep = [c for c in where_conjuncts(select) if not any(c is d for d in drop)]
    conds = [c.copy() for c in keep] + add
    select.set("where", exp.Where(this=exp.and_(*conds)) if conds else None)


def _spanning_tree(members: list[Member], eqs: list[Equality], srcs: dict[str, Source],
                   weight: Counter) -> tuple[list[exp.Expression], list[exp.Expression]]:
    """(WHERE equalities to drop, equalities to add) for one class."""
    uf = UnionFind()
    drop: list[exp.Expression] = []
    add: list[exp.Expression] = []
    party = {m: srcs[m[0]].party for m in members}
    local = [e for e in eqs if party[e.left] == party[e.right]]
    for e in sorted(local, key=lambda e: not e.fixed):  # ON first: kept as written
        if not uf.union(e.left, e.right) and not e.fixed:
            drop.append(e.node)
    by_party: dict[str, list[Member]] = {}
    for m in members:
        by_party.setdefault(party[m], []).append(m)
    for group in by_party.values():
        for m in group[1:]:
            if uf.union(group[0], m):
                add.append(exp.EQ(this=column_node(group[0], srcs), expression=column_node(m, srcs)))
    cross = [e for e in eqs if party[e.left] != party[e.right]]
    order = sorted(range(len(cross)), key=lambda i: (not cross[i].fixed, -weight[_pair(cross[i])], i))
    for i in order:
        if not uf.union(cross[i].left, cross[i].right) and not cross[i].fixed:
            drop.append(cross[i].node)
    return drop, add
