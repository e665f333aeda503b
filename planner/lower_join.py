"""Join block → physical plan: local fragments, keyed tags, secure joins, secure aggregation.

Each party runs one local fragment over all of its own tables (their joins
and filters included) and computes the single-party parts of every
expression. Cross-party equi-joins match on keyed tags PRF_k(key) that only
the two key owners can compute: in `sizes` mode both sides are shuffled and
the tags are opened to a third compute party, which returns matching row
pairs; in `reveal` mode the shuffle is skipped (the match becomes visible).
Everything above the join — cross-party predicates, arithmetic, per-row
aggregate partials — runs under MPC; grouping reuses the union path's
shuffle-and-open-keys combine.
"""

from __future__ import annotations

from dataclasses import replace

from sqlglot import exp

from fedsql.errors import PolicyViolation, UnsupportedSql
from fedsql.permissions import Principal, as_principal, permits
from planner.catalog import from_item
from plan.physical import SENTINEL
from planner.encodings import clamped_encode_sql, encode_sql, key_encoding, row_encoding, value_encoding
from planner.join_analyze import JoinBlock, aliases_of
from planner.placement import SITE_MARK, party_of_site
from planner.parse import DIALECT
from planner.passes.finalize import final_sql, issuer_side_note
from planner.passes.hidden_params import HIDDEN_FORMAT
from planner.passes.dp import interval_items
from planner.passes.secure_finish import finish_leakage, plan_secure_finish
from plan.physical import (
    AddNoise,
    AgreeTagKey,
    AgreeWidth,
    BoundPerUnit,
    Combine,
    ComputeTags,
    DistinctMark,
    Encoding,
    FinalQuery,
    GroupCombine,
    LocalQuery,
    GROUP_RANK,
    MATCH_TAG_BITS,
    SORT_TAG_BITS,
    ObliviousGroup,
    ObliviousJoin,
    ObliviousSemiJoin,
    PartitionSelect,
    RevealColumn,
    RevealResult,
    SecureEval,
    SecureJoin,
    SecureUnion,
    ShareColumn,
    ShareTable,
    Step,
)
from planner.analyze import SPREAD
from planner.policy import check_group_key_viewers, check_viewers, require
from planner.passes.split_aggregates import (DP_KEY_WORDS, MIDDLE, WORD_BYTES, dp_value_outputs, median_outputs,
                                             median_refusal, quantile_leakage, spread_outputs, sum_outputs)
from plan.expressions import BOOL, HASHED, LocalLeaf, SNode
from planner.secure_expr import product_encoding, split_expression
from plan.schemas import quote
from planner.validate import OutputSchema, describe

COUNT = Encoding("int", 0, "BIGINT")
TAG = Encoding("tag", 0, "UBIGINT")  # a keyed join tag: TAG_WORDS ring words (plan/physical.py)

_RULES = {
    "join": ("join_key", "a join condition across parties needs permission 'join_key'"),
    "where": ("filter", "a predicate needs permission 'filter'"),
    "aggregate": ("aggregate", "revealing an aggregate over it needs permission 'aggregate'"),
    "group": ("group_key", "a GROUP BY key reaches the result, so it needs permission 'group_key'"),
    "row": ("public", "a non-aggregate query reveals row values, which needs permission 'public'"),
    "payload": ("payload", "a join without aggregates reveals this column's values on the matching rows to the issuer, "
                "which needs permission 'payload' (or 'public')"),
}


def _may_see_matches(block: JoinBlock, sj, issuer: Principal | str, matcher: str, mode: str) -> bool:
    """May `matcher` see the match structure of a hidden lookup's key (level `join_key`)? If not,
    the lookup runs without a matcher (sort or pairwise scan) instead of being refused."""
    try:
        check_viewers(_key_uses(block, ((sj.outer, sj.outer_cols),)), issuer, (matcher,), mode, "join")
    except PolicyViolation:
        return False
    return True


def _match_viewers(compute: tuple[str, ...], owners: tuple[str, ...]) -> tuple[str, ...]:
    """Who sees a keyed-tag match (D8): the matcher sends the row pairs to every compute party, and
    in `reveal` mode the key owners are also told the matching rows (PSI-style)."""
    return tuple(dict.fromkeys(compute + tuple(o for o in owners if not o.startswith("@"))))


def _key_uses(block: JoinBlock, sides) -> list[tuple[object, str]]:
    """(member table, column) pairs of a match's key columns, for the viewer check."""
    return [(m, c) for alias, cols in sides for m in block.tables[alias].members for c in cols]


def check_join_policy(block: JoinBlock, issuer: Principal | str, key_viewers: tuple[str, ...] = (), mode: str = "sizes",
                      noised: frozenset[str] = frozenset()) -> None:
    """Permission rules per column use. `noised`: aliases of DP-bound tables, whose every influence on the
    result is DP-noised, so their columns may be used at any level (docs/architecture.md §2, docs/dp.md §5)."""
    refs = dict(block.tables)
    refs.update({sj.inner: sj.table for sj in block.semis})
    refs.update(block.local_inner)
    preserved = {e.left for e in block.edges if e.kind in ("left", "full")} | {
        e.right for e in block.edges if e.kind == "full"}  # rows an outer join keeps without a match
    echoed = _echoed_keys(block, as_principal(issuer).party)
    for role in ("row", "group", "join", "semi_join", "aggregate", "where", "semi_where"):
        for alias, column in sorted(block.uses.get(role, ())):
            required, rule = _RULES[role.replace("semi_", "")]
            if alias in noised:
                continue
            if role in ("where", "semi_where") and not block.is_aggregate and alias not in preserved and all(
                    permits(t, column, issuer, "payload") for t in refs[alias].members):
                continue  # a row-level join may filter on a payload column: it narrows what payload reveals
            if role == "row" and alias not in preserved and (alias, column) in echoed:
                continue  # equal to the issuer's own key on every row shown: its join_key is checked below
            if role == "row" and alias not in preserved:  # shown only on the rows that match: payload will do
                required, rule = _RULES["payload"]
            for table in refs[alias].members:
                require(table, column, issuer, required, rule,
                        f"Ask '{table.party}' to grant '{required}' (docs/configuration.md, grants).")
    if key_viewers:
        check_group_key_viewers([(m, c) for alias, c in sorted(block.uses.get("group", ()))
                                 for m in refs[alias].members], issuer, key_viewers, mode)


def _echoed_keys(block: JoinBlock, issuer: str) -> set[tuple[str, str]]:
    """Other parties' join key columns that equal one of the issuer's own values on every row they
    are shown on: matched (`ON x.k = y.k`, `IN (SELECT …)`) against the issuer's table, whose
    value is the issuer's already (a hidden lookup's keys included)."""
    own = {a for a, s in block.site.items() if s == issuer}
    out: set[tuple[str, str]] = set()
    for e in block.edges:
        if e.kind == "inner" or e.kind == "left":
            if e.left in own:
                out |= {(e.right, c) for c in e.right_cols}
            if e.right in own and e.kind == "inner":
                out |= {(e.left, c) for c in e.left_cols}
    for sj in block.semis:
        if not sj.anti and not sj.not_in and set(sj.table.owners) == {issuer}:
            out |= {(sj.outer, c) for c in sj.outer_cols}
    return out


