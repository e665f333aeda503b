"""Public schemas as data: a strict grammar for DuckDB type names and checked Describe replies.

A peer's `Describe` reply is untrusted input, and its column types end up in SQL
(the planner's `CREATE TABLE` in planner/validate.py, casts in fragments). So a type
is accepted only if it parses as a plain DuckDB type in the grammar below, and what
the planner uses is the type *re-rendered from the parse*, never the text received
(issue #11, Critical 1). The grammar covers what `DESCRIBE` prints for tables read
from Parquet and CSV (executors/local_duckdb.py):

    type   := base ('[' ']' | '[' INT ']')*
    base   := NAME | NAME WITH TIME ZONE | "NULL" | STRUCT | DECIMAL '(' INT ',' INT ')'
            | STRUCT '(' field (',' field)* ')' | UNION '(' field (',' field)* ')'
            | MAP '(' type ',' type ')'
    field  := IDENT type          IDENT: a plain identifier or a "quoted" one

Enum types (whose labels are string literals) are refused: cast them to VARCHAR.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from fedsql.errors import ProgrammingError
Schema = tuple[tuple[str, str], ...]
"""Ordered (column, DuckDB type) pairs."""


def quote(name: str) -> str:
    """A DuckDB identifier, quoted (names come from users and peers)."""
    return '"' + name.replace('"', '""') + '"'

SIMPLE_TYPES = frozenset({
    "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
    "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "VARCHAR", "BLOB", "DATE", "TIME", "TIME_NS", "TIMESTAMP",
    "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "INTERVAL", "UUID", "BIT", "BIGNUM", "VARINT", "JSON",
})
WITH_TIME_ZONE = frozenset({"TIME", "TIMESTAMP"})
MAX_TYPE_CHARS = 4096
MAX_DEPTH = 8
MAX_COLUMNS = 4096
MAX_NAME_CHARS = 255
MAX_REPLY_BYTES = 4 << 20

_TOKEN = re.compile(r'\s*(?:([A-Za-z_][A-Za-z0-9_]*)|("(?:[^"]|"")*")|(\d{1,5})|([(),\[\]]))')


class _Bad(Exception):
    pass


def duckdb_type(text: Any) -> str:
    """The canonical form of DuckDB type name `text`; ValueError if it is not a plain type.

    The result is built from the parsed tokens only, so it can be pasted into DDL."""
    if not isinstance(text, str) or not text or len(text) > MAX_TYPE_CHARS:
        raise ValueError("a type must be a non-empty string of at most %d characters" % MAX_TYPE_CHARS)
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            pos += len(text[pos:]) - len(text[pos:].lstrip())
            raise ValueError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = "name" if m.group(1) else "quoted" if m.group(2) else "int" if m.group(3) else "punct"
        tokens.append((kind, m.group(m.lastindex)))
        pos = m.end()
    parser = _Parser(tokens)
    try:
        out = parser.type(0)
        if parser.i != len(tokens):
            raise _Bad(f"unexpected {tokens[parser.i][1]!r} after the type")
    except _Bad as exc:
        raise ValueError(str(exc)) from None
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.i = 0

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "")

    def _take(self, kind: str, value: str | None = None) -> str:
        k, v = self._peek()
        if k != kind or (value is not None and v.upper() != value):
            raise _Bad(f"expected {value or kind}, got {v or 'the end'!r}")
        self.i += 1
        return v

    def _accept(self, value: str) -> bool:
        k, v = self._peek()
        if k in ("punct", "name") and v.upper() == value:
            self.i += 1
            return True
        return False

    def type(self, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise _Bad(f"types nest at most {MAX_DEPTH} levels deep")
        out = self._base(depth)
        while self._accept("["):
            size = self._take("int") if self._peek()[0] == "int" else ""
            self._take("punct", "]")
            out += f"[{int(size)}]" if size else "[]"
        return out

    def _base(self, depth: int) -> str:
        if self._peek() == ("quoted", '"NULL"'):  # the type of an untyped NULL (a derived table's output)
            self.i += 1
            return '"NULL"'
        name = self._take("name").upper()
        if name in ("DECIMAL", "NUMERIC"):
            self._take("punct", "(")
            width = int(self._take("int"))
            self._take("punct", ",")
            scale = int(self._take("int"))
            self._take("punct", ")")
            if not (1 <= width <= 38 and 0 <= scale <= width):
                raise _Bad(f"DECIMAL({width},{scale}) is out of range (width 1-38, scale 0-width)")
            return f"DECIMAL({width},{scale})"
        if name in ("STRUCT", "UNION"):
            if name == "STRUCT" and self._peek() != ("punct", "("):
                return name  # the empty struct {}
            self._take("punct", "(")
            fields = [self._field(depth)]
            while self._accept(","):
                fields.append(self._field(depth))
            self._take("punct", ")")
            return f"{name}({', '.join(fields)})"
        if name == "MAP":
            self._take("punct", "(")
            key = self.type(depth + 1)
            self._take("punct", ",")
            value = self.type(depth + 1)
            self._take("punct", ")")
            return f"MAP({key}, {value})"
        if name == "ENUM":
            raise _Bad("ENUM types are not supported; cast the column to VARCHAR in the source")
        if name not in SIMPLE_TYPES:
            raise _Bad(f"unknown type {name!r}")
        if name in WITH_TIME_ZONE and self._peek()[1].upper() == "WITH":
            for word in ("WITH", "TIME", "ZONE"):
                self._take("name", word)
            return f"{name} WITH TIME ZONE"
        return name

    def _field(self, depth: int) -> str:
        kind, value = self._peek()
        if kind == "quoted":
            self.i += 1
            name = check_column_name(value[1:-1].replace('""', '"'))
            value = '"' + name.replace('"', '""') + '"'  # re-quoted from the decoded name
        elif kind == "name":
            self.i += 1
        else:
            raise _Bad(f"expected a field name, got {value or 'the end'!r}")
        return f"{value} {self.type(depth + 1)}"


def check_column_name(name: Any) -> str:
    """A column name as a schema may carry it: 1-255 printable characters."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        raise ValueError(f"a column name must be a string of 1 to {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in name):
        raise ValueError(f"column name {name!r} contains control or unassigned characters")
    return name


