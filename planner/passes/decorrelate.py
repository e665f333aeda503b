"""Pass: correlated scalar subqueries in WHERE → a grouped derived table joined to the outer query.

    WHERE l_quantity < (SELECT 0.2 * AVG(l_quantity) FROM lineitem WHERE l_partkey = p_partkey)
 →  WITH __sq0 AS (SELECT l_partkey AS __c0, 0.2 * AVG(l_quantity) AS __v FROM lineitem GROUP BY l_partkey)
    ... JOIN __sq0 WHERE __sq0.__c0 = p_partkey AND l_quantity < __sq0.__v

Exact SQL semantics hold because (a) the subquery is one side of a comparison that
is a top-level WHERE conjunct, so a NULL value drops the row, and (b) its value is
NULL for an outer row without a matching group: it must be built only from
SUM/AVG/MIN/MAX/VAR/STDDEV, constants and arithmetic (COALESCE/CASE are refused).
An outer row without a group is then dropped by the inner join exactly as by the
NULL comparison; groups are unique on the correlation columns, so no row is
duplicated. With COUNT (0 on an empty group, not NULL) the derived table is LEFT
JOINed instead and the comparison uses CASE WHEN no group matched THEN the value
over no rows (COUNT → 0, other aggregates → NULL) ELSE the group's value END. Only equality correlations
(inner.col = outer.col) in the subquery's WHERE are decorrelated; others are
refused. The derived table then goes through planner/passes/derived_tables.py
(one party's tables only).

When the outer WHERE equates the correlated outer column with a column of the
subquery's own party (Q17: p_partkey = l_partkey), the join uses that column, so the
derived table joins inside that party's DuckDB instead of across parties.
"""

from __future__ import annotations

from sqlglot import exp

from fedsql.errors import UnsupportedSql
from planner.join_analyze import conjuncts
from planner.parse import DIALECT

_NULL_ON_EMPTY = (exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Variance, exp.VariancePop, exp.Stddev,
                  exp.StddevSamp, exp.StddevPop)
_ARITH = (exp.Literal, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Paren, exp.Neg, exp.Cast, exp.DataType,
          exp.Interval, exp.Var)
_COMPARE = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)


def _scalar_subqueries(ast: exp.Select) -> list[exp.Subquery]:
    """Scalar subqueries of the outer block (not in its WITH, not IN/EXISTS subqueries or inside them)."""
    out = []
    for sub in ast.find_all(exp.Subquery):
        if isinstance(sub.parent, (exp.From, exp.Join, exp.In, exp.Exists)):
            continue
        node, skip = sub.parent, False
        while node is not None and node is not ast:
            if isinstance(node, (exp.With, exp.Exists)) or (isinstance(node, exp.In) and node.args.get("query")) \
                    or isinstance(node, exp.Subquery):
                skip = True
                break
            node = node.parent
        if not skip:
            out.append(sub)
    return out


