"""Calibration of fedsql's distributed DP noise: pure arithmetic, no randomness.

The planner uses it to decide noise scales, intervals and partition thresholds; the compute
parties use the same parameters to sample (executors/dp/noise.py, which documents the
mechanisms). One module, so both sides calibrate identically and the planner needs nothing
from the executors (issue #18: layers point one way).

``sensitivity`` is an integer in the *scaled* domain (fixed-point / decimal scaled integers);
variances, scales and intervals are in the same scaled units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FAMILIES = ("laplace", "skellam")
N_PARTIES = 3
PARTIES_FOR_GUARANTEE = 2
"""Any two of the three compute parties' noise parts already give the full guarantee (docs/dp.md §2):
the planner calibrates with it, the compute parties sample with it."""

MAX_STD = float(2**48)
"""Largest standard deviation of the central noise we agree to sample (in
scaled units). Beyond it the noise would crowd the 2^61 range the MPC
comparison protocols need; the caller should use fewer fixed-point bits or a
larger ε."""




@dataclass(frozen=True)
class NoiseParams:
    """Everything about one noisy output, derived deterministically.

    ``c`` (laplace) is p/(1−p) with p = exp(−ε/Δ) rounded up; each party's
    part is ``NB(part_shape, p) − NB(part_shape, p)``. ``mu`` (skellam) is the
    per-side Poisson mean of the *central* noise ``Pois(μ) − Pois(μ)``; each
    party's part is ``Pois(μ/t) − Pois(μ/t)``. Variances are in scaled units.
    """

    family: str
    epsilon: float
    delta: float
    sensitivity: int
    parties_for_guarantee: int
    n_parties: int
    p: float  # laplace: geometric ratio (0 for skellam)
    c: float  # laplace: p/(1-p) (0 for skellam)
    mu: float  # skellam: central per-side Poisson mean (0 for laplace)
    part_shape: float  # laplace: NB shape per party (1/t); skellam: Poisson mean per side per party
    central_variance: float  # variance of the sum of t parts (= the central mechanism)
    variance: float  # variance of the sum of all n_parties parts (what the result carries)

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    @property
    def overhead(self) -> float:
        """variance / central variance (n_parties / parties_for_guarantee)."""
        return self.variance / self.central_variance


def _check_common(family: str, epsilon: float, sensitivity: int, delta: float,
                  parties_for_guarantee: int, n_parties: int) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown noise family {family!r}; use one of {FAMILIES}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if isinstance(sensitivity, bool) or not isinstance(sensitivity, (int, np.integer)) or sensitivity < 1:
        raise ValueError(f"sensitivity must be an integer >= 1 in the scaled domain, got {sensitivity!r}")
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta!r}")
    if not isinstance(n_parties, int) or n_parties < 1:
        raise ValueError(f"n_parties must be a positive integer, got {n_parties!r}")
    if not isinstance(parties_for_guarantee, int) or not 1 <= parties_for_guarantee <= n_parties:
        raise ValueError(f"parties_for_guarantee must be an integer in 1..{n_parties}, got {parties_for_guarantee!r}")


def skellam_rdp(alpha: float, mu: float, sensitivity: int) -> float:
    """Rényi-DP ε(α) of Pois(μ)−Pois(μ) noise for an integer shift ≤ Δ
    (Agarwal, Kairouz, Liu 2021, Thm. 3.5, scalar case Δ1 = Δ2 = Δ)."""
    d = float(sensitivity)
    return alpha * d * d / (4.0 * mu) + min(((2.0 * alpha - 1.0) * d * d + 6.0 * d) / (16.0 * mu * mu),
                                            3.0 * d / (4.0 * mu))


_ALPHAS = tuple(range(2, 65)) + tuple(int(round(64 * 1.1**i)) for i in range(1, 80))


def skellam_epsilon(mu: float, sensitivity: int, delta: float) -> float:
    """(ε, δ)-DP of the central Skellam noise Pois(μ)−Pois(μ): RDP → DP with
    ε = ε(α) + log(1 − 1/α) − (log δ + log α)/(α − 1) (Canonne–Kamath–Steinke
    2020, Prop. 12 / Asoodeh et al.), minimised over integer α ≥ 2."""
    best = math.inf
    for a in _ALPHAS:
        e = skellam_rdp(a, mu, sensitivity) + math.log1p(-1.0 / a) - (math.log(delta) + math.log(a)) / (a - 1)
        best = min(best, e)
    return max(best, 0.0)


def _calibrate_skellam(epsilon: float, sensitivity: int, delta: float) -> float:
    """Smallest μ (to 1e-9 relative, rounded up) with skellam_epsilon ≤ ε."""
    lo, hi = 1e-6, float(sensitivity) ** 2
    while skellam_epsilon(hi, sensitivity, delta) > epsilon:
        lo, hi = hi, hi * 4.0
        if hi > 1e40:
            raise ValueError("cannot calibrate Skellam noise for these parameters")
    for _ in range(200):
        if hi / lo - 1.0 < 1e-10:
            break
        mid = math.sqrt(lo * hi)
        if skellam_epsilon(mid, sensitivity, delta) > epsilon:
            lo = mid
        else:
            hi = mid
    return hi


def noise_params(family: str, epsilon: float, sensitivity: int, parties_for_guarantee: int = 2, *,
                 delta: float = 0.0, n_parties: int = N_PARTIES) -> NoiseParams:
    """Calibrate the distributed noise (deterministic: every party gets the same).

    Raises ValueError for unusable parameters (the planner should turn that
    into a user-facing error before any share is used)."""
    _check_common(family, epsilon, sensitivity, delta, parties_for_guarantee, n_parties)
    # validated first: the cache would otherwise treat True like 1
    return _noise_params(family, float(epsilon), int(sensitivity), int(parties_for_guarantee),
                         float(delta), int(n_parties))


@lru_cache(maxsize=4096)
def _noise_params(family: str, epsilon: float, sensitivity: int, t: int, delta: float,
                  n_parties: int) -> NoiseParams:
    if family == "laplace":
        # ε/Δ beyond 700 would overflow expm1 (SET fedsql.epsilon = 1e7 crashed the planner):
        # calibrating for 700 instead adds more noise than asked, so the guarantee still holds
        x = min(epsilon / sensitivity, 700.0)
        # c = p/(1-p) = 1/expm1(ε/Δ); rounded up by a few ulps → p rounded up → effective ε ≤ stated.
        c = (1.0 / math.expm1(x)) * (1.0 + 8.0 * 2.0**-53)
        p = c / (1.0 + c)
        central = 2.0 * c * (1.0 + c)  # 2p/(1-p)^2
        params = NoiseParams(family, epsilon, delta, sensitivity, t, n_parties, p, c, 0.0, 1.0 / t,
                             central, central * n_parties / t)
    else:
        if delta <= 0:
            raise ValueError("the skellam family gives (ε, δ)-DP and needs delta > 0")
        mu = _calibrate_skellam(epsilon, sensitivity, delta)
        central = 2.0 * mu
        params = NoiseParams(family, epsilon, delta, sensitivity, t, n_parties, 0.0, 0.0, mu, mu / t,
                             central, central * n_parties / t)
    if math.sqrt(params.central_variance) > MAX_STD:
        raise ValueError(
            f"noise standard deviation {math.sqrt(params.central_variance):.3g} exceeds 2^48 scaled units "
            f"(sensitivity {sensitivity}, epsilon {epsilon}); use fewer fixed-point bits, tighter bounds or a larger epsilon"
        )
    return params



def noise_variance(family: str, epsilon: float, sensitivity: int, parties_for_guarantee: int = 2, *,
                   delta: float = 0.0, n_parties: int = N_PARTIES) -> float:
    """Variance of the sum of all `n_parties` parts (scaled units)."""
    return noise_params(family, epsilon, sensitivity, parties_for_guarantee, delta=delta, n_parties=n_parties).variance


def central_variance(family: str, epsilon: float, sensitivity: int, *, delta: float = 0.0) -> float:
    """Variance of the central mechanism (what a trusted curator would add)."""
    return noise_params(family, epsilon, sensitivity, 1, delta=delta, n_parties=1).variance


def noise_scale(family: str, epsilon: float, sensitivity: int, parties_for_guarantee: int = 2, *,
                delta: float = 0.0, n_parties: int = N_PARTIES) -> float:
    """Standard deviation of the sum of all `n_parties` parts (scaled units)."""
    return math.sqrt(noise_variance(family, epsilon, sensitivity, parties_for_guarantee, delta=delta,
                                    n_parties=n_parties))


def _prob_abs_le(prm: NoiseParams, k: int, parts: int | None = None) -> float:
    """P(|S| ≤ k) for S the sum of `parts` (default all) parties' parts.

    Exact up to quadrature error (≈1e-12): for an integer variable with real,
    symmetric characteristic function φ,
    P(|S| ≤ k) = (1/π) ∫_0^π φ(t) · sin((k+½)t) / sin(t/2) dt.
    laplace: φ(t) = (1 + 4c(1+c)·sin²(t/2))^(−R), R = parts/t (NB(R)−NB(R));
    skellam: φ(t) = exp(−4m·sin²(t/2)), m = parts·μ/t (Pois(m)−Pois(m)).
    """
    import warnings

    from scipy.integrate import IntegrationWarning

    with warnings.catch_warnings():
        # the 1e-14 absolute target is sometimes a hair beyond double precision; the
        # result is still good to ~1e-13, far inside the margin callers use
        warnings.simplefilter("ignore", IntegrationWarning)
        return _prob_abs_le_quad(prm, k, parts)


def _prob_abs_le_quad(prm: NoiseParams, k: int, parts: int | None) -> float:
    from scipy.integrate import quad

    parts = prm.n_parties if parts is None else parts
    if k < 0:
        return 0.0
    w = k + 0.5
    if prm.family == "laplace":
        big_a = 4.0 * prm.c * (1.0 + prm.c)
        r = parts * prm.part_shape

        def phi(t):
            return (1.0 + big_a * math.sin(0.5 * t) ** 2) ** (-r)
        width = 2.0 / math.sqrt(big_a)
    else:
        m = parts * prm.part_shape

        def phi(t):
            return math.exp(-4.0 * m * math.sin(0.5 * t) ** 2)
        width = 1.0 / math.sqrt(m)

    def kernel(t):
        if t < 1e-300:
            return 2.0 * w
        return math.sin(w * t) / math.sin(0.5 * t)

    t1 = min(math.pi, 80.0 * width)
    # bulk: a smooth integrand with O(k·width) ≈ a few dozen oscillations
    n_osc = max(1, int(w * t1 / math.pi))
    pts = np.linspace(0.0, t1, min(n_osc, 400) + 1)
    total = 0.0
    for lo, hi in zip(pts[:-1], pts[1:]):
        val, _ = quad(lambda t: phi(t) * kernel(t), lo, hi, epsabs=1e-14, epsrel=1e-12, limit=200)
        total += val
    if t1 < math.pi:
        # tail: φ/sin(t/2) is smooth away from 0; QAWO handles the fast oscillation sin(w t)
        val, _ = quad(lambda t: phi(t) / math.sin(0.5 * t), t1, math.pi, weight="sin", wvar=w,
                      epsabs=1e-14, limit=400)
        total += val
    return min(1.0, max(0.0, total / math.pi))


def confidence_interval(level: float, family: str, epsilon: float, sensitivity: int, parties_for_guarantee: int = 2,
                        *, delta: float = 0.0, n_parties: int = N_PARTIES) -> tuple[int, int]:
    """Smallest symmetric integer interval (−k, k) with P(|noise| ≤ k) ≥ level
    for the sum of all `n_parties` parts (exact quantile, see `_prob_abs_le`).

    A safety margin of min(1e-9, (1 − level)/100) on the probability absorbs
    quadrature error, so the true coverage is ≥ `level`.
    """
    if not 0 < level < 1:
        raise ValueError("level must be in (0, 1)")
    prm = noise_params(family, epsilon, sensitivity, parties_for_guarantee, delta=delta, n_parties=n_parties)
    return _interval(float(level), prm)


@lru_cache(maxsize=4096)
def _interval(level: float, prm: NoiseParams) -> tuple[int, int]:
    target = level + min(1e-9, (1.0 - level) / 100.0)
    if _prob_abs_le(prm, 0) >= target:
        return (0, 0)
    # Chebyshev: P(|S| > k) ≤ var/k² ⇒ k = ceil(std/sqrt(1−level)) + 1 is enough.
    hi = int(math.ceil(prm.std / math.sqrt(1.0 - level))) + 1
    z = 1.96 if level == 0.95 else 2.0
    guess = max(1, int(prm.std * z))
    lo = 0
    # tighten the bracket around the normal-approximation guess
    step = max(1, int(0.02 * prm.std))
    g_lo, g_hi = max(1, guess - step), min(hi, guess + step)
    if _prob_abs_le(prm, g_hi) >= target:
        hi = g_hi
        if _prob_abs_le(prm, g_lo) < target:
            lo = g_lo
    else:
        lo = g_hi
    while hi - lo > 1:  # invariant: P(lo) < target ≤ P(hi)
        mid = (lo + hi) // 2
        if _prob_abs_le(prm, mid) >= target:
            hi = mid
        else:
            lo = mid
    return (-hi, hi)


def confidence_interval_95(family: str, epsilon: float, sensitivity: int, parties_for_guarantee: int = 2, *,
                           delta: float = 0.0, n_parties: int = N_PARTIES) -> tuple[int, int]:
    """95% interval (−k, k) of the noise the result carries (sum of all parts):
    the revealed value lies within [true + (−k), true + k] with probability ≥ 0.95."""
    return confidence_interval(0.95, family, epsilon, sensitivity, parties_for_guarantee, delta=delta,
                               n_parties=n_parties)


def interval_coverage(family: str, epsilon: float, sensitivity: int, k: int, parties_for_guarantee: int = 2, *,
                      delta: float = 0.0, n_parties: int = N_PARTIES, parts: int | None = None) -> float:
    """P(|S| ≤ k) for the sum S of `parts` parts (default all `n_parties`)."""
    prm = noise_params(family, epsilon, sensitivity, parties_for_guarantee, delta=delta, n_parties=n_parties)
    return _prob_abs_le(prm, int(k), parts)


def partition_threshold(family: str, epsilon: float, sensitivity: int, delta: float, parties_for_guarantee: int = 2,
                        *, mechanism_delta: float = 0.0, n_parties: int = N_PARTIES) -> int:
    """Threshold τ for private partition selection over secret GROUP BY keys.

    A group is released only when its noisy count (noise: the sum of all
    parts, calibrated by (epsilon, sensitivity)) is ≥ τ. A group that exists
    only because of one privacy unit has count ≤ Δ (= `sensitivity`, i.e.
    max_rows in count units), so it appears with probability
    P(S ≥ τ − Δ) ≤ `delta`. By symmetry P(S ≥ k + 1) = (1 − P(|S| ≤ k))/2,
    hence τ = Δ + k + 1 with k the (1 − 2δ) symmetric quantile. Pass
    δ/max_rows per group when a unit can create up to max_rows groups.
    `mechanism_delta` is the δ of a Skellam count mechanism (0 for laplace).
    """
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 < delta < 0.5:
        raise ValueError(f"partition selection needs 0 < delta < 0.5, got {delta!r}")
    _, k = confidence_interval(1.0 - 2.0 * delta, family, epsilon, sensitivity, parties_for_guarantee,
                               delta=mechanism_delta, n_parties=n_parties)
    return int(sensitivity) + k + 1


def release_probability(count: int, threshold: int, family: str, epsilon: float, sensitivity: int,
                        parties_for_guarantee: int = 2, *, delta: float = 0.0, n_parties: int = N_PARTIES) -> float:
    """P(count + S >= threshold) for S the sum of all parts: how likely partition selection
    releases a group of true count `count` (exact, via the symmetric interval mass)."""
    k = int(threshold) - int(count)  # released iff S >= k
    if k <= 0:  # P(S >= k) = 1 - P(S <= k - 1) = 1 - P(S >= 1 - k) by symmetry
        return 1.0 - release_probability(0, 1 - k, family, epsilon, sensitivity, parties_for_guarantee,
                                         delta=delta, n_parties=n_parties)
    inside = interval_coverage(family, epsilon, sensitivity, k - 1, parties_for_guarantee, delta=delta,
                               n_parties=n_parties)
    return max(0.0, (1.0 - inside) / 2.0)


def count_released_95(threshold: int, family: str, epsilon: float, sensitivity: int, parties_for_guarantee: int = 2,
                      *, delta: float = 0.0, n_parties: int = N_PARTIES) -> int:
    """Smallest true count released with probability >= 0.95 at this threshold: τ + k with
    P(S < −k) <= 0.05, i.e. k the symmetric 90% quantile."""
    _, k = confidence_interval(0.90, family, epsilon, sensitivity, parties_for_guarantee, delta=delta,
                               n_parties=n_parties)
    return int(threshold) + k
