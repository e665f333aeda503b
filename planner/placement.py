"""Placement of a join block's tables into local fragments: one per connected part of a party's tables.

A party's tables that the query joins with each other (any local conjunct naming
both) run together in one DuckDB query; tables of the same party that the query
does not connect are separate fragments, each joined securely with the rest, so
no fragment is a cross product the query did not ask for (TPC-H Q8: supply.part
and supply.supplier meet only through logistics.lineitem). Only when the
cross-party equi-joins alone leave the query disconnected — the query itself
asks for a cross product — are a party's parts merged again, as before.

>>> from sqlglot import parse_one
>>> c = lambda s: parse_one(s)
>>> class E:  # a cross-party equi-join edge: only its aliases matter here
...     def __init__(self, left, right): self.left, self.right = left, right
>>> owner = {"p": "supply", "s": "supply", "n": "supply", "l": "logistics"}
>>> local = {"supply": [c("s.k = n.k")], "logistics": []}
>>> place_fragments(["p", "s", "n", "l"], owner, local, [E("p", "l"), E("s", "l")], [])
{'p': 'supply', 's': 'supply#2', 'n': 'supply#2', 'l': 'logistics'}
>>> place_fragments(["p", "s", "l"], {"p": "a", "s": "a", "l": "b"}, {"a": [], "b": []}, [E("p", "l")], [])
{'p': 'a', 's': 'a', 'l': 'b'}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlglot import exp

SITE_MARK = "#"  # "supply#2": the second fragment of party supply (never in a party name: those are identifiers)


def aliases_of(node: exp.Expression) -> set[str]:
    """The table aliases a (qualified) expression reads."""
    return {c.table for c in node.find_all(exp.Column) if c.table}


def party_of_site(site: str) -> str:
    """The party (or "@union") that computes a fragment."""
    return site.split(SITE_MARK, 1)[0]


class _Parts:
    """Union-find over aliases."""

    def __init__(self, aliases: Iterable[str]):
        self.up = {a: a for a in aliases}

    def find(self, a: str) -> str:
        while self.up[a] != a:
            self.up[a] = self.up[self.up[a]]
            a = self.up[a]
        return a

    def union(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.up[rb] = ra
        return True


def place_fragments(aliases: Sequence[str], owner: dict[str, str], local: dict[str, list[exp.Expression]],
                    edges: Sequence, residual: Sequence[exp.Expression],
                    together: Sequence[exp.Expression] = ()) -> dict[str, str]:
    """alias → fragment name: the party's name for its first part (in table order), "party#2", … for
    the others. `local`: per party, the conjuncts over its own tables (one conjunct naming two tables
    joins them); `edges`: cross-party equi-joins (`.left`, `.right` aliases); `residual`: the other
    cross-party conjuncts, which connect parts too (a theta join the query asked for); `together`:
    expressions one party must compute in one fragment (GROUP BY keys over several of its tables)."""
    own = _Parts(aliases)
    for party, conds in local.items():
        for cond in conds:
            used = sorted(a for a in aliases_of(cond) if owner.get(a) == party)
            for a in used[1:]:
                own.union(used[0], a)
    for node in together:
        used = sorted(a for a in aliases_of(node) if a in owner)
        if len({owner[a] for a in used}) == 1:
            for a in used[1:]:
                own.union(used[0], a)
    links = [(e.left, e.right) for e in edges]
    for cond in residual:
        used = sorted(a for a in aliases_of(cond) if a in owner)
        links += [(used[0], a) for a in used[1:]]
    while True:  # merge a party's parts only while the query would otherwise fall apart
        reach = _Parts(aliases)
        for a in aliases:
            reach.union(a, own.find(a))
        for a, b in links:
            reach.union(a, b)
        if len({reach.find(a) for a in aliases}) <= 1 or not _merge_one(aliases, owner, own, reach):
            break
    names: dict[str, str] = {}  # part root → fragment name
    count: dict[str, int] = {}
    site = {}
    for a in aliases:
        root = own.find(a)
        if root not in names:
            party = owner[a]
            count[party] = count.get(party, 0) + 1
            names[root] = party if count[party] == 1 else f"{party}{SITE_MARK}{count[party]}"
        site[a] = names[root]
    return site


def _merge_one(aliases: Sequence[str], owner: dict[str, str], own: _Parts, reach: _Parts) -> bool:
    """Join two parts of one party that lie in different connected pieces of the query (the
    query's own cross product, computed locally as before); False when no party spans two."""
    first: dict[tuple[str, str], str] = {}  # (party, piece) → an alias
    main = reach.find(aliases[0])
    for a in aliases:
        first.setdefault((owner[a], reach.find(a)), a)
    for (party, piece), a in first.items():
        if piece == main:
            continue
        partner = first.get((party, main)) or next(
            (b for (p, q), b in first.items() if p == party and q != piece), None)
        if partner is not None:
            own.union(partner, a)
            return True
    return False


def site_of_condition(cond: exp.Expression, party: str, site: dict[str, str]) -> str:
    """The fragment that evaluates one of `party`'s local conjuncts: the fragment of the tables it
    names (one, by construction), else (a constant, an uncorrelated subquery) the party's first."""
    for a in sorted(aliases_of(cond)):
        if a in site and party_of_site(site[a]) == party:
            return site[a]
    return party
