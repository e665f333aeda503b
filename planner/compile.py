"""The planner's entry point: SQL text → checked, hashed physical plan.

Deterministic over (SQL, issuer and its user's roles, settings, configuration,
schemas): every party runs this itself and compares the hash with the issuer's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType

from fedsql.config import Federation
from fedsql.permissions import Principal, as_principal
from sqlglot import exp

from planner.analyze import analyze
from planner.join_analyze import analyze_join, semi_conjuncts
from planner.passes.aggregate_filter import inline_aggregate_filters
from planner.passes.distinct import distinct_to_group_by
from planner.passes.decorrelate import decorrelate
from planner.passes.derived_tables import Derived, extract_derived_tables
from planner.passes.inline_subqueries import has_inline_candidates, inline_subqueries
from planner.lower_join import check_join_policy, expression_type, lower_join
from planner.passes.dp_join import plan_dp_join
from planner.passes import hidden_params
from planner.catalog import SchemaLookup
from planner.explain import plan_legend
from planner.lower import PUBLIC_TEXT, lower
from planner.parse import DIALECT, Statement, parse_statement
from plan.physical import PhysicalPlan, with_hash
from planner.passes.dp import dp_pass
from planner.passes.dp_guard import guard_dp_expressions, require_dp_coverage
from planner.policy import check_policy
from planner.rules import RuleContext, apply_rules
from planner.validate import describe
from fedsql.errors import SqlSyntaxError
from fedsql.settings import check_setting, check_settings


@dataclass(frozen=True)
class Compiled:
    kind: str  # select | explain | set
    plan: PhysicalPlan | None = None
    setting: tuple[str, str] | None = None


def session_mode(fed: Federation, settings: dict[str, str]) -> str:
    """The session's leakage mode (checked: fedsql/settings.py), else the federation's default."""
    mode = settings.get("fedsql.mode")
    return check_setting("fedsql.mode", mode) if mode else fed.default_mode


MAX_SQL_CHARS = 1 << 20


def compile_query(
    sql: str, fed: Federation, issuer: Principal | str, settings: dict[str, str], schema_of: SchemaLookup
) -> Compiled:
    """`issuer`: the issuing party, or a Principal naming also its user and roles, whose grants
    then apply; the plan records them, so its hash binds them."""
    if len(sql) > MAX_SQL_CHARS:
        raise SqlSyntaxError(f"the statement is {len(sql)} characters long; the limit is {MAX_SQL_CHARS}")
    check_settings(settings)  # a client's session, or the settings of a peer's RunRequest
    try:
        return _compile(sql, fed, issuer, settings, schema_of)
    except RecursionError:  # sqlglot and the passes recurse over the tree (issue #6: bad input)
        raise SqlSyntaxError("the statement is nested too deeply to plan; simplify it") from None


def _compile(
    sql: str, fed: Federation, issuer: Principal | str, settings: dict[str, str], schema_of: SchemaLookup
) -> Compiled:
    hidden = settings.get("fedsql.hidden_params") == "on"
    if hidden:  # the ? of a hidden lookup, numbered in text order ($1, $2, …)
        sql, _ = hidden_params.numbered(sql)
    stmt: Statement = parse_statement(sql)
    if stmt.kind == "set":
        return Compiled("set", setting=stmt.setting)
    if not hidden:
        return Compiled(stmt.kind, plan=plan_select(stmt, fed, issuer, settings, schema_of))
    party = as_principal(issuer).party
    ast, fed, schema_of, sets = hidden_params.rewrite(stmt.ast, fed, party, schema_of)
    stmt = dataclasses.replace(stmt, ast=ast, text=ast.sql(dialect=DIALECT))
    plan = plan_select(stmt, fed, issuer, settings, schema_of)
    if sets:
        plan = with_hash(dataclasses.replace(plan, hidden=sets,
                                             leakage=plan.leakage + hidden_params.leakage(sets, party)))
    return Compiled(stmt.kind, plan=plan)


def plan_select(
    stmt: Statement, fed: Federation, issuer: Principal | str, settings: dict[str, str], schema_of: SchemaLookup
) -> PhysicalPlan:
    """Every path (issuer-local, one table, joins) ends in one check that the DP pass covered
    every DP table the statement reads, wherever it reads it (planner/passes/dp_guard.py).
    The plan names the principal's user and roles (hashed)."""
    who = as_principal(issuer)
    issuer = who.party
    fed.party(issuer)
    guarded = guard_dp_expressions(stmt.ast, fed, issuer)  # expressions over DP rows cannot fail
    if guarded is not stmt.ast:
        stmt = dataclasses.replace(stmt, ast=guarded)
    plan, covered = _plan_select(stmt, fed, who, settings, schema_of)
    require_dp_coverage(stmt.ast, fed, issuer, covered)
    return with_hash(dataclasses.replace(plan, user=who.user, roles=who.roles))


