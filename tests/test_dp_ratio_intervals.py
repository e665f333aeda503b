"""Issue #15, item 8: the per-row 95% interval of a noisy AVG / VAR / STDDEV (planner/passes/dp.py
`ratio_interval`) covers the un-noised value at least 95% of the time, also for small groups
where a delta-method interval would not."""

from __future__ import annotations

import numpy as np

from executors.dp import sample_party_noise
from planner.passes.dp import _halfwidths, ratio_interval
from plan.physical import DPOutput, NoiseSpec

TRIALS = 2000


def _noise(spec: NoiseSpec) -> np.ndarray:
    return sum(sample_party_noise(spec.family, spec.epsilon, spec.sensitivity, TRIALS) for _ in range(3))


def _coverage(func: str, values: np.ndarray, eps: float) -> float:
    lo, hi, div = 0, 100, 1
    specs = [NoiseSpec("s", "laplace", eps, 0.0, hi)]
    if func != "avg":
        specs.append(NoiseSpec("q", "laplace", eps, 0.0, (hi // 2) ** 2))
    specs.append(NoiseSpec("n", "laplace", eps, 0.0, 1))
    o = DPOutput("X", func, tuple(specs), div, (str(lo), str(hi)))
    widths = _halfwidths(o)
    centre = (lo + hi) // 2
    c = values - centre
    exact = {"sum": c.sum(), "sq": (c * c).sum(), "cnt": len(values)}
    truth = {"avg": values.mean(), "var_pop": values.var(), "stddev_samp": values.std(ddof=1)}[func]
    noisy_sum = values.sum() if func == "avg" else exact["sum"]
    draws = [_noise(spec) for spec in specs]
    hits = 0
    for t in range(TRIALS):
        parts = {"sum": noisy_sum + draws[0][t], "cnt": exact["cnt"] + draws[-1][t]}
        if func != "avg":
            parts["sq"] = exact["sq"] + draws[1][t]
        interval = ratio_interval(o, parts, widths)
        hits += interval is None or interval[0] - 1e-9 <= truth <= interval[1] + 1e-9
    return hits / TRIALS


def test_intervals_cover_the_true_ratio_for_small_groups() -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 101, 30).astype(np.int64)
    for func in ("avg", "var_pop", "stddev_samp"):
        assert _coverage(func, values, 0.5) >= 0.95, func


def test_avg_interval_is_narrow_for_large_groups() -> None:
    o = DPOutput("X", "avg", (NoiseSpec("s", "laplace", 0.33, 0.0, 2000), NoiseSpec("n", "laplace", 0.33, 0.0, 1)),
                 1, ("0", "2000"))
    lo, hi = ratio_interval(o, {"sum": 2000 * 500.0, "cnt": 2000.0}, _halfwidths(o))
    assert lo < 500 < hi and (hi - lo) / 500 < 0.1
