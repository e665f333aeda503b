"""Per-table differential-privacy policy: ``[parties.P.tables.T.dp]``.

Declared by the table's owner; see docs/dp.md for what each key means::

    [parties.h1.tables.patients.dp]
    unit = "patient_id"          # privacy unit column, or "row"
    max_rows = 1                 # rows per unit kept (contribution bounding)
    bounds = { age = [0, 120], cost = [0, 100000] }
    epsilon = 5.0                # total budget per issuing party
    max_epsilon_per_query = 1.0
    delta = 0.0                  # total δ per issuing party (default 0)
    mechanism = "laplace"        # or "skellam" (needs delta > 0)
    public_groups = { region = ["north", "south"] }
    threshold = 20               # partition selection for secret GROUP BY keys

`parse_dp_policy` is pure: it validates the raw TOML table and returns a
frozen `DPPolicy`, or raises ConfigError naming the file, the key and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsql.errors import ConfigError

MECHANISMS = ("laplace", "skellam")
"""laplace: distributed discrete Laplace, pure ε-DP. skellam: distributed Skellam, (ε, δ)-DP."""

KNOWN_KEYS = (
    "unit", "max_rows", "bounds", "epsilon", "max_epsilon_per_query", "delta", "max_delta_per_query",
    "mechanism", "public_groups", "threshold", "max_joined_rows",
)

MAX_GROUPS = 100_000


@dataclass(frozen=True)
class DPPolicy:
    """A table's DP policy (immutable; dicts are never mutated after parsing).

    `bounds` maps column → (lo, hi) with lo < hi, as int when both were
    written as integers (exact for DECIMAL/INTEGER columns), else float.
    `unit` is a column name or ``"row"``; `max_rows` is 1 for row privacy.
    `threshold` is None when the owner declared none (the planner then
    derives one from ε and δ, or refuses secret GROUP BY keys when δ = 0).
    """

    unit: str
    max_rows: int
    bounds: dict[str, tuple[int | float, int | float]]
    epsilon: float
    max_epsilon_per_query: float
    delta: float = 0.0
    max_delta_per_query: float = 0.0
    mechanism: str = "laplace"
    public_groups: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    threshold: float | None = None
    max_joined_rows: int = 0  # joined rows per unit after a join that repeats its rows (0 = max_rows)

    @property
    def joined_rows(self) -> int:
        """The bound on a unit's joined rows when DP bounds contribution after a join (docs/dp.md §5.5)."""
        return self.max_joined_rows or self.max_rows

    @property
    def row_level(self) -> bool:
        """True for row privacy (each row is its own unit)."""
        return self.unit == "row"

    def bound(self, column: str) -> tuple[int | float, int | float] | None:
        return self.bounds.get(column)

    def canonical(self) -> dict[str, Any]:
        """A plain, sorted, JSON-friendly form (for plan hashing and EXPLAIN)."""
        return {
            "unit": self.unit,
            "max_rows": self.max_rows,
            "max_joined_rows": self.joined_rows,
            "bounds": {k: list(v) for k, v in sorted(self.bounds.items())},
            "epsilon": self.epsilon,
            "max_epsilon_per_query": self.max_epsilon_per_query,
            "delta": self.delta,
            "max_delta_per_query": self.max_delta_per_query,
            "mechanism": self.mechanism,
            "public_groups": {k: list(v) for k, v in sorted(self.public_groups.items())},
            "threshold": self.threshold,
        }


