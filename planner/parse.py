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
        raise SqlSyntaxError(syntax_error_message(exc)) from None
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


def syntax_error_message(exc: Exception) -> str:
    """Where the statement stops parsing and the token there, in words (sqlglot's own
    descriptions name its internal classes)."""
    details = getattr(exc, "errors", None) or []
    if not details:
        text = _first_line(exc)
        if isinstance(exc, TokenError):
            near = text.split("Error tokenizing", 1)[-1].strip()
            return f"syntax error: cannot read the text near {near} (an unclosed quote or comment?)"
        return f"syntax error: {text}"
    first = details[0]
    where = f"at line {first.get('line')}, column {first.get('col')}"
    token = (first.get("highlight") or "").strip()
    before = " ".join((first.get("start_context") or "").split()[-3:])
    description = str(first.get("description") or "")
    missing = re.search(r"Required keyword: '(\w+)' missing for <class '[\w.]*\.(\w+)'>", description)
    if missing:
        return f"syntax error {where}: {missing.group(2).upper()} is missing its expression"
    expecting = re.match(r"Expecting (.+)", description)
    if expecting:
        return f"syntax error {where}: expected {expecting.group(1)} before {token!r}" + (
            f" (after {before!r})" if before else "")
    if token:
        return f"syntax error {where}: unexpected {token!r}" + (f" after {before!r}" if before else "")
    return f"syntax error {where}: {description or 'the statement ends too early'}"


def _first_line(exc: Exception) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # sqlglot underlines with ANSI escapes; strip them for plain terminals and logs
    return re.sub(r"\x1b\[[0-9;]*m", "", msg)
