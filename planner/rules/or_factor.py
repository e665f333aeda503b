"""Rule: conjuncts common to every branch of an OR move out of it (TPC-H Q19).

`(k = j AND a) OR (k = j AND b)` is `k = j AND (a OR b)`: AND and OR distribute over
each other in SQL's three-valued logic too, so the result is the same for every row,
NULLs included. The factored conjunct can then be an equi-join edge or one party's
filter instead of a cross-party predicate evaluated under MPC.

>>> import sqlglot
>>> from planner.rules.or_factor import or_factor
>>> sql = "SELECT 1 FROM a.orders, b.items WHERE (okey = okey2 AND qty > 1) OR (okey = okey2 AND qty < 0)"
>>> or_factor(sqlglot.parse_one(sql), None).sql()
'SELECT 1 FROM a.orders, b.items WHERE okey = okey2 AND (qty > 1 OR qty < 0)'

A branch that is only the common part makes the whole OR true given it:

>>> or_factor(sqlglot.parse_one("SELECT 1 FROM t WHERE (x = 1) OR (x = 1 AND y = 2)"), None).sql()
'SELECT 1 FROM t WHERE x = 1'
"""

from __future__ import annotations

from sqlglot import exp

from planner.join_analyze import conjuncts
from planner.rules.context import RuleContext

_VOLATILE = ("random", "rand", "uuid", "gen_random_uuid", "nextval", "now", "current_timestamp")


def or_factor(ast: exp.Expression, ctx: RuleContext | None) -> exp.Expression:
    """Factor the common conjuncts out of every OR chain of the statement."""
    ast = ast.copy()
    for node in reversed(list(ast.find_all(exp.Or))):  # innermost first
        top = _unparen_parent(node)
        if isinstance(top, exp.Or) or node.parent is None and node is not ast:
            continue  # an inner link of a chain: handled from the top of its chain
        factored = _factor(node)
        if factored is not None:
            if node is ast:
                return factored
            node.replace(exp.Paren(this=factored) if isinstance(node.parent, (exp.And, exp.Not)) else factored)
    return ast


def _unparen_parent(node: exp.Expression) -> exp.Expression | None:
    parent = node.parent
    while isinstance(parent, exp.Paren):
        parent = parent.parent
    return parent


def branches(node: exp.Expression) -> list[exp.Expression]:
    """The operands of an OR chain, parentheses removed."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Or):
        return branches(node.left) + branches(node.right)
    return [node]


def _key(node: exp.Expression) -> str:
    return node.sql(dialect="duckdb", normalize=True)


def volatile(node: exp.Expression) -> bool:
    return any((f.name if isinstance(f, exp.Anonymous) else f.sql_name()).lower() in _VOLATILE
               for f in node.find_all(exp.Func)) or bool(node.find(exp.Rand))


def _factor(node: exp.Or) -> exp.Expression | None:
    parts = [conjuncts(b) for b in branches(node)]
    keys = [[_key(c) for c in p] for p in parts]
    common = [c for c, k in zip(parts[0], keys[0])
              if not volatile(c) and all(k in ks for ks in keys[1:])]
    common_keys = []
    for c in common:  # once each, in the first branch's order
        if _key(c) not in common_keys:
            common_keys.append(_key(c))
    if not common_keys:
        return None
    head = [next(c for c in parts[0] if _key(c) == k).copy() for k in common_keys]
    rests = [[c.copy() for c, k in zip(p, ks) if k not in common_keys] for p, ks in zip(parts, keys)]
    if any(not r for r in rests):  # that branch is the common part alone: the OR holds given it
        return exp.and_(*head)
    rest = exp.or_(*[exp.and_(*r) if len(r) > 1 else r[0] for r in rests])
    return exp.and_(*head, exp.Paren(this=rest))
