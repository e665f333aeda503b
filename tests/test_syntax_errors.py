"""Syntax errors say where the statement stops parsing and which token is there (issue #15),
in words rather than sqlglot's internal class names."""

from __future__ import annotations

import pytest

from fedsql.errors import SqlSyntaxError
from planner.parse import parse_statement


@pytest.mark.parametrize("sql, needles", [
    ("SELEC 1", ["line 1, column 7", "unexpected '1'", "'SELEC'"]),
    ("SELECT 1 FROM t WHERE", ["WHERE is missing its expression"]),
    ("SELECT (1 FROM t", ["expected )", "'FROM'"]),
    ("SELECT 'abc FROM t", ["cannot read the text", "unclosed quote"]),
    ("SELECT a FROM t GROUP x", ["unexpected 'x'", "GROUP"]),
])
def test_syntax_errors_name_the_place_and_token(sql: str, needles: list[str]) -> None:
    with pytest.raises(SqlSyntaxError) as info:
        parse_statement(sql)
    message = str(info.value)
    assert message.startswith("syntax error")
    for needle in needles:
        assert needle in message
    assert "<class" not in message and "\x1b" not in message
