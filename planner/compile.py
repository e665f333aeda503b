"""The planner's entry point: SQL text → checked, hashed physical plan.

Deterministic over (SQL, issuer, settings, configuration, schemas): every
party runs this itself and compares the hash with the issuer's.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsql.config import Federation
from planner.analyze import analyze
from planner.catalog import SchemaLookup
from planner.lower import PUBLIC_TEXT, lower
from planner.parse import Statement, parse_statement
from planner.physical import PhysicalPlan, with_hash
from planner.policy import check_policy
from planner.validate import describe
from fedsql.errors import SqlSyntaxError


@dataclass(frozen=True)
class Compiled:
    kind: str  # select | explain | set
    plan: PhysicalPlan | None = None
    setting: tuple[str, str] | None = None


def session_mode(fed: Federation, settings: dict[str, str]) -> str:
    return settings.get("fedsql.mode") or fed.default_mode


MAX_SQL_CHARS = 1 << 20


def compile_query(
    sql: str, fed: Federation, issuer: str, settings: dict[str, str], schema_of: SchemaLookup
) -> Compiled:
    if len(sql) > MAX_SQL_CHARS:
        raise SqlSyntaxError(f"the statement is {len(sql)} characters long; the limit is {MAX_SQL_CHARS}")
    try:
        return _compile(sql, fed, issuer, settings, schema_of)
    except RecursionError:  # sqlglot and the passes recurse over the tree (issue #6: bad input)
        raise SqlSyntaxError("the statement is nested too deeply to plan; simplify it") from None


def _compile(
    sql: str, fed: Federation, issuer: str, settings: dict[str, str], schema_of: SchemaLookup
) -> Compiled:
    stmt: Statement = parse_statement(sql)
    if stmt.kind == "set":
        return Compiled("set", setting=stmt.setting)
    return Compiled(stmt.kind, plan=plan_select(stmt, fed, issuer, settings, schema_of))


def plan_select(
    stmt: Statement, fed: Federation, issuer: str, settings: dict[str, str], schema_of: SchemaLookup
) -> PhysicalPlan:
    ast = stmt.ast
    fed.party(issuer)
    block = analyze(ast, fed, schema_of)
    table = block.table
    # bind the user's own text: output names are then exactly plain DuckDB's
    output = describe(stmt.text, {table.name: table.schema})
    check_policy(block, issuer)
    mode = session_mode(fed, settings)
    steps, result, leakage = lower(block, issuer, fed.compute, output, mode, fed.fixed_point_bits)
    plan = PhysicalPlan(
        issuer=issuer,
        schemas=((table.name, table.schema),),
        compute=fed.compute,
        steps=steps,
        result=result,
        output=output,
        leakage=(PUBLIC_TEXT,) + leakage,
        settings=(("fedsql.mode", mode),),
        fixed_point_bits=fed.fixed_point_bits,
    )
    return with_hash(plan)
