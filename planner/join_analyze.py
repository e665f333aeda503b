"""SELECT with joins → a join block: tables per party, local conditions, cross-party edges.

Columns are qualified first (sqlglot's qualify_columns over the public
schemas), then every conjunct of ON and WHERE is classified by the parties
whose columns it touches: one party → pushed into that party's DuckDB;
column = column across two parties → a secure join edge; anything else
across parties → a secure predicate evaluated under MPC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.optimizer.qualify_columns import qualify_columns

from fedsql.config import Federation
from fedsql.errors import UnknownObjectError, UnsupportedSql
from planner.analyze import AGG_FUNCS, AggCall, _refuse_unsupported
from planner.catalog import SchemaLookup, TableRef, resolve_table
from planner.parse import DIALECT


@dataclass(frozen=True)
class JoinEdge:
    """Equi-join between tables of two different parties."""

    left: str  # alias
    right: str  # alias
    left_cols: tuple[str, ...]
    right_cols: tuple[str, ...]


@dataclass
class JoinBlock:
    ast: exp.Select  # qualified, tables renamed to internal names
    tables: dict[str, TableRef]  # alias → table (one party each)
    owner: dict[str, str]  # alias → party
    local: dict[str, list[exp.Expression]]  # party → conjuncts over its own tables only
    edges: list[JoinEdge]
    residual: list[exp.Expression]  # cross-party conjuncts that are not equi-joins
    group_by: list[exp.Expression]
    aggs: list[AggCall]
    uses: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # role → {(alias, column)}

    @property
    def parties(self) -> list[str]:
        seen: list[str] = []
        for alias in self.tables:
            if self.owner[alias] not in seen:
                seen.append(self.owner[alias])
        return seen

    @property
    def is_aggregate(self) -> bool:
        return bool(self.aggs or self.group_by)


def aliases_of(node: exp.Expression) -> set[str]:
    return {c.table for c in node.find_all(exp.Column) if c.table}


def conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    if isinstance(node, exp.And):
        return conjuncts(node.left) + conjuncts(node.right)
    if isinstance(node, exp.Paren):
        return conjuncts(node.this)
    return [node]


def analyze_join(ast: exp.Select, fed: Federation, schema_of: SchemaLookup) -> JoinBlock:
    _refuse_unsupported(ast)
    ast = ast.copy()
    from_ = ast.args.get("from_") or ast.args.get("from")
    sources = [from_.this] + [j.this for j in ast.args.get("joins") or []]
    tables: dict[str, TableRef] = {}
    schema: dict[str, dict[str, str]] = {}
    for src in sources:
        if not isinstance(src, exp.Table):
            raise UnsupportedSql("subqueries in FROM are not supported yet (planned: issue #4)")
        ref = resolve_table(fed, src.db or None, src.name, schema_of)
        if ref.federated:
            raise UnsupportedSql(
                f"joining the federated table '{ref.name}' is not supported yet; join party tables (party.table)"
            )
        alias = src.alias_or_name
        if alias in tables:
            raise UnknownObjectError(f"table alias '{alias}' is used twice; give each table its own alias")
        tables[alias] = ref
        internal = f"{ref.internal_name}__{alias}"
        schema[internal] = dict(ref.schema)
        new = exp.Table(this=exp.to_identifier(internal))
        new.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        src.replace(new)
    on_conds: list[exp.Expression] = []
    for join in ast.args.get("joins") or []:
        kind = (join.side or join.kind or "").upper()
        if kind not in ("", "INNER", "CROSS"):
            raise UnsupportedSql(f"{kind} JOIN across parties is not supported yet; use an inner join")
        if join.args.get("using"):
            raise UnsupportedSql("JOIN ... USING is not supported yet; write ON a.k = b.k")
    try:
        ast = qualify_columns(ast, schema=schema, expand_alias_refs=False)
    except Exception as exc:  # sqlglot raises OptimizeError for unknown/ambiguous columns
        raise UnknownObjectError(f"cannot resolve a column: {str(exc).splitlines()[0]}") from None
    for join in ast.args.get("joins") or []:
        on_conds += conjuncts(join.args.get("on"))
        join.set("on", None)
    where = ast.args.get("where")
    all_conds = on_conds + conjuncts(where.this if where else None)
    owner = {a: t.owners[0] for a, t in tables.items()}
    local: dict[str, list[exp.Expression]] = {p: [] for p in dict.fromkeys(owner.values())}
    edges: list[JoinEdge] = []
    residual: list[exp.Expression] = []
    for cond in all_conds:
        parties = {owner[a] for a in aliases_of(cond)}
        if len(parties) <= 1:
            party = parties.pop() if parties else next(iter(local))
            local[party].append(cond)
        elif _is_equi(cond):
            _add_edge(edges, cond)
        else:
            residual.append(cond)
    aggs: dict[str, AggCall] = {}
    for node in ast.find_all(exp.AggFunc):
        key = node.sql(dialect=DIALECT, normalize=True)
        if key in aggs:
            continue
        func = AGG_FUNCS[type(node)]
        arg = node.this
        if func == "count" and (arg is None or isinstance(arg, exp.Star)):
            func, arg = "count_star", None
        aggs[key] = AggCall(func, arg, key, f"a{len(aggs)}")
    group = ast.args.get("group")
    group_by = list(group.expressions) if group else []
    block = JoinBlock(ast, tables, owner, local, edges, residual, group_by, list(aggs.values()))
    block.uses = _uses(block, all_conds)
    return block


def _is_equi(cond: exp.Expression) -> bool:
    return (
        isinstance(cond, exp.EQ)
        and isinstance(cond.left, exp.Column)
        and isinstance(cond.right, exp.Column)
        and cond.left.table != cond.right.table
    )


def _add_edge(edges: list[JoinEdge], cond: exp.EQ) -> None:
    left, right = cond.left, cond.right
    for i, e in enumerate(edges):
        if (e.left, e.right) == (left.table, right.table):
            edges[i] = JoinEdge(e.left, e.right, e.left_cols + (left.name,), e.right_cols + (right.name,))
            return
        if (e.left, e.right) == (right.table, left.table):
            edges[i] = JoinEdge(e.left, e.right, e.left_cols + (right.name,), e.right_cols + (left.name,))
            return
    edges.append(JoinEdge(left.table, right.table, (left.name,), (right.name,)))


def _uses(block: JoinBlock, conds: list[exp.Expression]) -> dict[str, set[tuple[str, str]]]:
    def cols(node: exp.Expression | None) -> set[tuple[str, str]]:
        if node is None:
            return set()
        return {(c.table, c.name) for c in node.find_all(exp.Column) if c.table in block.tables}

    edge_cols = set()
    for e in block.edges:
        edge_cols |= {(e.left, c) for c in e.left_cols} | {(e.right, c) for c in e.right_cols}
    filter_cols = set().union(*(cols(c) for c in conds)) - edge_cols if conds else set()
    uses = {
        "join": edge_cols,
        "where": filter_cols,
        "aggregate": set().union(*(cols(a.arg) for a in block.aggs)) if block.aggs else set(),
        "group": set().union(*(cols(g) for g in block.group_by)) if block.group_by else set(),
    }
    if not block.is_aggregate:
        shown: set[tuple[str, str]] = set()
        for s in block.ast.expressions:
            shown |= cols(s)
        uses["row"] = shown | cols(block.ast.args.get("order"))
    return uses
