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
from sqlglot.schema import MappingSchema

from fedsql.config import Federation
from fedsql.errors import UnknownObjectError, UnsupportedSql
from planner.analyze import AggCall, _refuse_unsupported, aggregate_call
from planner.catalog import SchemaLookup, TableRef, resolve_table
from planner.parse import DIALECT
from planner.placement import aliases_of, place_fragments, site_of_condition


@dataclass(frozen=True)
class JoinEdge:
    """Equi-join between tables of two different parties."""

    left: str  # alias
    right: str  # alias
    left_cols: tuple[str, ...]
    right_cols: tuple[str, ...]
    kind: str = "inner"  # inner | left (every row of `left` is kept; `right` is the LEFT JOINed table) | full


@dataclass(frozen=True)
class SemiJoin:
    """`outer IN (SELECT inner ...)` / `[NOT] EXISTS (SELECT ... WHERE inner = outer ...)` against one party's table."""

    outer: str  # alias of the outer table whose rows are kept or dropped
    outer_cols: tuple[str, ...]
    inner: str  # alias of the subquery's table
    table: TableRef
    inner_cols: tuple[str, ...]
    conditions: tuple[exp.Expression, ...]  # over the inner table only: pushed to its owner
    anti: bool
    not_in: bool = False  # NOT IN: SQL's NULL rules (an empty subquery keeps all; a NULL in it keeps none)


@dataclass
class JoinBlock:
    ast: exp.Select  # qualified, tables renamed to internal names
    tables: dict[str, TableRef]  # alias → table (one party each)
    owner: dict[str, str]  # alias → party
    local: dict[str, list[exp.Expression]]  # fragment (see `site`) → conjuncts over its own tables only
    edges: list[JoinEdge]
    residual: list[exp.Expression]  # cross-party conjuncts that are not equi-joins
    group_by: list[exp.Expression]
    aggs: list[AggCall]
    uses: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # role → {(alias, column)}
    semis: list[SemiJoin] = field(default_factory=list)
    local_inner: dict[str, TableRef] = field(default_factory=dict)  # tables of same-party subqueries (in `local`)
    site: dict[str, str] = field(default_factory=dict)  # alias → its local fragment (planner/placement.py)

    @property
    def parties(self) -> list[str]:
        return list(dict.fromkeys(self.owner[a] for a in self.tables))

    @property
    def sites(self) -> list[str]:
        """The local fragments, in table order: one per connected part of a party's tables."""
        return list(dict.fromkeys(self.site[a] for a in self.tables))

    @property
    def is_aggregate(self) -> bool:
        return bool(self.aggs or self.group_by)


def owner_of(ref: TableRef) -> str:
    """The party whose DuckDB computes a table's fragment; a federated union is a *virtual*
    party "@name" whose fragment every member computes over its own rows."""
    return f"@{ref.name}" if ref.federated else ref.owners[0]


def conjuncts(node: exp.Expression | None) -> list[exp.Expression]:
    if node is None:
        return []
    if isinstance(node, exp.And):
        return conjuncts(node.left) + conjuncts(node.right)
    if isinstance(node, exp.Paren):
        return conjuncts(node.this)
    return [node]


def semi_conjuncts(ast: exp.Select) -> list[exp.Expression]:
    """Top-level WHERE conjuncts that are IN (subquery) / [NOT] EXISTS (subquery)."""
    where = ast.args.get("where")
    out = []
    for cond in conjuncts(where.this if where else None):
        inner = cond.this if isinstance(cond, exp.Not) else cond
        if isinstance(inner, exp.Exists) or (isinstance(inner, exp.In) and inner.args.get("query")):
            out.append(cond)
    return out


def _without(ast: exp.Select, conds: list[exp.Expression]) -> exp.Select:
    where = ast.args.get("where")
    keep = [c for c in conjuncts(where.this if where else None) if not any(c is d for d in conds)]
    out = ast.copy() if conds else ast
    if conds:
        out.set("where", exp.Where(this=exp.and_(*[k.copy() for k in keep])) if keep else None)
    return out


