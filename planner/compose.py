"""Statements answered as several federated queries and a last step at the issuer.

Some statements are, in relational terms, post-processing over results the issuer may receive
anyway: the branches of a set operation, the derived tables and CTEs an outer query reads (when it
reads nothing else), the grouped query under window functions over its aggregates, and the joined
rows under window functions over rows (when the issuer may receive those rows). Each such
*part* is planned as a query of its own — the issuer and every party it reads compile it and
check it against the owners' policies exactly as if the user had typed it — and the rest of the
statement runs in the issuer's DuckDB over the parts' results. The issuer learns each part's whole
result (said in the leakage report), so an owner's policy is applied to what is revealed, never to
less. Parts can themselves be composite (a UNION inside a derived table).

Examples (parts in brackets, the combine step after the arrow):

    SELECT d, n FROM (SELECT b.d, COUNT(*) n FROM bank.c b JOIN telco.s t ON b.k = t.k GROUP BY b.d) x WHERE n > 10
      [SELECT b.d, COUNT(*) n FROM bank.c b JOIN telco.s t ON b.k = t.k GROUP BY b.d]
      -> SELECT d, n FROM "__part1" AS x WHERE n > 10

    SELECT b.d, SUM(t.v) s, RANK() OVER (ORDER BY SUM(t.v) DESC) FROM bank.c b JOIN telco.s t ON b.k = t.k GROUP BY b.d
      [SELECT b.d AS "__g1", SUM(t.v) AS "__a1" FROM ... GROUP BY b.d]
      -> SELECT "__g1" AS d, "__a1" AS s, RANK() OVER (ORDER BY "__a1" DESC) FROM "__part1"

Pure over the AST and the federation's configuration: deciding *whether* a statement is composite
needs no schemas; naming the outputs of a rewritten window query does (`output_names`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from fedsql.config import Federation
from fedsql.errors import UnsupportedSql
from planner.catalog import SchemaLookup, resolve_table
from planner.parse import DIALECT
from planner.validate import OutputSchema, describe

_SET_OPS = (exp.Union, exp.Intersect, exp.Except)
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+", re.IGNORECASE)
PART_PREFIX = "__part"


@dataclass(frozen=True)
class Part:
    name: str  # the table the combine step reads its result as
    sql: str  # a query of its own
    what: str  # for the leakage report: "branch 2", "derived table x", "the grouped query"


@dataclass(frozen=True)
class Composite:
    parts: tuple[Part, ...]
    combine: str  # DuckDB SQL at the issuer over the parts' results
    rename: str | None = None  # the user's statement, whose output names the combine's outputs take

    def leakage(self) -> list[str]:
        return [f"{p.what} ({p.sql}) ran as a query of its own; its whole result reached the issuer, which "
                "computed the rest of the statement in its own DuckDB" for p in self.parts]


def parse(sql: str, fed: Federation) -> tuple[Composite | None, bool]:
    """(the composite statement or None, whether it was asked for with EXPLAIN)."""
    text = sql.strip().rstrip(";")
    explain = bool(_EXPLAIN.match(text))
    if explain:
        text = _EXPLAIN.sub("", text, count=1)
    if not re.search(r"\b(UNION|INTERSECT|EXCEPT|OVER|ROLLUP|CUBE|GROUPING|SELECT\b.*\bFROM\s*\(|WITH)\b", text,
                     re.IGNORECASE | re.DOTALL):
        return None, explain  # the common case: no parse needed here
    try:
        ast = sqlglot.parse_one(text, read=DIALECT)
    except (ParseError, TokenError):
        return None, explain  # the planner reports syntax errors
    return decompose(ast, fed), explain


def decompose(ast: exp.Expression, fed: Federation) -> Composite | None:
    """The statement's parts and combine step, or None when it is planned as one query."""
    if isinstance(ast, _SET_OPS):
        return _set_operation(ast)
    if not isinstance(ast, exp.Select):
        return None
    return _derived_only(ast, fed) or _grouping_sets(ast) or _windows_over_groups(ast) or _windows_over_rows(ast)


