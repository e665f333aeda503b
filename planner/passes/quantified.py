"""`x op ANY (subquery)` and `x op ALL (subquery)` as constructs the planner already runs.

`= ANY` is `IN` and `<> ALL` is `NOT IN`, exactly (NULLs included). The other comparisons become
a CASE over scalar subqueries of the same rows: whether there are any, whether any is NULL, and
their MIN or MAX, which decide the quantified comparison exactly in SQL's three-valued logic:

    x > ANY (S)  =  CASE WHEN count(S) = 0 THEN FALSE WHEN x > min(S) THEN TRUE
                         WHEN x IS NULL OR nulls(S) > 0 THEN NULL ELSE FALSE END
    x > ALL (S)  =  CASE WHEN count(S) = 0 THEN TRUE WHEN NOT x > max(S) THEN FALSE
                         WHEN x IS NULL OR nulls(S) > 0 THEN NULL ELSE TRUE END

(`<>`/`=` with ANY/ALL test against both min and max.) A `<`, `<=`, `>`, `>=` ANY that is an
AND-term of WHERE, where NULL and FALSE both drop the row, needs only the bound:
`x > ANY (S)` keeps the rows with `x > min(S)` (no value, or only NULLs: min is NULL, none kept),
so a correlated one decorrelates like any scalar comparison. The scalar subqueries then run as
queries of their own or are decorrelated into grouped joins like any others, each checked by
the owners' policies: the issuer learns those aggregates of S, which the leakage report names.

    >>> import sqlglot
    >>> sql = "SELECT COUNT(*) FROM a.t WHERE x = ANY (SELECT y FROM b.u)"
    >>> rewrite_quantified(sqlglot.parse_one(sql, read="duckdb"), "a").sql("duckdb")
    'SELECT COUNT(*) FROM a.t WHERE x IN (SELECT y FROM b.u)'
    >>> sql = "SELECT COUNT(*) FROM a.t WHERE x > ANY (SELECT y FROM b.u WHERE b.u.k = a.t.k) AND x > 0"
    >>> rewrite_quantified(sqlglot.parse_one(sql, read="duckdb"), "a").sql("duckdb")
    'SELECT COUNT(*) FROM a.t WHERE x > (SELECT MIN(y) FROM b.u WHERE b.u.k = a.t.k) AND x > 0'
    >>> sql = "SELECT COUNT(*) FROM a.t WHERE x >= ALL (SELECT y FROM b.u WHERE y > 0)"
    >>> print(rewrite_quantified(sqlglot.parse_one(sql, read="duckdb"), "a").sql("duckdb"))
    SELECT COUNT(*) FROM a.t WHERE CASE WHEN (SELECT COUNT(*) FROM b.u WHERE y > 0) = 0 THEN TRUE WHEN NOT x >= (SELECT MAX(y) FROM b.u WHERE y > 0) THEN FALSE WHEN x IS NULL OR (SELECT COUNT(*) FROM b.u WHERE y > 0 AND y IS NULL) > 0 THEN NULL ELSE TRUE END
"""

from __future__ import annotations

from sqlglot import exp

from fedsql.errors import UnsupportedSql