def decorrelate(ast: exp.Expression) -> exp.Expression:
    """The query with each correlated scalar subquery of its WHERE turned into a joined CTE."""
    if not isinstance(ast, exp.Select):
        return ast
    subs = [s for s in _scalar_subqueries(ast) if _outer_refs(s.this)]
    if not subs:
        return ast
    ast = ast.copy()
    subs = [s for s in _scalar_subqueries(ast) if _outer_refs(s.this)]
    where = ast.args.get("where")
    top = conjuncts(where.this if where else None)
    classes = _equalities(ast, top)
    dbs = _alias_dbs(ast)
    extra: list[exp.Expression] = []
    for i, sub in enumerate(subs):
        cond = sub.parent
        while isinstance(cond, (exp.Paren, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg)):
            cond = cond.parent  # arithmetic keeps NULL NULL, so the comparison still drops the row
        if not (isinstance(cond, _COMPARE) and any(cond is c for c in top)):
            raise UnsupportedSql(
                f"the correlated scalar subquery ({sub.this.sql(dialect=DIALECT)}) is supported only as one side of "
                "a comparison (=, <>, <, <=, >, >=), possibly inside arithmetic, that is an AND-ed condition of the "
                "WHERE clause"
            )
        name = f"__sq{i}"
        cte, pairs = _grouped(sub.this)
        counts = cte.expressions[-1].find(exp.Count) is not None
        if counts:  # an empty group gives COUNT 0, not NULL: a LEFT JOIN, and the empty value where none matched
            cte.set("expressions", cte.expressions + [exp.alias_(exp.Literal.number(1), "__p")])
        ast = ast.with_(name, as_=cte, copy=False)
        joins = ast.args.get("joins") or []
        table = exp.Table(this=exp.to_identifier(name))
        table.set("alias", exp.TableAlias(this=exp.to_identifier(name)))
        party = _party(sub.this)
        equalities = [exp.EQ(this=exp.column(f"__c{j}", table=name),
                             expression=_prefer(outer, classes, dbs, party).copy()) for j, (_, outer) in enumerate(pairs)]
        if counts:
            ast.set("joins", joins + [exp.Join(this=table, side="LEFT", on=exp.and_(*equalities))])
            empty = _empty_value(cte.expressions[-2].unalias())
            sub.replace(exp.Paren(this=exp.Case(
                ifs=[exp.If(this=exp.Is(this=exp.column("__p", table=name), expression=exp.Null()), true=empty)],
                default=exp.column("__v", table=name))))
        else:
            ast.set("joins", joins + [exp.Join(this=table)])
            extra += equalities
            sub.replace(exp.column("__v", table=name))
    where = ast.args.get("where")
    if extra:
        ast.set("where", exp.Where(this=exp.and_(where.this, *extra) if where else exp.and_(*extra)))
    return ast


def _empty_value(value: exp.Expression) -> exp.Expression:
    """The subquery's value over no rows: COUNT is 0, every other aggregate NULL."""
    def empty(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Count):
            return exp.Literal.number(0)
        if isinstance(node, _NULL_ON_EMPTY):
            return exp.Null()
        return node

    return value.copy().transform(empty)


def _inner_aliases(q: exp.Select) -> set[str]:
    return {t.alias_or_name for t in q.find_all(exp.Table)} | \
           {s.alias_or_name for s in q.find_all(exp.Subquery) if s.alias_or_name}


def _outer_refs(q: exp.Expression) -> list[exp.Column]:
    if not isinstance(q, exp.Select):
        return []
    inner = _inner_aliases(q)
    return [c for c in q.find_all(exp.Column) if c.table and c.table not in inner]


def _grouped(q: exp.Select) -> tuple[exp.Select, list[tuple[exp.Column, exp.Column]]]:
    """The subquery grouped by its correlation columns, and the (inner, outer) column pairs."""
    text = q.sql(dialect=DIALECT)
    for clause in ("group", "having", "limit", "offset", "order", "distinct", "qualify"):
        if q.args.get(clause) is not None:
            raise UnsupportedSql(f"a correlated scalar subquery with {clause.upper()} is not supported yet: ({text})")
    if len(q.expressions) != 1:
        raise UnsupportedSql(f"a scalar subquery must return one column: ({text})")
    value = q.expressions[0].unalias()
    _check_null_on_empty(value, text)
    inner = _inner_aliases(q)
    where = q.args.get("where")
    pairs: list[tuple[exp.Column, exp.Column]] = []
    keep: list[exp.Expression] = []
    for c in conjuncts(where.this if where else None):
        outer = [col for col in c.find_all(exp.Column) if col.table and col.table not in inner]
        if not outer:
            keep.append(c)
            continue
        if isinstance(c, exp.EQ) and isinstance(c.left, exp.Column) and isinstance(c.right, exp.Column) and \
                len(outer) == 1 and (c.left.table in inner) != (c.right.table in inner):
            pairs.append((c.left, c.right) if c.left.table in inner else (c.right, c.left))
            continue
        raise UnsupportedSql(
            f"a correlated scalar subquery may refer to the outer query only through equalities inner.col = "
            f"outer.col in its WHERE; ({c.sql(dialect=DIALECT)}) is not one"
        )
    used = {id(col) for inner_col, outer_col in pairs for col in (inner_col, outer_col)}
    stray = [c for c in _outer_refs(q) if id(c) not in used]
    if stray:
        raise UnsupportedSql(f"the correlated scalar subquery ({text}) refers to the outer column "
                             f"{stray[0].sql(dialect=DIALECT)} outside an equality in its WHERE")
    out = q.copy()
    keys = [inner_col.copy() for inner_col, _ in pairs]
    out.set("expressions", [exp.alias_(k, f"__c{j}") for j, k in enumerate(keys)] + [exp.alias_(value.copy(), "__v")])
    out.set("where", exp.Where(this=exp.and_(*[k.copy() for k in keep])) if keep else None)
    out.set("group", exp.Group(expressions=[k.copy() for k in keys]))
    return out, pairs