def analyze_join(ast: exp.Select, fed: Federation, schema_of: SchemaLookup,
                 derived: dict[str, TableRef] | None = None) -> JoinBlock:
    ast = _right_as_left(ast.copy())
    semis_raw = semi_conjuncts(ast)
    _refuse_unsupported(_without(ast, semis_raw), allow_count_distinct=True)
    from_ = ast.args.get("from_") or ast.args.get("from")
    if from_ is None:  # e.g. `SELECT b.t JOIN b.u ON ...` (found by tests/test_fuzz_sql.py)
        raise UnsupportedSql("a JOIN needs a FROM clause: SELECT ... FROM a JOIN b ON ...")
    sources = [from_.this] + [j.this for j in ast.args.get("joins") or []]
    outer_party = _outer_parties(sources, fed, schema_of, derived)
    local_semis = [c for c in semis_raw if _local_semi_party(c, outer_party, fed, schema_of, derived)]
    semis_raw = [c for c in semis_raw if not any(c is x for x in local_semis)]
    inner_sources = []
    for cond in semis_raw:
        sub = (cond.this if isinstance(cond, exp.Not) else cond)
        query = sub.this if isinstance(sub, exp.Exists) else sub.args["query"]
        query = query.this if isinstance(query, exp.Subquery) else query
        if not isinstance(query, exp.Select) or query.args.get("joins") or query.find(exp.AggFunc) or \
                len([t for t in query.find_all(exp.Table)]) != 1:
            raise UnsupportedSql("IN/EXISTS subqueries must read one party's table without joins or aggregates")
        inner_sources.append(next(query.find_all(exp.Table)))
    tables: dict[str, TableRef] = {}
    schema: dict[str, dict[str, str]] = {}
    inner_aliases = set()
    for src in sources + inner_sources:
        if any(src is x for x in inner_sources):
            inner_aliases.add(src.alias_or_name)
        if not isinstance(src, exp.Table):
            raise UnsupportedSql("subqueries in FROM are not supported yet (planned: issue #4)")
        alias, ref = _register(src, fed, schema_of, derived, schema, tables)
        tables[alias] = ref
    local_inner: dict[str, TableRef] = {}  # aliases read by same-party subqueries → their tables
    for cond in local_semis:
        for src in list(cond.find_all(exp.Table)):
            alias, ref = _register(src, fed, schema_of, derived, schema, {**tables, **local_inner})
            local_inner[alias] = ref
    on_conds: list[exp.Expression] = []
    outer_joined: list[str] = []  # aliases brought in by LEFT JOIN
    full = False  # FULL JOIN: both tables keep their unmatched rows
    for join in ast.args.get("joins") or []:
        kind = (join.side or join.kind or "").upper()
        if kind == "LEFT":
            outer_joined.append(join.this.alias_or_name)
        elif kind == "FULL":
            if len(ast.args["joins"]) > 1 or semis_raw or local_semis:
                raise UnsupportedSql("a FULL JOIN across parties must join exactly two tables, without other joins "
                                     "or IN/EXISTS subqueries; join the rest in a query of its own")
            full = True
            outer_joined += [from_.this.alias_or_name, join.this.alias_or_name]
        elif kind not in ("", "INNER", "CROSS"):
            raise UnsupportedSql(f"{kind} JOIN across parties is not supported yet; use INNER, LEFT, RIGHT or FULL JOIN")
        if join.args.get("using"):
            raise UnsupportedSql("JOIN ... USING is not supported yet; write ON a.k = b.k")
    _spell_columns(ast, schema)
    try:  # the schema as spelled: sqlglot would lowercase its names but not the query's ("CustId")
        ast = qualify_columns(ast, schema=MappingSchema(schema, dialect=DIALECT, normalize=False),
                              expand_alias_refs=False)
    except Exception as exc:  # sqlglot raises OptimizeError for unknown/ambiguous columns
        raise UnknownObjectError(f"cannot resolve a column: {str(exc).splitlines()[0]}") from None
    left_on: dict[str, list[exp.Expression]] = {}
    for join in ast.args.get("joins") or []:
        if join.this.alias_or_name in outer_joined:
            left_on[join.this.alias_or_name] = conjuncts(join.args.get("on"))
        else:
            on_conds += conjuncts(join.args.get("on"))
        join.set("on", None)
    internal_local = {f"{r.internal_name}__{a}": (a, r) for a, r in local_inner.items()}
    semi_nodes = semi_conjuncts(ast)
    local_nodes = [c for c in semi_nodes if any(t.name in internal_local for t in c.find_all(exp.Table))]
    semi_nodes = [c for c in semi_nodes if not any(c is x for x in local_nodes)]
    ast = _without(ast, semi_nodes + local_nodes)
    inner_tables = {a: tables.pop(a) for a in inner_aliases}
    semis = [_semi(c, set(tables), inner_tables) for c in semi_nodes]
    where = ast.args.get("where")
    all_conds = on_conds + conjuncts(where.this if where else None)
    owner = {a: owner_of(t) for a, t in tables.items()}
    for cond in [*all_conds, *(c for conds in left_on.values() for c in conds)]:
        unknown = sorted(aliases_of(cond) - set(owner))
        if unknown:  # e.g. `ON b.id = u.id` where no table is called b
            raise UnknownObjectError(
                f"unknown table or alias '{unknown[0]}' in {cond.sql(dialect=DIALECT)}; "
                f"the tables of this query are called: {', '.join(sorted(owner))}")
    local: dict[str, list[exp.Expression]] = {p: [] for p in dict.fromkeys(owner.values())}  # by party, then site
    edges: list[JoinEdge] = []
    residual: list[exp.Expression] = []
    for cond in local_nodes:  # runs in its party's DuckDB, over the member tables' own names
        node = cond.this if isinstance(cond, exp.Not) else cond
        if isinstance(node, exp.Exists):  # EXISTS ignores its SELECT list: `SELECT *` uses no column
            subquery = node.this.this if isinstance(node.this, exp.Subquery) else node.this
            subquery.set("expressions", [exp.Literal.number(1)])
        party = _local_semi_owner(cond, owner, local_inner)
        for t in cond.find_all(exp.Table):
            if t.name in internal_local:
                t.set("this", exp.to_identifier(internal_local[t.name][1].members[0].name, quoted=True))
        local[party].append(cond)
    for alias in outer_joined:
        if sum(1 for a in owner if owner[a] == owner[alias]) > 1:
            raise UnsupportedSql(f"{'FULL' if full else 'LEFT'} JOIN of {tables[alias].name}: its party may have no other "
                                 "table in the query")
        for cond in left_on.get(alias, []):
            used = aliases_of(cond)
            if used == {alias} and not full:
                local[owner[alias]].append(cond)  # filters the joined side before the join
            elif _is_equi(cond) and alias in used and len({owner[a] for a in used}) == 2:
                left, right = (cond.left, cond.right) if cond.right.table == alias else (cond.right, cond.left)
                _add_edge(edges, exp.EQ(this=left, expression=right), kind="full" if full else "left")
            elif full:
                raise UnsupportedSql("a FULL JOIN's ON clause may only hold equalities between the two tables' "
                                     "columns (a.k = b.k AND …); filter in WHERE instead")
            else:
                raise UnsupportedSql(
                    "a LEFT JOIN's ON clause may only hold equalities with the joined table and conditions "
                    "on the joined table alone"
                )
    for cond in all_conds:
        parties = {owner[a] for a in aliases_of(cond)}
        if aliases_of(cond) & set(outer_joined) or full:  # FULL: even a constant must see the padded rows
            residual.append(cond)  # after the outer join (NULL rows must fail it): under MPC
            continue
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
        aggs[key] = aggregate_call(node, key, f"a{len(aggs)}")
    group = ast.args.get("group")
    group_by = list(group.expressions) if group else []
    site = place_fragments(list(tables), owner, local, edges, residual, group_by)
    by_site: dict[str, list[exp.Expression]] = {s: [] for s in dict.fromkeys(site.values())}
    for party, conds in local.items():
        for cond in conds:
            by_site[site_of_condition(cond, party, site)].append(cond)
    block = JoinBlock(ast, tables, owner, by_site, edges, residual, group_by, list(aggs.values()), semis=semis,
                      local_inner=local_inner, site=site)
    block.uses = _uses(block, all_conds + local_nodes)
    block.uses.setdefault("semi_where", set()).update(
        (c.table, c.name) for cond in local_nodes for c in cond.find_all(exp.Column) if c.table in local_inner)
    for sj in semis:
        block.uses["join"] |= {(sj.outer, c) for c in sj.outer_cols}
        block.uses.setdefault("semi_join", set()).update((sj.inner, c) for c in sj.inner_cols)
        block.uses.setdefault("semi_where", set()).update(
            (c.table, c.name) for cond in sj.conditions for c in cond.find_all(exp.Column))
    return block


