"""The DP rules over the whole statement, in one place (docs/decisions.md "D-DP4").

A table whose owner declares a DP policy (and is not the issuer) is *DP-bound*. Two rules
hold for every DP-bound table anywhere in a statement — FROM, JOIN, EXISTS / IN and
scalar subqueries, CTEs, derived tables, set-operation branches:

1. **Coverage** (`require_dp_coverage`, after planning): the plan's DP pass
   (planner/passes/dp.py or dp_join.py) must have noised and charged that table, and the
   statement reads it exactly once. Any other use — a same-party EXISTS pushed into the
   owner's DuckDB (D17), a CTE read twice, a filter subquery — would let the table decide
   which rows are counted with no noise and no ledger charge; it is refused, naming the
   table and the construct.
2. **Expressions cannot fail** (`guard_dp_expressions`, before planning): an error that
   depends on one person's row is an un-noised bit (`CASE WHEN id = X AND v > m THEN
   error('x') END`). Every expression evaluated over a DP-bound table's rows (WHERE, JOIN
   ON, GROUP BY, aggregate arguments, keys in the SELECT list) may only use the node types
   in `_SAFE` and `_WRAPPED`; the latter can fail in DuckDB (integer overflow, `%` by zero,
   a bad cast) and are rewritten so that they cannot: arithmetic runs under `TRY(...)`
   (NULL instead of an error), CAST becomes TRY_CAST. Anything else is refused by name.
   Post-processing of the noisy aggregates (`ROUND(AVG(x), 1)`) is not checked: it sees
   only noised values.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator

from sqlglot import exp

from fedsql.config import Federation, TableConfig
from fedsql.errors import PolicyViolation
from planner.analyze import AGG_FUNCS
from planner.parse import DIALECT

_SAFE: tuple[type, ...] = (
    exp.Column, exp.Identifier, exp.Literal, exp.Boolean, exp.Null, exp.Star, exp.Paren, exp.Alias,
    exp.DataType, exp.DataTypeParam, exp.Tuple, exp.Interval, exp.Var,
    exp.And, exp.Or, exp.Not, exp.EQ, exp.NEQ, exp.NullSafeEQ, exp.NullSafeNEQ,
    exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.Between, exp.In,
    exp.Case, exp.If, exp.Coalesce, exp.Nullif, exp.Least, exp.Greatest,
    exp.Like, exp.ILike, exp.Lower, exp.Upper,
    exp.TryCast, exp.Try, exp.Distinct, *AGG_FUNCS,
)
"""Expression nodes that cannot raise in DuckDB whatever the row holds (division `/` by zero
gives ±inf or NULL; LIKE without ESCAPE never fails)."""

_ARITHMETIC: tuple[type, ...] = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod, exp.Neg, exp.Abs)
"""Can overflow (or `//`, `%` by zero): run under TRY, which yields NULL instead."""

_WRAPPED: tuple[type, ...] = _ARITHMETIC + (exp.Cast,)

ALLOWED_TEXT = ("comparisons, AND/OR/NOT, IS [NOT] NULL, BETWEEN, IN (list), LIKE/ILIKE, CASE/IF, COALESCE, "
                "NULLIF, LEAST/GREATEST, LOWER/UPPER, + - * / // % and ABS (run under TRY: an overflow gives "
                "NULL), CAST (run as TRY_CAST) and the aggregates COUNT/SUM/AVG/VAR/STDDEV")


def dp_bound(table: exp.Table, fed: Federation, issuer: str) -> list[TableConfig]:
    """The DP-bound member tables a table reference names (a union names several); [] for
    CTE names, the issuer's own tables and unknown names (the planner reports those)."""
    if table.db:  # a catalog prefix is ignored, as name resolution does: counted, never skipped
        party = fed.parties.get(table.db)
        members = [party.tables[table.name]] if party is not None and table.name in party.tables else []
    else:
        union = fed.federated.get(table.name)
        members = [fed.table(p, t) for p, t in union.members] if union is not None else []
    return [m for m in members if m.dp is not None and m.party != issuer]


def _cte_bodies(ast: exp.Expression) -> dict[str, exp.Expression]:
    return {c.alias_or_name: c.this for c in ast.find_all(exp.CTE)}


def dp_occurrences(ast: exp.Expression, fed: Federation, issuer: str) -> Counter:
    """How many times the statement reads each DP-bound table (qualified name): every table
    reference anywhere, a CTE's tables once per reference to the CTE (at least once)."""
    bodies = _cte_bodies(ast)
    refs = Counter(t.name for t in ast.find_all(exp.Table) if not t.db and t.name in bodies)
    out: Counter = Counter()
    for t in ast.find_all(exp.Table):
        if not t.db and t.name in bodies:
            continue
        times = 1
        for name, body in bodies.items():  # inside a CTE read k times: read k times
            if refs[name] > 1 and any(n is t for n in body.find_all(exp.Table)):
                times *= refs[name]
        for m in dp_bound(t, fed, issuer):
            out[m.qualified] += times
    return out