class _Fragments:
    """Per party: the SELECT list of its local fragment and what it shares."""

    def __init__(self, block: JoinBlock, fixed_bits: int, dp=None):
        self.block = block
        self.fixed_bits = fixed_bits
        self.dp = dp  # DPJoinRequest: its party's aggregate arguments are clamped, string keys cut
        self.dp_party = block.site[dp.alias] if dp is not None else None
        self.long_keys: list[str] = []  # DP party: conditions "this string key fits the fixed width"
        self.items: dict[str, list[str]] = {p: [] for p in block.sites}
        self.shares: dict[str, list[ShareColumn]] = {p: [] for p in block.sites}
        self.leaves: dict[str, LocalLeaf] = {}
        self.by_sql: dict[tuple[str, str, str], LocalLeaf] = {}
        self.valid: set[str] = set()  # leaves with a validity column
        self.null_side = {e.right for e in block.edges if e.kind in ("left", "full")} | {
            e.left for e in block.edges if e.kind == "full"}  # NULL-padded by LEFT / FULL JOINs

    def party_of(self, node: exp.Expression) -> str | None:
        aliases = aliases_of(node)
        parties = {self.block.site[a] for a in aliases}
        if not parties:
            return self.block.sites[0]  # a constant: any party can compute it
        if aliases & self.null_side and not null_propagating(node):
            return None  # the owner cannot see the padding rows: IS NULL, COALESCE, CASE … run under MPC
        return parties.pop() if len(parties) == 1 else None

    def _type(self, party: str, sql: str) -> str:
        tables = {}
        froms = []
        for alias, ref in self.block.tables.items():
            if self.block.site[alias] == party:
                internal = f"{ref.internal_name}__{alias}"
                tables[internal] = ref.schema
                froms.append(f"{quote(internal)} AS {quote(alias)}")
        return describe(f"SELECT {sql} FROM {', '.join(froms)}", tables)[0][1]

    def leaf(self, party: str, node: exp.Expression, role: str = "value") -> LocalLeaf:
        sql = node.sql(dialect=DIALECT)
        key = (party, sql, role)
        if key in self.by_sql:
            return self.by_sql[key]
        typ = self._type(party, sql)
        source = f"({sql})"
        if role == "row":  # shown row by row, never computed on (planner/lower_join.py _row_outputs)
            enc = row_encoding(typ, sql)
        elif role == "key":
            enc = key_encoding(typ, f"GROUP BY {sql}")
            if party == self.dp_party and enc.kind == "string":  # fixed width: agreeing it would open a maximum
                limit = DP_KEY_WORDS * WORD_BYTES
                source = f"(CASE WHEN strlen({source}) <= {limit} THEN {source} END)"
                self.long_keys.append(f"({source} IS NOT NULL OR ({sql}) IS NULL)")
        elif typ.upper() == "BOOLEAN":
            enc = BOOL
        elif typ.upper() == "VARCHAR":
            enc = HASHED
        else:
            enc = value_encoding(typ, self.fixed_bits, sql)
        name = f"__l{len(self.leaves)}"
        fill = "''" if enc.kind == "string" else ("0.0" if enc.kind == "float_bits" else "0")
        if role == "dp" and sql in self.dp.clamps:  # the DP table's bounds, in scaled units (docs/dp.md §5)
            value = clamped_encode_sql(source, enc, *self.dp.clamps[sql])
        else:
            value = encode_sql(source, enc)
        self.items[party] += [
            f"COALESCE({value}, {fill}) AS {name}",
            f"CAST(({sql}) IS NOT NULL AS BIGINT) AS {name}__v",
        ]
        self.shares[party] += [ShareColumn(name, enc, role), ShareColumn(f"{name}__v", COUNT, role)]
        self.valid.add(name)
        lf = LocalLeaf(party, sql, name, enc)
        self.leaves[name] = lf
        self.by_sql[key] = lf
        return lf

    def expr(self, node: exp.Expression) -> SNode:
        return split_expression(node, self.party_of, lambda p, n: self.leaf(p, n))