def _right_as_left(ast: exp.Select) -> exp.Select:
    """`FROM a RIGHT JOIN b ON …` is `FROM b LEFT JOIN a ON …`: the tables swap places, the SELECT
    list (hence the output's column order) stays as written. Only the first join can be swapped so:
    a later RIGHT JOIN would keep the rows of one table against a join of several (not built)."""
    from_ = ast.args.get("from_") or ast.args.get("from")
    joins = ast.args.get("joins") or []
    for i, join in enumerate(joins):
        if (join.side or "").upper() != "RIGHT":
            continue
        if i > 0 or from_ is None:
            raise UnsupportedSql("a RIGHT JOIN across parties must be the first join (FROM a RIGHT JOIN b ON …); "
                                 "write the query with LEFT JOINs, the kept table first")
        left, right = from_.this, join.this
        from_.set("this", right.copy())
        join.set("this", left.copy())
        join.set("side", "LEFT")
    return ast


def _spell_columns(ast: exp.Expression, schema: dict[str, dict[str, str]]) -> None:
    """Spell every column as its table's schema does. DuckDB matches column names ignoring case
    (quoted or not), so `o.custid`, `o.CUSTID` and `o."CustId"` all name column CustId; qualification
    and the policy lookup compare names exactly, so the query is brought to the schema's spelling."""
    spelling: dict[str, set[str]] = {}
    for columns in schema.values():
        for name in columns:
            spelling.setdefault(name.lower(), set()).add(name)
    for col in ast.find_all(exp.Column):
        names = spelling.get(col.name.lower(), set())
        if len(names) == 1 and col.name not in names:
            (name,) = names
            col.set("this", exp.to_identifier(name, quoted=True))