def output_of(composite: Composite, fed: Federation, schema_of: SchemaLookup) -> OutputSchema | None:
    """The names (and types) plain DuckDB gives the user's statement, for a rewritten one."""
    if composite.rename is None:
        return None
    ast = sqlglot.parse_one(composite.rename, read=DIALECT)
    ctes = {c.alias_or_name for c in ast.find_all(exp.CTE)}
    refs = [resolve_table(fed, t.db or None, t.name, schema_of) for t in ast.find_all(exp.Table)
            if t.db or t.name not in ctes]
    return describe(composite.rename, {ref.name: ref.schema for ref in refs})


def _set_operation(ast: exp.Expression) -> Composite:
    combined = ast.copy()
    parts = []
    branches = [n for n in combined.walk() if isinstance(n, exp.Select) and isinstance(n.parent, _SET_OPS)]
    for i, branch in enumerate(branches, 1):
        name = f"{PART_PREFIX}{i}"
        parts.append(Part(name, branch.sql(dialect=DIALECT), f"branch {i}"))
        branch.replace(exp.select(exp.Star()).from_(exp.to_identifier(name, quoted=True)))
    return Composite(tuple(parts), combined.sql(dialect=DIALECT))


def _sources(select: exp.Select) -> list[exp.Expression]:
    from_ = select.args.get("from_")
    return ([from_.this] if from_ is not None else []) + [j.this for j in select.args.get("joins") or []]


def _ctes(select: exp.Select) -> dict[str, exp.CTE]:
    with_ = select.args.get("with_")
    return {cte.alias_or_name: cte for cte in (with_.expressions if with_ else [])}


def _needed_ctes(node: exp.Expression, ctes: dict[str, exp.CTE]) -> list[exp.CTE]:
    """The CTEs `node` reads, transitively, in their definition order."""
    seen: set[str] = set()
    todo = [node]
    while todo:
        for table in todo.pop().find_all(exp.Table):
            if not table.db and table.name in ctes and table.name not in seen:
                seen.add(table.name)
                todo.append(ctes[table.name].this)
    return [cte for name, cte in ctes.items() if name in seen]


def _parties_read(node: exp.Expression, ctes: dict[str, exp.CTE], fed: Federation) -> set[str]:
    """Parties whose tables `node` reads (a federated union table: each member's party)."""
    out: set[str] = set()
    for scope in [node] + [c.this for c in _needed_ctes(node, ctes)]:
        for table in scope.find_all(exp.Table):
            if table.db:
                out.add(table.db)
            elif table.name not in ctes:
                union = fed.federated.get(table.name)
                out.update(party for party, _ in union.members) if union else out.add(f"?{table.name}")
    return out


def _derived_only(ast: exp.Select, fed: Federation) -> Composite | None:
    """An outer query that reads only grouped derived tables and CTEs, one of which reads several
    parties (or a union table): each source is a part, the outer query the combine step. Row-level
    derived tables fold into the outer query, and derived tables of one party each stay with the
    planner, which joins them securely without revealing them: neither is decomposed."""
    ctes = _ctes(ast)
    sources = _sources(ast)
    if not sources or ast.args.get("laterals"):
        return None
    for src in sources:
        is_cte = isinstance(src, exp.Table) and not src.db and src.name in ctes
        if not (is_cte or (isinstance(src, exp.Subquery) and isinstance(src.this, (exp.Select, *_SET_OPS)))):
            return None
    bodies = [ctes[s.name].this if isinstance(s, exp.Table) else s.this for s in sources]
    if not all(_grouped(b) for b in bodies) or not any(len(_parties_read(b, ctes, fed)) > 1 for b in bodies):
        return None  # a row-level body folds into the outer query (planner/passes/inline_subqueries.py)
    outer = ast.copy()
    outer.set("with_", None)
    parts: dict[str, Part] = {}
    for src, new_src in zip(sources, _sources(outer)):
        key = src.name if isinstance(src, exp.Table) else None
        body = (ctes[key].this if key else src.this).copy()
        needed = _needed_ctes(body, ctes)
        if needed:
            body.set("with_", exp.With(expressions=[c.copy() for c in needed]))
        what = f"CTE {key}" if key else f"derived table {src.alias_or_name or '(unnamed)'}"
        part = parts.get(key) if key else None
        if part is None:
            part = Part(f"{PART_PREFIX}{len(parts) + 1}", body.sql(dialect=DIALECT), what)
            parts[key or part.name] = part
        table = exp.Table(this=exp.to_identifier(part.name, quoted=True))
        table.set("alias", exp.TableAlias(this=exp.to_identifier(src.alias_or_name or key or part.name)))
        new_src.replace(table)
    # a subquery elsewhere in the outer query (WHERE x IN (SELECT ... FROM party.t)) would read a base
    # table at the issuer: such statements stay one query for the planner
    if any(t.name not in {p.name for p in parts.values()} for t in outer.find_all(exp.Table)):
        return None
    return Composite(tuple(parts.values()), outer.sql(dialect=DIALECT))