def lower_join(block: JoinBlock, issuer: str, compute: tuple[str, str, str], output: OutputSchema,
               mode: str, fixed_bits: int, dp=None) -> tuple[tuple[Step, ...], str, tuple[str, ...]]:
    """`dp` (planner/passes/dp_join.py): the join runs obliviously from the DP table, which must be on
    the many side of every PK–FK join; its owner shares all rows with a keep flag; noise before the reveal."""
    if not block.is_aggregate and dp is not None:
        raise UnsupportedSql("a join with a DP table must aggregate its rows (COUNT/SUM/AVG)")
    oblivious = mode == "oblivious" or dp is not None
    if not block.edges and len(block.sites) > 1:
        raise UnsupportedSql("the tables of different parties need an equality join condition (a.k = b.k)")
    frags = _Fragments(block, fixed_bits, dp)
    steps: list[Step] = []
    leakage: list[str] = []
    opened: list[str] = []  # values opened in every mode, DP included: the agreed width, uniqueness bits

    # join order: a spanning tree over the parties; extra edges become secure equalities
    # (DP: from the DP table's party, so that every other table joins onto it N:1)
    order, tree_edges, extra = _join_order(block, frags.dp_party)
    residual = list(block.residual) + extra
    # group keys and aggregate arguments → leaves and secure expressions
    keys = []
    for g in block.group_by:
        party = frags.party_of(g)
        if party is None and aliases_of(g) & frags.null_side and len({block.site[a] for a in aliases_of(g)}) == 1:
            raise UnsupportedSql(f"GROUP BY {g.sql(dialect=DIALECT)}: an expression that is not NULL for the LEFT "
                                 "JOIN's unmatched rows cannot be a group key yet; group by the column itself")
        if party is None:
            raise UnsupportedSql(f"GROUP BY {g.sql(dialect=DIALECT)} mixes parties; group by one party's columns")
        keys.append(frags.leaf(party, g, role="key"))
    rank = _group_rank(block, frags, keys) if oblivious else ""
    rows_out = _row_outputs(block, frags, issuer) if not block.is_aggregate else None
    agg_nodes = {a.key: (_dp_arg(frags, a) if dp is not None and a.func in ("sum", "avg") else
                         frags.expr(a.arg) if a.arg is not None else None) for a in block.aggs}
    predicates = [frags.expr(c) for c in residual]  # NOT IN flags join them after the semi-joins

    # tags for each tree edge
    # an edge whose key owners include all three compute parties has no matcher: oblivious join
    fallback = {e_i for e_i, (_, pa, pb) in enumerate(tree_edges)
                if not oblivious and not any(c not in _runners(block, pa) + _runners(block, pb) for c in compute)}
    for e_i, (edge, pa, pb) in enumerate(tree_edges):
        steps.append(AgreeTagKey(f"k{e_i}", tuple(dict.fromkeys(_runners(block, pa) + _runners(block, pb)))))
        for party, alias, cols in ((pa, edge.left, edge.left_cols), (pb, edge.right, edge.right_cols)):
            for j, c in enumerate(cols):
                frags.items[party].append(f"{quote(alias)}.{quote(c)} AS __k{e_i}_{_ident(party)}_{j}")
    # semi-joins: the outer side's key columns go into its fragment
    for s_i, sj in enumerate(block.semis):
        p_out = block.site[sj.outer]
        for j, c in enumerate(sj.outer_cols):
            frags.items[p_out].append(f"{quote(sj.outer)}.{quote(c)} AS __sk{s_i}_{j}")
        if sj.not_in:  # NOT IN: whether the outer value is NULL matters (secret, from its owner)
            valid = " AND ".join(f"{quote(sj.outer)}.{quote(c)} IS NOT NULL" for c in sj.outer_cols)
            frags.items[p_out].append(f"CAST({valid} AS BIGINT) AS __skv{s_i}")
            frags.shares[p_out].append(ShareColumn(f"__skv{s_i}", COUNT))
    # local fragments
    for party in block.sites:
        # conjuncts() strips parentheses: an OR conjunct needs its own, or AND binds tighter
        conds = [f"({c.sql(dialect=DIALECT)})" if isinstance(c, exp.Or) else c.sql(dialect=DIALECT)
                 for c in block.local.get(party, [])]
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        items = frags.items[party] or ["1 AS __one"]
        if party == frags.dp_party:
            (unit, runner, views), = _units(block, party)
            if dp.bound_after_join:  # the unit's number rides on every joined row (docs/dp.md §5.5)
                items = items + [_dp_unit_number(dp)]
            steps.append(LocalQuery(f"f_{unit}", runner, _dp_fragment_sql(block, dp, items, views[0][1], conds,
                                                                          frags.long_keys),
                                    "DP table: every row, keep flag after WHERE and per-unit bounding, clamped values"))
            frags.shares[party].append(ShareColumn("__rows", COUNT))
            if dp.bound_after_join:
                frags.shares[party].append(ShareColumn("__unit", COUNT))
            continue
        for unit, runner, views in _units(block, party):
            froms = ", ".join(f"{view} AS {quote(alias)}" for alias, view in views)
            steps.append(LocalQuery(f"f_{unit}", runner, f"SELECT {', '.join(items)} FROM {froms}{where}",
                                    "own tables: joins, filters, single-party expressions"))
    for e_i, (edge, pa, pb) in enumerate(tree_edges):
        for party, cols in ((pa, edge.left_cols), (pb, edge.right_cols)):
            names = tuple(f"__k{e_i}_{_ident(party)}_{j}" for j in range(len(cols)))
            for unit, runner, _ in _units(block, party):
                steps.append(ComputeTags(f"t{e_i}_{unit}", f"f_{unit}", runner, f"k{e_i}", names, f"__t{e_i}",
                                         SORT_TAG_BITS if oblivious or e_i in fallback else MATCH_TAG_BITS))
            frags.shares[party].append(ShareColumn(f"__t{e_i}", TAG))
    semi_sorted = []  # per semi-join: run it sort-based (oblivious mode, or no compute party can match tags)
    semi_marked: dict[int, str] = {}  # hidden lookups matched by a party holding no input: s_i → matcher
    for s_i, sj in enumerate(block.semis):
        p_out = block.site[sj.outer]
        owners = list(dict.fromkeys(_runners(block, p_out) + list(sj.table.owners)))
        hidden = any(getattr(m, "format", "") == HIDDEN_FORMAT for m in sj.table.members)
        no_matcher = oblivious or all(c in owners for c in compute)
        if hidden and not no_matcher and not sj.not_in:
            matcher = next(c for c in compute if c not in owners)
            if _may_see_matches(block, sj, issuer, matcher, mode):
                semi_marked[s_i] = matcher
        semi_sorted.append(no_matcher or (hidden and s_i not in semi_marked))
        steps.append(AgreeTagKey(f"ks{s_i}", tuple(owners)))
        names = tuple(f"__sk{s_i}_{j}" for j in range(len(sj.outer_cols)))
        bits = SORT_TAG_BITS if semi_sorted[-1] else MATCH_TAG_BITS  # sort keys: signed words, |a - b| < 2^63
        for unit, runner, _ in _units(block, p_out):
            steps.append(ComputeTags(f"ts{s_i}_out_{unit}", f"f_{unit}", runner, f"ks{s_i}", names, f"__st{s_i}",
                                     bits))
        frags.shares[p_out].append(ShareColumn(f"__st{s_i}", TAG))
        conds = " AND ".join(c.sql(dialect=DIALECT) for c in sj.conditions)
        cols = ", ".join(f"{quote(sj.inner)}.{quote(c)} AS __sk{s_i}_{j}" for j, c in enumerate(sj.inner_cols))
        inner_shares = (ShareColumn(f"__st{s_i}", TAG),)
        if sj.not_in:  # does the subquery yield a NULL? (only that one bit is opened)
            nulls = " OR ".join(f"{quote(sj.inner)}.{quote(c)} IS NULL" for c in sj.inner_cols)
            cols += f", CAST({nulls} AS BIGINT) AS __snull{s_i}"
            inner_shares += (ShareColumn(f"__snull{s_i}", COUNT),)
        members = sj.table.members  # a federated union: every member runs it; the shares are concatenated
        for m in members:
            suffix = f"_{m.party}" if len(members) > 1 else ""
            # membership needs each key once: its owner deduplicates them (the fragment's size, public in
            # every mode, is then its number of distinct keys); a hidden lookup's k values stay k
            distinct = "" if hidden else "DISTINCT "
            steps.append(LocalQuery(f"fs{s_i}{suffix}", m.party, f"SELECT {distinct}{cols} FROM {from_item(m)} AS "
                                    f"{quote(sj.inner)}{' WHERE ' + conds if conds else ''}", "semi-join keys",
                                    params=(m.name,) if hidden else ()))
            steps.append(ComputeTags(f"ts{s_i}_in{suffix}", f"fs{s_i}{suffix}", m.party, f"ks{s_i}", names,
                                     f"__st{s_i}", bits))
            steps.append(ShareTable(f"ss{s_i}{suffix}", f"fs{s_i}{suffix}", m.party, inner_shares))
        if len(members) > 1:
            steps.append(SecureUnion(f"ss{s_i}", tuple(f"ss{s_i}_{m.party}" for m in members)))
    string_parties = [p for p in block.sites if any(c.encoding.kind == "string" for c in frags.shares[p])
                      and p != frags.dp_party]
    width = ""
    if string_parties:
        width = "w"
        steps.append(AgreeWidth("w", tuple((runner, f"f_{unit}") for p in string_parties
                                           for unit, runner, _ in _units(block, p)), "string keys"))
        learners = dict.fromkeys(compute + tuple(r for p in string_parties for r in _runners(block, p)))
        opened.append(f"to {', '.join(learners)}: the length of the longest string key shared by "
                      f"{', '.join(string_parties)}, in 7-byte words (the width every party pads to)")
        leakage.append(opened[-1])
    for party in block.sites:
        units = _units(block, party)
        for unit, runner, _ in units:
            if party == frags.dp_party:  # string keys in a width fixed by the plan (docs/dp.md §5.4)
                steps.append(ShareTable(f"s_{unit}", f"f_{unit}", runner, tuple(frags.shares[party]),
                                        width=DP_KEY_WORDS))
                continue
            # a row-level result's other owners share their rows in a random order of their own, so a
            # result still in that order reaches the issuer without an MPC shuffle (executors/reveal.py)
            permute = rows_out is not None and party_of_site(party) != issuer
            steps.append(ShareTable(f"s_{unit}", f"f_{unit}", runner, tuple(frags.shares[party]), width,
                                    permute=permute))
        if party.startswith("@"):  # a federated union: its members' shares, concatenated
            steps.append(SecureUnion(f"s_{party}", tuple(f"s_{unit}" for unit, _, _ in units)))
    # secure joins along the tree
    current = f"s_{order[0]}"
    joined = {order[0]}
    for e_i, (edge, pa, pb) in enumerate(tree_edges):
        new = pb if pa in joined else pa
        la, lb = _label(block, pa), _label(block, pb)
        if (oblivious or e_i in fallback) and edge.kind == "full":
            raise UnsupportedSql(
                "a FULL JOIN across parties runs in 'sizes' or 'reveal' mode only (the oblivious join keeps the "
                "unmatched rows of one side, and DP queries always join obliviously); SET fedsql.mode = 'sizes'"
                + ("" if oblivious else ", and give the join a compute party that owns neither table"))
        if oblivious or e_i in fallback:
            pk = _dp_primary_key_side(block, edge, new == pb, e_i == 0, dp) if dp is not None else \
                _primary_key_side(block, edge, new == pb, first=e_i == 0)
            outer = edge.kind == "left"
            if outer and (block.site[edge.right] != new or pk != "right"):
                raise UnsupportedSql(
                    f"this LEFT (or RIGHT) JOIN needs the oblivious join, which keeps unmatched rows only when the joined "
                    f"table {block.tables[edge.right].name} has its join key declared unique (N:1); "
                    "use 'sizes' or 'reveal' mode, or declare the key unique")
            steps.append(ObliviousJoin(f"j{e_i}", current, f"s_{new}", f"__t{e_i}", f"__t{e_i}", pk, outer))
            unique_side = {"right": new, "left": pb if new == pa else pa}[pk]
            opened.append(f"to {', '.join(compute)}: whether the key declared unique on {_label(block, unique_side)}'s side of the "
                          f"{la}–{lb} join repeats (one bit; a repeat fails the query)")
            leakage.append(opened[-1])
            current = f"j{e_i}"
            joined.add(new)
            continue
        owners = _runners(block, pa) + _runners(block, pb)
        matcher = next(c for c in compute if c not in owners)  # exists: else the edge is in `fallback`
        shuffle = mode == "sizes"
        viewers = _match_viewers(compute, () if shuffle else tuple(owners))
        on = ", ".join(f"{a}.{c}" for a, cols in ((edge.left, edge.left_cols), (edge.right, edge.right_cols))
                       for c in cols)
        check_viewers(_key_uses(block, ((edge.left, edge.left_cols), (edge.right, edge.right_cols))),
                      issuer, viewers, mode, "join")
        steps.append(SecureJoin(f"j{e_i}", current, f"s_{new}", f"__t{e_i}", f"__t{e_i}", matcher, shuffle,
                                () if shuffle else (party_of_site(pa), party_of_site(pb)), kind=edge.kind))
        current = f"j{e_i}"
        joined.add(new)
        what = "a random permutation of" if shuffle else "the positions of"
        leakage.append(f"to {matcher}: which rows match in {what} the {la}–{lb} join inputs "
                       "(tags are keyed; it cannot learn key values)")
        leakage.append(f"to {', '.join(compute)}: the number of rows of the {la}–{lb} join")
        if shuffle:  # the matcher sends the pairs to the other compute parties
            leakage.append(f"to {', '.join(viewers)}: the match structure of the shuffled {la}–{lb} join inputs "
                           f"on ({on}): which shuffled rows pair up, hence how many rows share each key value "
                           "(each of them needs level 'join_key' for these columns)")
        else:
            leakage.append(f"to {', '.join(viewers)}: which rows of {la} and {lb} matched (reveal mode), on ({on}) "
                           "(each of them needs level 'join_key' for these columns)")
    not_in_flags: list[SNode] = []
    for s_i, sj in enumerate(block.semis):
        p_out = block.site[sj.outer]
        kind = "not_in" if sj.not_in else ("anti" if sj.anti else "semi")
        if sj.not_in:
            not_in_flags.append(SNode("col", column=f"__nin{s_i}", encoding=COUNT))
            leakage.append(f"to {', '.join(compute)}: whether the NOT IN subquery on {sj.table.name} yields a NULL")
        if semi_sorted[s_i]:  # no matcher: sort-based, the outer rows all stay (`__rows` marks the kept ones)
            steps.append(ObliviousSemiJoin(f"sj{s_i}", current, f"ss{s_i}", f"__st{s_i}", f"__st{s_i}", kind))
            current = f"sj{s_i}"
            continue
        if s_i in semi_marked:  # a hidden lookup: only the matcher learns how many rows match
            steps.append(SecureJoin(f"sj{s_i}", current, f"ss{s_i}", f"__st{s_i}", f"__st{s_i}", semi_marked[s_i],
                                    True, kind=kind, mark=True))
            current = f"sj{s_i}"
            leakage.append(f"to {semi_marked[s_i]}: how many rows of {p_out} match each hidden value, as keyed tags "
                           "it cannot invert, in an order it does not know (never a key); no other party learns how "
                           "many match")
            continue
        owners = set(_runners(block, p_out)) | set(sj.table.owners)
        matcher = next(c for c in compute if c not in owners)  # exists: else the semi-join is sorted
        shuffle = mode == "sizes"
        viewers = _match_viewers(compute, () if shuffle else tuple(sorted(owners)))
        on = ", ".join([f"{sj.outer}.{c}" for c in sj.outer_cols] + [f"{sj.inner}.{c}" for c in sj.inner_cols])
        check_viewers(_key_uses(block, ((sj.outer, sj.outer_cols),)) +
                      [(m, c) for m in sj.table.members for c in sj.inner_cols], issuer, viewers, mode, "join")
        steps.append(SecureJoin(f"sj{s_i}", current, f"ss{s_i}", f"__st{s_i}", f"__st{s_i}", matcher, shuffle,
                                kind=kind))
        current = f"sj{s_i}"
        leakage.append(f"to {', '.join(compute)}: how many rows pass the {'NOT ' if sj.anti else ''}EXISTS/IN "
                       f"subquery on {sj.table.name} (whose owner shares each distinct key once); to {matcher}: the "
                       "match pattern of "
                       f"{'shuffled' if shuffle else 'positioned'} keyed tags")
        if not shuffle:
            leakage.append(f"to {', '.join(viewers)}: which rows of {p_out} pass the subquery (reveal mode), on "
                           f"({on}) (each of them needs level 'join_key' for these columns)")
    # secure predicates and per-row partials
    outputs: list[tuple[str, object]] = []
    flag = ""
    predicates = predicates + not_in_flags
    if predicates:
        cond = predicates[0]
        for p in predicates[1:]:
            cond = SNode("and", (cond, p), encoding=BOOL)
        outputs.append(("__flag", SNode("truth", (cond,), encoding=COUNT)))
        flag = "__flag"
        leakage.append(f"to {', '.join(compute)}: how many joined rows pass the cross-party conditions"
                       if block.group_by else "nothing more: cross-party conditions are evaluated under MPC")
    flag_node = SNode("col", column="__flag", encoding=COUNT) if flag and not block.group_by else None
    sorted_rows = (oblivious and (tree_edges or block.semis)) or fallback or any(semi_sorted)
    if sorted_rows or semi_marked:  # rows stay; `__rows` marks the kept ones
        rows = SNode("col", column="__rows", encoding=COUNT)
        keep = SNode("mul", (rows, SNode("col", column="__flag", encoding=COUNT)), encoding=COUNT) if flag else rows
        outputs.append(("__keep", keep))
        flag, flag_node = "__keep", SNode("col", column="__keep", encoding=COUNT)
    if sorted_rows:
        leakage.append(f"to {', '.join(compute)}: only the input sizes, beyond the bits listed here — the joins "
                       "sort and scan under MPC")
    elif oblivious and flag:
        flag_node = SNode("col", column="__flag", encoding=COUNT)
    if rows_out is not None:
        count_to = () if oblivious else _count_viewers(block, issuer, compute)
        if count_to and any(m not in count_to for m in semi_marked.values()):
            count_to = ()  # the result's size stays with the matcher of a hidden lookup
        return _rows_tail(block, issuer, output, rows_out, outputs, flag, current, steps, leakage, count_to)
    if dp is not None:
        if any(a.func in MIDDLE for a in block.aggs):
            raise median_refusal(True)
        tail, tail_leakage = _dp_tail(block, issuer, compute, output, dp, keys, rank, agg_nodes, outputs, flag_node, current,
                                      steps)
        return tuple(steps) + tail, "result", tail_leakage + tuple(opened)
    combine: list[Combine] = []
    reveal, replacements = _key_reveals(block, keys)
    marks: dict[str, tuple[str, str, str]] = {}  # COUNT(DISTINCT x) per x: (mark, x, counted) columns;
    # the mark is 1 on the first kept row of each (keys, x)
    for agg in block.aggs:
        a = f"__{agg.name}"
        node = agg_nodes[agg.key]
        if agg.func == "count_distinct":
            if node.encoding.kind not in ("int", "decimal", "date", "timestamp", "hash", "bool"):
                raise UnsupportedSql(f"COUNT(DISTINCT …) over a {node.encoding.type} expression is not supported "
                                     "under MPC yet: its secure encoding does not keep distinct values distinct")
            arg = _canon(agg.arg)
            if arg not in marks:
                suffix = str(len(marks) or "")
                marks[arg] = (a, f"__dx{suffix}", f"__dxv{suffix}")
                counted = SNode("valid", (node,), encoding=COUNT)  # NULL x, and rows the filters drop, count nowhere
                if flag:
                    counted = SNode("mul", (SNode("col", column=flag, encoding=COUNT), counted), encoding=COUNT)
                outputs += [(marks[arg][1], node), (marks[arg][2], counted)]
                combine.append(Combine(a, "sum"))
                reveal.append(RevealColumn(a, "value", a, COUNT))
            replacements[agg.key] = quote(marks[arg][0])
            continue
        if agg.func == "count_star":
            outputs.append((a, flag_node or SNode("const", value=1, encoding=COUNT)))
            combine.append(Combine(a, "sum"))
            reveal.append(RevealColumn(a, "value", a, COUNT))
            replacements[agg.key] = quote(a)
            continue
        present = SNode("valid", (node,), encoding=COUNT)
        if flag_node is not None:
            present = SNode("mul", (flag_node, present), encoding=COUNT)
        if agg.func == "count":
            outputs.append((a, present))
            combine.append(Combine(a, "sum"))
            reveal.append(RevealColumn(a, "value", a, COUNT))
            replacements[agg.key] = quote(a)
            continue
        enc = node.encoding
        if enc.kind in ("bool", "string", "float_bits", "hash"):
            raise UnsupportedSql(f"{agg.func.upper()} over a {enc.type} expression is not supported under MPC yet")
        if agg.func in ("sum", "avg"):
            outputs.append((f"{a}_sum", SNode("mul", (present, node), encoding=enc)))
            outputs.append((f"{a}_cnt", present))
            more_combine, more_reveal, replacements[agg.key] = sum_outputs(agg.func, a, enc)
            combine += more_combine
            reveal += more_reveal
        elif agg.func in MIDDLE:
            if oblivious and block.group_by:
                raise median_refusal(False)
            outputs += [(a, node), (f"{a}_cnt", present)]  # each joined row stands for itself, if it counts
            what = f"{agg.key} over {enc.type}"
            more_combine, more_reveal, replacements[agg.key] = median_outputs(agg, a, enc, what)
            combine += more_combine
            reveal += more_reveal
        elif agg.func in SPREAD:
            square = SNode("mul", (node, node), encoding=product_encoding(enc, enc))
            outputs.append((f"{a}_sum", SNode("mul", (present, node), encoding=enc)))
            outputs.append((f"{a}_sq", SNode("mul", (present, square), encoding=square.encoding)))
            outputs.append((f"{a}_cnt", present))
            more_combine, more_reveal, replacements[agg.key] = spread_outputs(agg.func, a, enc, square.encoding)
            combine += more_combine
            reveal += more_reveal
        else:
            fill = SENTINEL if agg.func == "min" else -SENTINEL
            outputs.append((a, SNode("case", (present, node, SNode("const", value=fill, encoding=enc)), encoding=enc)))
            combine.append(Combine(a, agg.func))
            reveal.append(RevealColumn(a, "minmax", a, enc))
            replacements[agg.key] = quote(a)
    key_cols = key_cols_of(keys)
    finish = plan_secure_finish(block.ast, tuple(reveal), replacements, _canon, "h", "g")
    local_keys = ""
    if rank and party_of_site(keys[0].party) == issuer:  # the issuer's own labels need not travel: by rank
        local_reveal = tuple(replace(c, how="local_key") if c.how == "key" else c for c in reveal)
        local_finish = plan_secure_finish(block.ast, local_reveal, replacements, _canon, "h", "g")
        if (local_finish is None) == (finish is None):  # else HAVING/ORDER BY needs the keys under MPC
            local_keys, reveal, finish, key_cols = f"f_{keys[0].party}", list(local_reveal), local_finish, (rank,)
            unshared = set(key_cols_of(keys))
            steps = [replace(s, columns=tuple(c for c in s.columns if c.name not in unshared))
                     if isinstance(s, ShareTable) and s.id == f"s_{keys[0].party}" else s for s in steps]
    steps.append(SecureEval("e", current, tuple(outputs)))
    grouped = "e"
    for i, (mark, column, counted) in enumerate(marks.values()):  # one oblivious sort by (keys, x, counted)
        steps.append(DistinctMark(f"dm{i or ''}", grouped, key_cols, column, mark, counted))  # per distinct x
        grouped = f"dm{i or ''}"
    if oblivious and block.group_by:
        steps.append(ObliviousGroup("g", grouped, key_cols, tuple(combine), flag, rank))
    else:
        steps.append(GroupCombine("g", grouped, key_cols, tuple(combine), flag if block.group_by else ""))
    if finish is not None:  # HAVING / ORDER BY … LIMIT under MPC: the issuer gets only the result rows
        steps.append(finish)
    steps.append(RevealResult("r", "h" if finish is not None else "g", issuer, tuple(reveal),
                              secret_keys=(oblivious and bool(block.group_by)) or finish is not None,
                              local_keys=local_keys))
    steps.append(FinalQuery("result", issuer, final_sql(_as_block(block), "__agg", replacements, output, qualified=True,
                                      drop_offset=finish is not None),
                            (("__agg", "r"),)))
    if block.group_by and oblivious:
        leakage.append(f"to {', '.join(compute)}: the number of groups (the result size)")
    elif block.group_by:
        names = ", ".join(g.sql(dialect=DIALECT) for g in block.group_by)
        leakage.append(f"to {', '.join(compute)}: the group key values ({names}) of the joined rows after an "
                       "oblivious shuffle")
    leakage.append(f"to {issuer} only: the result")
    leakage.extend(quantile_leakage(block.aggs, issuer))
    leakage.extend(finish_leakage(finish, compute) if finish is not None else issuer_side_note(block.ast, issuer))
    return tuple(steps), "result", tuple(leakage)


