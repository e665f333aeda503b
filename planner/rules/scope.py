"""What the rules share about one SELECT: its tables, which table a column names, its equalities.

Only a SELECT whose FROM items are all party or federated tables (no derived table left,
no table function) is described; anything else is left to the later passes unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot import exp

from planner.catalog import TableRef, resolve_table
from planner.join_analyze import conjuncts, owner_of
from planner.rules.context import RuleContext

Member = tuple[str, str]
"""(table alias, column name as the schema spells it)."""


@dataclass(frozen=True)
class Source:
    alias: str
    ref: TableRef
    party: str  # the party computing its fragment ("@name" for a federated union)
    identifier: exp.Identifier  # the alias as written (quoting kept)


@dataclass(frozen=True)
class Equality:
    """A conjunct `x = y` between two columns of the same type (so that equality is transitive)."""

    node: exp.Expression
    left: Member
    right: Member
    fixed: bool  # in an inner JOIN's ON clause: kept as written


def from_items(select: exp.Select) -> list[exp.Expression]:
    """The FROM item and every JOIN's item, in order."""
    from_ = select.args.get("from_") or select.args.get("from")
    if from_ is None:
        return []
    return [from_.this] + [j.this for j in select.args.get("joins") or []]


def sources(select: exp.Select, ctx: RuleContext) -> dict[str, Source] | None:
    """alias → table for every FROM item, or None when an item is not a plain table."""
    out: dict[str, Source] = {}
    items = from_items(select)
    if not items:
        return None
    for item in items:
        if not isinstance(item, exp.Table) or not isinstance(item.this, exp.Identifier) or item.args.get("catalog"):
            return None
        try:
            ref = resolve_table(ctx.fed, item.db or None, item.name, ctx.schema_of, dict(ctx.derived))
        except Exception:  # noqa: BLE001 - unknown tables are reported by the analysis, with its message
            return None
        alias = item.alias_or_name
        if alias in out:
            return None
        ident = item.args["alias"].this if item.args.get("alias") else item.this
        out[alias] = Source(alias, ref, owner_of(ref), ident.copy())
    return out


def inner_only(select: exp.Select) -> bool:
    """Every join is a comma, CROSS or INNER join (no outer join's nullable side, no USING)."""
    for join in select.args.get("joins") or []:
        if join.side or (join.kind or "").upper() not in ("", "INNER", "CROSS") or join.args.get("using"):
            return False
    return True


def resolve(col: exp.Column, srcs: dict[str, Source]) -> Member | None:
    """The table and schema column a column reference names, or None (ambiguous, outer, unknown)."""
    if not isinstance(col, exp.Column) or col.args.get("db") or isinstance(col.this, exp.Star):
        return None
    name = col.name.lower()
    if col.table:
        src = srcs.get(col.table)
        cands = [(src.alias, c) for c, _ in src.ref.schema if c.lower() == name] if src else []
    else:
        cands = [(a, c) for a, s in srcs.items() for c, _ in s.ref.schema if c.lower() == name]
    return cands[0] if len(cands) == 1 else None


def column_type(m: Member, srcs: dict[str, Source]) -> str:
    """The column's DuckDB type in its table's public schema."""
    return srcs[m[0]].ref.column_type(m[1])


def column_node(m: Member, srcs: dict[str, Source]) -> exp.Column:
    """`alias.column`, quoted where the name is not plain lower case (DuckDB matches either way)."""
    name = m[1]
    return exp.Column(this=exp.to_identifier(name, quoted=not re.fullmatch(r"[a-z_][a-z0-9_]*", name)),
                      table=srcs[m[0]].identifier.copy())


def where_conjuncts(select: exp.Select) -> list[exp.Expression]:
    """The top-level conjuncts of WHERE (parentheses removed)."""
    where = select.args.get("where")
    return conjuncts(where.this if where else None)


def equality(node: exp.Expression, srcs: dict[str, Source], fixed: bool = False) -> Equality | None:
    """`node` as an Equality when it is `column = column` of one type over two resolvable columns."""
    if not isinstance(node, exp.EQ) or not isinstance(node.left, exp.Column) or not isinstance(node.right, exp.Column):
        return None
    left, right = resolve(node.left, srcs), resolve(node.right, srcs)
    if left is None or right is None or left == right or column_type(left, srcs) != column_type(right, srcs):
        return None
    return Equality(node, left, right, fixed)


def equalities(select: exp.Select, srcs: dict[str, Source]) -> list[Equality]:
    """Column equalities of inner joins' ON clauses (fixed) and of WHERE, in the order written."""
    out = []
    for join in select.args.get("joins") or []:
        out += [e for c in conjuncts(join.args.get("on")) if (e := equality(c, srcs, fixed=True))]
    return out + [e for c in where_conjuncts(select) if (e := equality(c, srcs))]


class UnionFind:
    """Union-find over members; the first argument of `union` stays the root (deterministic)."""

    def __init__(self) -> None:
        self.parent: dict[Member, Member] = {}

    def find(self, m: Member) -> Member:
        self.parent.setdefault(m, m)
        while self.parent[m] != m:
            self.parent[m] = self.parent[self.parent[m]]
            m = self.parent[m]
        return m

    def union(self, a: Member, b: Member) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[rb] = ra
        return True


def classes(eqs: list[Equality]) -> list[list[Member]]:
    """Equivalence classes of the equalities' columns, each in first-seen order."""
    uf = UnionFind()
    order: list[Member] = []
    for e in eqs:
        for m in (e.left, e.right):
            if m not in order:
                order.append(m)
        uf.union(e.left, e.right)
    groups: dict[Member, list[Member]] = {}
    for m in order:
        groups.setdefault(uf.find(m), []).append(m)
    return list(groups.values())


def members_of(node: exp.Expression, srcs: dict[str, Source]) -> set[Member] | None:
    """The columns a condition reads, or None when one does not resolve to this SELECT's tables."""
    out = set()
    for col in node.find_all(exp.Column):
        m = resolve(col, srcs)
        if m is None:
            return None
        out.add(m)
    return out


def selects(ast: exp.Expression) -> list[exp.Select]:
    """Every SELECT of the statement (subqueries included), outermost first."""
    return [s for s in ast.find_all(exp.Select)]
