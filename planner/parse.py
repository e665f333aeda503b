"""SQL text → one classified statement (SELECT, EXPLAIN SELECT, SET)."""

from __future__ import annotations

import bisect
import logging
import re
from dataclasses import dataclass

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from fedsql.errors import SqlSyntaxError, UnsupportedSql
from fedsql.settings import check_setting

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
        check_tokens(text)
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
    _check_sources(ast)
    return Statement("explain" if explain else "select", ast=ast, text=text)


_OPAQUE = {TokenType.STRING, TokenType.NATIONAL_STRING, TokenType.BIT_STRING, TokenType.HEX_STRING,
           TokenType.BYTE_STRING, TokenType.HEREDOC_STRING, TokenType.RAW_STRING, TokenType.UNICODE_STRING,
           TokenType.IDENTIFIER}
_NODE_STATE_FUNCTIONS = {"current_setting", "getvariable", "getenv"}


def check_tokens(text: str) -> None:
    """Refuse text that sqlglot (the planner) and DuckDB (which binds it) would read differently.

    The planner checks policies on sqlglot's tree, while DuckDB binds the user's text as written
    (planner/validate.py): where the two tokenizers disagree, e.g. `$1a$ … $1a$` is a string to
    sqlglot but a parameter and SQL to DuckDB, SQL could pass the policy checks unseen. So a
    dollar-quoted string is refused, and so is any statement in which a token of one tokenizer
    starts inside a string, quoted name or comment of the other."""
    tokens = sqlglot.tokenize(text, read=DIALECT)
    for t in tokens:
        if t.token_type in (TokenType.HEREDOC_STRING, TokenType.RAW_STRING):
            raise SqlSyntaxError(f"dollar-quoted strings ($tag$…$tag$, at position {t.start}) are not supported: "
                                 "write a plain '…' string, doubling any ' inside it")
    try:
        duck = duckdb.tokenize(text)
    except Exception:  # noqa: BLE001 - DuckDB reports the syntax error when it binds the text
        return
    raw = text.encode("utf-8")
    char_at = [0] * (len(raw) + 1)  # DuckDB counts bytes, sqlglot characters
    i = 0
    for c, ch in enumerate(text):
        for _ in range(len(ch.encode("utf-8"))):
            char_at[i] = c
            i += 1
    char_at[len(raw)] = len(text)
    spans = []  # DuckDB's tokens as (start, end, opaque) in characters
    for n, (pos, kind) in enumerate(duck):
        start = char_at[min(pos, len(raw))]
        nxt = char_at[min(duck[n + 1][0], len(raw))] if n + 1 < len(duck) else len(text)
        end = start + max(len(text[start:nxt].rstrip()) - 1, 0)
        name = str(kind).rsplit(".", 1)[-1]
        opaque = name in ("string_const", "comment") or (name == "identifier" and text[start:start + 1] == '"')
        spans.append((start, end, opaque, name == "comment"))
    duck_starts = [s for s, _, _, _ in spans]
    glot_starts = [t.start for t in tokens]

    def disagree(at: int) -> SqlSyntaxError:
        return SqlSyntaxError(
            f"the statement cannot be read unambiguously near position {at} (a string, quoted name or comment "
            "that DuckDB and fedsql's planner would split differently); write plain '…' strings and -- comments")

    for t in tokens:  # DuckDB sees a token inside what the planner takes for one string or name
        if t.token_type in _OPAQUE:
            k = bisect.bisect_right(duck_starts, t.start)
            if k < len(duck_starts) and duck_starts[k] <= t.end:
                raise disagree(duck_starts[k])
    for start, end, opaque, _ in spans:  # the planner sees a token inside DuckDB's string, name or comment
        if opaque:
            k = bisect.bisect_right(glot_starts, start)
            while k < len(tokens) and tokens[k].start <= end:
                if not (tokens[k].token_type in _OPAQUE and tokens[k].end == end):
                    raise disagree(tokens[k].start)
                k += 1
    for start, _, _, comment in spans:  # DuckDB sees code where the planner sees none (a comment to it)
        if not comment:
            k = bisect.bisect_right(glot_starts, start) - 1
            if k < 0 or tokens[k].end < start:
                raise disagree(start)


def _check_sources(ast: exp.Expression) -> None:
    """Tables are party tables or federated ones; functions that read the node's own state
    (its settings, environment, variables) are not part of any party's data: both refused."""
    for table in ast.find_all(exp.Table):
        if isinstance(table.this, (exp.Anonymous, exp.Func)):
            raise UnsupportedSql(f"table functions ({table.this.sql(dialect=DIALECT)[:60]}) are not supported: "
                                 "read a party's table (party.table) or a federated table")
    for func in ast.find_all(exp.Func):
        name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
        if name in _NODE_STATE_FUNCTIONS:
            raise UnsupportedSql(f"{name}() reads the node's own state, not a party's data; it is not supported")


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