def _row_outputs(block: JoinBlock, frags: _Fragments, issuer: str) -> tuple[list[RevealColumn], dict[str, str], str]:
    """A join without aggregates returns rows (PSI, enrichment): every column its SELECT list and
    ORDER BY read becomes a column of the revealed table. The issuer's own columns stay in its
    fragment, found again by their row number (`__grank` = ROW_NUMBER, shared like any column);
    other parties' columns are shared in their exact key encoding and opened to the issuer alone.
    Returns (reveal columns, replacements for final_sql, the issuer's fragment or "")."""
    own_site = issuer if issuer in block.sites else ""
    reveal: list[RevealColumn] = []
    replacements: dict[str, str] = {}
    clauses = list(block.ast.expressions) + [c for c in (block.ast.args.get("order"),) if c is not None]
    for clause in clauses:
        for col in clause.find_all(exp.Column):
            key = col.sql(dialect=DIALECT, normalize=True)
            if col.table not in block.tables or key in replacements:
                continue
            name = f"__o{len(replacements)}"
            site = block.site[col.table]
            if site == own_site:
                frags.items[site].append(f"{quote(col.table)}.{quote(col.name)} AS {name}")
                reveal.append(RevealColumn(name, "local_row", name, COUNT))
            else:
                leaf = frags.leaf(site, col, role="row")
                reveal.append(RevealColumn(name, "key", leaf.name, leaf.encoding, count=f"{leaf.name}__v"))
            replacements[key] = quote(name)
    if own_site:  # 1-based: row number 0 is "no row of the issuer" (the zero padding of an outer join)
        frags.items[own_site].append(f"ROW_NUMBER() OVER () AS {GROUP_RANK}")
        frags.shares[own_site].append(ShareColumn(GROUP_RANK, COUNT))
    return reveal, replacements, own_site


