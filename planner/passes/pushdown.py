"""Pass: the SQL each owner runs locally over its own rows (filters, projections).

Every predicate of a single-table block refers to one party's row only, so the
owner evaluates it in plaintext in its DuckDB: nothing about it crosses parties.
"""

from __future__ import annotations

from sqlglot import exp

from planner.analyze import QueryBlock
from planner.parse import DIALECT
from planner.validate import quote


def source_sql(block: QueryBlock, view: str) -> str:
    """`FROM <view> AS <alias>` for the owner's local table."""
    return f"FROM {quote(view)} AS {quote(block.alias)}"


def where_sql(block: QueryBlock) -> str:
    return f" WHERE {block.where.sql(dialect=DIALECT)}" if block.where is not None else ""


def rewrite_source(block: QueryBlock, view: str) -> str:
    """The whole query, run by a single owner over its own table."""
    ast = block.ast.copy()
    table = exp.Table(this=exp.to_identifier(view, quoted=True))
    table.set("alias", exp.TableAlias(this=exp.to_identifier(block.alias, quoted=True)))
    (ast.args.get("from_") or ast.args.get("from")).set("this", table)
    return ast.sql(dialect=DIALECT)


def row_fragment_sql(block: QueryBlock, view: str, columns: list[str]) -> str:
    """Filtered rows of the columns a non-aggregate query needs."""
    cols = ", ".join(quote(c) for c in columns) or "1 AS __one"
    return f"SELECT {cols} {source_sql(block, view)}{where_sql(block)}"