def _check_null_on_empty(value: exp.Expression, text: str) -> None:
    if not value.find(exp.AggFunc):
        raise UnsupportedSql(f"a correlated scalar subquery must aggregate (e.g. AVG, MIN): ({text})")

    def walk(node: exp.Expression) -> None:
        if isinstance(node, _NULL_ON_EMPTY + (exp.Count,)):
            if node.find(exp.Subquery):
                raise UnsupportedSql(f"nested subqueries inside a correlated scalar subquery: ({text})")
            return
        if not isinstance(node, _ARITH):
            raise UnsupportedSql(
                f"a correlated scalar subquery may combine COUNT/SUM/AVG/MIN/MAX/VAR/STDDEV only with constants and "
                f"arithmetic (its value must be NULL when no row matches); {node.sql(dialect=DIALECT)} is not "
                f"supported there: ({text})")
        for child in node.iter_expressions():
            walk(child)

    walk(value)


def _alias_dbs(ast: exp.Select) -> dict[str, str]:
    from_ = ast.args.get("from_") or ast.args.get("from")
    sources = ([from_.this] if from_ is not None else []) + [j.this for j in ast.args.get("joins") or []]
    return {s.alias_or_name: s.db for s in sources if isinstance(s, exp.Table)}


def _party(q: exp.Select) -> str | None:
    dbs = {t.db for t in q.find_all(exp.Table)}
    return dbs.pop() if len(dbs) == 1 else None


def _equalities(ast: exp.Select, top: list[exp.Expression]) -> dict[str, list[exp.Column]]:
    """Column equivalence classes implied by the outer WHERE's (and inner joins' ON) equalities."""
    conds = list(top)
    for join in ast.args.get("joins") or []:
        if (join.side or "").upper() not in ("LEFT", "RIGHT", "FULL"):
            conds += conjuncts(join.args.get("on"))
    parent: dict[str, str] = {}
    nodes: dict[str, exp.Column] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for c in conds:
        if isinstance(c, exp.EQ) and isinstance(c.left, exp.Column) and isinstance(c.right, exp.Column):
            a, b = (col.sql(dialect=DIALECT) for col in (c.left, c.right))
            nodes.setdefault(a, c.left)
            nodes.setdefault(b, c.right)
            parent.setdefault(a, a)
            parent.setdefault(b, b)
            parent[find(a)] = find(b)
    classes: dict[str, list[exp.Column]] = {}
    for x in sorted(parent):
        classes.setdefault(find(x), []).append(nodes[x])
    return {x: classes[find(x)] for x in parent}


def _prefer(outer: exp.Column, classes: dict[str, list[exp.Column]], dbs: dict[str, str],
            party: str | None) -> exp.Column:
    """An outer column equal to `outer` that the subquery's party owns, else `outer` itself."""
    if party is None or dbs.get(outer.table) == party:
        return outer
    for col in classes.get(outer.sql(dialect=DIALECT), ()):
        if dbs.get(col.table) == party:
            return col
    return outer