def _rows_tail(block: JoinBlock, issuer: str, output: OutputSchema, rows_out, outputs: list, flag: str, current: str,
               steps: list[Step], leakage: list[str], count_to: tuple[str, ...]) -> tuple[tuple[Step, ...], str, tuple[str, ...]]:
    """Open the joined rows to the issuer: shuffled, then either only the real ones opened
    (`count_to`, executors/reveal.py compact_rows) or those that are not real (dropped by a secure
    predicate, or the other side's rows of an oblivious join) zeroed and all opened; then the
    issuer's final DuckDB query computes the SELECT list, DISTINCT, ORDER BY and LIMIT over them."""
    reveal, replacements, own_site = rows_out
    keep = SNode("col", column=flag, encoding=COUNT) if flag else SNode("const", value=1, encoding=COUNT)
    steps.append(SecureEval("e", current, tuple(outputs) + (("__show", keep),)))
    steps.append(RevealResult("r", "e", issuer, tuple(reveal), secret_keys=True,
                              local_keys=f"f_{own_site}" if own_site else "", rows="__show", count_to=count_to))
    steps.append(FinalQuery("result", issuer, final_sql(_as_block(block), "__agg", replacements, output,
                                                        qualified=True), (("__agg", "r"),)))
    others = sorted({f"{block.tables[a].name}.{c}" for a, c in block.uses.get("row", ())
                     if block.site[a] != own_site})
    cut = " (all of them: its ORDER BY … LIMIT runs in its own DuckDB)" if block.ast.args.get("limit") else ""
    leakage.append(f"to {issuer} only: the joined rows{cut} — which of its own rows match, how often, and "
                   + (f"the values of {', '.join(others)} on them" if others else "no other party's values")
                   + "; to the others nothing more. Before opening, the rows are shuffled and "
                   + ("only the real ones opened" if count_to else
                      "those that are not part of the result zeroed, so the issuer learns only how many such rows "
                      "there were"))
    helpers = [p for p in count_to if p != issuer]
    if helpers:
        leakage.append(f"to {', '.join(helpers)}: the number of result rows ({'they help' if len(helpers) > 1 else 'it helps'} "
                       f"open only those; {'they hold' if len(helpers) > 1 else 'it holds'} none of the query's tables)")
    return tuple(steps), "result", tuple(leakage)