def _semi(cond: exp.Expression, outer_aliases: set[str], inner_tables: dict[str, TableRef]) -> SemiJoin:
    anti = isinstance(cond, exp.Not)
    node = cond.this if anti else cond
    if isinstance(node, exp.In):
        query = node.args["query"]
        query = query.this if isinstance(query, exp.Subquery) else query
        if len(query.expressions) != 1 or not isinstance(node.this, exp.Column) or \
                not isinstance(query.expressions[0].unalias(), exp.Column):
            raise UnsupportedSql("write IN subqueries as column IN (SELECT column FROM party.table WHERE ...)")
        outer_col, inner_col = node.this, query.expressions[0].unalias()
        pairs = [(outer_col, inner_col)]
        where = query.args.get("where")
        inner_conds = conjuncts(where.this if where else None)
    else:
        query = node.this
        query = query.this if isinstance(query, exp.Subquery) else query
        where = query.args.get("where")
        pairs, inner_conds = [], []
        for c in conjuncts(where.this if where else None):
            used = aliases_of(c)
            if isinstance(c, exp.EQ) and isinstance(c.left, exp.Column) and isinstance(c.right, exp.Column) and \
                    len(used) == 2 and used & outer_aliases:
                o, i = (c.left, c.right) if c.left.table in outer_aliases else (c.right, c.left)
                pairs.append((o, i))
            elif used & outer_aliases:
                raise UnsupportedSql("EXISTS subqueries may correlate only through equalities inner.k = outer.k")
            else:
                inner_conds.append(c)
        if not pairs:
            raise UnsupportedSql("an EXISTS subquery needs an equality with the outer query (inner.k = outer.k)")
    outer = {o.table for o, _ in pairs}
    inner = {i.table for _, i in pairs}
    if len(outer) != 1 or len(inner) != 1 or not inner <= set(inner_tables):
        raise UnsupportedSql("a semi-join subquery must match one outer table with its own table")
    alias = inner.pop()
    return SemiJoin(outer.pop(), tuple(o.name for o, _ in pairs), alias, inner_tables[alias],
                    tuple(i.name for _, i in pairs), tuple(inner_conds), anti,
                    not_in=anti and isinstance(node, exp.In))


def _register(src: exp.Table, fed: Federation, schema_of: SchemaLookup, derived: dict[str, TableRef] | None,
              schema: dict[str, dict[str, str]], taken: dict[str, TableRef]) -> tuple[str, TableRef]:
    """Resolve a table reference, add its schema under an internal name (for column
    qualification) and rename it in the query; returns its alias and table."""
    ref = resolve_table(fed, src.db or None, src.name, schema_of, derived)
    alias = src.alias_or_name
    if alias in taken:
        raise UnknownObjectError(f"table alias '{alias}' is used twice; give each table its own alias")
    internal = f"{ref.internal_name}__{alias}"
    schema[internal] = dict(ref.schema)
    new = exp.Table(this=exp.to_identifier(internal))
    new.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    src.replace(new)
    return alias, ref