def _grouped(body: exp.Expression) -> bool:
    """A body whose result is a grouping (what an owner's policy can release as a query result):
    GROUP BY, aggregates or DISTINCT; a set operation whose branches all are."""
    if isinstance(body, _SET_OPS):
        return all(_grouped(b) for b in (body.this, body.expression))
    if not isinstance(body, exp.Select):
        return False
    return bool(body.args.get("group") or body.args.get("distinct")
                or any(_is_aggregate(n) for e in body.expressions for n in e.find_all(exp.AggFunc)))


def _is_aggregate(node: exp.Expression) -> bool:
    """An aggregate call, not the function a window applies (`SUM(...) OVER` is a window's)."""
    return isinstance(node, exp.AggFunc) and not (isinstance(node.parent, exp.Window) and node.arg_key == "this")


def _windows_over_groups(ast: exp.Select) -> Composite | None:
    """Window functions over a grouped query's outputs: the grouped query is a part, the windows
    (and ORDER BY, DISTINCT, LIMIT, QUALIFY) run at the issuer over its result."""
    clauses = [*ast.expressions, ast.args.get("qualify"), ast.args.get("order")]
    if not any(c is not None and c.find(exp.Window) for c in clauses):
        return None
    group = ast.args.get("group")
    aggregates = [n for c in clauses if c is not None for n in c.find_all(exp.AggFunc) if _is_aggregate(n)]
    if group is None and not aggregates:
        return None  # windows over rows: not a post-processing of a grouped result
    if group is not None and group.args.get("all"):  # ROLLUP/CUBE/GROUPING SETS: _grouping_sets ran first
        return None
    keys: dict[str, str] = {}  # canonical SQL of a group expression -> its column in the part
    inner_items: list[exp.Expression] = []
    for item in (group.expressions if group is not None else []):
        item = _group_key(ast, item)
        key = item.sql(dialect=DIALECT)
        if key not in keys:
            keys[key] = f"__g{len(keys) + 1}"
            inner_items.append(exp.alias_(item.copy(), keys[key], quoted=True))
    selected = {e.alias: e.this for e in ast.expressions if isinstance(e, exp.Alias)}
    aggs: dict[str, str] = {}

    def lift(node: exp.Expression) -> exp.Expression:
        if _is_aggregate(node):
            return _part_aggregate(node, aggs, inner_items)
        key = node.sql(dialect=DIALECT)
        if key in keys and not isinstance(node, (exp.Literal, exp.Boolean, exp.Null)):
            return exp.column(keys[key], quoted=True)
        return node

    if any(isinstance(e, exp.Star) for e in ast.expressions):
        return None
    outer = _combine_step(ast, lift)
    if any(isinstance(c, exp.Column) and c.name not in set(keys.values()) | set(aggs.values())
           and c.name not in selected for c in outer.find_all(exp.Column)):
        return None  # a column neither grouped nor aggregated: the planner names the error
    return _one_part(ast, outer, inner_items, "the grouped query")


