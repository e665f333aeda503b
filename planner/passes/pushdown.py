"""Pass: the SQL each owner runs locally over its own rows (filters, projections).

Every predicate of a single-table block refers to one party's row only, so the
owner evaluates it in plaintext in its DuckDB: nothing about it crosses parties.
"""

from __future__ import annotations

from sqlglot import exp

import sqlglot

from planner.analyze import QueryBlock
from planner.catalog import DerivedTable, from_item
from planner.parse import DIALECT
from plan.schemas import quote


def source_sql(block: QueryBlock, member) -> str:
    """`FROM <view> AS <alias>` for the owner's local table (or its derived table's body)."""
    return f"FROM {from_item(member)} AS {quote(block.alias)}"


def where_sql(block: QueryBlock) -> str:
    return f" WHERE {block.where.sql(dialect=DIALECT)}" if block.where is not None else ""


def rewrite_source(block: QueryBlock, member) -> str:
    """The whole query, run by a single owner over its own table (or derived table)."""
    ast = block.ast.copy()
    alias = exp.TableAlias(this=exp.to_identifier(block.alias, quoted=True))
    if isinstance(member, DerivedTable):
        table = exp.Subquery(this=sqlglot.parse_one(member.sql, read=DIALECT), alias=alias)
    else:
        table = exp.Table(this=exp.to_identifier(member.name, quoted=True))
        table.set("alias", alias)
    (ast.args.get("from_") or ast.args.get("from")).set("this", table)
    return ast.sql(dialect=DIALECT)


def row_fragment_sql(block: QueryBlock, member, columns: list[str]) -> str:
    """Filtered rows of the columns a non-aggregate query needs."""
    cols = ", ".join(quote(c) for c in columns) or "1 AS __one"
    return f"SELECT {cols} {source_sql(block, member)}{where_sql(block)}"