def _context(table: exp.Table, ast: exp.Expression) -> str:
    """Where a table reference sits, for messages."""
    node = table.parent
    while node is not None and node is not ast:
        if isinstance(node, exp.Exists):
            return "in an EXISTS subquery"
        if isinstance(node, exp.In):
            return "in an IN subquery"
        if isinstance(node, exp.CTE):
            return f"in the CTE '{node.alias_or_name}'"
        if isinstance(node, (exp.Union, exp.Intersect, exp.Except)):
            return f"in a {node.key.upper()} branch"
        if isinstance(node, exp.Subquery):
            return "in a derived table" if isinstance(node.parent, (exp.From, exp.Join)) else "in a scalar subquery"
        node = node.parent
    return "in the query"


def require_dp_coverage(ast: exp.Expression, fed: Federation, issuer: str, covered: frozenset[str]) -> None:
    """Refuse the plan unless its DP pass noised and charged every DP-bound table the
    statement reads, each read once (`covered`: qualified member tables the DP pass handled)."""
    counts = dp_occurrences(ast, fed, issuer)
    for name, times in sorted(counts.items()):
        if name in covered and times == 1:
            continue
        where = next(_context(t, ast) for t in ast.find_all(exp.Table)
                     if any(m.qualified == name for m in dp_bound(t, fed, issuer)))
        party = name.split(".", 1)[0]
        if name in covered:
            raise PolicyViolation(
                f"{name} has a differential-privacy policy and this statement reads it {times} times; the noise "
                "and the budget charge cover one use, a second read (a subquery, a CTE used twice, a self-join) "
                f"would be un-noised. Read {name} once, as the table of a noisy aggregate")
        raise PolicyViolation(
            f"{name} has a differential-privacy policy, and this statement reads it {where}, where no noise is "
            f"added and no budget is charged (it would decide un-noised which rows count). A DP table may only "
            f"be the table (FROM or JOIN) of a noisy aggregate, not a subquery, CTE, derived table or set "
            f"operation branch of another query; query it on its own, e.g. SELECT COUNT(*) FROM {name} WHERE ..., "
            f"or ask '{party}' for a non-DP view")


# -- expressions that cannot fail --------------------------------------------------------


def _scopes(ast: exp.Expression) -> list[exp.Select]:
    return list(ast.find_all(exp.Select))


def _sources(select: exp.Select) -> list[exp.Expression]:
    from_ = select.args.get("from_") or select.args.get("from")
    return ([from_.this] if from_ is not None else []) + [j.this for j in select.args.get("joins") or []]


def _dp_aliases(select: exp.Select, fed: Federation, issuer: str, dp_ctes: set[str]) -> set[str] | None:
    """Aliases in this SELECT's FROM/JOIN that read a DP-bound table (directly, through a CTE
    or a derived table); None when the SELECT reads none."""
    out = set()
    for src in _sources(select):
        if isinstance(src, exp.Table):
            reads = bool(dp_bound(src, fed, issuer)) or (not src.db and src.name in dp_ctes)
        else:
            reads = any(dp_bound(t, fed, issuer) or (not t.db and t.name in dp_ctes) for t in src.find_all(exp.Table))
        if reads:
            out.add(src.alias_or_name)
    return out or None


def _row_expressions(select: exp.Select) -> Iterator[exp.Expression]:
    """The expressions this SELECT evaluates over its tables' rows: WHERE and ON conjuncts,
    GROUP BY keys, aggregate arguments, and SELECT / HAVING / ORDER BY items that hold no
    aggregate (group keys, or rows); not the post-processing around aggregates."""
    for part in ("where", "having"):
        node = select.args.get(part)
        if node is not None:
            yield from _no_agg_or_args(node.this)
    for join in select.args.get("joins") or []:
        if join.args.get("on") is not None:
            yield join.args["on"]
    group = select.args.get("group")
    for g in group.expressions if group else []:
        yield g
    for item in select.expressions:
        yield from _no_agg_or_args(item)
    order = select.args.get("order")
    for o in order.expressions if order else []:
        yield from _no_agg_or_args(o.this)


def _no_agg_or_args(node: exp.Expression) -> Iterator[exp.Expression]:
    aggs = [a for a in node.find_all(exp.AggFunc) if not _inside_subquery(a, node)]
    if not aggs:
        yield node
        return
    for a in aggs:
        yield from (arg for arg in a.iter_expressions())


