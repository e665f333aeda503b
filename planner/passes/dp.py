"""Pass: differential privacy for queries over tables whose owner declares a DP policy.

Runs before the policy check and the lowering of an aggregate over a union (or
one owner's table). For every member table with a DP policy whose owner is not
the issuer (policies bind other parties), it:

- refuses what cannot be made private, saying why: non-aggregate output, MIN/MAX,
  SUM/AVG/VAR/STDDEV over an expression or a column without declared bounds,
  GROUP BY the privacy unit, GROUP BY a secret key (one not declared in every
  owner's public_groups) when an owner allows no δ;
- for secret GROUP BY keys, plans private partition selection: a group is
  released only when its noisy count reaches τ, derived from (ε, δ, max_rows)
  (`plan.dp_calibration.partition_threshold`) or the owners' declared `threshold`;
- fixes the query's ε (``SET fedsql.epsilon``, default min(1, every touched
  table's ``max_epsilon_per_query``)) and δ, splits them evenly across the noisy
  columns, and computes each column's sensitivity in scaled integer units;
- records what each owner's ledger will be charged (the plan hash covers it).

The SQL each owner runs (clamping, contribution bounding, one partial row per
declared group) is built by ``planner.passes.split_aggregates.split_dp``; the
noise step by ``planner.lower``. Semantics: docs/dp.md §5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import reduce
from typing import Callable

from sqlglot import exp

from fedsql.config import TableConfig
from fedsql.dp_config import DPPolicy
from fedsql.errors import PolicyViolation, UnsupportedSql
from planner.analyze import SPREAD, QueryBlock, canonical
from planner.encodings import value_encoding
from planner.parse import DIALECT
from plan.physical import DPCharge, DPInfo, DPOutput, Encoding, NoiseSpec, Selection

from plan.dp_calibration import (PARTIES_FOR_GUARANTEE, confidence_interval, confidence_interval_95, count_released_95,
                                 noise_params, noise_scale, partition_threshold)

DEFAULT_EPSILON = 1.0
"""ε of a query when the session does not SET fedsql.epsilon (capped by every table's max_epsilon_per_query)."""


NOISY_PARTS = {"avg": 2, "var_pop": 3, "var_samp": 3, "stddev_pop": 3, "stddev_samp": 3}
"""Noisy columns per aggregate (default 1): AVG = sum, count; VAR/STDDEV = sum, sum of squares, count."""


@dataclass(frozen=True)
class DPAggregate:
    """One aggregate of the query under DP."""

    key: str
    func: str  # count_star | count | sum | avg | var_pop | var_samp | stddev_pop | stddev_samp
    name: str  # a0, a1... (as the split names it)
    encoding: Encoding | None  # sum/avg/var: encoding of the argument
    bounds: dict[str, tuple[int, int]]  # sum/avg/var: DP member (qualified) → clamping range in scaled units
    out_bounds: tuple[float, float] | None  # sum/avg/var: loosest range in output units (post-processing)
    noise: tuple[NoiseSpec, ...]  # sum (+ count for avg; + sum of squares, count for var)
    center: int = 0  # var: values are centred at this (scaled) value before summing, to cut sensitivity


@dataclass(frozen=True)
class DPRequest:
    info: DPInfo
    members: dict[str, DPPolicy]  # qualified member table → its policy (DP members only)
    groups: tuple[tuple[str, str, tuple], ...]  # per GROUP BY key: (column, DuckDB type, declared values)
    aggs: dict[str, DPAggregate]  # by aggregate key
    selection: Selection | None = None  # secret GROUP BY keys: private partition selection
    key_types: tuple[str, ...] = ()  # selection: DuckDB type of each GROUP BY key
    key_filters: dict[str, tuple[tuple[int, tuple], ...]] = None  # selection: member → (key index, declared values)

    @property
    def noised(self) -> frozenset[str]:
        """Member tables (qualified) whose every influence on the result is noised."""
        return frozenset(self.members)


def dp_pass(block: QueryBlock, issuer: str, settings: dict[str, str], fixed_bits: int,
            output: tuple[tuple[str, str], ...]) -> DPRequest | None:
    """plan_dp with the expression types bound here (None when no DP table of another party is touched)."""
    if not dp_members(block, issuer):
        return None
    from planner.lower import _expression_types

    return plan_dp(block, issuer, settings, _expression_types(block), fixed_bits, output)


def dp_members(block: QueryBlock, issuer: str) -> list[TableConfig]:
    return [m for m in block.table.members if m.dp is not None and m.party != issuer]


def plan_dp(block: QueryBlock, issuer: str, settings: dict[str, str], types: dict[str, str], fixed_bits: int,
            output: tuple[tuple[str, str], ...]) -> DPRequest | None:
    """The DP parameters of this query, or None when it touches no DP table of another party.

    `types` maps canonical SQL of group keys and aggregate arguments to DuckDB types."""
    members = dp_members(block, issuer)
    if not members:
        return None
    names = ", ".join(m.qualified for m in members)
    columns = {c for c, _ in block.table.schema}
    for m in members:
        check_unit_column(m, columns)
    if not block.is_aggregate:
        refuse_rows(names)
    secret = _secret_keys(block, members)
    groups = () if secret else _groups(block, members, types)
    epsilon, delta, family = _budget(members, settings)
    delta_select = 0.0
    if secret:
        delta_select = _selection_delta(block, members)
        if family == "skellam":  # half of δ for the mechanism, half for the selection
            delta_select = delta = delta / 2

    for a in block.aggs:
        check_aggregate(a, names, "COUNT, SUM, AVG, VAR or STDDEV")
        if a.func in ("sum", "avg") + SPREAD:
            for m in members:
                require_bounds(a, m)
    hidden = bool(secret) and not any(a.func == "count_star" for a in block.aggs)
    noisy, eps_each, delta_each = _per_part(block, epsilon, delta, hidden)
    max_rows = max(m.dp.max_rows for m in members)

    aggs: dict[str, DPAggregate] = {}
    outputs: list[DPOutput] = []
    for a in block.aggs:
        col = f"__{a.name}"
        if a.func in ("count_star", "count"):
            aggs[a.key], count_output = count_aggregate(a, family, eps_each, delta_each, max_rows)
            outputs.append(count_output)
            continue
        arg = a.arg.sql(dialect=DIALECT)
        enc = value_encoding(types[canonical(a.arg)], fixed_bits, f"{a.func.upper()}({arg})")
        if enc.kind not in ("int", "decimal", "fixed"):
            raise UnsupportedSql(f"{a.func.upper()} over {types[canonical(a.arg)]} is not supported")
        divisor = _divisor(enc)
        bounds = {}
        lo_out, hi_out = math.inf, -math.inf
        for m in members:
            lo, hi = m.dp.bound(a.arg.name)
            lo_s, hi_s = scaled_bounds(lo, hi, divisor, f"{m.qualified}.{a.arg.name}", types[canonical(a.arg)])
            bounds[m.qualified] = (lo_s, hi_s)
            lo_out, hi_out = min(lo_out, float(lo)), max(hi_out, float(hi))
        # VAR/STDDEV: centre at the middle of the loosest range (the variance is shift-invariant)
        center = (min(b[0] for b in bounds.values()) + max(b[1] for b in bounds.values())) // 2 \
            if a.func in SPREAD else 0
        sens = max(1, max(m.dp.max_rows * max(abs(lo_s - center), abs(hi_s - center))
                          for m, (lo_s, hi_s) in zip(members, bounds.values())))
        specs = [_spec(f"{col}_sum", family, eps_each, delta_each, sens, a.key)]
        if a.func in SPREAD:  # each row adds floor((v - center)^2 / divisor): same scale as the value
            sq = max(1, max(m.dp.max_rows * (max(lo_s - center, hi_s - center, key=abs) ** 2 // divisor)
                            for m, (lo_s, hi_s) in zip(members, bounds.values())))
            specs.append(_spec(f"{col}_sq", family, eps_each, delta_each, sq, a.key))
        if a.func in ("avg",) + SPREAD:
            specs.append(_spec(f"{col}_cnt", family, eps_each, delta_each, max_rows, a.key))
        aggs[a.key] = DPAggregate(a.key, a.func, a.name, enc, bounds, (lo_out, hi_out), tuple(specs), center)
        outputs.append(DPOutput(a.key, a.func, tuple(specs), divisor, (f"{lo_out:g}", f"{hi_out:g}")))

    selection, total_delta = _selection_and_delta(block, members, aggs, secret, family, eps_each, delta_each,
                                                  max_rows, delta, delta_select, hidden)
    charges = tuple(DPCharge(m.party, m.name, epsilon, total_delta) for m in members) if noisy else ()
    info = DPInfo(
        epsilon=epsilon if noisy else 0.0,
        delta=total_delta if noisy else 0.0,
        family=family,
        charges=charges,
        outputs=tuple(outputs),
        columns=output_columns(block.ast.expressions, output, canonical),
        groups=tuple((c, tuple(str(v) for v in values)) for c, _, values in groups),
        selection=selection,
    )
    key_types = tuple(types[canonical(g)] for g in block.group_by) if secret else ()
    filters = _key_filters(block, members) if secret else {}
    return DPRequest(info, {m.qualified: m.dp for m in members}, groups, aggs, selection, key_types, filters)


# -- checks ------------------------------------------------------------------------


def check_unit_column(member: TableConfig, columns: set[str]) -> None:
    """The owner's declared privacy unit must be a column of its table (else nothing can be bounded per unit)."""
    if not member.dp.row_level and member.dp.unit not in columns:
        raise PolicyViolation(
            f"the DP policy of {member.qualified} names the privacy unit column '{member.dp.unit}', which the table "
            f"does not have (columns: {', '.join(sorted(columns))}); the owner must fix its dp.unit"
        )


def refuse_rows(names: str) -> None:
    raise PolicyViolation(
        f"{names} declares a differential-privacy policy: only noisy aggregates (COUNT, SUM, AVG) may be "
        "revealed, and this query would reveal rows. Aggregate the rows, e.g. SELECT COUNT(*) ..."
    )


def refuse_unit_group(g: exp.Expression, unit: str, table: str) -> None:
    raise PolicyViolation(
        f"GROUP BY {g.sql(dialect=DIALECT)} over {table}: '{unit}' is the privacy unit of its DP policy, and "
        "grouping by it would release per-unit values; group by another column"
    )


def check_aggregate(a, where: str, allowed: str) -> None:
    """Aggregates no noise calibrated to one unit can release. `where` names the DP table (or the join with it)."""
    if a.func in ("min", "max"):
        raise PolicyViolation(
            f"{a.key} over {where}, which declares a differential-privacy policy: MIN and MAX cannot be "
            "released with noise calibrated to one unit (a single person can move them anywhere in the bounds); "
            f"use {allowed}"
        )
    if a.func == "count_distinct" or (a.arg is not None and a.arg.find(exp.Distinct)):
        raise PolicyViolation(
            f"{a.key} over {where}, which declares a differential-privacy policy: COUNT(DISTINCT ...) is not "
            "built under DP yet; use COUNT(*) or COUNT(column), or GROUP BY the column and count the groups"
        )


def require_bounds(a, member: TableConfig) -> None:
    """A SUM/AVG/VAR argument of the DP table is one of its columns with declared bounds (its sensitivity)."""
    if not isinstance(a.arg, exp.Column):
        raise PolicyViolation(
            f"{a.key} over {member.qualified}, which declares a differential-privacy policy: the owner bounds "
            f"columns, not expressions, so the sensitivity of {a.arg.sql(dialect=DIALECT)} is unknown; aggregate a "
            "bounded column (e.g. SUM(cost)) and compute the expression from the result"
        )
    if member.dp.bound(a.arg.name) is None:
        have = ", ".join(sorted(member.dp.bounds)) or "none"
        raise PolicyViolation(
            f"{a.key}: column {member.qualified}.{a.arg.name} has no bounds in its owner's DP policy, so its "
            f"sensitivity is unbounded and no noise can make the {a.func.upper()} private (bounded columns: "
            f"{have}); ask '{member.party}' to declare dp.bounds = {{ {a.arg.name} = [lo, hi] }}"
        )


def _secret_keys(block: QueryBlock, members: list[TableConfig]) -> bool:
    """True when some GROUP BY key is not a column every DP-bound owner declares in public_groups:
    its groups must then be chosen by private partition selection. The privacy unit is refused."""
    for g in block.group_by:
        for m in members:
            if not m.dp.row_level and any(c.name == m.dp.unit for c in g.find_all(exp.Column)):
                refuse_unit_group(g, m.dp.unit, m.qualified)
    return any(not isinstance(g, exp.Column) or any(g.name not in m.dp.public_groups for m in members)
               for g in block.group_by)


def _selection_delta(block: QueryBlock, members: list[TableConfig]) -> float:
    """δ of the partition selection: the smallest max_delta_per_query; refused when an owner allows none."""
    keys = ", ".join(g.sql(dialect=DIALECT) for g in block.group_by)
    for m in members:
        if m.dp.max_delta_per_query <= 0:
            undeclared = [g.sql(dialect=DIALECT) for g in block.group_by
                          if not isinstance(g, exp.Column) or g.name not in m.dp.public_groups]
            raise PolicyViolation(
                f"GROUP BY {keys} over {m.qualified}, which declares a differential-privacy policy with delta = 0: "
                f"{', '.join(undeclared)} has no declared dp.public_groups, so its groups are secret and may only "
                "be released by private partition selection (a group appears when its noisy count reaches a "
                "threshold), which is (epsilon, delta)-DP and needs delta > 0. "
                f"Ask '{m.party}' to set dp.delta (e.g. delta = 1e-6) or to declare dp.public_groups = "
                f"{{ {undeclared[0]} = [...] }}"
            )
    return min(m.dp.max_delta_per_query for m in members)


def _selection_and_delta(block, members: list[TableConfig], aggs: dict, secret: bool, family: str,
                         eps_each: float, delta_each: float, max_rows: int, delta: float, delta_select: float,
                         hidden: bool) -> tuple[Selection | None, float]:
    """Partition selection for secret keys (the COUNT(*) output's noise doubles as the selection
    count, else a hidden one), and the δ each owner is charged."""
    selection = None
    if secret:
        count = next((aggs[a.key].noise[0] for a in block.aggs if a.func == "count_star"), None)
        if count is None:
            count = _spec("__sel", family, eps_each, delta_each, max_rows, "the partition selection count")
        selection = _selection(block, members, count, delta_select, hidden)
    return selection, (delta + delta_select if family == "skellam" and secret else (delta_select or delta))


def _selection(block: QueryBlock, members: list[TableConfig], count: NoiseSpec, delta: float,
               hidden: bool) -> Selection:
    """τ for the noisy count: a group made only by one unit (count <= max_rows, and one unit
    makes at most max_rows groups) is released with probability <= δ/max_rows each, so <= δ in
    all (plan.dp_calibration.partition_threshold); an owner's declared `threshold` can only raise τ."""

    max_rows = count.sensitivity
    try:
        derived = partition_threshold(count.family, count.epsilon, max_rows, delta / max_rows,
                                      PARTIES_FOR_GUARANTEE, mechanism_delta=count.delta)
    except ValueError as exc:
        raise PolicyViolation(f"cannot calibrate the partition selection threshold: {exc}") from None
    declared = [math.ceil(m.dp.threshold) for m in members if m.dp.threshold is not None]
    keys = tuple(g.sql(dialect=DIALECT) for g in block.group_by)
    return Selection(keys, max([derived] + declared), derived, delta, count, hidden)


def _key_filters(block: QueryBlock, members: list[TableConfig]) -> dict[str, tuple[tuple[int, tuple], ...]]:
    """Per DP member: keys it declares public_groups for; its rows with other values are dropped
    (values an owner did not list are never output, docs/dp.md §1)."""
    out = {}
    for m in members:
        out[m.qualified] = tuple((i, m.dp.public_groups[g.name]) for i, g in enumerate(block.group_by)
                                 if isinstance(g, exp.Column) and g.name in m.dp.public_groups)
    return out


def _groups(block: QueryBlock, members: list[TableConfig], types: dict[str, str]) -> tuple:
    out = []
    for g in block.group_by:
        if not isinstance(g, exp.Column):
            raise PolicyViolation(
                f"GROUP BY {g.sql(dialect=DIALECT)} over a table with a DP policy: only a column whose values the "
                "owner declares in dp.public_groups may be a group key"
            )
        column = g.name
        values = None
        for m in members:
            declared = m.dp.public_groups.get(column)
            if declared is None:
                raise PolicyViolation(
                    f"GROUP BY {column} over {m.qualified}, which declares a differential-privacy policy: its owner "
                    f"declares no public groups for '{column}'. Grouping by a secret key needs private partition "
                    "selection over a secret GROUP BY, which fedsql does not build yet (planned with issue #4); "
                    f"ask '{m.party}' to declare dp.public_groups = {{ {column} = [...] }}"
                )
            values = list(declared) if values is None else [v for v in values if v in declared]
        if not values:
            raise PolicyViolation(f"GROUP BY {column}: the owners' dp.public_groups for '{column}' have no value "
                                  "in common, so no group may be released")
        typ = types[canonical(g)]
        is_text = typ.upper() == "VARCHAR"
        if any(isinstance(v, str) != is_text for v in values):
            raise PolicyViolation(f"GROUP BY {column}: dp.public_groups lists values of another type than the "
                                  f"column's {typ}; the owner must list {'strings' if is_text else 'numbers'}")
        out.append((column, typ, tuple(values)))
    return tuple(out)


def _budget(members: list[TableConfig], settings: dict[str, str]) -> tuple[float, float, str]:
    cap = min(m.dp.max_epsilon_per_query for m in members)
    raw = settings.get("fedsql.epsilon")
    if raw is None:
        epsilon = min(DEFAULT_EPSILON, cap)
    else:
        try:
            epsilon = float(raw)
        except ValueError:
            epsilon = float("nan")
        if not 0 < epsilon < math.inf:
            raise PolicyViolation(f"fedsql.epsilon must be a number > 0, got '{raw}'")
    for m in members:
        if epsilon > m.dp.max_epsilon_per_query:
            raise PolicyViolation(
                f"epsilon {epsilon:g} exceeds the per-query cap of {m.qualified} (max_epsilon_per_query = "
                f"{m.dp.max_epsilon_per_query:g}); lower it with SET fedsql.epsilon = {cap:g}"
            )
    family = "skellam" if all(m.dp.mechanism == "skellam" for m in members) else "laplace"
    delta = min(m.dp.max_delta_per_query for m in members) if family == "skellam" else 0.0
    return epsilon, delta, family


def _per_part(block, epsilon: float, delta: float, hidden: bool) -> tuple[int, float, float]:
    """How many noisy parts the query's outputs have (a hidden selection count included),
    and the ε and δ each one gets."""
    noisy = sum(NOISY_PARTS.get(a.func, 1) for a in block.aggs) + hidden
    return noisy, (_split(epsilon, noisy) if noisy else 0.0), (delta / noisy if noisy and delta else 0.0)


def count_aggregate(a, family: str, eps_each: float, delta_each: float,
                    max_rows: int) -> tuple[DPAggregate, DPOutput]:
    """COUNT(*) / COUNT(x): one noisy part whose sensitivity is the rows one unit may add."""
    spec = _spec(f"__{a.name}", family, eps_each, delta_each, max_rows, a.key)
    return DPAggregate(a.key, a.func, a.name, None, {}, None, (spec,)), DPOutput(a.key, "count", (spec,), 1)


def scaled_bounds(lo, hi, divisor: int, column: str, typ: str) -> tuple[int, int]:
    """Declared bounds in the column's scaled-integer units (rounded inwards); refused when empty."""
    lo_s, hi_s = math.ceil(Fraction(lo) * divisor), math.floor(Fraction(hi) * divisor)
    if lo_s > hi_s:
        raise PolicyViolation(f"bounds [{lo}, {hi}] of {column} contain no value of its type {typ}; "
                              "the owner must widen dp.bounds")
    return lo_s, hi_s


def _split(total: float, parts: int) -> float:
    each = total / parts
    while each * parts > total:  # basic composition must never exceed the charged ε
        each = math.nextafter(each, 0.0)
    return each


def _spec(column: str, family: str, epsilon: float, delta: float, sensitivity: int, what: str) -> NoiseSpec:

    try:
        noise_params(family, epsilon, int(sensitivity), PARTIES_FOR_GUARANTEE, delta=delta)
    except ValueError as exc:
        raise PolicyViolation(f"{what}: cannot calibrate the DP noise: {exc}") from None
    return NoiseSpec(column, family, epsilon, delta, int(sensitivity))


def _divisor(enc: Encoding) -> int:
    if enc.kind == "decimal":
        return 10**enc.scale
    if enc.kind == "fixed":
        return 1 << enc.scale
    return 1


def output_columns(items: list[exp.Expression], output, key: Callable[[exp.Expression], str]
                   ) -> tuple[tuple[str, bool, tuple[str, ...]], ...]:
    """Per select item: its name, whether it is an aggregate itself, and the keys of the aggregates in it."""
    out = []
    for item, (name, _) in zip(items, output):
        keys = []
        for node in item.find_all(exp.AggFunc):
            k = key(node)
            if k not in keys:
                keys.append(k)
        out.append((name, isinstance(item.unalias(), exp.AggFunc), tuple(keys)))
    return tuple(out)


# -- reporting -------------------------------------------------------------------


def _interval(spec: NoiseSpec) -> tuple[float, int]:

    std = noise_scale(spec.family, spec.epsilon, spec.sensitivity, PARTIES_FOR_GUARANTEE, delta=spec.delta)
    _, k = confidence_interval_95(spec.family, spec.epsilon, spec.sensitivity, PARTIES_FOR_GUARANTEE,
                                  delta=spec.delta)
    return std, k


def _parts(o: DPOutput) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Names and divisors (scaled units per output unit) of an output's noisy parts."""
    if o.func == "avg":
        return ("sum", "count"), (o.divisor, 1)
    if o.func in SPREAD:
        return ("centred sum", "sum of squares", "count"), (o.divisor, o.divisor, 1)
    return (o.func,), (o.divisor,)


def _describe(o: DPOutput) -> str:
    parts = []
    for spec, what, div in zip(o.noise, *_parts(o)):
        std, k = _interval(spec)
        parts.append(f"{what} epsilon {spec.epsilon:.4g}, noise std {std / div:.4g}, 95% interval ±{k / div:.4g}")
    return "; ".join(parts)


RATIO_NOTE = ("its own 95% interval is per row (confidence_interval_95 in the column metadata; each part's "
              "interval at 1 - 0.05/parts, so all hold together with probability >= 95%)")

# -- per-row intervals of ratios (AVG, VAR, STDDEV) -----------------------------

INTERVAL_PREFIX = "__dp_ci"
"""Extra trailing columns of the issuer's final query: the noisy parts of each direct AVG/VAR/STDDEV
output column, per row, so the issuer can bound the ratio (post-processing of what it already holds)."""


def _ratio_columns(info: DPInfo) -> list[tuple[int, DPOutput]]:
    """(output column index, its output) for every output column that is directly an AVG/VAR/STDDEV."""
    by_key = {o.key: o for o in info.outputs}
    out = []
    for i, (_name, direct, keys) in enumerate(info.columns):
        if direct and keys and keys[0] in by_key and (by_key[keys[0]].func == "avg" or by_key[keys[0]].func in SPREAD):
            out.append((i, by_key[keys[0]]))
    return out


def interval_items(req: DPRequest) -> list[str]:
    """SQL items appended to the issuer's final SELECT: `__dp_ci<i>_sum`, `_sq`, `_cnt` (the revealed
    noisy parts of output column i, aligned with its rows through HAVING/ORDER BY/LIMIT)."""
    names = {a.key: f"__{a.name}" for a in req.aggs.values()}
    items = []
    for i, o in _ratio_columns(req.info):
        a = names[o.key]
        parts = ("sum", "sq", "cnt") if o.func in SPREAD else ("sum", "cnt")
        items += [f'"{a}_{p}" AS "{INTERVAL_PREFIX}{i}_{p}"' for p in parts]
    return items


def _halfwidths(o: DPOutput) -> tuple[float, ...]:
    """Half-width of each noisy part's interval at level 1 − 0.05/parts (output units): by the union
    bound all parts are within theirs together with probability ≥ 95%."""

    level = 1 - 0.05 / len(o.noise)
    out = []
    for spec, div in zip(o.noise, _parts(o)[1]):
        _, k = confidence_interval(level, spec.family, spec.epsilon, spec.sensitivity, PARTIES_FOR_GUARANTEE,
                                   delta=spec.delta)
        out.append(k / div)
    return tuple(out)


def ratio_interval(o: DPOutput, parts: dict[str, float | None], halfwidths: tuple[float, ...]
                   ) -> tuple[float, float] | None:
    """95% interval of the un-noised AVG/VAR/STDDEV of one row from its noisy parts: the exact range of
    the ratio over the box of part values each within its interval (`_halfwidths`), intersected with
    the range the clamped values allow. None when the box holds no non-empty group (too few rows)."""
    lo_b, hi_b = float(o.bounds[0]), float(o.bounds[1])
    if any(v is None for v in parts.values()):
        return None
    s, n = float(parts["sum"]), float(parts["cnt"])
    a, b = halfwidths[0], halfwidths[-1]
    least = 1.0 if o.func in ("avg", "var_pop", "stddev_pop") else 2.0
    n_lo, n_hi = max(n - b, least), n + b
    if n_hi < n_lo:
        return None
    s_lo, s_hi = s - a, s + a
    if o.func == "avg":
        lo = min(s_lo / n_lo, s_lo / n_hi)
        hi = max(s_hi / n_lo, s_hi / n_hi)
        return max(lo, lo_b), min(hi, hi_b)
    q = float(parts["sq"])
    q_lo, q_hi = max(q - halfwidths[1], 0.0), q + halfwidths[1] + n_hi / o.divisor  # + the squares' floor
    m_small = 0.0 if s_lo <= 0 <= s_hi else min(abs(s_lo), abs(s_hi)) / n_hi
    m_big = max(abs(s_lo), abs(s_hi)) / n_lo
    var_lo, var_hi = max(q_lo / n_hi - m_big ** 2, 0.0), max(q_hi / n_lo - m_small ** 2, 0.0)
    widest = ((hi_b - lo_b) / 2) ** 2
    if o.func.endswith("_samp"):
        var_lo, var_hi, widest = var_lo * n_hi / (n_hi - 1), var_hi * n_lo / (n_lo - 1), widest * n_lo / (n_lo - 1)
    var_lo, var_hi = min(var_lo, widest), min(var_hi, widest)
    if o.func.startswith("stddev"):
        return math.sqrt(var_lo), math.sqrt(var_hi)
    return var_lo, var_hi


def row_intervals(info: DPInfo | None, extras: dict[str, list]) -> dict[int, list[tuple[float, float] | None]]:
    """Output column index → per-row 95% interval, from the `interval_items` columns of the result."""
    if info is None:
        return {}
    out = {}
    for i, o in _ratio_columns(info):
        cols = {p: extras.get(f"{INTERVAL_PREFIX}{i}_{p}") for p in ("sum", "sq", "cnt")}
        if cols["sum"] is None or cols["cnt"] is None:
            continue
        widths = _halfwidths(o)
        rows = len(cols["sum"])
        out[i] = [ratio_interval(o, {p: c[r] for p, c in cols.items() if c is not None}, widths)
                  for r in range(rows)]
    return out


def column_notes(info: DPInfo | None) -> dict[str, str]:
    """Result column → note on its privacy (ε spent, noise std, 95% interval, in output units)."""
    if info is None:
        return {}
    by_key = {o.key: o for o in info.outputs}
    groups = dict(info.groups)
    sel = info.selection
    notes = {}
    for name, direct, keys in info.columns:
        used = [by_key[k] for k in keys if k in by_key]
        if not used:
            if name in groups:
                notes[name] = "group label from the owners' declared public groups (every declared group is output)"
            elif sel is not None and not direct:
                notes[name] = (f"group label released by private partition selection: only groups whose noisy "
                               f"count reached {sel.threshold} are output (delta {sel.delta:g})")
            continue
        if not direct:
            note = "DP: computed from noisy " + "; ".join(f"{o.key} ({_describe(o)})" for o in used)
        elif used[0].func in ("count", "sum"):
            o = used[0]
            note = f"DP noisy {o.func}: {_describe(o)}"
            if o.func == "sum":
                note += f"; values clamped to [{o.bounds[0]}, {o.bounds[1]}]"
        elif used[0].func in SPREAD:
            o = used[0]
            note = (f"DP: {'standard deviation' if o.func.startswith('stddev') else 'variance'} from a noisy "
                    f"centred sum, sum of squares and count (values clamped to [{o.bounds[0]}, {o.bounds[1]}], "
                    f"result clamped to the largest possible), NULL when the noisy count is <= "
                    f"{0 if o.func.endswith('_pop') else 1}; {RATIO_NOTE}: {_describe(o)}")
        else:
            o = used[0]
            note = (f"DP: noisy sum / noisy count, clamped to [{o.bounds[0]}, {o.bounds[1]}], NULL when the noisy "
                    f"count is <= 0; {RATIO_NOTE}: {_describe(o)}")
        notes[name] = note + f" (query epsilon {info.epsilon:g}, {info.family})"
    return notes


def explain_lines(info: DPInfo | None) -> list[str]:
    """EXPLAIN section: ε, δ, charges, noise per noisy column."""
    if info is None:
        return []
    lines = [
        f"differential privacy: epsilon {info.epsilon:g}, delta {info.delta:g} for the whole query, "
        f"{info.family} noise added inside the MPC (each compute party inputs one part; any two parts give "
        "the guarantee)"
    ]
    if info.charges:
        lines.append("  charged before any share is used, by each owner's ledger: "
                     + ", ".join(f"{c.party}.{c.table} epsilon {c.epsilon:g}" for c in info.charges))
    for c, values in info.groups:
        lines.append(f"  groups of {c}: exactly the declared public values ({len(values)}), every owner sends all")
    sel = info.selection
    if sel is not None:
        spec = sel.count
        which = "a hidden noisy COUNT(*)" if sel.hidden else "the noisy COUNT(*)"
        std, _ = _interval(spec)
        lines.append(
            f"  partition selection over secret keys ({', '.join(sel.keys)}): a group is released only when "
            f"{which} (epsilon {spec.epsilon:.4g}, noise std {std:.4g}) is >= tau = {sel.threshold}, "
            f"compared under MPC; tau from epsilon, delta {sel.delta:g}, max_rows {spec.sensitivity}: "
            f"{sel.derived}" + (", raised by the owners' declared threshold" if sel.threshold > sel.derived else ""))

        sure = count_released_95(sel.threshold, spec.family, spec.epsilon, spec.sensitivity, PARTIES_FOR_GUARANTEE,
                                 delta=spec.delta)
        lines.append(f"  a group with a count of {sure} or more is released with probability >= 95%; a group "
                     f"made by one unit (count <= {spec.sensitivity}) with probability <= {sel.delta:g} in all")
        lines.append("  revealed: only the number of released groups (to the compute parties) and the released "
                     "groups' keys with noisy values (to the issuer); groups below tau are never opened")
    for o in info.outputs:
        sens = ", ".join(f"sensitivity {s.sensitivity}" for s in o.noise)
        clamp = f", clamped to [{o.bounds[0]}, {o.bounds[1]}]" if o.func in ("sum", "avg") + SPREAD else ""
        lines.append(f"  {o.key}: {_describe(o)} ({sens} scaled units{clamp})")
    return lines


def leakage_lines(info: DPInfo, issuer: str, owners: str) -> tuple[str, ...]:
    out = []
    if info.outputs:
        out.append(f"to {issuer} only: noisy aggregates (epsilon {info.epsilon:g} in all, {info.family} noise "
                   "added under MPC); nobody, the issuer included, sees an un-noised value")
        out.append(f"to {issuer}: nothing exact about {owners}: no NULL bit of a SUM and no exact count of an AVG")
    if info.groups:
        out.append(f"to the compute parties: the declared group values only; each of {owners} shares one partial "
                   "row per declared group, empty or not")
    sel = info.selection
    if sel is not None:
        out.append(f"to the compute parties: each of {owners} shares every row of its table (its public size), "
                   "with a secret 0/1 flag for the rows that pass WHERE and contribution bounding; keys stay secret")
        out.append(f"to the compute parties and {issuer}: the number of groups released by private partition "
                   f"selection (noisy count >= {sel.threshold}, (epsilon, delta {sel.delta:g})-DP); nothing about "
                   "the groups below the threshold, not even how many there are")
        out.append(f"to {issuer} only: the released groups' key values (secret GROUP BY keys, opened after the "
                   "selection)")
    return tuple(out)


def reduce_noise_columns(req: DPRequest) -> tuple[NoiseSpec, ...]:
    return tuple(reduce(lambda acc, a: acc + a.noise, req.aggs.values(), ()))