_OPS = {exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=", exp.EQ: "=", exp.NEQ: "<>"}


def rewrite_quantified(ast: exp.Expression, issuer: str) -> exp.Expression:
    """The statement without ANY/ALL/SOME, unless it reads only the issuer's tables (then its own
    DuckDB runs it as written)."""
    found = [q for q in ast.find_all(exp.Any, exp.All) if type(q.parent) in _OPS and q.arg_key == "expression"]
    if not found or all(t.db == issuer for t in ast.find_all(exp.Table)):
        return ast
    ast = ast.copy()
    for quantifier in [q for q in ast.find_all(exp.Any, exp.All) if type(q.parent) in _OPS
                       and q.arg_key == "expression"]:
        comparison = quantifier.parent
        comparison.replace(_rewrite(comparison, quantifier, filtering=_where_term(comparison)))
    return ast


def _where_term(node: exp.Expression) -> bool:
    """Is `node` an AND-term of a WHERE clause (so that NULL and FALSE both drop the row)?"""
    parent = node.parent
    while isinstance(parent, (exp.And, exp.Paren)):
        parent = parent.parent
    return isinstance(parent, exp.Where)


def _rewrite(comparison: exp.Expression, quantifier: exp.Expression, filtering: bool = False) -> exp.Expression:
    query = quantifier.this.this if isinstance(quantifier.this, exp.Subquery) else quantifier.this
    op = _OPS[type(comparison)]
    is_all = isinstance(quantifier, exp.All)
    x = comparison.this
    if not isinstance(query, exp.Select) or len(query.expressions) != 1:
        raise UnsupportedSql(f"{comparison.sql(dialect='duckdb')}: ANY/ALL needs a subquery that selects one column")
    if op == "=" and not is_all:
        return exp.In(this=x.copy(), query=exp.Subquery(this=query.copy()))
    if op == "<>" and is_all:
        return exp.Not(this=exp.In(this=x.copy(), query=exp.Subquery(this=query.copy())))
    rows = _rows_of(query)
    value = rows.expressions[0]

    def scalar(select: exp.Expression, where: exp.Expression | None = None) -> exp.Expression:
        q = rows.copy()
        q.set("expressions", [select])
        if where is not None:
            old = q.args.get("where")
            q.set("where", exp.Where(this=exp.and_(old.this.copy(), where) if old else where))
        return exp.Subquery(this=q)

    count = scalar(exp.Count(this=exp.Star()))
    nulls = scalar(exp.Count(this=exp.Star()), exp.Is(this=value.copy(), expression=exp.Null()))
    unknown = exp.Or(this=exp.Is(this=x.copy(), expression=exp.Null()),
                     expression=exp.GT(this=nulls, expression=exp.Literal.number(0)))

    def cmp(bound: str) -> exp.Expression:
        agg = exp.Min(this=value.copy()) if bound == "min" else exp.Max(this=value.copy())
        return type(comparison)(this=x.copy(), expression=scalar(agg))

    if filtering and not is_all and op not in ("<>", "="):  # kept iff x beats the weakest value
        return cmp("min" if op in (">", ">=") else "max")

    if op in ("<>", "="):  # some value differs from x iff x differs from the min or the max
        differs = exp.Or(this=exp.NEQ(this=x.copy(), expression=scalar(exp.Min(this=value.copy()))),
                         expression=exp.NEQ(this=x.copy(), expression=scalar(exp.Max(this=value.copy()))))
        decided, when_decided = (differs, not is_all)
    else:  # ANY: x beats the weakest value; ALL: x fails against the strongest one
        weakest = "min" if op in (">", ">=") else "max"
        strongest = "max" if weakest == "min" else "min"
        decided = cmp(weakest) if not is_all else exp.Not(this=cmp(strongest))
        when_decided = not is_all
    return exp.Case(ifs=[
        exp.If(this=exp.EQ(this=count, expression=exp.Literal.number(0)), true=exp.Boolean(this=is_all)),
        exp.If(this=decided, true=exp.Boolean(this=when_decided)),
        exp.If(this=unknown, true=exp.Null()),
    ], default=exp.Boolean(this=is_all))


def _rows_of(query: exp.Select) -> exp.Select:
    """A SELECT whose one output is the subquery's value, with the same rows (duplicates do not
    matter to COUNT(*) = 0, MIN and MAX); wrapped when it aggregates, groups, limits or is DISTINCT."""
    simple = not any(query.args.get(k) for k in ("group", "having", "limit", "offset", "order", "qualify", "distinct",
                                                   "with_", "with")) and not query.find(exp.AggFunc)
    value = query.expressions[0]
    if simple:
        q = query.copy()
        q.set("expressions", [value.this.copy() if isinstance(value, exp.Alias) else value.copy()])
        return q
    inner = query.copy()
    inner.set("expressions", [exp.alias_(value.copy(), "__v")])
    return exp.select(exp.column("__v", table="__q")).from_(exp.Subquery(this=inner, alias=exp.TableAlias(
        this=exp.to_identifier("__q"))))