def _inside_subquery(node: exp.Expression, root: exp.Expression) -> bool:
    """True when `node` sits in a query nested inside `root` (that query is a scope of its own)."""
    if node is root:
        return False
    p = node.parent
    while p is not None and p is not root:
        if isinstance(p, (exp.Subquery, exp.Select)):
            return True
        p = p.parent
    return False


def _touches(node: exp.Expression, aliases: set[str], all_dp: bool) -> bool:
    cols = [c for c in node.find_all(exp.Column) if not _inside_subquery(c, node)]
    return any(all_dp or not c.table or c.table in aliases for c in cols)


def _name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return f"{node.name.upper()}()"
    if isinstance(node, exp.Func):
        return f"{node.sql_name()}()"
    return node.key.upper()


def _check_and_wrap(root: exp.Expression, tables: str) -> exp.Expression:
    """Refuse nodes outside the allow-list; make CAST and arithmetic unable to fail."""
    for node in list(root.walk()):
        if isinstance(node, (exp.Subquery, exp.Select, exp.Exists)):
            continue  # nested queries: the coverage rule refuses DP tables there; own tables are checked there
        if _inside_subquery(node, root) or isinstance(node, _SAFE + _WRAPPED):
            if isinstance(node, exp.Like) and node.args.get("escape") is not None:
                raise PolicyViolation(f"LIKE ... ESCAPE over {tables} is refused: a bad escape in a row's value "
                                      "would fail the query. Write the pattern without ESCAPE")
            continue
        if isinstance(node, exp.Escape):
            raise PolicyViolation(f"LIKE ... ESCAPE over {tables} is refused: a bad escape in a row's value "
                                  "would fail the query. Write the pattern without ESCAPE")
        raise PolicyViolation(
            f"{_name(node)} in {node.sql(dialect=DIALECT)[:80]} is refused over {tables}, which declares a "
            "differential-privacy policy: an expression that can fail on some row's value would reveal an "
            "un-noised bit through the error. Allowed over DP tables: " + ALLOWED_TEXT +
            ". Compute anything else from the noisy result (in a join, qualify other tables' columns, e.g. "
            "b.income: an unqualified column counts as the DP table's)")
    out = root
    for node in list(root.walk()):  # constants (no column) cannot fail data-dependently: left as written
        if not node.find(exp.Column):
            continue
        if isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast) and not _inside_subquery(node, root):
            safe = exp.TryCast(this=node.this, to=node.args["to"])
            out = safe if node is out else out
            node.replace(safe)
    for node in list(out.walk()):
        if isinstance(node, _ARITHMETIC) and not isinstance(_above_parens(node), _ARITHMETIC + (exp.Try,)) \
                and node.find(exp.Column) and not _inside_subquery(node, out):
            wrapped = exp.Try(this=node.copy())
            if node is out:
                out = wrapped
            else:
                node.replace(wrapped)
    return out


def _above_parens(node: exp.Expression) -> exp.Expression | None:
    """The nearest ancestor that is not a parenthesis (an arithmetic tree is wrapped once, at its top)."""
    p = node.parent
    while isinstance(p, exp.Paren):
        p = p.parent
    return p


def guard_dp_expressions(ast: exp.Expression, fed: Federation, issuer: str) -> exp.Expression:
    """The statement with every expression over a DP-bound table's rows checked against the
    allow-list and made unable to fail (module docstring); unchanged when it reads none."""
    counts = dp_occurrences(ast, fed, issuer)
    if not counts:
        return ast
    names = ", ".join(sorted(counts))
    ast = ast.copy()
    bodies = _cte_bodies(ast)
    dp_ctes: set[str] = set()
    for name, body in bodies.items():  # in order: a CTE may read an earlier one
        if any(dp_bound(t, fed, issuer) or (not t.db and t.name in dp_ctes) for t in body.find_all(exp.Table)):
            dp_ctes.add(name)
    own: dict[int, set[str]] = {}
    for select in list(_scopes(ast)):
        own[id(select)] = _dp_aliases(select, fed, issuer, dp_ctes) or set()
    for select in list(_scopes(ast)):
        aliases = set(own[id(select)])
        outer = select.parent
        while outer is not None:  # a correlated subquery reads its outer query's DP rows too
            if isinstance(outer, exp.Select):
                aliases |= own.get(id(outer), set())
            outer = outer.parent
        if not aliases:
            continue
        tables = names
        all_dp = bool(_sources(select)) and len(_sources(select)) == len(own[id(select)])
        for root in list(_row_expressions(select)):
            conjs = _conjuncts(root) if isinstance(root, exp.And) else [root]
            for c in conjs:
                if _touches(c, aliases, all_dp):
                    new = _check_and_wrap(c, tables)
                    if new is not c:
                        c.replace(new)
    return ast


def _conjuncts(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.And):
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]
