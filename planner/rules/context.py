"""What a rewrite rule may consult: the federation, the issuer and the public schemas (frozen).

Rules see only what every party's planner sees (docs/architecture.md §2), so every
party rewrites the same text to the same tree and the plan hashes agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from fedsql.config import Federation, parse_config
from planner.catalog import SchemaLookup, TableRef


@dataclass(frozen=True)
class RuleContext:
    """Federation configuration + schema lookup for the rules; `derived` holds the
    placeholders `party.__dt_x` of derived tables (planner/passes/derived_tables.py)."""

    fed: Federation
    issuer: str
    schema_of: SchemaLookup
    derived: Mapping[str, TableRef] = field(default_factory=lambda: MappingProxyType({}))


_EXAMPLE = """
[federation]
name = "rules-example"
compute = ["a", "b", "c"]
[parties.a]
address = "127.0.0.1:1"
[parties.a.tables.orders]
source = "orders.parquet"
columns = { okey = "public", ckey = "join_key", odate = "group_key", price = "aggregate" }
[parties.a.tables.customer]
source = "customer.parquet"
columns = { ckey = "join_key", nkey = "join_key", seg = "aggregate" }
[parties.a.tables.nation]
source = "nation.parquet"
columns = { nkey = "public", name = "public" }
[parties.b]
address = "127.0.0.1:2"
[parties.b.tables.items]
source = "items.parquet"
columns = { okey = "join_key", skey = "join_key", qty = "aggregate", mode = "aggregate" }
[parties.c]
address = "127.0.0.1:3"
[parties.c.tables.supplier]
source = "supplier.parquet"
columns = { skey = "join_key", nkey = "join_key" }
[parties.c.tables.nation]
source = "nation.parquet"
columns = { nkey = "public", name = "public" }
"""

_EXAMPLE_TYPES = {"price": "DECIMAL(12,2)", "qty": "INTEGER", "odate": "DATE", "seg": "VARCHAR",
                  "name": "VARCHAR", "mode": "VARCHAR"}


def example_context(issuer: str = "a") -> RuleContext:
    """The small three-party federation the rules' docstring examples (doctests) plan over:
    a: orders, customer, nation; b: items; c: supplier, nation."""
    fed = parse_config(_EXAMPLE, Path("/rules-example.toml"))

    def schema_of(party: str, table: str) -> tuple[tuple[str, str], ...]:
        cols = fed.parties[party].tables[table].levels
        return tuple((c, _EXAMPLE_TYPES.get(c, "BIGINT")) for c in cols)

    return RuleContext(fed, issuer, schema_of)
