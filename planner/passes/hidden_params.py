"""Pass: hidden lookup (`SET fedsql.hidden_params = on`) — the statement's `?` values stay secret.

Each predicate `col = ?` or `col IN (?, …, ?)` on another party's column becomes a semi-join
with a table of the issuer's that holds those values:

    SELECT risk FROM telco.blacklist t WHERE t.phone IN (?, ?)
      → SELECT risk FROM telco.blacklist t WHERE t.phone IN (SELECT v FROM bank."__hidden_1")

`bank.__hidden_1` exists only while the statement is planned (a TableConfig of format "hidden"
added to the issuer's party) and, at the issuer's node alone, as an Arrow table of the values
(executors/runtime.py). Every party rewrites the same text the same way: the table's one column
has the compared column's type, and the plan records only where each parameter goes
(`HiddenSet`: name, first parameter, count, type), never a value. The semi-join always runs
sort-based (planner/lower_join.py), so the owner learns that k keys were looked up and nothing
about which; the issuer gets the matching rows.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from fedsql.config import Federation, TableConfig
from fedsql.errors import SqlSyntaxError, UnsupportedSql
from planner.catalog import SchemaLookup, resolve_table
from planner.parse import DIALECT
from plan.schemas import Schema

HIDDEN_FORMAT = "hidden"
"""TableConfig.format of a hidden-parameter table."""

MAX_HIDDEN_PARAMS = 1_000_000


@dataclass(frozen=True)
class HiddenSet:
    name: str  # the issuer's table: __hidden_<i>
    first: int  # index of its first parameter (0-based, in text order)
    count: int
    type: str  # DuckDB type of the compared column: the values are cast to it


_EXPLAIN = re.compile(r"\s*explain\b", re.IGNORECASE)


def numbered(sql: str) -> tuple[str, int]:
    """`?` → `$1`, `$2`, … in text order (sqlglot's tokenizer: quotes and comments respected)."""
    explain = _EXPLAIN.match(sql)
    if explain:  # the tokenizer reads what follows EXPLAIN as one command string: number that part
        rest, count = numbered(sql[explain.end():])
        return sql[:explain.end()] + rest, count
    try:
        tokens = sqlglot.tokenize(sql, read=DIALECT)
    except Exception:  # noqa: BLE001 - the parser reports the syntax error with its position
        return sql, 0
    marks = [t for t in tokens if t.token_type == TokenType.PLACEHOLDER and t.text == "?"]
    out = sql
    for i, t in reversed(list(enumerate(marks, 1))):
        out = out[: t.start] + f"${i}" + out[t.end + 1:]
    return out, len(marks)


def rewrite(ast: exp.Expression, fed: Federation, issuer: str,
            schema_of: SchemaLookup) -> tuple[exp.Expression, Federation, SchemaLookup, tuple[HiddenSet, ...]]:
    """The statement with its hidden predicates as semi-joins, the federation and schema lookup
    that know the issuer's parameter tables, and where each parameter goes."""
    marks = list(ast.find_all(exp.Placeholder))
    if not marks:
        return ast, fed, schema_of, ()
    if len(marks) > MAX_HIDDEN_PARAMS:
        raise UnsupportedSql(f"the statement has {len(marks)} hidden parameters; the limit is {MAX_HIDDEN_PARAMS}")
    ast = ast.copy()
    aliases = {t.alias_or_name: t for t in ast.find_all(exp.Table)}
    sets: list[HiddenSet] = []
    tables: dict[str, Schema] = {}
    for node in list(ast.find_all(exp.EQ, exp.In)):
        if isinstance(node, exp.EQ):
            left, right = node.this, node.expression
            if isinstance(left, exp.Placeholder) == isinstance(right, exp.Placeholder):
                continue
            column, values = (left, [right]) if isinstance(right, exp.Placeholder) else (right, [left])
        else:
            column, values = node.this, list(node.expressions)
            if node.args.get("query") is not None or not values or not all(
                    isinstance(v, exp.Placeholder) for v in values):
                continue
        if not isinstance(column, exp.Column) or not isinstance(node.parent, (exp.Where, exp.And)):
            raise UnsupportedSql(_WHERE)
        typ, owner = _column_type(column, aliases, fed, schema_of)
        if owner == issuer:
            raise UnsupportedSql(f"hidden parameters look up another party's rows; {column.sql(dialect=DIALECT)} is "
                                 f"{issuer}'s own column (SET fedsql.hidden_params = off for queries of your own tables)")
        positions = [_position(v) for v in values]
        if positions != list(range(positions[0], positions[0] + len(positions))):
            raise UnsupportedSql(_WHERE)
        name = f"__hidden_{len(sets) + 1}"
        sets.append(HiddenSet(name, positions[0], len(positions), typ))
        tables[name] = (("v", typ),)
        sub = exp.select(exp.column("v")).from_(exp.table_(name, db=issuer, quoted=True))
        node.replace(exp.In(this=column.copy(), query=exp.Subquery(this=sub)))
    if any(True for _ in ast.find_all(exp.Placeholder)):
        raise UnsupportedSql(_WHERE)
    party = fed.parties[issuer]
    extra = {n: TableConfig(issuer, n, "", HIDDEN_FORMAT, {}) for n in tables}
    fed = dataclasses.replace(fed, parties={**fed.parties, issuer: dataclasses.replace(
        party, tables={**party.tables, **extra})})
    inner = schema_of

    def lookup(p: str, t: str) -> Schema:
        return tables[t] if p == issuer and t in tables else inner(p, t)

    return ast, fed, lookup, tuple(sets)


_WHERE = ("with fedsql.hidden_params = on, each ? must stand in a WHERE condition `col = ?` or `col IN (?, …, ?)` "
          "on another party's column (the lookup key); put other values in the SQL text, or SET "
          "fedsql.hidden_params = off")


def _position(node: exp.Placeholder) -> int:
    text = str(node.this or "")
    if not text.isdigit():
        raise SqlSyntaxError("write hidden parameters as ? (not named or numbered placeholders)")
    return int(text) - 1


def _column_type(column: exp.Column, aliases: dict[str, exp.Table], fed: Federation,
                 schema_of: SchemaLookup) -> tuple[str, str]:
    """(DuckDB type, owning party) of the compared column; its table must be a party's table."""
    candidates = [aliases[column.table]] if column.table in aliases else list(aliases.values()) \
        if not column.table else []
    for table in candidates:
        if not table.db:
            continue
        ref = resolve_table(fed, table.db, table.name, schema_of)
        for name, typ in ref.schema:
            if name.lower() == column.name.lower():
                return typ, table.db
    raise UnsupportedSql(f"the hidden lookup key {column.sql(dialect=DIALECT)} must be a column of a party's "
                         "table named in FROM (write alias.column)")


def leakage(sets: tuple[HiddenSet, ...], issuer: str) -> tuple[str, ...]:
    """What the plan says about the hidden parameters: how many, never which."""
    if not sets:
        return ()
    k = sum(s.count for s in sets)
    return (f"to every party: that {issuer} looked up {k} hidden key value{'s' if k != 1 else ''} (their number "
            "and type; the values are secret shares and reach no other party)",)

