"""SQL text → one classified statement (SELECT, EXPLAIN SELECT, SET)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from fedsql.errors import SqlSyntaxError, UnsupportedSql
from fedsql.settings import SETTINGS, check_epsilon, check_setting  # noqa: F401 - re-exported

logging.getLogger("sqlglot").setLevel(logging.ERROR)

DIALECT = "duckdb"
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    kind: str  # "select" | "explain" | "set"
    ast: exp.Expression | None = None
    setting: tuple[str, str] | None = None
    text: str = ""  # the statement as written (EXPLAIN stripped)


def parse_statement(sql: str) -> Statement:
    """Parse exactly one statement; errors name the position and the fix."""
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise SqlSyntaxError("empty statement: write a SELECT query")
    explain = bool(_EXPLAIN.match(text))
    if explain:
        text = _EXPLAIN.sub("", text, count=1)
    try:
        statements = [s for s in sqlglot.parse(text, read=DIALECT) if s is not None]
    except (ParseError, TokenError) as exc:
        raise SqlSyntaxError(f"syntax error: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise SqlSyntaxError(f"expected one statement, got {len(statements)}: send them one at a time")
    ast = statements[0]
    if isinstance(ast, exp.Set) and not explain:
        return Statement("set", setting=_parse_set(ast))
    if isinstance(ast, exp.Command):
        raise UnsupportedSql(f"unsupported statement '{ast.name.upper()}': fedsql runs SELECT, EXPLAIN SELECT and SET")
    if not isinstance(ast, exp.Query):
        raise UnsupportedSql(
            f"unsupported statement {ast.key.upper()}: fedsql runs SELECT, EXPLAIN SELECT and SET"
        )
    return Statement("explain" if explain else "select", ast=ast, text=text)


def _parse_set(ast: exp.Set) -> tuple[str, str]:
    items = ast.expressions
    if len(items) != 1 or not isinstance(items[0].this, exp.EQ):
        raise SqlSyntaxError("write SET name = 'value', e.g. SET fedsql.mode = 'oblivious'")
    eq = items[0].this
    name = eq.this.sql(dialect=DIALECT).lower().replace('"', "")
    value = eq.expression.name if isinstance(eq.expression, (exp.Literal, exp.Column, exp.Identifier)) else eq.expression.sql()
    return name, check_setting(name, value)


def _first_line(exc: Exception) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # sqlglot underlines with ANSI escapes; strip them for plain terminals and logs
    return re.sub(r"\x1b\[[0-9;]*m", "", msg)