def _count_viewers(block: JoinBlock, issuer: str, compute: tuple[str, ...]) -> tuple[str, ...]:
    """Who opens which rows are real when a row-level result is opened compactly: the issuer and a
    compute party holding none of the query's tables, or two such parties when the issuer does not
    compute — so that no owner learns how many of its rows matched (a hidden lookup's owner learns
    nothing of the hits). None (every row zeroed and opened) where there are not enough of them."""
    holders = {o for t in block.tables.values() for o in t.owners} | {o for sj in block.semis for o in sj.table.owners}
    free = [c for c in compute if c != issuer and c not in holders]
    if issuer in compute:
        return (issuer, free[0]) if free else ()
    return tuple(free[:2]) if len(free) >= 2 else ()


def _dp_tail(block: JoinBlock, issuer: str, compute: tuple[str, ...], output: OutputSchema, dp, keys: list[LocalLeaf], rank: str,
             agg_nodes: dict, outputs: list, flag_node: SNode, current: str, steps: list[Step]):
    """After the oblivious joins of a DP query: per-row partials, then either one global row or an
    oblivious GROUP BY that opens nothing; noise inside the MPC; partition selection for groups;
    only noisy columns are opened (docs/dp.md §5.5)."""
    from planner.passes.dp_join import dp_join_leakage

    combine: list[Combine] = []
    reveal, replacements = _key_reveals(block, keys)
    n_flags = len(outputs)  # the joined rows' flags (__flag, __keep); the partials follow
    for agg in block.aggs:
        a = f"__{agg.name}"
        node = agg_nodes[agg.key]
        if agg.func == "count_star":
            outputs.append((a, flag_node))
        elif agg.func == "count":
            outputs.append((a, SNode("mul", (flag_node, SNode("valid", (node,), encoding=COUNT)), encoding=COUNT)))
        if agg.func in ("count_star", "count"):
            combine.append(Combine(a, "sum"))
            reveal.append(RevealColumn(a, "value", a, COUNT))
            replacements[agg.key] = quote(a)
            continue
        present = SNode("mul", (flag_node, SNode("valid", (node,), encoding=COUNT)), encoding=COUNT)
        outputs.append((f"{a}_sum", SNode("mul", (present, node), encoding=node.encoding)))
        if agg.func == "avg":
            outputs.append((f"{a}_cnt", present))
        _, more_reveal, replacements[agg.key] = dp_value_outputs(agg.func, a, dp.aggs[agg.key])
        combine += [Combine(c.name, "sum") for c in more_reveal]
        reveal += more_reveal
    sel = dp.info.selection
    if sel is not None and sel.hidden:
        outputs.append((sel.count.column, flag_node))
        combine.append(Combine(sel.count.column, "sum"))
    tail: list[Step] = [SecureEval("e", current, tuple(outputs))]
    if dp.bound_after_join:  # D is the unique side of a 1:N join: bound each unit's kept joined rows first
        if flag_node is None or flag_node.column != "__keep" or outputs[n_flags - 1][0] != "__keep":
            raise AssertionError("a DP join bounded after the join needs the joined rows' __keep flag")
        tail = [SecureEval("e0", current, tuple(outputs[:n_flags])),
                BoundPerUnit("b", "e0", "__unit", "__keep", dp.bound_after_join),
                SecureEval("e", "b", tuple(outputs[n_flags:]))]
    key_cols = key_cols_of(keys)
    local_keys = ""
    if rank and party_of_site(keys[0].party) == issuer:  # the issuer's own labels need not travel: by rank
        reveal = [replace(c, how="local_key") if c.how == "key" else c for c in reveal]
        local_keys, key_cols = f"f_{keys[0].party}", (rank,)
        unshared = set(key_cols_of(keys))
        steps[:] = [replace(s, columns=tuple(c for c in s.columns if c.name not in unshared))
                    if isinstance(s, ShareTable) and s.id == f"s_{keys[0].party}" else s for s in steps]
    if sel is not None:
        tail += [ObliviousGroup("g", "e", key_cols, tuple(combine), "__keep", rank, mark="__last"),
                 AddNoise("n", "g", dp.noise),
                 PartitionSelect("sel", "n", sel.count.column, sel.threshold, "__last")]
    else:
        tail += [GroupCombine("g", "e", (), tuple(combine)), AddNoise("n", "g", dp.noise)]
    tail.append(RevealResult("r", tail[-1].id, issuer, tuple(reveal), secret_keys=sel is not None,
                             local_keys=local_keys))
    tail.append(FinalQuery("result", issuer, final_sql(_as_block(block), "__agg", replacements, output,
                                                       qualified=True, extra=interval_items(dp)),
                           (("__agg", "r"),)))
    leakage = (f"to {issuer}: HAVING, ORDER BY and LIMIT run at the issuer over the noisy values "
               "(post-processing, no extra privacy cost)",) if block.ast.args.get("having") or \
        block.ast.args.get("order") or block.ast.args.get("limit") else ()
    return tuple(tail), dp_join_leakage(dp, issuer, compute) + leakage


