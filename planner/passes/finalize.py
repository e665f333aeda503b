"""Pass: the issuer's final DuckDB query over what it received.

Aggregates and group keys are replaced by columns of the received table;
HAVING becomes a filter; ORDER BY and LIMIT stay; every output column is cast
to the exact name and type plain DuckDB gives for the user's query.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from planner.analyze import QueryBlock, canonical, strip_qualifiers
from planner.parse import DIALECT
from plan.schemas import quote
from planner.validate import OutputSchema


def final_sql(block: QueryBlock, table: str, replacements: dict[str, str], output: OutputSchema,
              qualified: bool = False, drop_offset: bool = False, extra: list[str] | tuple = ()) -> str:
    """`qualified`: replacement keys keep table qualifiers (join blocks, where names can clash).
    `extra`: SQL items appended after the output columns (DP interval parts; not with DISTINCT,
    where they would change which rows are distinct)."""
    ast = block.ast.copy()
    parsed = {k: sqlglot.parse_one(v, read=DIALECT) for k, v in replacements.items()}

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, (exp.AggFunc, exp.Column)) or node.find(exp.Column, exp.AggFunc):
            key = node.sql(dialect=DIALECT, normalize=True) if qualified else canonical(node)
            if key in parsed:
                return parsed[key].copy()
        return node

    items = []
    for item, (name, typ) in zip(ast.expressions, output):
        inner = item.unalias() if isinstance(item, exp.Alias) else item
        new = _prepare(inner, qualified).transform(replace) if replacements else strip_qualifiers(inner)
        items.append(f"CAST({new.sql(dialect=DIALECT)} AS {typ}) AS {quote(name)}")
    distinct = "DISTINCT " if ast.args.get("distinct") is not None else ""
    if not distinct:
        items += list(extra)
    sql = f"SELECT {distinct}{', '.join(items)} FROM {quote(table)}"
    having = ast.args.get("having")  # the WHERE ran at the owners already
    if having is not None:
        sql += f" WHERE {_prepare(having.this, qualified).transform(replace).sql(dialect=DIALECT)}"
    order = ast.args.get("order")
    if order is not None:
        new_order = _prepare(order, qualified).transform(replace) if replacements else strip_qualifiers(order)
        sql += " " + new_order.sql(dialect=DIALECT)
    for clause in ("limit",) if drop_offset else ("limit", "offset"):
        node = ast.args.get(clause)
        if node is not None:
            sql += " " + node.sql(dialect=DIALECT)
    return sql


def _prepare(node: exp.Expression, qualified: bool) -> exp.Expression:
    return node.copy() if qualified else strip_qualifiers(node)


def issuer_side_note(ast: exp.Expression, issuer: str) -> tuple[str, ...]:
    """HAVING / LIMIT run in the issuer's final step: its node sees every group first."""
    clauses = [c for c, present in (("HAVING", ast.args.get("having")), ("LIMIT", ast.args.get("limit")),
                                    ("OFFSET", ast.args.get("offset"))) if present is not None]
    if not clauses:
        return ()
    return (f"to {issuer}: every group's aggregates before {'/'.join(clauses)} (applied in {issuer}'s final step; "
            "each is an aggregate the policies allow revealing)",)