def _outer_parties(sources: list, fed: Federation, schema_of: SchemaLookup,
                   derived: dict[str, TableRef] | None) -> dict[str, str | None]:
    """alias → the one party owning that FROM/JOIN table (None: a union, a subquery, unknown)."""
    out: dict[str, str | None] = {}
    for src in sources:
        out[src.alias_or_name] = _single_party(src, fed, schema_of, derived) if isinstance(src, exp.Table) else None
    return out


def _single_party_table(table: exp.Table, fed: Federation, schema_of: SchemaLookup,
                        derived: dict[str, TableRef] | None) -> TableRef | None:
    """The table if it is one party's own (not a union, not a derived table), else None."""
    try:
        ref = resolve_table(fed, table.db or None, table.name, schema_of, derived)
    except Exception:  # unknown tables are reported by the main path, with its message
        return None
    if ref.federated or len(ref.owners) != 1 or not hasattr(ref.members[0], "source"):
        return None  # unions, derived tables (computed inside a fragment of their own)
    return ref


def _single_party(table: exp.Table, fed: Federation, schema_of: SchemaLookup,
                  derived: dict[str, TableRef] | None) -> str | None:
    ref = _single_party_table(table, fed, schema_of, derived)
    return ref.owners[0] if ref is not None else None


def _local_semi_party(cond: exp.Expression, outer_party: dict[str, str | None], fed: Federation,
                      schema_of: SchemaLookup, derived: dict[str, TableRef] | None) -> str | None:
    """The party that can evaluate this IN/EXISTS conjunct in its own DuckDB, or None: the
    subquery reads only that party's tables (joins, aggregates, any correlation allowed) and
    refers to outer tables of that party only. Such a filter is plain local work: no tags, no
    MPC, nothing leaves the owner (TPC-H Q21's EXISTS … l2.l_suppkey <> l1.l_suppkey)."""
    node = cond.this if isinstance(cond, exp.Not) else cond
    query = node.this if isinstance(node, exp.Exists) else node.args["query"]
    tables = list(query.find_all(exp.Table))
    inner = {t.alias_or_name: _single_party_table(t, fed, schema_of, derived) for t in tables}
    if not tables or None in inner.values() or len({r.owners[0] for r in inner.values()}) != 1:
        return None
    party = next(iter(inner.values())).owners[0]
    inner_columns = {c for r in inner.values() for c, _ in r.schema}
    outside = node.this.find_all(exp.Column) if isinstance(node, exp.In) else iter(())
    for c in outside:  # IN's left side is in the outer query: it must name an outer table of the party
        if outer_party.get(c.table) != party:
            return None
    for c in query.find_all(exp.Column):
        if c.table in inner:
            continue
        if (outer_party.get(c.table) != party) if c.table else c.name not in inner_columns:
            return None
    return party


def _local_semi_owner(cond: exp.Expression, owner: dict[str, str], local_inner: dict[str, TableRef]) -> str:
    inner_party = {r.owners[0] for a, r in local_inner.items() if any(
        t.alias_or_name == a for t in cond.find_all(exp.Table))}
    outer = {owner[c.table] for c in cond.find_all(exp.Column) if c.table in owner}
    parties = inner_party | outer
    if len(parties) != 1:  # checked before qualification; qualification may bind more: refuse, do not guess
        raise UnsupportedSql("an IN/EXISTS subquery mixes parties in a way not supported yet")
    return parties.pop()


def _is_equi(cond: exp.Expression) -> bool:
    return (
        isinstance(cond, exp.EQ)
        and isinstance(cond.left, exp.Column)
        and isinstance(cond.right, exp.Column)
        and cond.left.table != cond.right.table
    )


def _add_edge(edges: list[JoinEdge], cond: exp.EQ, kind: str = "inner") -> None:
    left, right = cond.left, cond.right
    if kind != "inner":  # an outer join's sides are fixed: `left` keeps its rows (FULL: both do)
        for i, e in enumerate(edges):
            if (e.left, e.right, e.kind) == (left.table, right.table, kind):
                edges[i] = JoinEdge(e.left, e.right, e.left_cols + (left.name,), e.right_cols + (right.name,), kind)
                return
        edges.append(JoinEdge(left.table, right.table, (left.name,), (right.name,), kind))
        return
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
