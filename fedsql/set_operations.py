"""UNION [ALL] / INTERSECT / EXCEPT of federated queries.

Each branch is a query of its own (checked by every party's policy, with its
own leakage report); the issuer combines the branch results in its DuckDB,
where UNION's duplicate removal, ORDER BY and LIMIT run. For UNION ALL the
issuer learns exactly the result; for the others it also learns each branch's
result, which the leakage report says.
"""

from __future__ import annotations

import re
from typing import Callable

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from executors.local_duckdb import run_over_tables

RunBranch = Callable[[str, int, int], tuple[pa.Table, list[str]]]  # (branch SQL, index, how many)
_SET_OPS = (exp.Union, exp.Intersect, exp.Except)


def parse_set_operation(sql: str) -> exp.Expression | None:
    """The statement's AST if it is a set operation of queries (not EXPLAIN), else None."""
    text = sql.strip().rstrip(";")
    if re.match(r"^\s*EXPLAIN\b", text, re.IGNORECASE) or not re.search(
            r"\b(UNION|INTERSECT|EXCEPT)\b", text, re.IGNORECASE):
        return None
    try:
        ast = sqlglot.parse_one(text, read="duckdb")
    except (ParseError, TokenError):
        return None
    return ast if isinstance(ast, _SET_OPS) else None


def run(ast: exp.Expression, run_branch: RunBranch) -> tuple[pa.Table, list[str]]:
    """Run every branch, then combine them at the issuer exactly as DuckDB would."""
    tables: dict[str, pa.Table] = {}
    leakage: list[str] = []
    combined = ast.copy()
    branches = [n for n in combined.walk() if isinstance(n, exp.Select) and not isinstance(n.parent, exp.Subquery)
                and isinstance(n.parent, _SET_OPS)]
    for i, branch in enumerate(branches):
        name = f"__branch{i}"
        sql = branch.sql(dialect="duckdb")
        table, branch_leakage = run_branch(sql, i, len(branches))
        tables[name] = table
        leakage.append(f"branch {i + 1} ({sql}) ran as its own query; its result reached the issuer")
        leakage += [f"  {line}" for line in branch_leakage]
        cols = ", ".join(f'"{c}"' for c in table.column_names)
        branch.replace(sqlglot.parse_one(f'SELECT {cols} FROM "{name}"', read="duckdb"))
    return run_over_tables(combined.sql(dialect="duckdb"), tables), leakage
