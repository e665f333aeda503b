"""Pass: differential privacy over a cross-party join (docs/dp.md §5.5).

A join touches a *DP-bound* table D (a DP policy, owner not the issuer). What one
privacy unit can influence is decided by the join structure: D is the first table
of the join order and every other table joins N:1 onto a key declared `unique`
(planner/lower_join.py checks each oblivious PK–FK join and refuses the 1:N case),
so each joined row carries at most one row of D, and after the owner's per-unit
bounding a unit reaches at most `max_rows` joined rows. Or D is the unique side of its
first join (1:N: one row of D meets many rows): then D's owner shares the unit's number,
the join copies it onto every joined row, and a `BoundPerUnit` step keeps at most
B = `max_joined_rows` (default max_rows) kept joined rows per unit under MPC; B replaces
max_rows below. Sensitivities are then those of a single table:

- COUNT(*), COUNT(x): `max_rows` (B);
- SUM/AVG over a column of D: D's declared `bounds`, clamped by D's owner;
- SUM/AVG over other tables' columns: the bounds are written in the query as
  `LEAST(GREATEST(expr, lo), hi)` (literals) and the expression's owner computes the
  clamp in its fragment; a bare column has no known range and is refused.

The join always runs in `oblivious` mode (only input sizes leak): the number of
matching rows in `sizes`/`reveal` mode is an un-noised function of D. GROUP BY keys
go through private partition selection (the groups present in a join depend on D).
What this pass does not plan (refused, saying why): several DP-bound tables, a DP
union in a join, D as an IN/EXISTS subquery table, other tables of D's owner in the
query, MIN/MAX/COUNT(DISTINCT)/VAR/STDDEV, expressions mixing D with other tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

from sqlglot import exp

from fedsql.config import TableConfig
from fedsql.dp_config import DPPolicy
from fedsql.errors import PolicyViolation, UnsupportedSql
from planner.join_analyze import JoinBlock, aliases_of
from planner.encodings import value_encoding
from planner.parse import DIALECT
from planner.passes.dp import (
    DPAggregate,
    PARTIES_FOR_GUARANTEE,
    _budget,
    _divisor,
    _per_part,
    _selection_and_delta,
    _spec,
    check_aggregate,
    check_unit_column,
    count_aggregate,
    output_columns,
    refuse_rows,
    refuse_unit_group,
    require_bounds,
    scaled_bounds,
)
from plan.physical import DPCharge, DPInfo, DPOutput


@dataclass(frozen=True)
class DPJoinRequest:
    info: DPInfo
    alias: str  # the DP-bound table's alias in the query
    member: TableConfig  # the DP-bound table
    aggs: dict[str, DPAggregate]  # by aggregate key (JoinBlock.aggs[i].key)
    clamps: dict[str, tuple[int, int]]  # SQL of a D column (qualified) → clamping range, scaled units
    key_filters: tuple[tuple[str, tuple], ...]  # D group-key column → its declared public_groups values
    member_schema: tuple[tuple[str, str], ...] = ()  # the DP table's (column, type): its rows' hash order
    bound_after_join: int = 0  # > 0: D is the unique side of a 1:N join; keep <= this many joined rows per unit

    @property
    def policy(self) -> DPPolicy:
        return self.member.dp

    @property
    def noise(self):
        specs = tuple(s for a in self.aggs.values() for s in a.noise)
        sel = self.info.selection
        return specs + ((sel.count,) if sel is not None and sel.hidden else ())


def dp_bound_aliases(block: JoinBlock, issuer: str) -> list[str]:
    """Aliases of tables (or unions) with a member whose DP policy binds the issuer."""
    out = [a for a, r in block.tables.items() if any(m.dp is not None and m.party != issuer for m in r.members)]
    return out


def plan_dp_join(block: JoinBlock, issuer: str, settings: dict[str, str], fixed_bits: int,
                 output: tuple[tuple[str, str], ...], type_of: Callable[[exp.Expression], str]) -> DPJoinRequest | None:
    """The DP parameters of a join query, or None when no DP-bound table is touched.
    `type_of` gives the DuckDB type of a single-party expression."""
    for sj in block.semis:
        if any(m.dp is not None and m.party != issuer for m in sj.table.members):
            raise PolicyViolation(
                f"{sj.table.name} has a differential-privacy policy and is used in an IN/EXISTS subquery: whether one "
                "of its rows exists decides whether many outer rows are kept, so one unit's influence is unbounded; "
                "join it instead (its rows on the many side, N:1 onto a unique key)")
    aliases = dp_bound_aliases(block, issuer)
    if not aliases:
        return None
    names = ", ".join(block.tables[a].name for a in aliases)
    if len(aliases) > 1:
        raise UnsupportedSql(
            f"{names} all have differential-privacy policies: DP over a join of several DP-protected tables is not "
            "built (at most one of them can be on the many side of the PK–FK joins; the others' units would be "
            "repeated on many joined rows). Query them separately")
    (alias,) = aliases
    ref = block.tables[alias]
    if ref.federated:
        raise UnsupportedSql(
            f"{ref.name} is a federated union with a differential-privacy policy: DP over a join of a union is not "
            "built yet; join one member table (party.table) or query the union without a join")
    member = ref.members[0]
    policy = member.dp
    party = block.owner[alias]
    others = [block.tables[a].name for a in block.tables if a != alias and block.owner[a] == party]
    if others:
        raise UnsupportedSql(
            f"{ref.name} has a differential-privacy policy and {party}'s other tables ({', '.join(others)}) are in "
            "the same query: its fragment must be the DP table alone (a local join would change its public size "
            "by an un-noised amount); join them in a query of their own")
    for e in block.edges:
        if e.kind == "left" and e.right == alias:
            raise UnsupportedSql(
                f"{ref.name} has a differential-privacy policy and is the LEFT JOINed table: every row of "
                f"{block.tables[e.left].name} would meet its rows, so one unit can reach many joined rows. "
                f"Put {ref.name} first (FROM {ref.name} LEFT JOIN ... or an inner join) so it is on the many side")
    check_unit_column(member, {c for c, _ in ref.schema})
    if not block.is_aggregate:
        refuse_rows(member.qualified)
    for g in block.group_by:
        if not policy.row_level and any(c.table == alias and c.name == policy.unit for c in g.find_all(exp.Column)):
            refuse_unit_group(g, policy.unit, member.qualified)
    members = [member]
    epsilon, delta, family = _budget(members, settings)
    secret = bool(block.group_by)
    delta_select = 0.0
    if secret:
        delta_select = _selection_delta(block, member)
        if family == "skellam":
            delta_select = delta = delta / 2
    for a in block.aggs:
        _check_aggregate(a, alias, member)
    hidden = secret and not any(a.func == "count_star" for a in block.aggs)
    noisy, eps_each, delta_each = _per_part(block, epsilon, delta, hidden)
    after_join = _unique_side(block, alias)
    # a unit's joined rows: <= max_rows when every join is N:1 away from D (each joined row carries one of
    # its <= max_rows rows); when D is the unique side of a 1:N join they are bounded after the join
    max_rows = policy.joined_rows if after_join else policy.max_rows

    aggs: dict[str, DPAggregate] = {}
    outputs: list[DPOutput] = []
    clamps: dict[str, tuple[int, int]] = {}
    for a in block.aggs:
        col = f"__{a.name}"
        if a.func in ("count_star", "count"):
            aggs[a.key], count_output = count_aggregate(a, family, eps_each, delta_each, max_rows)
            outputs.append(count_output)
            continue
        typ = type_of(a.arg)
        enc = value_encoding(typ, fixed_bits, f"{a.func.upper()}({a.arg.sql(dialect=DIALECT)})")
        if enc.kind not in ("int", "decimal", "fixed"):
            raise UnsupportedSql(f"{a.func.upper()} over {typ} is not supported")
        divisor = _divisor(enc)
        if alias in aliases_of(a.arg):  # D's own column: its declared bounds, clamped by its owner
            lo, hi = policy.bound(a.arg.name)
            lo_s, hi_s = scaled_bounds(lo, hi, divisor, f"{member.qualified}.{a.arg.name}", typ)
            clamps[a.arg.sql(dialect=DIALECT)] = (lo_s, hi_s)
            sens = max_rows * max(abs(lo_s), abs(hi_s))
        else:  # another table's expression, clamped in the query: LEAST(GREATEST(e, lo), hi)
            lo, hi = _query_bounds(a.arg)
            reach = max(abs(Fraction(lo)), abs(Fraction(hi))) * divisor
            sens = max_rows * (math.ceil(reach) + (1 if enc.kind == "fixed" else 0))  # fixed: rounding
        specs = [_spec(f"{col}_sum", family, eps_each, delta_each, max(1, sens), a.key)]
        if a.func == "avg":
            specs.append(_spec(f"{col}_cnt", family, eps_each, delta_each, max_rows, a.key))
        out_bounds = (float(lo), float(hi))
        aggs[a.key] = DPAggregate(a.key, a.func, a.name, enc, {}, out_bounds, tuple(specs))
        outputs.append(DPOutput(a.key, a.func, tuple(specs), divisor, (f"{float(lo):g}", f"{float(hi):g}")))

    selection, total_delta = _selection_and_delta(block, members, aggs, secret, family, eps_each, delta_each,
                                                  max_rows, delta, delta_select, hidden)
    charges = (DPCharge(member.party, member.name, epsilon, total_delta),) if noisy else ()
    info = DPInfo(
        epsilon=epsilon if noisy else 0.0,
        delta=total_delta if noisy else 0.0,
        family=family,
        charges=charges,
        outputs=tuple(outputs),
        columns=output_columns(block.ast.expressions, output,
                               lambda node: node.sql(dialect=DIALECT, normalize=True)),
        selection=selection,
    )
    filters = tuple((g.sql(dialect=DIALECT), policy.public_groups[g.name]) for g in block.group_by
                    if isinstance(g, exp.Column) and g.table == alias and g.name in policy.public_groups)
    return DPJoinRequest(info, alias, member, aggs, clamps, filters, tuple(ref.schema),
                         max_rows if after_join else 0)


def _unique_side(block: JoinBlock, alias: str) -> bool:
    """Is D the unique ("one") side of a join it takes part in — a join whose other table's key is not
    unique, so that one row of D meets many rows? Then a unit's joined rows are bounded after the join
    (`BoundPerUnit`, docs/dp.md §5.5). Joins that are N:1 away from D need no such step; the shapes
    the oblivious PK–FK join cannot run (M:N, D not first) are refused by planner/lower_join.py."""
    from planner.lower_join import _fragment_keeps_rows, _has_unique_key

    for e in block.edges:
        if alias not in (e.left, e.right):
            continue
        other, other_cols, own_cols = ((e.right, e.right_cols, e.left_cols) if e.left == alias
                                       else (e.left, e.left_cols, e.right_cols))
        if _has_unique_key(block, other, set(other_cols)) and _fragment_keeps_rows(block, other):
            continue  # N:1 from D
        if _has_unique_key(block, alias, set(own_cols)):
            return True
    return False


def _selection_delta(block: JoinBlock, member: TableConfig) -> float:
    """Groups of a join depend on which rows of D match: always chosen by partition selection, which needs δ."""
    if member.dp.max_delta_per_query <= 0:
        keys = ", ".join(g.sql(dialect=DIALECT) for g in block.group_by)
        raise PolicyViolation(
            f"GROUP BY {keys} over a join with {member.qualified}, which declares a differential-privacy policy "
            "with delta = 0: which groups exist among the joined rows depends on its rows, so groups may only be "
            "released by private partition selection (a group appears when its noisy count reaches a threshold), "
            f"which is (epsilon, delta)-DP and needs delta > 0. Ask '{member.party}' to set dp.delta "
            "(e.g. delta = 1e-6), or query without GROUP BY")
    return member.dp.max_delta_per_query


def _check_aggregate(a, alias: str, member: TableConfig) -> None:
    check_aggregate(a, f"a join with {member.qualified}", "COUNT, SUM or AVG")
    if a.func not in ("count", "count_star", "sum", "avg"):
        raise UnsupportedSql(
            f"{a.key} over a join with {member.qualified}, which declares a differential-privacy policy: "
            "VAR/STDDEV over joins are not built under DP yet; use COUNT, SUM or AVG (or query the table alone)")
    if a.func in ("count", "count_star"):
        return
    if alias in aliases_of(a.arg):
        require_bounds(a, member)
        return
    _query_bounds(a.arg, a.key, member.qualified)


def _number(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Paren):
        return _number(node.this)
    if isinstance(node, exp.Neg):
        inner = _number(node.this)
        return None if inner is None else ("-" + inner).replace("--", "")
    if isinstance(node, exp.Literal) and not node.is_string:
        return node.this
    return None


def _query_bounds(arg: exp.Expression, key: str = "", table: str = "") -> tuple[str, str]:
    """(lo, hi) of `LEAST(GREATEST(e, lo), hi)` or `GREATEST(LEAST(e, hi), lo)` with numeric literals:
    the range a column of a table without a DP policy is clamped to, written in the query."""
    node = arg.this if isinstance(arg, exp.Paren) else arg
    found = None
    if isinstance(node, (exp.Least, exp.Greatest)) and len(node.expressions) == 1:
        inner = node.this
        outer_bound = _number(node.expressions[0])
        kind = exp.Greatest if isinstance(node, exp.Least) else exp.Least
        if isinstance(inner, kind) and len(inner.expressions) == 1 and outer_bound is not None:
            inner_bound = _number(inner.expressions[0])
            if inner_bound is not None:
                lo, hi = (inner_bound, outer_bound) if isinstance(node, exp.Least) else (outer_bound, inner_bound)
                if Fraction(lo) <= Fraction(hi):
                    found = (lo, hi)
    if found is None:
        raise PolicyViolation(
            f"{key}: the joined table {table} declares a differential-privacy policy, so a SUM/AVG over another "
            f"table's column needs a known range to bound one unit's influence; {arg.sql(dialect=DIALECT)} has none. "
            f"Clamp it in the query, e.g. SUM(LEAST(GREATEST({arg.sql(dialect=DIALECT)}, 0), 1000)) — the bounds "
            "are literals, the clamp runs at the column's owner and the noise is calibrated to them")
    return found


def dp_join_leakage(req: DPJoinRequest, issuer: str, compute: tuple[str, ...]) -> tuple[str, ...]:
    from planner.passes.dp import leakage_lines

    party = req.member.party
    out = (
        f"differential privacy over the join: it runs in oblivious mode whatever fedsql.mode says (in 'sizes' or "
        f"'reveal' mode the number of matching rows would be an un-noised function of {req.member.qualified})",
        f"to {', '.join(compute)}: the input sizes only — the joins sort and scan under MPC and open nothing "
        "else (the uniqueness bits listed here aside)",
    )
    if req.bound_after_join:
        out += (f"at most {req.bound_after_join} joined rows per privacy unit of {req.member.qualified}: "
                f"{req.member.name} is the unique side of a 1:N join, so each unit's joined rows are bounded "
                "after the join under MPC (oblivious sort by the unit, segmented count; nothing opened)",)
    if req.info.selection is None:  # else leakage_lines says it
        out += (f"to {', '.join(compute)}: {party} shares every row of {req.member.name} (its public size) with "
                "a secret 0/1 flag for the rows that pass its WHERE conditions and the per-unit bounding",)
    return out + leakage_lines(req.info, issuer, party)


__all__ = ["DPJoinRequest", "plan_dp_join", "dp_bound_aliases", "dp_join_leakage", "PARTIES_FOR_GUARANTEE"]