def _dp_arg(frags: _Fragments, agg) -> SNode:
    """A DP SUM/AVG argument: one party's expression (the DP table's bounded column, or another
    table's clamp with literal bounds), computed and clamped by its owner in its fragment."""
    party = frags.party_of(agg.arg)
    if party is None:
        raise UnsupportedSql(f"{agg.key}: under DP the argument must be computed by one party (its owner clamps "
                             "it); here it mixes parties or is NULL-padded by a LEFT JOIN")
    lf = frags.leaf(party, agg.arg, role="dp")
    return SNode("col", column=lf.name, encoding=lf.encoding)


def _dp_fragment_sql(block: JoinBlock, dp, items: list[str], view: str, conds: list[str],
                     long_keys: list[str]) -> str:
    """The DP table's fragment: every row (its size is public; the number passing WHERE is not), with
    `__rows` = passes the owner's conditions ∧ among the first max_rows rows of its unit (hash order,
    as for unions) ∧ its group keys are declared values / fit the fixed key width."""
    alias = quote(dp.alias)
    policy = dp.policy
    w = " AND ".join(f"({c})" for c in conds) or "TRUE"
    inner = f"SELECT *, COALESCE({w}, FALSE) AS __fedsql_w FROM {view} AS {alias}"
    keep = ["__fedsql_w"] + long_keys
    if not policy.row_level:
        order = ", ".join(quote(c) for c, _ in dp.member_schema)
        inner = (f"SELECT *, ROW_NUMBER() OVER (PARTITION BY {quote(policy.unit)}, __fedsql_w ORDER BY hash({order})) "
                 f"AS __fedsql_rn FROM ({inner}) AS {alias}")
        keep.append(f"__fedsql_rn <= {policy.max_rows}")
    for column, values in dp.key_filters:
        vals = ", ".join("'" + v.replace("'", "''") + "'" if isinstance(v, str) else repr(v) for v in values)
        keep.append(f"COALESCE({column} IN ({vals}), FALSE)")
    return (f"SELECT {', '.join(items)}, CAST(__fedsql_keep AS BIGINT) AS __rows FROM (SELECT *, "
            f"({' AND '.join(keep)}) AS __fedsql_keep FROM ({inner}) AS {alias}) AS {alias}")


def _dp_unit_number(dp) -> str:
    """The DP table's privacy unit as a number 1..n (NULL units are one unit; row privacy: each row),
    shared secretly and copied onto every joined row for `BoundPerUnit`."""
    if dp.policy.row_level:
        return "ROW_NUMBER() OVER () AS __unit"
    return f"DENSE_RANK() OVER (ORDER BY {quote(dp.alias)}.{quote(dp.policy.unit)} NULLS FIRST) AS __unit"


def _dp_primary_key_side(block: JoinBlock, edge, new_is_right: bool, first: bool, dp) -> str:
    """Under DP every oblivious join brings in a table whose key is unique (N:1 from the joined
    rows): then each joined row carries at most one row of the DP table, the first one joined,
    and a unit reaches at most max_rows joined rows. One exception: the first join may have the
    DP table itself on the unique side (1:N, `dp.bound_after_join`); each joined row still
    carries one row of it, and `BoundPerUnit` keeps at most the bound of joined rows per unit."""
    new_alias, new_cols = (edge.right, edge.right_cols) if new_is_right else (edge.left, edge.left_cols)
    old_alias, old_cols = (edge.left, edge.left_cols) if new_is_right else (edge.right, edge.right_cols)
    if _has_unique_key(block, new_alias, set(new_cols)) and _fragment_keeps_rows(block, new_alias):
        return "right"
    if first and dp.bound_after_join and old_alias == dp.alias and _has_unique_key(block, old_alias, set(old_cols)):
        return "left"
    name = dp.member.qualified
    raise UnsupportedSql(
        f"DP over this join is not built: {block.tables[new_alias].name} joins {block.tables[old_alias].name} on "
        f"({', '.join(new_cols)}), which is not declared unique (unique = [...] in its config, and not repeated by "
        f"its party's other tables), so a row of {block.tables[old_alias].name} can meet many rows here. "
        "DP joins are supported when every join brings in a table N:1 on a unique key, except that the first "
        f"join may bring in many rows per row of {name} "
        f"onto its own unique key (their number per unit is then bounded after the join); M:N joins and 1:N "
        "joins further down the join order are not built")


# expression nodes whose value is NULL whenever a column in them is NULL
_STRICT = (exp.Column, exp.Identifier, exp.Literal, exp.Paren, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod,
           exp.Neg, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Cast, exp.DataType, exp.Not,
           exp.Between, exp.Like, exp.Upper, exp.Lower, exp.Substring, exp.Abs, exp.Round)


def null_propagating(node: exp.Expression) -> bool:
    """Is `node` NULL when its columns are (all) NULL? Then a LEFT JOIN's NULL padding can be
    represented by the owner's encoded value with validity 0; otherwise (IS NULL, COALESCE,
    CASE, OR …) the expression must be evaluated under MPC after the join."""
    return all(isinstance(n, _STRICT) for n in node.walk())


def _key_reveals(block: JoinBlock, keys: list[LocalLeaf]) -> tuple[list[RevealColumn], dict[str, str]]:
    """Group keys as result columns `__g<i>`, and the GROUP BY expressions they replace."""
    reveal = [RevealColumn(f"__g{i}", "key", k.name, k.encoding, count=f"{k.name}__v") for i, k in enumerate(keys)]
    return reveal, {_canon(g): quote(f"__g{i}") for i, g in enumerate(block.group_by)}


def key_cols_of(keys: list[LocalLeaf]) -> tuple[str, ...]:
    """The shared columns of group keys: each value and its validity."""
    return tuple(n for k in keys for n in (k.name, f"{k.name}__v"))