def _plan_select(
    stmt: Statement, fed: Federation, who: Principal, settings: dict[str, str], schema_of: SchemaLookup
) -> tuple[PhysicalPlan, frozenset[str]]:
    """The plan and the DP-bound tables (qualified) its DP pass noised and charged. `who`: the
    issuer with its user's roles, for the policy checks; everything else plans for the party."""
    issuer = who.party
    ast = stmt.ast
    if _issuer_only(ast, fed, issuer):
        return _plan_issuer_local(stmt, fed, issuer, session_mode(fed, settings), schema_of), frozenset()
    derived = Derived(ast)
    if has_inline_candidates(ast):
        # fold what folds; correlated scalar subqueries → grouped CTEs; the rest → one party's local views
        ast = decorrelate(inline_subqueries(ast, fed, schema_of))
        derived = extract_derived_tables(ast, fed, schema_of, who)
        ast = derived.ast
    ast = apply_rules(ast, RuleContext(fed, issuer, schema_of, MappingProxyType(derived.tables), who))  # planner/rules/
    ast = inline_aggregate_filters(ast)
    if not _distinct_rows_of_issuer(ast, issuer):
        ast = distinct_to_group_by(ast)
    if ast is not stmt.ast:
        stmt = dataclasses.replace(stmt, ast=ast)
    if isinstance(ast, exp.Select) and (ast.args.get("joins") or semi_conjuncts(ast)):  # several tables
        return _plan_join(stmt, fed, who, settings, schema_of, derived)
    block = analyze(ast, fed, schema_of, derived.tables)
    table = block.table
    # bind the user's own text: output names are then exactly plain DuckDB's
    output = describe(stmt.text, {table.name: table.schema, **derived.schemas})
    dp = dp_pass(block, issuer, settings, fed.fixed_point_bits, output)  # differential privacy (docs/dp.md)
    mode = session_mode(fed, settings)
    opens_keys = dp is None and mode != "oblivious" and len(table.owners) > 1 and bool(block.group_by)
    check_policy(block, who, dp.noised if dp else frozenset(), fed.compute if opens_keys else (), mode)
    steps, result, leakage = lower(block, issuer, fed.compute, output, mode, fed.fixed_point_bits, dp)
    plan = PhysicalPlan(
        issuer=issuer,
        schemas=((table.name, table.schema),),
        compute=fed.compute,
        steps=steps,
        result=result,
        output=output,
        leakage=(PUBLIC_TEXT,) + leakage,
        settings=(("fedsql.mode", mode),) + ((("fedsql.epsilon", repr(dp.info.epsilon)),) if dp else ()),
        fixed_point_bits=fed.fixed_point_bits,
        dp=dp.info if dp else None,
        legend=plan_legend(block.group_by, block.aggs),
    )
    return with_hash(plan), (dp.noised if dp else frozenset())


def _distinct_rows_of_issuer(ast: exp.Expression, issuer: str) -> bool:
    """SELECT DISTINCT over a cross-party join that shows only the issuer's own columns ("which of
    my customers are also yours") stays a row-level query: its DISTINCT runs at the issuer, and
    no compute party sees the values, as a GROUP BY of them would open them in `sizes` mode."""
    if not isinstance(ast, exp.Select) or ast.args.get("distinct") is None or not ast.args.get("joins"):
        return False
    own = {t.alias_or_name for t in ast.find_all(exp.Table) if t.db == issuer}
    columns = [c for e in ast.expressions for c in e.find_all(exp.Column)]
    return bool(columns) and all(c.table in own for c in columns) and not ast.find(exp.AggFunc)