def _part_aggregate(node: exp.Expression, aggs: dict[str, str], items: list[exp.Expression]) -> exp.Column:
    """The part's column of an aggregate the combine step reads (`__a1`, …), added to the part's
    `items` the first time it is seen."""
    sql = node.sql(dialect=DIALECT)
    if sql not in aggs:
        aggs[sql] = f"__a{len(aggs) + 1}"
        items.append(exp.alias_(node.copy(), aggs[sql], quoted=True))
    return exp.column(aggs[sql], quoted=True)


def _group_key(ast: exp.Select, item: exp.Expression) -> exp.Expression:
    """A GROUP BY item as the expression it groups by: `GROUP BY 2` and `GROUP BY alias` name a
    select item."""
    if isinstance(item, exp.Literal) and not item.is_string and item.this.isdigit() \
            and 0 < int(item.this) <= len(ast.expressions):
        item = ast.expressions[int(item.this) - 1]
        return item.this if isinstance(item, exp.Alias) else item
    selected = {e.alias: e.this for e in ast.expressions if isinstance(e, exp.Alias)}
    if isinstance(item, exp.Column) and not item.table and item.name in selected:
        return selected[item.name]
    return item


_MULTI = (exp.Rollup, exp.Cube, exp.GroupingSets)


def _grouping_sets(ast: exp.Select) -> Composite | None:
    """`GROUP BY ROLLUP / CUBE / GROUPING SETS`: one grouped part per grouping set, stacked at the
    issuer (UNION ALL) with the keys a set does not group as NULL and GROUPING(…) as its bitmask;
    the SELECT list is computed there over the parts' keys and aggregates, then ORDER BY, DISTINCT
    and LIMIT. Each part is a plain grouped query, planned and policy-checked as any other.

        SELECT r, SUM(t.v) FROM bank.c b JOIN telco.s t ON b.k = t.k GROUP BY ROLLUP (b.r) AS r
          [SELECT b.r AS "__g1", SUM(t.v) AS "__a1" FROM … GROUP BY b.r]  [SELECT SUM(t.v) AS "__a1" FROM …]
          -> SELECT … FROM (SELECT "__g1" AS "__c1", "__a1" AS "__c2" FROM "__part1"
                           UNION ALL SELECT NULL, "__a1" FROM "__part2")
    """
    group = ast.args.get("group")
    if group is None or not any(isinstance(e, _MULTI) for e in group.expressions):
        return None
    if any(isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
           for e in ast.expressions):
        raise UnsupportedSql("SELECT * with GROUP BY ROLLUP/CUBE/GROUPING SETS: name the columns")
    if any(c is not None and c.find(exp.Window) for c in (*ast.expressions, ast.args.get("qualify"),
                                                          ast.args.get("order"))):
        raise UnsupportedSql("window functions over GROUP BY ROLLUP/CUBE/GROUPING SETS are not supported; "
                             "compute the grouping sets in a derived table and the windows over it")
    sets: list[list[exp.Expression]] = [[]]  # the cross product of the GROUP BY items' sets
    for item in group.expressions:
        if isinstance(item, exp.Rollup):
            choices = [item.expressions[:k] for k in range(len(item.expressions), -1, -1)]
        elif isinstance(item, exp.Cube):
            cols = item.expressions
            choices = [[c for b, c in enumerate(cols) if mask >> (len(cols) - 1 - b) & 1]
                       for mask in range((1 << len(cols)) - 1, -1, -1)]
        elif isinstance(item, exp.GroupingSets):
            choices = [list(e.expressions) if isinstance(e, exp.Tuple) else [e.this if isinstance(e, exp.Paren) else e]
                       for e in item.expressions]
        else:
            choices = [[item]]
        sets = [s + c for s in sets for c in choices]
    if len(sets) > MAX_GROUPING_SETS:
        raise UnsupportedSql(f"the GROUP BY has {len(sets)} grouping sets; at most {MAX_GROUPING_SETS} are supported")
    keys: dict[str, str] = {}  # canonical SQL of a key -> its column in the parts
    key_nodes: dict[str, exp.Expression] = {}
    for s_ in sets:
        for k in s_:
            k = _group_key(ast, k)
            sql = k.sql(dialect=DIALECT)
            if sql not in keys:
                keys[sql], key_nodes[sql] = f"__g{len(keys) + 1}", k
    aggs: dict[str, str] = {}
    agg_nodes: list[exp.Expression] = []
    grouped: set[str] = set()

    def lift(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Grouping):  # 1 per argument this set does not group, leftmost highest
            bits = [int(_group_key(ast, a).sql(dialect=DIALECT) not in grouped) for a in node.expressions]
            return exp.Literal.number(int("".join(map(str, bits)) or "0", 2))
        if _is_aggregate(node):
            return _part_aggregate(node, aggs, agg_nodes)
        sql = node.sql(dialect=DIALECT)
        if sql in keys and not isinstance(node, (exp.Literal, exp.Boolean, exp.Null)):
            return exp.column(keys[sql], quoted=True) if sql in grouped else exp.Null()
        return node

    order = ast.args.get("order")
    if order is not None and any(isinstance(o.this, exp.Var) and o.this.name.upper() == "ALL" for o in order.expressions):
        (every,) = order.expressions  # ORDER BY ALL: every output column, left to right
        order = exp.Order(expressions=[exp.Ordered(this=exp.Literal.number(j), desc=every.args.get("desc"),
                                                   nulls_first=every.args.get("nulls_first"))
                                       for j in range(1, len(ast.expressions) + 1)])
    branches, parts = [], []
    for i, s_ in enumerate(sets, 1):
        grouped = {_group_key(ast, k).sql(dialect=DIALECT) for k in s_}
        items = [exp.alias_(e.unalias().transform(lift), f"__c{j}", quoted=True) for j, e in enumerate(ast.expressions, 1)]
        items += [exp.alias_(_group_key(ast, o.this).copy().transform(lift), f"__o{j}", quoted=True) for j, o in
                  enumerate(order.expressions if order is not None else [], 1)]  # an alias or position: its item
        having = ast.args.get("having")  # each part filters its own groups: no more of them are revealed
        if having is not None and any(n.sql(dialect=DIALECT) in keys and n.sql(dialect=DIALECT) not in grouped
                                      for n in having.find_all(exp.Column, exp.Func) if not _is_aggregate(n)):
            raise UnsupportedSql("a HAVING condition over a key that ROLLUP/CUBE/GROUPING SETS leaves out of a "
                                 "grouping set is not supported; filter the keys in WHERE, or the result in an "
                                 "outer query")
        name = f"{PART_PREFIX}{i}"
        branches.append(exp.select(*items).from_(exp.to_identifier(name, quoted=True)))
        parts.append((name, sorted(grouped)))
    stray = next((c for b in branches for c in b.find_all(exp.Column)
                  if c.name not in set(keys.values()) | set(aggs.values())), None)
    if stray is not None:
        raise UnsupportedSql(f"{stray.sql(dialect=DIALECT)} is neither grouped nor aggregated; add it to the GROUP "
                             "BY or wrap it in an aggregate")
    part_list = []
    for i, (name, grouped_keys) in enumerate(parts, 1):
        inner = ast.copy()
        for clause in _AT_ISSUER:
            inner.set(clause, None)
        inner.set("expressions", [exp.alias_(key_nodes[k].copy(), keys[k], quoted=True) for k in keys
                                  if k in grouped_keys] + [a.copy() for a in agg_nodes])
        inner.set("group", exp.Group(expressions=[key_nodes[k].copy() for k in keys if k in grouped_keys])
                  if grouped_keys else None)
        part_list.append(Part(name, inner.sql(dialect=DIALECT), f"grouping set {i}"))
    union = branches[0]
    for b in branches[1:]:
        union = exp.union(union, b, distinct=False)
    outer = exp.select(*[exp.column(f"__c{j}", quoted=True) for j in range(1, len(ast.expressions) + 1)]).from_(
        exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier("__sets"))))
    if order is not None:
        outer.set("order", exp.Order(expressions=[
            exp.Ordered(this=exp.column(f"__o{j}", quoted=True), desc=o.args.get("desc"),
                        nulls_first=o.args.get("nulls_first")) for j, o in enumerate(order.expressions, 1)]))
    for clause in ("limit", "offset", "distinct"):
        if ast.args.get(clause) is not None:
            outer.set(clause, ast.args[clause].copy())
    return Composite(tuple(part_list), outer.sql(dialect=DIALECT), rename=ast.sql(dialect=DIALECT))


