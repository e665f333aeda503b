"""Uncorrelated scalar subqueries: run each as its own federated query first.

`... WHERE cost > (SELECT AVG(cost) FROM patients)` becomes two queries: the
subquery (checked by every party's policy like any query; its value is
revealed to the issuer, as its own result would be) and the outer query with
that value as a literal — which every party again compiles and checks.

The literal is written into the SQL text every participant of the outer query
receives (and records in its audit log), so each of them is a *viewer* of the
value too (docs/decisions.md, "Scalar subquery values"): before anything runs,
the subquery is planned as if each receiving party had issued it, and a party
the owners' policies would not show the result refuses the whole statement.
The leakage report names the receiving parties.
"""

from __future__ import annotations

import datetime
import decimal
import re
from typing import Any, Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from fedsql.errors import Error, PolicyViolation, ProgrammingError, UnsupportedSql
from planner.passes.quantified import rewrite_quantified

_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+", re.IGNORECASE)

RunScalar = Callable[[str], tuple[Any, str, list[str]]]
"""SQL → (value, DuckDB type, leakage lines)."""

CompileAs = Callable[[str, str], Any]
"""(SQL, issuer) → planner.compile.Compiled: the planner as that party would run it."""


def scalar_subqueries(ast: exp.Expression) -> list[exp.Subquery]:
    out = []
    for sub in ast.find_all(exp.Subquery):
        parent = sub.parent
        if isinstance(parent, (exp.From, exp.Join, exp.In, exp.Exists)) or isinstance(sub.this, exp.Union):
            continue
        if isinstance(parent, exp.In) and parent.args.get("query") is sub:
            continue
        out.append(sub)
    return out


def literal(value: Any, duck_type: str) -> exp.Expression:
    if value is None:
        return exp.cast(exp.Null(), duck_type)
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, (int, float, decimal.Decimal)):
        return exp.cast(exp.Literal.number(str(value)), duck_type)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ") if isinstance(value, datetime.datetime)
                                           else value.isoformat()), duck_type)
    return exp.cast(exp.Literal.string(str(value)), duck_type)


def resolve(sql: str, run_scalar: RunScalar | None, compile_as: CompileAs,
            issuer: str) -> tuple[str, list[str]]:
    """The statement with scalar subqueries replaced by their values (none run for EXPLAIN).

    Refuses (PolicyViolation) when a party that would receive a value in the outer query's SQL
    may not see it; the check runs before any subquery does."""
    text = sql.strip().rstrip(";")
    explain = bool(_EXPLAIN.match(text))
    body = _EXPLAIN.sub("", text, count=1) if explain else text
    if "(" not in body or not re.search(r"\(\s*(SELECT|WITH)\b", body, re.IGNORECASE):
        return sql, []
    try:
        ast = sqlglot.parse_one(body, read="duckdb")
    except (ParseError, TokenError):
        return sql, []  # the planner reports the syntax error
    quantified = rewrite_quantified(ast, issuer)  # x op ANY/ALL (…): IN, NOT IN or scalar subqueries
    if quantified is not ast:
        ast, body = quantified, quantified.sql(dialect="duckdb")
        sql = f"EXPLAIN {body}" if explain else body
    holes = _uncorrelated(ast, compile_as, issuer)
    if not holes:
        return sql, []
    receivers = _receivers(ast.sql(dialect="duckdb"), compile_as, issuer)
    for _, inner in holes:
        for party in receivers:
            _check_viewer(inner, party, receivers, compile_as)
    told = f" and written into the SQL of the outer query, which {', '.join(receivers)} receive" if receivers else ""
    leakage: list[str] = []
    for hole, inner in holes:
        if explain or run_scalar is None:
            leakage.append(f"runs first, its value revealed to the issuer{told}: ({inner})")
            continue
        value, duck_type, inner_leakage = run_scalar(inner)
        hole.replace(literal(value, duck_type))
        leakage.append(f"scalar subquery ({inner}) ran first; its value was revealed to the issuer{told}")
        leakage += [f"  {line}" for line in inner_leakage]
    out = ast.sql(dialect="duckdb")
    if not explain and run_scalar is not None:  # the values must not bring in a party the check did not see
        unchecked = set(_receivers(out, compile_as, issuer)) - set(receivers)
        if unchecked:
            raise PolicyViolation(f"the outer query with its scalar subqueries' values would also reach "
                                  f"{', '.join(sorted(unchecked))}, which were not checked as viewers; refused")
    return (f"EXPLAIN {out}" if explain else out), leakage


