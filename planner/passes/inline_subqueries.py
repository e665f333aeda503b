"""Pass: fold CTEs and derived tables into the outer query (sqlglot's own optimizer rules).

`WITH x AS (SELECT ... FROM t WHERE ...) SELECT ... FROM x` and
`FROM (SELECT ...) s` become one query block over the base tables, so the
rest of the planner (and the push-down to owners) sees through them. What
cannot be merged (e.g. a derived table that aggregates) is left in the WITH
clause (sqlglot hoists FROM-subqueries there) for planner/passes/derived_tables.py.
Every column comes out qualified, which decorrelation and the derived tables'
level analysis rely on.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer import eliminate_subqueries, merge_subqueries, qualify

from fedsql.config import Federation
from fedsql.errors import UnknownObjectError, UnsupportedSql
from planner.catalog import SchemaLookup, resolve_table
from planner.parse import DIALECT

FED_DB = "__federated"


def has_inline_candidates(ast: exp.Expression) -> bool:
    """CTEs, FROM-subqueries, scalar subqueries left in place (correlated) or IN-subqueries
    that aggregate or join: all need the qualified tree."""
    from planner.passes.derived_tables import _simple

    if ast.args.get("with_") or ast.args.get("with"):
        return True
    for sub in ast.find_all(exp.Subquery):
        parent = sub.parent
        if isinstance(parent, (exp.From, exp.Join)):
            return True
        if isinstance(parent, exp.In) and not _simple(sub.this):
            return True
        if not isinstance(parent, (exp.In, exp.Exists)):
            return True  # a scalar subquery the issuer's node could not run alone: correlated
    return False


def inline_subqueries(ast: exp.Expression, fed: Federation, schema_of: SchemaLookup) -> exp.Expression:
    """The query with CTEs and derived tables merged into their users."""
    ast = ast.copy()
    ctes = {c.alias_or_name for c in ast.find_all(exp.CTE)}
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for table in ast.find_all(exp.Table):
        if not table.name or (not table.db and table.name in ctes):
            continue
        ref = resolve_table(fed, table.db or None, table.name, schema_of)
        db = table.db or FED_DB
        if not table.db:
            table.set("db", exp.to_identifier(FED_DB))
        schema.setdefault(db, {})[table.name] = dict(ref.schema)
    try:
        ast = qualify.qualify(ast, schema=schema, dialect=DIALECT, quote_identifiers=False,
                              validate_qualify_columns=False)
        ast = eliminate_subqueries.eliminate_subqueries(ast)
        ast = merge_subqueries.merge_subqueries(ast)
    except (OptimizeError, SqlglotError) as exc:
        raise UnknownObjectError(f"cannot resolve the query's names: {str(exc).splitlines()[0]}") from None
    if any(isinstance(f.this, exp.Subquery) for f in ast.find_all(exp.From, exp.Join)):
        raise UnsupportedSql(
            "a derived table nested inside a subquery cannot be folded into the outer query; write it as a "
            "CTE (WITH name AS (...)) at the top of the query"
        )
    for table in ast.find_all(exp.Table):
        if table.db == FED_DB:
            table.set("db", None)
    return ast
