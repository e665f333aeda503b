"""Name resolution: what a table name in a query refers to, and its public schema.

Schemas are public in fedsql (docs/architecture.md §2): each owner describes its own
tables and every node plans over the same schemas, so the plan hash matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from fedsql.config import Federation, TableConfig
from fedsql.errors import UnknownObjectError
from plan.schemas import Schema

SchemaLookup = Callable[[str, str], Schema]
"""(party, table) → schema; the node backs it with its own tables and peers' Describe."""


@dataclass(frozen=True)
class TableRef:
    """A table as the query names it: one party's table or a federated union."""

    name: str  # as the user wrote it, normalised: "h1.patients" or "patients"
    members: tuple[TableConfig, ...]
    schema: Schema
    federated: bool

    @property
    def owners(self) -> tuple[str, ...]:
        return tuple(m.party for m in self.members)

    @property
    def internal_name(self) -> str:
        """Name used in generated SQL and in the validation database."""
        return self.name.replace(".", "__")

    def column_type(self, column: str) -> str:
        for name, typ in self.schema:
            if name == column:
                return typ
        raise KeyError(column)


@dataclass(frozen=True)
class DerivedTable:
    """A CTE, derived table or decorrelated subquery that reads one party's tables only.

    Its owner computes `sql` in plaintext in its DuckDB as a local view (like any pushed-down
    fragment); the outer query uses it as a table of that party. It stands in for a
    TableConfig wherever the planner reads one (party, name, level, unique, dp); the
    level of an output is the meet of its source columns' levels for the viewer (planner/passes/derived_tables.py,
    docs/decisions.md D16).
    """

    party: str
    name: str  # placeholder table name in the rewritten query: __dt_<label>
    label: str  # the CTE / alias as the user wrote it, for messages
    sql: str  # the body over the owner's own view names
    sources: tuple[tuple[str, tuple[tuple[object, str], ...]], ...]  # output → (member, column) it derives from
    unique: tuple[tuple[str, ...], ...] = ()  # GROUP BY outputs: one row per key
    dp: None = None
    grants: tuple = ()

    @property
    def qualified(self) -> str:
        return f"{self.party}.(derived table {self.label})"

    def level(self, column: str, viewer: str | None = None) -> str:
        """The meet of the levels (for `viewer`) of the columns the output derives from."""
        if viewer == self.party:
            return "public"
        from planner.passes.derived_tables import meet

        deps = dict(self.sources).get(column)
        if deps is None:
            return "private"
        out = "public"
        for member, col in deps:
            out = meet(out, member.level(col, viewer) if member is not None else "private")
        return out


def from_item(member: "TableConfig | DerivedTable") -> str:
    """What a local fragment's FROM names for a member: its view, or the derived table's body."""
    if isinstance(member, DerivedTable):
        return f"({member.sql})"
    return '"' + member.name.replace('"', '""') + '"'


def resolve_table(fed: Federation, db: str | None, name: str, schema_of: SchemaLookup,
                  derived: dict[str, TableRef] | None = None) -> TableRef:
    """Resolve `db.name` (party table) or `name` (federated table); `derived` holds the
    placeholders `party.__dt_x` of derived tables (planner/passes/derived_tables.py)."""
    if derived and db and f"{db}.{name}" in derived:
        return derived[f"{db}.{name}"]
    if db:
        party = fed.parties.get(db)
        if party is None:
            raise UnknownObjectError(
                f"unknown party '{db}' in table '{db}.{name}'; parties are: {', '.join(sorted(fed.parties))}"
            )
        table = party.tables.get(name)
        if table is None:
            have = ", ".join(f"{db}.{t}" for t in sorted(party.tables)) or "none"
            raise UnknownObjectError(f"party '{db}' has no table '{name}'; its tables are: {have}")
        return TableRef(f"{db}.{name}", (table,), schema_of(db, name), federated=False)
    fedtable = fed.federated.get(name)
    if fedtable is None:
        raise UnknownObjectError(
            f"unknown table '{name}'; write party.table (e.g. "
            f"{_example(fed)}) or one of the federated tables: {', '.join(sorted(fed.federated)) or 'none'}"
        )
    members = tuple(fed.table(p, t) for p, t in fedtable.members)
    schemas = [schema_of(m.party, m.name) for m in members]
    first = schemas[0]
    for member, schema in zip(members[1:], schemas[1:]):
        if schema != first:
            raise UnknownObjectError(
                f"federated table '{name}': {member.qualified} has schema {_fmt(schema)} but "
                f"{members[0].qualified} has {_fmt(first)}; the members of a union must have the same "
                "column names and types (cast in the source files or fix the config)"
            )
    return TableRef(name, members, first, federated=True)


def _example(fed: Federation) -> str:
    for p in fed.parties.values():
        for t in p.tables:
            return f"{p.name}.{t}"
    return "party.table"


def _fmt(schema: Schema) -> str:
    return "(" + ", ".join(f"{c} {t}" for c, t in schema) + ")"