def _group_rank(block: JoinBlock, frags: _Fragments, keys: list[LocalLeaf]) -> str:
    """When one party owns every group key, it numbers the key tuples itself (DENSE_RANK in
    its DuckDB) and the oblivious GROUP BY sorts by that one narrow number instead of all
    key words (Q10's seven labels are ~35 words). The rank is shared like any column, so
    it reveals nothing; it is at most the fragment's row count, hence narrow."""
    owners = {k.party for k in keys}
    if len(owners) != 1 or next(iter(owners)).startswith("@"):
        return ""  # several owners (or a union's members) have no common numbering
    (party,) = owners
    order = ", ".join(f"({k.sql}) NULLS FIRST" for k in keys)
    all_null = " AND ".join(f"({k.sql}) IS NULL" for k in keys)
    # 0 = all keys NULL: the same number an oblivious LEFT JOIN's unmatched rows carry (zero padding)
    frags.items[party].append(f"CASE WHEN {all_null} THEN 0 ELSE DENSE_RANK() OVER (ORDER BY {order}) END "
                              f"AS {GROUP_RANK}")
    frags.shares[party].append(ShareColumn(GROUP_RANK, COUNT))
    return GROUP_RANK


def _primary_key_side(block: JoinBlock, edge, new_is_right: bool, first: bool) -> str:
    """Which input of an oblivious join holds the unique key: the new party's table, or
    (for the first join only) the first party's table. Declared with `unique = [...]`."""
    def unique(alias: str, cols: tuple[str, ...]) -> bool:
        return _has_unique_key(block, alias, set(cols)) and _fragment_keeps_rows(block, alias)

    new_alias, new_cols = (edge.right, edge.right_cols) if new_is_right else (edge.left, edge.left_cols)
    old_alias, old_cols = (edge.left, edge.left_cols) if new_is_right else (edge.right, edge.right_cols)
    if unique(new_alias, new_cols):
        return "right"
    if first and unique(old_alias, old_cols):
        return "left"
    for alias, cols in ((new_alias, new_cols), (old_alias, old_cols)):
        if _has_unique_key(block, alias, set(cols)):  # declared unique, but the local fragment repeats it
            raise UnsupportedSql(
                f"the oblivious join on {block.tables[alias].name}'s unique key needs {block.owner[alias]}'s other "
                "tables in the query joined to it on their own unique keys (N:1); here they would repeat its rows "
                "(e.g. a cross product), so the key is not unique in the joined fragment. Add the missing join "
                "condition, or use SET fedsql.mode = 'sizes'"
            )
    raise UnsupportedSql(
        f"the oblivious join of {block.tables[edge.left].name} and {block.tables[edge.right].name} needs one side's "
        "join key declared unique (unique = [\"col\"] in that table's config); only PK–FK joins run obliviously"
    )


def expression_type(block: JoinBlock, node: exp.Expression, fixed_bits: int = 20) -> str:
    """DuckDB type of a single-party expression of a join block (over that party's tables)."""
    frags = _Fragments(block, fixed_bits)
    parties = {block.site[a] for a in aliases_of(node)}
    party = parties.pop() if len(parties) == 1 else block.sites[0]
    return frags._type(party, node.sql(dialect=DIALECT))


def _has_unique_key(block: JoinBlock, alias: str, cols: set[str]) -> bool:
    return all(any(set(k) <= cols for k in m.unique) for m in block.tables[alias].members)


def _fragment_keeps_rows(block: JoinBlock, alias: str) -> bool:
    """Is the owner's local fragment at most one row per row of `alias`? True when every other
    table of that party joins, step by step from `alias`, on its own declared unique key (N:1),
    so a key unique in `alias` stays unique in the fragment. A cross product or a 1:N local
    join would repeat it, and the oblivious PK–FK join would fail on the duplicates."""
    party = block.site[alias]
    aliases = {a for a in block.tables if block.site[a] == party}
    pairs = []  # (alias, column) = (alias, column) equalities of the local conditions
    for cond in block.local.get(party, []):  # conjuncts: only a top-level equality holds on every row
        left, right = (cond.this, cond.expression) if isinstance(cond, exp.EQ) else (None, None)
        if isinstance(left, exp.Column) and isinstance(right, exp.Column) and left.table and right.table:
            pairs += [((left.table, left.name), (right.table, right.name)),
                      ((right.table, right.name), (left.table, left.name))]
    determined = {alias}
    grew = True
    while grew:
        grew = False
        for other in sorted(aliases - determined):
            cols = {c for (a, c), (b, _) in pairs if a == other and b in determined}
            if _has_unique_key(block, other, cols):
                determined.add(other)
                grew = True
    return determined == aliases


def _units(block: JoinBlock, party: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """Who computes a fragment: (step suffix, executing party, [(alias, view)]) — one unit for a
    real party, one per member for a federated union ("@name")."""
    aliases = [a for a in block.tables if block.site[a] == party]
    if not party.startswith("@"):
        return [(party, party_of_site(party), [(a, from_item(block.tables[a].members[0])) for a in aliases])]
    (alias,) = aliases
    return [(f"{_ident(party)}_{m.party}", m.party, [(alias, from_item(m))]) for m in block.tables[alias].members]


def _runners(block: JoinBlock, party: str) -> list[str]:
    return [runner for _, runner, _ in _units(block, party)]


def _label(block: JoinBlock, site: str) -> str:
    """A fragment as named in the leakage report: its party, and its tables when the party has several."""
    if SITE_MARK not in site and not any(SITE_MARK in s and party_of_site(s) == site for s in block.sites):
        return site
    names = ", ".join(a for a in block.tables if block.site[a] == site)
    return f"{party_of_site(site)} ({names})"


def _ident(party: str) -> str:
    """A fragment name as part of an SQL identifier."""
    return party.replace("@", "u_").replace(SITE_MARK, "_f")


def _canon(node: exp.Expression) -> str:
    return node.sql(dialect=DIALECT, normalize=True)


class _BlockView:
    """What finalize.final_sql needs from a block, for a qualified join block."""

    def __init__(self, block: JoinBlock):
        self.ast = block.ast


def _as_block(block: JoinBlock):
    return _BlockView(block)


def _join_order(block: JoinBlock, first: str | None = None):
    """A spanning tree of party-to-party edges, in join order, plus leftover equalities
    (from `first`, else the first table's party)."""
    parties = block.sites
    order = [first or parties[0]]
    tree = []
    extra: list[exp.Expression] = []
    pending = list(block.edges)
    while pending:
        progressed = False
        for edge in list(pending):
            pa, pb = block.site[edge.left], block.site[edge.right]
            if edge.kind == "left" and pb in order:
                if pa not in order:
                    continue  # its preserved side must be joined first
                raise UnsupportedSql("a LEFT JOIN must bring in a party not joined before it; reorder the joins")
            if (pa in order) != (pb in order):
                tree.append((edge, pa, pb))
                order.append(pb if pa in order else pa)
                pending.remove(edge)
                progressed = True
            elif pa in order and pb in order:
                for lc, rc in zip(edge.left_cols, edge.right_cols):
                    extra.append(exp.EQ(this=exp.column(lc, table=edge.left), expression=exp.column(rc, table=edge.right)))
                pending.remove(edge)
                progressed = True
        if not progressed:
            break
    missing = [p for p in parties if p not in order]
    if missing:
        raise UnsupportedSql(f"no join condition connects {', '.join(missing)} to the other parties' tables")
    return order, tree, extra