def _plan_join(stmt: Statement, fed: Federation, who: Principal, settings: dict[str, str],
               schema_of: SchemaLookup, derived: Derived) -> tuple[PhysicalPlan, frozenset[str]]:
    """Queries joining tables of several parties (planner/join_analyze.py, planner/lower_join.py);
    with a DP table of another party, DP over the join (planner/passes/dp_join.py)."""
    issuer = who.party
    mode = session_mode(fed, settings)
    block = analyze_join(stmt.ast, fed, schema_of, derived.tables)
    schemas = {ref.name: ref.schema for ref in block.tables.values()}
    schemas.update({sj.table.name: sj.table.schema for sj in block.semis})
    schemas.update({ref.name: ref.schema for ref in block.local_inner.values()})
    output = describe(stmt.text, {**schemas, **derived.schemas})
    dp = plan_dp_join(block, issuer, settings, fed.fixed_point_bits, output,
                      lambda node: expression_type(block, node, fed.fixed_point_bits))
    if dp is not None:  # the join size would be an un-noised function of the DP table (docs/decisions.md D-DP3)
        mode = "oblivious"
    local = set(block.parties) | {o for sj in block.semis for o in sj.table.owners} == {issuer}
    opens_keys = not local and mode != "oblivious" and bool(block.group_by)
    check_join_policy(block, who, fed.compute if opens_keys else (), mode,
                      frozenset({dp.alias}) if dp is not None else frozenset())
    if local:
        from plan.physical import LocalQuery

        steps: tuple = (LocalQuery("result", issuer, _local_join_sql(stmt.ast, fed, derived.tables),
                                   "whole query at the owner"),)
        leakage: tuple = (f"nothing leaves {issuer}: it owns every table and runs the query in its own DuckDB",)
        result = "result"
    else:
        steps, result, leakage = lower_join(block, issuer, fed.compute, output, mode, fed.fixed_point_bits, dp)
    plan = PhysicalPlan(
        issuer=issuer,
        schemas=tuple(sorted(schemas.items())),
        compute=fed.compute,
        steps=steps,
        result=result,
        output=output,
        leakage=(PUBLIC_TEXT,) + tuple(leakage),
        settings=(("fedsql.mode", mode),) + ((("fedsql.epsilon", repr(dp.info.epsilon)),) if dp else ()),
        fixed_point_bits=fed.fixed_point_bits,
        dp=dp.info if dp else None,
        legend=plan_legend(block.group_by, block.aggs),
    )
    return with_hash(plan), (frozenset({dp.member.qualified}) if dp is not None else frozenset())


def _issuer_only(ast: exp.Expression, fed: Federation, issuer: str) -> bool:
    """A query with subqueries or CTEs that reads only the issuer's own tables: it runs whole in
    the issuer's DuckDB (policies bind other parties only), whatever SQL DuckDB supports."""
    if not (ast.find(exp.Subquery) or ast.args.get("with_") or ast.args.get("with")):
        return False
    ctes = {c.alias_or_name for c in ast.find_all(exp.CTE)}
    tables = [t for t in ast.find_all(exp.Table) if t.db or t.name not in ctes]
    own = fed.parties[issuer].tables
    return bool(tables) and all(t.db == issuer and not t.catalog and t.name in own for t in tables)


def _plan_issuer_local(stmt: Statement, fed: Federation, issuer: str, mode: str,
                       schema_of: SchemaLookup) -> PhysicalPlan:
    from plan.physical import LocalQuery

    names = sorted({t.name for t in stmt.ast.find_all(exp.Table) if t.db == issuer})
    schemas = {f"{issuer}.{n}": schema_of(issuer, n) for n in names}
    output = describe(stmt.text, schemas)
    plan = PhysicalPlan(
        issuer=issuer,
        schemas=tuple(sorted(schemas.items())),
        compute=fed.compute,
        steps=(LocalQuery("result", issuer, _local_join_sql(stmt.ast, fed), "whole query at the owner"),),
        result="result",
        output=output,
        leakage=(PUBLIC_TEXT, f"nothing leaves {issuer}: it owns every table and runs the query in its own DuckDB"),
        settings=(("fedsql.mode", mode),),
        fixed_point_bits=fed.fixed_point_bits,
    )
    return with_hash(plan)


def _local_join_sql(ast: exp.Expression, fed: Federation, derived: dict | None = None) -> str:
    """A query over the issuer's own tables only: the user's text with its view names."""
    import sqlglot

    ast = ast.copy()
    for table in list(ast.find_all(exp.Table)):
        ref = (derived or {}).get(f"{table.db}.{table.name}")
        if ref is not None:
            alias = exp.TableAlias(this=exp.to_identifier(table.alias_or_name, quoted=True))
            table.replace(exp.Subquery(this=sqlglot.parse_one(ref.members[0].sql, read="duckdb"),
                                       alias=alias))
        elif table.db in fed.parties:
            new = exp.Table(this=exp.to_identifier(table.name, quoted=True))
            new.set("alias", exp.TableAlias(this=exp.to_identifier(table.alias_or_name, quoted=True)))
            table.replace(new)
    return ast.sql(dialect="duckdb")