def checked_schema(columns: Any) -> Schema:
    """A list of [name, type] pairs → a Schema of checked names and canonical types (ValueError)."""
    if not isinstance(columns, list) or not 0 < len(columns) <= MAX_COLUMNS:
        raise ValueError(f"expected a list of 1 to {MAX_COLUMNS} [name, type] pairs")
    out, seen = [], set()
    for i, col in enumerate(columns):
        if not isinstance(col, (list, tuple)) or len(col) != 2:
            raise ValueError(f"column {i + 1} is not a [name, type] pair")
        name = check_column_name(col[0])
        if name.lower() in seen:  # DuckDB names are case-insensitive
            raise ValueError(f"column {name!r} appears twice")
        seen.add(name.lower())
        try:
            typ = duckdb_type(col[1])
        except ValueError as exc:
            raise ValueError(f"column {name!r}: {exc}") from None
        out.append((name, typ))
    return tuple(out)


def parse_describe_reply(party: str, table: str, payload: str) -> Schema:
    """The schema of `party.table` from that party's Describe reply, checked in full.

    Raises ProgrammingError naming the party; the offending text is not echoed back
    beyond the column name, since it came from an untrusted peer."""
    def bad(why: str) -> ProgrammingError:
        return ProgrammingError(
            f"party '{party}' described table '{table}' with an invalid schema ({why}); refused. "
            f"Its node may run a different fedsql version or be misconfigured: ask its operator to check it"
        )

    if not isinstance(payload, str) or len(payload.encode("utf-8", "replace")) > MAX_REPLY_BYTES:
        raise bad(f"the reply is larger than {MAX_REPLY_BYTES} bytes")
    try:
        raw = json.loads(payload)
    except ValueError:
        raise bad("the reply is not JSON") from None
    if not isinstance(raw, dict) or set(raw) != {table}:
        raise bad("the reply must describe exactly the table asked for")
    try:
        return checked_schema(raw[table])
    except ValueError as exc:
        raise bad(str(exc)) from None