def _err(path: Path | str, where: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {problem}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(path, where: str, v: Any, example: str) -> float:
    if not _is_number(v) or v <= 0:
        raise _err(path, where, f"expected a number > 0, got {v!r}; e.g. {example}")
    return float(v)


def _probability(path, where: str, v: Any) -> float:
    if not _is_number(v) or not 0 <= v < 1:
        raise _err(path, where, f"expected a number in [0, 1), got {v!r}; e.g. 1e-6 (or 0 for pure ε-DP)")
    return float(v)


def _ident(path, where: str, v: Any, what: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _err(path, where, f"expected {what} as a non-empty string, got {v!r}")
    return v


def parse_dp_policy(raw: Any, where: str, path: Path | str) -> DPPolicy:
    """Validate ``[parties.P.tables.T.dp]``; `where` is its dotted key
    (e.g. ``"parties.h1.tables.patients.dp"``), `path` the config file."""
    if not isinstance(raw, dict):
        raise _err(path, where, f"expected a table of DP settings, got {type(raw).__name__} {raw!r}; "
                                 f'e.g. dp = {{ unit = "row", epsilon = 1.0 }}')
    unknown = sorted(set(raw) - set(KNOWN_KEYS))
    if unknown:
        raise _err(path, where, f"unknown key(s) {unknown}; known keys: {sorted(KNOWN_KEYS)}")

    # unit and max_rows -------------------------------------------------------------
    if "unit" not in raw:
        raise _err(path, where, 'missing "unit": the privacy-unit column (e.g. unit = "patient_id") or unit = "row"')
    unit = _ident(path, f"{where}.unit", raw["unit"], 'a column name or "row"')
    if unit == "row":
        max_rows = raw.get("max_rows", 1)
        if max_rows != 1 or isinstance(max_rows, bool):
            raise _err(path, f"{where}.max_rows", f'must be 1 (or absent) with unit = "row", got {max_rows!r}')
    else:
        if "max_rows" not in raw:
            raise _err(path, where, f'missing "max_rows": how many rows one {unit} may contribute '
                                     "(an integer >= 1; extra rows are dropped before aggregation)")
        max_rows = raw["max_rows"]
        if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1:
            raise _err(path, f"{where}.max_rows", f"expected an integer >= 1, got {max_rows!r}")

    max_joined_rows = raw.get("max_joined_rows", 0)  # 0: max_rows (DPPolicy.joined_rows)
    if "max_joined_rows" in raw and (not isinstance(max_joined_rows, int) or isinstance(max_joined_rows, bool)
                                     or max_joined_rows < 1):
        raise _err(path, f"{where}.max_joined_rows", f"expected an integer >= 1 (joined rows one unit may "
                                                      f"contribute after a 1:N join), got {max_joined_rows!r}")

    # bounds ------------------------------------------------------------------------
    bounds_raw = raw.get("bounds", {})
    if not isinstance(bounds_raw, dict):
        raise _err(path, f"{where}.bounds", f"expected a table of column = [lo, hi], got {bounds_raw!r}; "
                                             "e.g. bounds = { age = [0, 120] }")
    bounds: dict[str, tuple[int | float, int | float]] = {}
    for col, pair in bounds_raw.items():
        w = f"{where}.bounds.{col}"
        if not isinstance(pair, list) or len(pair) != 2:
            raise _err(path, w, f"expected [lo, hi], got {pair!r}; e.g. {col} = [0, 100]")
        lo, hi = pair
        if not _is_number(lo) or not _is_number(hi):
            raise _err(path, w, f"bounds must be finite numbers, got {pair!r}")
        if not lo < hi:
            raise _err(path, w, f"expected lo < hi, got [{lo}, {hi}]")
        if col == unit:
            raise _err(path, w, f"{col!r} is the privacy unit; it is a key, not a bounded value")
        bounds[col] = (lo, hi) if isinstance(lo, int) and isinstance(hi, int) else (float(lo), float(hi))

    # budget ------------------------------------------------------------------------
    if "epsilon" not in raw:
        raise _err(path, where, 'missing "epsilon": the total privacy budget each issuing party may spend on this '
                                 "table, e.g. epsilon = 5.0")
    epsilon = _positive(path, f"{where}.epsilon", raw["epsilon"], "epsilon = 5.0")
    per_query = _positive(path, f"{where}.max_epsilon_per_query", raw.get("max_epsilon_per_query", epsilon),
                          "max_epsilon_per_query = 1.0")
    if per_query > epsilon:
        raise _err(path, f"{where}.max_epsilon_per_query",
                   f"{per_query} exceeds the total epsilon = {epsilon}; lower it or raise epsilon")
    delta = _probability(path, f"{where}.delta", raw.get("delta", 0.0))
    delta_per_query = _probability(path, f"{where}.max_delta_per_query", raw.get("max_delta_per_query", delta))
    if delta_per_query > delta:
        raise _err(path, f"{where}.max_delta_per_query", f"{delta_per_query} exceeds the total delta = {delta}")

    mechanism = raw.get("mechanism", "laplace")
    if mechanism not in MECHANISMS:
        raise _err(path, f"{where}.mechanism", f"unknown mechanism {mechanism!r}; use one of {', '.join(MECHANISMS)}")
    if mechanism == "skellam" and delta_per_query <= 0:
        raise _err(path, f"{where}.mechanism",
                   'skellam gives (epsilon, delta)-DP and needs delta > 0 (e.g. delta = 1e-6); '
                   'use mechanism = "laplace" for pure epsilon-DP')

    # groups ------------------------------------------------------------------------
    groups_raw = raw.get("public_groups", {})
    if not isinstance(groups_raw, dict):
        raise _err(path, f"{where}.public_groups", f"expected a table of column = [values...], got {groups_raw!r}; "
                                                    'e.g. public_groups = { region = ["north", "south"] }')
    public_groups: dict[str, tuple[Any, ...]] = {}
    for col, values in groups_raw.items():
        w = f"{where}.public_groups.{col}"
        if not isinstance(values, list) or not values:
            raise _err(path, w, f"expected a non-empty list of the group values that may appear, got {values!r}")
        if len(values) > MAX_GROUPS:
            raise _err(path, w, f"{len(values)} values; at most {MAX_GROUPS}")
        kinds = set()
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (str, int, float)) or (isinstance(v, float) and not math.isfinite(v)):
                raise _err(path, w, f"group values must be strings or numbers, got {v!r}")
            kinds.add(str if isinstance(v, str) else float)
        if len(kinds) > 1:
            raise _err(path, w, "mixes strings and numbers; list values of the column's own type")
        if len(set(values)) != len(values):
            dup = next(v for v in values if values.count(v) > 1)
            raise _err(path, w, f"value {dup!r} is listed twice")
        if col == unit:
            raise _err(path, w, f"{col!r} is the privacy unit; grouping by it would release per-unit values")
        public_groups[col] = tuple(values)

    threshold = raw.get("threshold")
    if threshold is not None:
        threshold = _positive(path, f"{where}.threshold", threshold, "threshold = 20")
        if delta <= 0:
            raise _err(path, f"{where}.threshold",
                       "partition selection (a threshold for secret GROUP BY keys) needs delta > 0 "
                       "(e.g. delta = 1e-6); without delta declare the groups in public_groups")

    return DPPolicy(
        unit=unit,
        max_rows=int(max_rows),
        max_joined_rows=int(max_joined_rows),
        bounds=bounds,
        epsilon=epsilon,
        max_epsilon_per_query=per_query,
        delta=delta,
        max_delta_per_query=delta_per_query,
        mechanism=mechanism,
        public_groups=public_groups,
        threshold=threshold,
    )
