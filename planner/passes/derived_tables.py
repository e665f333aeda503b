"""Pass: derived tables that read one party's tables run at that party, as local views.

inline_subqueries has merged every CTE / derived table that folds; sqlglot has
hoisted the rest (they aggregate, are used twice, ...) into the top-level WITH.
Each one that reads the tables of a single party becomes a `DerivedTable` of
that party: its owner computes the body in plaintext in its DuckDB inside its
local fragment, exactly like other pushed-down work, and the outer query sees a
table `party.__dt_<name>` (joins, semi-joins, filters over it). IN-subqueries
that aggregate or join are turned into derived tables too, so the semi-join
matches against one table. A derived table over several parties, over a
federated union or over another party's DP table is refused, naming it.

Column levels of a derived table's outputs, for the issuer (the issuer's own
derived tables are public to it, as its tables are; docs/decisions.md D16):
- every column it uses outside its SELECT list (WHERE, JOIN ON, GROUP BY,
  HAVING, ORDER BY, nested subqueries) and, with DISTINCT, its outputs' columns
  need `aggregate` or above: they decide which rows exist, as a WHERE does;
- an output's level is the weakest (lattice meet) of the levels of the columns
  it is computed from; in a grouped table an output that is not a group key is
  also capped by the group keys' levels (a per-group value is no more
  revealable than the group it belongs to); a group-key output keeps its level.
The outer query is then checked as usual against these levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from fedsql.config import Federation, level_at_least
from fedsql.errors import PolicyViolation, UnsupportedSql
from plan.schemas import Schema
from planner.catalog import DerivedTable, SchemaLookup, TableRef, resolve_table
from planner.join_analyze import semi_conjuncts
from planner.parse import DIALECT
from planner.validate import describe

PREFIX = "__dt_"


@dataclass
class Derived:
    ast: exp.Expression  # the outer query; derived tables appear as `party.__dt_<name>`
    tables: dict[str, TableRef] = field(default_factory=dict)  # "party.__dt_<name>" → table
    schemas: dict[str, Schema] = field(default_factory=dict)  # base tables their bodies read


def with_clause(ast: exp.Expression) -> exp.With | None:
    return ast.args.get("with_") or ast.args.get("with")


def meet(a: str, b: str) -> str:
    """The strongest level both `a` and `b` permit (join_key ∧ group_key = aggregate)."""
    if level_at_least(a, b):
        return b
    if level_at_least(b, a):
        return a
    return "aggregate" if level_at_least(a, "aggregate") and level_at_least(b, "aggregate") else "private"


def extract_derived_tables(ast: exp.Expression, fed: Federation, schema_of: SchemaLookup, issuer: str) -> Derived:
    """The query with its remaining CTEs and aggregating IN-subqueries as derived tables of one party."""
    out = Derived(ast.copy())
    ast = out.ast
    names: dict[str, str] = {}  # CTE name → placeholder key
    w = with_clause(ast)
    if w is not None:
        if w.args.get("recursive"):
            raise UnsupportedSql("WITH RECURSIVE is not supported")
        for cte in w.expressions:
            ref = _derive(cte.alias_or_name, cte.this, names, out, fed, schema_of, issuer)
            names[cte.alias_or_name] = ref.name
            out.tables[ref.name] = ref
        ast.set("with_" if "with_" in ast.args else "with", None)
    for table in list(ast.find_all(exp.Table)):
        if not table.db and table.name in names:
            table.replace(_placeholder(out.tables[names[table.name]], table.alias_or_name))
    if isinstance(ast, exp.Select):
        joined: list[exp.Expression] = []
        for i, cond in enumerate(semi_conjuncts(ast)):
            node = cond.this if isinstance(cond, exp.Not) else cond
            if not isinstance(node, exp.In):
                continue
            query = node.args["query"]
            query = query.this if isinstance(query, exp.Subquery) else query
            if _simple(query):
                continue
            ref = _derive(f"__in{i}", query, names, out, fed, schema_of, issuer)
            out.tables[ref.name] = ref
            alias = f"__in{i}"
            if len(ref.schema) != 1:
                raise UnsupportedSql("an IN subquery must return exactly one column")
            target = _join_target(ast, cond, ref)
            if target is not None:  # unique on the IN column: the semi-join is an inner join
                column = exp.Column(this=exp.to_identifier(ref.schema[0][0]), table=exp.to_identifier(alias))
                ast.set("joins", (ast.args.get("joins") or []) + [exp.Join(this=_placeholder(ref, alias))])
                joined.append((cond, exp.EQ(this=column, expression=target.copy())))
                continue
            select = exp.select(exp.Column(this=exp.to_identifier(ref.schema[0][0]), table=exp.to_identifier(alias)))
            select = select.from_(_placeholder(ref, alias))
            node.set("query", exp.Subquery(this=select))
        for cond, eq in joined:
            cond.replace(eq)
    return out


def _join_target(ast: exp.Select, cond: exp.Expression, ref: TableRef) -> exp.Column | None:
    """`x IN (SELECT k FROM d)` with d grouped by k (one row per k) keeps exactly the rows of the inner
    join on d.k = x — NULLs included, as neither matches. Use the join when it stays cheap: an outer
    column equal to x that d's owner holds (a join inside its DuckDB; TPC-H Q18), or d's owner has no
    other table in the query (a plain cross-party edge, which oblivious mode runs as a PK–FK join)."""
    from planner.passes.decorrelate import _alias_dbs, _equalities, _prefer
    from planner.join_analyze import conjuncts

    member = ref.members[0]
    x = cond.this
    if isinstance(cond, exp.Not) or not isinstance(x, exp.Column) or (ref.schema[0][0],) not in member.unique:
        return None
    dbs = _alias_dbs(ast)
    where = ast.args.get("where")
    target = _prefer(x, _equalities(ast, conjuncts(where.this if where else None)), dbs, member.party)
    if dbs.get(target.table) == member.party or member.party not in dbs.values():
        return target
    return None


def _simple(query: exp.Expression) -> bool:
    """One table, no joins, aggregates or nested queries: the semi-join reads it directly."""
    return (isinstance(query, exp.Select) and not query.args.get("joins") and not query.args.get("group")
            and not query.args.get("having") and not query.find(exp.AggFunc)
            and len(list(query.find_all(exp.Table))) == 1 and not query.find(exp.Subquery)
            and query.args.get("distinct") is None and query.args.get("limit") is None)


def _placeholder(ref: TableRef, alias: str) -> exp.Table:
    member = ref.members[0]
    table = exp.Table(this=exp.to_identifier(member.name), db=exp.to_identifier(member.party))
    table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    return table


def _derive(label: str, body: exp.Expression, names: dict[str, str], out: Derived, fed: Federation,
            schema_of: SchemaLookup, issuer: str) -> TableRef:
    what = f"the derived table or CTE '{label}'"
    if label.startswith(("__in", "__sq")):
        text = body.sql(dialect=DIALECT)
        kind = "IN subquery" if label.startswith("__in") else "correlated scalar subquery"
        what = f"the {kind} ({text if len(text) <= 120 else text[:117] + '...'})"
    if not isinstance(body, exp.Select):
        raise UnsupportedSql(f"{what} is a {body.key.upper()}; set operations inside derived tables are not "
                             "supported yet")
    sql_ast, bind_ast = body.copy(), body.copy()
    members: dict[int, object] = {}  # id(Table node of `body`) → member
    bind_tables: dict[str, Schema] = {}
    parties: list[str] = []
    for orig, run, bind in zip(list(body.find_all(exp.Table)), list(sql_ast.find_all(exp.Table)),
                               list(bind_ast.find_all(exp.Table))):
        if not orig.db and orig.name in names:
            ref = out.tables[names[orig.name]]
        else:
            ref = resolve_table(fed, orig.db or None, orig.name, schema_of, out.tables)
        if ref.federated:
            raise UnsupportedSql(f"{what} reads the federated union table {ref.name}; derived tables over union "
                                 "tables are not supported yet")
        member = ref.members[0]
        if member.dp is not None and member.party != issuer:
            raise UnsupportedSql(f"{what} reads {ref.name}, which has a differential-privacy policy; DP over derived "
                                 "tables is not built yet")
        parties.append(member.party)
        members[id(orig)] = member
        alias = exp.TableAlias(this=exp.to_identifier(orig.alias_or_name))
        if isinstance(member, DerivedTable):
            run.replace(exp.Subquery(this=sqlglot.parse_one(member.sql, read=DIALECT), alias=alias))
        else:
            new = exp.Table(this=exp.to_identifier(member.name, quoted=True))
            new.set("alias", alias)
            run.replace(new)
            out.schemas[ref.name] = ref.schema
        bound = exp.Table(this=exp.to_identifier(member.name), db=exp.to_identifier(member.party))
        bound.set("alias", alias.copy())
        bind.replace(bound)
        bind_tables[f"{member.party}.{member.name}"] = ref.schema
    owners = sorted(set(parties))
    if len(owners) != 1:
        raise UnsupportedSql(
            f"{what} reads tables of {'several parties (' + ', '.join(owners) + ')' if owners else 'no party'}; "
            "a derived table, CTE or aggregating IN subquery must read one party's tables (its owner computes it "
            "locally). Join the parties' tables in the outer query instead"
        )
    party = owners[0]
    _refuse_correlation(body, what)
    schema = describe(bind_ast.sql(dialect=DIALECT), bind_tables)
    sources = _sources_of_outputs(body, schema, members)
    if party != issuer:
        _check_uses(body, members, party, issuer, what)
    member = DerivedTable(party, f"{PREFIX}{label}", label, sql_ast.sql(dialect=DIALECT), sources,
                          _unique(body, schema))
    return TableRef(f"{party}.{member.name}", (member,), schema, federated=False)


def _sources(select: exp.Select) -> list[exp.Expression]:
    from_ = select.args.get("from_") or select.args.get("from")
    return ([from_.this] if from_ is not None else []) + [j.this for j in select.args.get("joins") or []]


def _refuse_correlation(body: exp.Select, what: str) -> None:
    defined = {t.alias_or_name for t in body.find_all(exp.Table)} | \
              {s.alias_or_name for s in body.find_all(exp.Subquery) if s.alias_or_name}
    for col in body.find_all(exp.Column):
        if col.table and col.table not in defined:
            raise UnsupportedSql(f"{what} refers to the outer query ({col.sql(dialect=DIALECT)}); correlated "
                                 "derived tables and correlated IN subqueries that aggregate are not supported")


def _column_member(col: exp.Column, members: dict[int, object]):
    """The table a column reads, by lexical scope (innermost SELECT whose FROM names its alias)."""
    node = col.parent
    while node is not None:
        if isinstance(node, exp.Select):
            for src in _sources(node):
                if src.alias_or_name == col.table and id(src) in members:
                    return members[id(src)]
        node = node.parent
    return None


def _check_uses(body: exp.Select, members: dict[int, object], party: str, issuer: str, what: str) -> None:
    """Columns that decide which rows exist (filters, joins, grouping, ordering; outputs under
    DISTINCT) need 'aggregate' or above, as in a WHERE."""
    if body.find(exp.Window):
        raise UnsupportedSql(f"{what} uses a window function; over another party's tables that is not "
                             "supported yet")
    in_outputs = {id(c) for o in body.expressions for c in o.find_all(exp.Column)}
    distinct = body.args.get("distinct") is not None
    for col in body.find_all(exp.Column):
        if id(col) in in_outputs and not distinct:
            continue
        member = _column_member(col, members)
        lvl = member.level(col.name, issuer) if member is not None else "private"
        if not level_at_least(lvl, "aggregate"):
            name = member.qualified if member is not None else party
            raise PolicyViolation(
                f"refused by the policy of party '{party}': column {name}.{col.name} is '{lvl}' for issuer "
                f"'{issuer}', and {what} uses it in a filter, join, grouping or ordering, which needs level "
                f"'aggregate' or above. Ask '{party}' to raise the level."
            )


def _sources_of_outputs(body: exp.Select, schema: Schema, members: dict[int, object]):
    """Per output, the (member, column) pairs its level is the meet of: the columns it is computed
    from, plus — for a non-key output of a grouped body — every group key's columns."""
    def deps(node: exp.Expression) -> list[tuple[object, str]]:
        return [(_column_member(c, members), c.name) for c in node.find_all(exp.Column)]

    keys = _group_keys(body)
    grouped = bool(keys) or body.args.get("having") is not None or any(
        o.find(exp.AggFunc) for o in body.expressions)
    key_sql = {k.sql(dialect=DIALECT) for k in keys}
    key_deps = [d for k in keys for d in deps(k)]
    out = []
    for o, (name, _) in zip(body.expressions, schema):
        inner = o.unalias()
        found = deps(inner)
        if grouped and inner.sql(dialect=DIALECT) not in key_sql:
            found += key_deps
        unique = {(id(m), c): (m, c) for m, c in found}
        out.append((name, tuple(unique.values())))
    return tuple(out)


def _group_keys(body: exp.Select) -> list[exp.Expression]:
    group = body.args.get("group")
    out = []
    for g in group.expressions if group else []:
        if isinstance(g, exp.Literal) and not g.is_string and g.name.isdigit() and \
                1 <= int(g.name) <= len(body.expressions):
            out.append(body.expressions[int(g.name) - 1].unalias())
        else:
            out.append(g)
    return out


def _unique(body: exp.Select, schema: Schema) -> tuple[tuple[str, ...], ...]:
    """GROUP BY outputs are unique (one row per key): an oblivious join may use them as the PK side."""
    keys = _group_keys(body)
    if not keys or any(not isinstance(k, exp.Column) for k in keys):
        return ()
    names = []
    for k in keys:
        match = [name for o, (name, _) in zip(body.expressions, schema)
                 if o.unalias().sql(dialect=DIALECT) == k.sql(dialect=DIALECT)]
        if not match:
            return ()
        names.append(match[0])
    return (tuple(names),)
