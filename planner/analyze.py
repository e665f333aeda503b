"""SELECT AST → a logical query block: table, filter, grouping, aggregates.

The block is the logical plan the rewrite passes work on. Anything outside
the supported SQL is refused here, naming the construct, so that no query is
ever answered wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation

from sqlglot import exp

from fedsql.config import Federation
from fedsql.errors import UnknownObjectError, UnsupportedSql
from planner.catalog import SchemaLookup, TableRef, resolve_table
from planner.parse import DIALECT

AGG_FUNCS = {exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max",
             exp.Variance: "var_samp", exp.VariancePop: "var_pop", exp.Stddev: "stddev_samp",
             exp.StddevSamp: "stddev_samp", exp.StddevPop: "stddev_pop", exp.Median: "median",
             exp.PercentileCont: "quantile_cont"}
SPREAD = ("var_samp", "var_pop", "stddev_samp", "stddev_pop")


def spread_sql(func: str, total: str, squares: str, count: str) -> str:
    """VAR/STDDEV from revealed SUM, SUM of squares and COUNT (DuckDB's NULL rules: n ≤ 1 → NULL for _samp)."""
    s, q, n = (f"CAST({c} AS DOUBLE)" for c in (total, squares, count))
    pop = func.endswith("_pop")
    var = f"GREATEST(({q} - {s} * {s} / {n}) / ({n}{'' if pop else ' - 1'}), 0)"
    value = f"sqrt({var})" if func.startswith("stddev") else var
    return f"(CASE WHEN {count} > {0 if pop else 1} THEN {value} END)"


@dataclass(frozen=True)
class AggCall:
    """One distinct aggregate of the query, e.g. SUM(cost)."""

    func: str  # count_star | count | sum | avg | min | max
    arg: exp.Expression | None  # unqualified argument expression
    key: str  # canonical SQL of the call, to find it again in the AST
    name: str  # a0, a1, ... column name in the revealed aggregate table
    fraction: tuple[int, int] = (1, 2)  # QUANTILE_CONT(x, a / b): (a, b)


def aggregate_call(node: exp.AggFunc, key: str, name: str) -> AggCall:
    """The aggregate `node` as the planner's kinds (COUNT(*), COUNT(DISTINCT x), QUANTILE_CONT's
    fraction), for both the one-table and the join analysis."""
    func, arg, fraction = AGG_FUNCS[type(node)], node.this, (1, 2)
    if func == "count" and (arg is None or isinstance(arg, exp.Star)):
        func, arg = "count_star", None
    if func == "count" and isinstance(arg, exp.Distinct):
        func, arg = "count_distinct", arg.expressions[0]
    if func == "quantile_cont":
        fraction = quantile_fraction(node)
    return AggCall(func, arg, key, name, fraction)


QUANTILE_DIGITS = 3
"""QUANTILE_CONT's fraction has at most this many decimals (0.9, 0.25, 0.999)."""


def quantile_fraction(node: exp.AggFunc) -> tuple[int, int]:
    """QUANTILE_CONT(x, q) with a constant q in [0, 1]: q as a / 10^k."""
    q = node.args.get("expression")
    how = ("write QUANTILE_CONT(x, q) with a constant q between 0 and 1 of at most "
           f"{QUANTILE_DIGITS} decimals, e.g. QUANTILE_CONT(x, 0.9)")
    if not isinstance(q, exp.Literal) or q.is_string or isinstance(node.parent, exp.WithinGroup):
        raise UnsupportedSql(f"{node.sql(dialect=DIALECT)}: {how}")
    try:
        value = Decimal(q.this)
    except InvalidOperation:
        raise UnsupportedSql(f"{node.sql(dialect=DIALECT)}: {how}") from None
    scaled = value * 10 ** QUANTILE_DIGITS
    if not 0 <= value <= 1 or scaled != scaled.to_integral_value():
        raise UnsupportedSql(f"{node.sql(dialect=DIALECT)}: {how}")
    return int(scaled), 10 ** QUANTILE_DIGITS


@dataclass
class QueryBlock:
    ast: exp.Select  # the user's query with the table renamed to its internal name
    table: TableRef
    alias: str  # how the query refers to the table (alias or table name)
    where: exp.Expression | None
    group_by: list[exp.Expression]  # unqualified, resolved from aliases and positions
    aggs: list[AggCall]
    uses: dict[str, set[str]] = field(default_factory=dict)  # role → schema column names

    @property
    def is_aggregate(self) -> bool:
        return bool(self.aggs or self.group_by)


def canonical(node: exp.Expression) -> str:
    """SQL of an expression with table qualifiers removed (single-table blocks)."""
    return strip_qualifiers(node).sql(dialect=DIALECT, normalize=True)


def strip_qualifiers(node: exp.Expression) -> exp.Expression:
    def fix(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Column) and n.table:
            return exp.column(n.this.copy())
        return n

    return node.copy().transform(fix)


def analyze(ast: exp.Expression, fed: Federation, schema_of: SchemaLookup,
            derived: dict[str, TableRef] | None = None) -> QueryBlock:
    """Build the query block, refusing unsupported SQL by name."""
    if not isinstance(ast, exp.Select):
        raise UnsupportedSql(f"{ast.key.upper()} of several queries is not supported yet (planned: issue #4)")
    _refuse_unsupported(ast, allow_count_distinct=True)
    from_ = ast.args.get("from_") or ast.args.get("from")
    if from_ is None:
        raise UnsupportedSql("a query without FROM has nothing federated to compute: name a table")
    source = from_.this
    if not isinstance(source, exp.Table):
        raise UnsupportedSql("subqueries in FROM are not supported yet (planned: issue #4)")
    if ast.args.get("joins"):
        raise UnsupportedSql("JOIN is not supported yet (planned: issue #3)")
    if source.catalog:
        raise UnknownObjectError(f"unknown table '{source.sql(dialect=DIALECT)}': write party.table or a federated table name")
    table = resolve_table(fed, source.db or None, source.name, schema_of, derived)
    alias = source.alias_or_name
    block_ast = ast.copy()
    new_source = exp.Table(this=exp.to_identifier(table.internal_name, quoted=True))
    new_source.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
    (block_ast.args.get("from_") or block_ast.args.get("from")).set("this", new_source)

    columns = {c.lower(): c for c, _ in table.schema}
    _check_columns(block_ast, columns, alias, table)
    selects = {s.alias_or_name.lower(): s.unalias() for s in block_ast.expressions if isinstance(s, exp.Alias)}
    group_by = _resolve_group_by(block_ast, selects, columns)
    aggs = _collect_aggs(block_ast)
    where = block_ast.args.get("where")
    block = QueryBlock(
        ast=block_ast,
        table=table,
        alias=alias,
        where=strip_qualifiers(where.this) if where else None,
        group_by=[strip_qualifiers(g) for g in group_by],
        aggs=aggs,
    )
    block.uses = _column_uses(block, columns)
    return block


def _refuse_unsupported(ast: exp.Select, allow_count_distinct: bool = False) -> None:
    checks = [
        (exp.Window, "window functions (OVER ...)"),
        (exp.Subquery, "subqueries"),
        (exp.Exists, "EXISTS subqueries"),
        (exp.Lateral, "LATERAL"),
        (exp.Unnest, "UNNEST"),
    ]
    for node_type, what in checks:
        if ast.find(node_type):
            raise UnsupportedSql(f"{what} are not supported yet (planned: issue #4)")
    if any(isinstance(n, exp.Select) for n in ast.find_all(exp.Select) if n is not ast):
        raise UnsupportedSql("subqueries are not supported yet (planned: issue #4)")
    distinct = ast.args.get("distinct")
    if distinct is not None and distinct.args.get("on"):
        raise UnsupportedSql("SELECT DISTINCT ON is not supported yet (planned: issue #4)")
    if ast.args.get("with_") or ast.args.get("with"):
        raise UnsupportedSql("WITH (CTEs) is not supported yet (planned: issue #4)")
    for node in ast.find_all(exp.AggFunc):
        if type(node) not in AGG_FUNCS:
            raise UnsupportedSql(
                f"aggregate {node.sql(dialect=DIALECT)} is not supported yet; "
                "supported: COUNT(*), COUNT(x), SUM, AVG, MIN, MAX, VAR_POP/VAR_SAMP/STDDEV, MEDIAN, QUANTILE_CONT"
            )
        if isinstance(node.this, exp.Distinct) or node.find(exp.Distinct):
            single = isinstance(node, exp.Count) and isinstance(node.this, exp.Distinct) and \
                len(node.this.expressions) == 1
            if not (allow_count_distinct and single):
                raise UnsupportedSql(
                    "aggregates with DISTINCT are supported only as COUNT(DISTINCT x) over one table or union"
                )
            continue
        if any(isinstance(inner, exp.AggFunc) for inner in node.this.find_all(exp.AggFunc)) if node.this else False:
            raise UnsupportedSql("nested aggregates are not supported")
    group = ast.args.get("group")
    if group and (group.args.get("rollup") or group.args.get("cube") or group.args.get("grouping_sets") or group.args.get("all")):
        raise UnsupportedSql("GROUP BY ALL / ROLLUP / CUBE / GROUPING SETS are not supported yet")


def _check_columns(ast: exp.Select, columns: dict[str, str], alias: str, table: TableRef) -> None:
    aliases = {s.alias.lower() for s in ast.expressions if isinstance(s, exp.Alias)}
    for col in ast.find_all(exp.Column):
        if col.table and col.table.lower() not in (alias.lower(), table.internal_name.lower()):
            raise UnknownObjectError(f"unknown table or alias '{col.table}' in column '{col.sql(dialect=DIALECT)}'")
        name = col.name.lower()
        if name not in columns and name not in aliases:
            raise UnknownObjectError(
                f"table '{table.name}' has no column '{col.name}'; its columns are: {', '.join(c for c, _ in table.schema)}"
            )


def _resolve_group_by(
    ast: exp.Select, selects: dict[str, exp.Expression], columns: dict[str, str]
) -> list[exp.Expression]:
    group = ast.args.get("group")
    if not group:
        return []
    out = []
    plain = ast.expressions
    for g in group.expressions:
        if isinstance(g, exp.Literal) and not g.is_string:
            pos = int(g.name)
            if not 1 <= pos <= len(plain):
                raise UnknownObjectError(f"GROUP BY position {pos} is not in the select list (1..{len(plain)})")
            out.append(plain[pos - 1].unalias())
        elif isinstance(g, exp.Column) and not g.table and g.name.lower() in selects:
            # DuckDB prefers a real column over an alias of the same name
            out.append(g if g.name.lower() in columns else selects[g.name.lower()])
        else:
            out.append(g)
    return out


def _collect_aggs(ast: exp.Select) -> list[AggCall]:
    seen: dict[str, AggCall] = {}
    for node in ast.find_all(exp.AggFunc):
        key = canonical(node)
        if key in seen:
            continue
        call = aggregate_call(node, key, f"a{len(seen)}")
        seen[key] = replace(call, arg=strip_qualifiers(call.arg) if call.arg is not None else None)
    return list(seen.values())


def _column_uses(block: QueryBlock, columns: dict[str, str]) -> dict[str, set[str]]:
    """Which schema columns each part of the query touches (for the policy check)."""

    def cols(node: exp.Expression | None) -> set[str]:
        if node is None:
            return set()
        return {columns[c.name.lower()] for c in node.find_all(exp.Column) if c.name.lower() in columns}

    uses = {
        "where": cols(block.where),
        "aggregate": set().union(*(cols(a.arg) for a in block.aggs)) if block.aggs else set(),
        "group": set().union(*(cols(g) for g in block.group_by)) if block.group_by else set(),
    }
    if not block.is_aggregate:
        shown = set()
        for s in block.ast.expressions:
            shown |= cols(s) if not isinstance(s, exp.Star) else set(columns.values())
        order = block.ast.args.get("order")
        uses["row"] = shown | cols(order)
    return uses