def _uncorrelated(ast: exp.Expression, compile_as: CompileAs, issuer: str) -> list[tuple[exp.Expression, str]]:
    """Replace each uncorrelated scalar subquery by a typed NULL placeholder; returns
    (placeholder, subquery SQL). Correlated ones stay: the planner decorrelates them into joins
    (planner/passes/decorrelate.py)."""
    with_ = ast.args.get("with_") or ast.args.get("with")
    ctes = {c.alias_or_name for c in with_.expressions} if with_ is not None else set()
    holes: list[tuple[exp.Expression, str]] = []
    for sub in scalar_subqueries(ast):
        if not _attached(sub, ast):
            continue  # inside a subquery already taken: it runs with it
        query = sub.this
        if ctes and not (query.args.get("with_") or query.args.get("with")) and any(
                not t.db and t.name in ctes for t in query.find_all(exp.Table)):
            query = query.copy()  # it reads the statement's CTEs: run it with them
            query.set("with_" if "with_" in query.args or "with_" in ast.args else "with", with_.copy())
        if _refers_outside(query):
            continue
        inner = query.sql(dialect="duckdb")
        try:
            plan = compile_as(inner, issuer).plan
        except Error as exc:
            text = str(exc).lower()
            if "column" in text and ("not found" in text or "no column" in text or "unknown table or alias" in text):
                continue  # an unqualified column of the outer query: correlated
            raise type(exc)(f"in the scalar subquery ({inner}): {exc}") from None
        if plan is None:
            raise UnsupportedSql(f"a scalar subquery must be a SELECT: ({inner})")
        hole = literal(None, plan.output[0][1])
        sub.replace(hole)
        holes.append((hole, inner))
    return holes


def _attached(node: exp.Expression, root: exp.Expression) -> bool:
    while node.parent is not None:
        node = node.parent
    return node is root


def _receivers(outer_sql: str, compile_as: CompileAs, issuer: str) -> tuple[str, ...]:
    """The parties the outer query's SQL (with the values inlined) is sent to: its participants."""
    plan = compile_as(outer_sql, issuer).plan
    return tuple(p for p in plan.participants if p != issuer) if plan is not None else ()


def _check_viewer(inner: str, party: str, receivers: tuple[str, ...], compile_as: CompileAs) -> None:
    """`party` receives the subquery's value: plan the subquery as if `party` had issued it."""
    try:
        compile_as(inner, party)
    except Error as exc:
        raise PolicyViolation(
            f"the scalar subquery ({inner}) runs first and its value is written into the SQL of the outer "
            f"query, which {', '.join(receivers)} receive as participants; party '{party}' may not see that "
            f"value: {exc} To run it, ask the owners to allow '{party}' this result, or run the subquery as a "
            "query of its own and write the outer query without it."
        ) from None


def _refers_outside(query: exp.Expression) -> bool:
    """A column qualified by an alias the subquery does not define: it reads the outer query."""
    defined = {t.alias_or_name for t in query.find_all(exp.Table)} | \
              {s.alias_or_name for s in query.find_all(exp.Subquery) if s.alias_or_name} | \
              {c.alias_or_name for c in query.find_all(exp.CTE)}
    return any(c.table and c.table not in defined for c in query.find_all(exp.Column))


def single_value(table: Any) -> Any:
    if table.num_columns != 1:
        raise ProgrammingError(f"a scalar subquery must return one column, it returned {table.num_columns}")
    if table.num_rows > 1:
        raise ProgrammingError(f"a scalar subquery must return at most one row, it returned {table.num_rows}")
    return table.column(0)[0].as_py() if table.num_rows else None
