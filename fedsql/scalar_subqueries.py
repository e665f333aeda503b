"""Uncorrelated scalar subqueries: run each as its own federated query first.

`... WHERE cost > (SELECT AVG(cost) FROM patients)` becomes two queries: the
subquery (checked by every party's policy like any query; its value is
revealed to the issuer, as its own result would be) and the outer query with
that value as a literal — which every party again compiles and checks. The
leakage report of the whole statement lists both.
"""

from __future__ import annotations

import datetime
import decimal
import re
from typing import Any, Callable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from fedsql.errors import Error, ProgrammingError, UnsupportedSql

_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+", re.IGNORECASE)

RunScalar = Callable[[str], tuple[Any, str, list[str]]]
"""SQL → (value, DuckDB type, leakage lines)."""


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


def resolve(sql: str, run_scalar: RunScalar | None) -> tuple[str, list[str]]:
    """The statement with scalar subqueries replaced by their values (none run for EXPLAIN)."""
    text = sql.strip().rstrip(";")
    explain = bool(_EXPLAIN.match(text))
    body = _EXPLAIN.sub("", text, count=1) if explain else text
    if "(" not in body or not re.search(r"\(\s*(SELECT|WITH)\b", body, re.IGNORECASE):
        return sql, []
    try:
        ast = sqlglot.parse_one(body, read="duckdb")
    except (ParseError, TokenError):
        return sql, []  # the planner reports the syntax error
    subs = scalar_subqueries(ast)
    if not subs:
        return sql, []
    leakage: list[str] = []
    with_ = ast.args.get("with_") or ast.args.get("with")
    ctes = {c.alias_or_name for c in with_.expressions} if with_ is not None else set()
    for sub in subs:
        query = sub.this
        if ctes and not (query.args.get("with_") or query.args.get("with")) and any(
                not t.db and t.name in ctes for t in query.find_all(exp.Table)):
            query = query.copy()  # it reads the statement's CTEs: run it with them
            query.set("with_" if "with_" in query.args or "with_" in ast.args else "with", with_.copy())
        inner = query.sql(dialect="duckdb")
        if _refers_outside(query):
            continue  # correlated: the planner decorrelates it into a join (planner/passes/decorrelate.py)
        if explain or run_scalar is None:
            sub.replace(exp.Null())
            leakage.append(f"runs first, its value revealed to the issuer: ({inner})")
            continue
        try:
            value, duck_type, inner_leakage = run_scalar(inner)
        except Error as exc:
            text = str(exc).lower()
            if "column" in text and ("not found" in text or "no column" in text or "unknown table or alias" in text):
                continue  # correlated: the planner decorrelates it into a join (planner/passes/decorrelate.py)
            raise type(exc)(f"in the scalar subquery ({inner}): {exc}") from None
        sub.replace(literal(value, duck_type))
        leakage.append(f"scalar subquery ({inner}) ran first; its value was revealed to the issuer")
        leakage += [f"  {line}" for line in inner_leakage]
    out = ast.sql(dialect="duckdb")
    return (f"EXPLAIN {out}" if explain else out), leakage


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