MAX_GROUPING_SETS = 64
"""CUBE of six keys; each grouping set is a federated query of its own."""


_AT_ISSUER = ("qualify", "order", "limit", "offset", "distinct")
"""The clauses a window statement's combine step runs at the issuer, over its part's result."""


def _combine_step(ast: exp.Select, lift: Callable[[exp.Expression], exp.Expression]) -> exp.Select:
    """The user's SELECT list and the _AT_ISSUER clauses, with `lift` mapping what the part computes
    to its columns (`lift` also collects the part's items, in this order)."""
    outer = exp.Select()
    for e in ast.expressions:
        outer = outer.select(e.transform(lift), copy=False)  # output names: `rename`
    for name in _AT_ISSUER:
        node = ast.args.get(name)
        if node is not None:
            outer.set(name, node.transform(lift) if name in ("qualify", "order") else node.copy())
    return outer


def _one_part(ast: exp.Select, outer: exp.Select, items: list[exp.Expression], what: str) -> Composite:
    """`ast` without the _AT_ISSUER clauses and with `items` as its list is the part; `outer`
    reads its result."""
    inner = ast.copy()
    for name in _AT_ISSUER:
        inner.set(name, None)
    inner.set("expressions", items)
    outer.from_(exp.to_identifier(f"{PART_PREFIX}1", quoted=True), copy=False)
    return Composite((Part(f"{PART_PREFIX}1", inner.sql(dialect=DIALECT), what),), outer.sql(dialect=DIALECT),
                     rename=ast.sql(dialect=DIALECT))


def _windows_over_rows(ast: exp.Select) -> Composite | None:
    """Window functions over rows (no GROUP BY, no aggregate): the rows the windows read — every
    column of the SELECT list, QUALIFY and ORDER BY — are a row-level part (a join's rows need the
    owners' `payload` or `public` for them, as any row-level query), and the windows run at the
    issuer over them, so they reveal nothing the part did not.

        SELECT c.cid, ROW_NUMBER() OVER (PARTITION BY o.ch ORDER BY c.cid) FROM p.cust c JOIN q.ord o ON …
          [SELECT c.cid AS "__c1", o.ch AS "__c2" FROM p.cust c JOIN q.ord o ON …]
          -> SELECT "__c1" AS cid, ROW_NUMBER() OVER (PARTITION BY "__c2" ORDER BY "__c1") FROM "__part1"
    """
    clauses = [*ast.expressions, ast.args.get("qualify"), ast.args.get("order")]
    if not any(c is not None and c.find(exp.Window) for c in clauses) or ast.args.get("group") is not None:
        return None
    if any(_is_aggregate(n) for c in clauses if c is not None for n in c.find_all(exp.AggFunc)):
        return None  # aggregates without GROUP BY: _windows_over_groups' case
    if any(isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
           for e in ast.expressions) or ast.find(exp.Subquery) or ast.args.get("with_"):
        return None
    aliases = {e.alias for e in ast.expressions if isinstance(e, exp.Alias)}
    columns: dict[str, str] = {}  # the column as written -> its name in the part
    items: list[exp.Expression] = []

    def lift(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star) and (node.table or node.name not in aliases):
            key = node.sql(dialect=DIALECT)
            if key not in columns:
                columns[key] = f"__c{len(columns) + 1}"
                items.append(exp.alias_(node.copy(), columns[key], quoted=True))
            return exp.column(columns[key], quoted=True)
        return node

    outer = _combine_step(ast, lift)
    return _one_part(ast, outer, items, "the rows the windows read") if items else None
