"""Statistical tests of the distributed DP noise sampler (executors/dp/noise.py).

Design against flakiness: the sampler uses the OS CSPRNG and cannot be seeded,
so every statistical check is a hypothesis test at a fixed, small significance
level (ALPHA = 1e-5 per check, ~20 checks: a false alarm about once in 5000
runs) with sample sizes large enough that a wrong distribution (e.g. one
party's part missing, variance off by 1.5x, a wrong NB shape) fails with
overwhelming probability. Exact reference pmfs come from scipy (discrete
Laplace, Skellam, negative binomial convolved numerically).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from executors.dp import noise as N
from executors.dp import (
    central_variance,
    confidence_interval_95,
    interval_coverage,
    noise_params,
    noise_scale,
    noise_variance,
    sample_party_noise,
    skellam_epsilon,
)

ALPHA = 1e-5
RUNS = 20_000  # draws per distribution check (≥ 1000 as required)


# ---------------------------------------------------------------- helpers


def chi2_pvalue(samples: np.ndarray, pmf: dict[int, float] | callable, support: tuple[int, int]) -> float:
    """Chi-square goodness of fit of integer samples against an exact pmf.

    Bins: every integer in the central region whose expected count is ≥ 10,
    plus one bin for each tail (mass computed as 1 − central mass on each side).
    """
    lo, hi = support
    ks = np.arange(lo, hi + 1)
    probs = np.array([pmf(int(k)) for k in ks]) if callable(pmf) else np.array([pmf.get(int(k), 0.0) for k in ks])
    n = samples.size
    keep = probs * n >= 10
    idx = np.nonzero(keep)[0]
    a, b = idx.min(), idx.max()
    centre = ks[a:b + 1]
    p_centre = probs[a:b + 1]
    left_mass = probs[:a].sum()
    right_mass = probs[b + 1:].sum()
    total = probs.sum()
    # any mass outside [lo, hi] (should be negligible) goes to the tails half/half
    left_mass += (1 - total) / 2
    right_mass += (1 - total) / 2
    obs = [np.sum(samples < centre[0])]
    obs += [np.sum(samples == k) for k in centre]
    obs += [np.sum(samples > centre[-1])]
    exp = np.concatenate(([left_mass], p_centre, [right_mass])) * n
    obs = np.array(obs, dtype=float)
    # merge tail bins whose expectation is tiny into their neighbour
    if exp[0] < 5:
        exp[1] += exp[0]; obs[1] += obs[0]; exp, obs = exp[1:], obs[1:]
    if exp[-1] < 5:
        exp[-2] += exp[-1]; obs[-2] += obs[-1]; exp, obs = exp[:-1], obs[:-1]
    exp = exp * (obs.sum() / exp.sum())
    return stats.chisquare(obs, exp).pvalue


def moments_ok(samples: np.ndarray, variance: float) -> None:
    """Mean 0 and the stated variance, by z-tests with empirical standard errors."""
    n = samples.size
    x = samples.astype(np.float64)
    z_mean = x.mean() / math.sqrt(variance / n)
    assert abs(z_mean) < 5, f"mean {x.mean()} is {z_mean:.1f} standard errors from 0"
    sq = (x - x.mean()) ** 2
    z_var = (sq.mean() - variance) / (sq.std() / math.sqrt(n))
    assert abs(z_var) < 5, f"variance {sq.mean()} vs stated {variance}: z = {z_var:.1f}"


def nb_pmf(shape: float, p: float, kmax: int) -> np.ndarray:
    """pmf of NB(shape, p) (failures; P(k) ∝ p^k) on 0..kmax."""
    return stats.nbinom.pmf(np.arange(kmax + 1), shape, 1.0 - p)


def nb_difference_pmf(shape: float, p: float) -> tuple[np.ndarray, int]:
    """pmf of NB(shape,p) − NB(shape,p) as (array, offset): P(D = d) = arr[d + offset]."""
    kmax = int(stats.nbinom.isf(1e-17, shape, 1.0 - p)) + 5
    f = nb_pmf(shape, p, kmax)
    d = np.correlate(f, f, mode="full")  # d[i] = Σ_y f(y) f(y + i − kmax)
    return d, kmax


def draw_parts(family: str, eps: float, sens: int, n: int, delta: float = 0.0) -> np.ndarray:
    return np.stack([sample_party_noise(family, eps, sens, n, delta=delta) for _ in range(3)])


LAPLACE_CASES = [(1.0, 1), (0.5, 2), (0.25, 3)]
SKELLAM_CASES = [(1.0, 1, 1e-6), (0.5, 3, 1e-5)]


# ---------------------------------------------------------------- building blocks


@pytest.mark.parametrize("lam", [0.7, 7.0, 35.0, 2500.0])
def test_poisson_sampler_matches_pmf(lam):
    x = N._poisson(np.full(RUNS, lam))
    lo, hi = 0, int(lam + 12 * math.sqrt(lam) + 20)
    assert chi2_pvalue(x, lambda k: stats.poisson.pmf(k, lam), (lo, hi)) > ALPHA
    moments_ok(x - lam, lam)


def test_poisson_huge_mean_resolves_every_unit():
    # centred PTRS: the low bits of Pois(1e17) must be uniform (a float floor would make them constant)
    x = N._poisson(np.full(RUNS, 1e17))
    counts = np.bincount((x % 16).astype(np.int64), minlength=16)
    assert stats.chisquare(counts).pvalue > ALPHA
    assert abs(x.mean() - 1e17) < 6 * math.sqrt(1e17 / RUNS)


def test_exponential_and_gamma_half():
    e = N._exponential(RUNS)
    assert stats.kstest(e, "expon").pvalue > ALPHA
    g = N._gamma(0.5, RUNS)
    assert stats.kstest(g, stats.gamma(0.5).cdf).pvalue > ALPHA
    g3 = N._gamma(1 / 3, RUNS)
    assert stats.kstest(g3, stats.gamma(1 / 3).cdf).pvalue > ALPHA


# ---------------------------------------------------------------- distributed discrete Laplace


@pytest.mark.parametrize("eps,sens", LAPLACE_CASES)
def test_laplace_sum_of_three_parts_matches_exact_pmf(eps, sens):
    prm = noise_params("laplace", eps, sens)
    parts = draw_parts("laplace", eps, sens, RUNS)
    total = parts.sum(axis=0)
    pmf, off = nb_difference_pmf(1.5, prm.p)  # NB(3/2,p) − NB(3/2,p)
    lo, hi = -off, off
    assert chi2_pvalue(total, lambda k: pmf[k + off], (lo, hi)) > ALPHA
    moments_ok(total, prm.variance)
    assert prm.variance == pytest.approx(1.5 * prm.central_variance, rel=1e-12)


@pytest.mark.parametrize("eps,sens", LAPLACE_CASES)
def test_laplace_any_two_parts_are_discrete_laplace(eps, sens):
    parts = draw_parts("laplace", eps, sens, RUNS)
    central = stats.dlaplace(eps / sens)  # pmf ∝ exp(−ε|k|/Δ)
    cv = central_variance("laplace", eps, sens)
    assert cv == pytest.approx(central.var(), rel=1e-9)
    span = int(central.isf(1e-12)) + 1
    for i, j in itertools.combinations(range(3), 2):
        two = parts[i] + parts[j]
        assert chi2_pvalue(two, central.pmf, (-span, span)) > ALPHA, f"parts {i}+{j}"
        moments_ok(two, cv)


def test_laplace_single_part_is_nb_half_difference():
    eps, sens = 0.5, 1
    prm = noise_params("laplace", eps, sens)
    part = sample_party_noise("laplace", eps, sens, RUNS)
    pmf, off = nb_difference_pmf(0.5, prm.p)
    assert chi2_pvalue(part, lambda k: pmf[k + off], (-off, off)) > ALPHA
    moments_ok(part, prm.central_variance / 2)


def test_repeated_runs_of_the_sampler():
    """2000 separate runs, each: three parties each call the sampler for one output."""
    eps, sens = 0.7, 2
    prm = noise_params("laplace", eps, sens)
    runs = 2000
    parts = np.array([[sample_party_noise("laplace", eps, sens, 1)[0] for _ in range(3)] for _ in range(runs)])
    pmf, off = nb_difference_pmf(1.5, prm.p)
    assert chi2_pvalue(parts.sum(axis=1), lambda k: pmf[k + off], (-off, off)) > ALPHA
    central = stats.dlaplace(eps / sens)
    span = int(central.isf(1e-12)) + 1
    assert chi2_pvalue(parts[:, 0] + parts[:, 2], central.pmf, (-span, span)) > ALPHA


# ---------------------------------------------------------------- distributed Skellam


@pytest.mark.parametrize("eps,sens,delta", SKELLAM_CASES)
def test_skellam_three_and_two_parts(eps, sens, delta):
    prm = noise_params("skellam", eps, sens, delta=delta)
    mu = prm.mu  # central noise Pois(mu) − Pois(mu)
    parts = draw_parts("skellam", eps, sens, RUNS, delta)
    total = parts.sum(axis=0)
    three = stats.skellam(1.5 * mu, 1.5 * mu)
    span = int(three.isf(1e-12)) + 1
    assert chi2_pvalue(total, three.pmf, (-span, span)) > ALPHA
    moments_ok(total, prm.variance)
    assert prm.variance == pytest.approx(3 * mu)
    central = stats.skellam(mu, mu)
    span = int(central.isf(1e-12)) + 1
    for i, j in itertools.combinations(range(3), 2):
        two = parts[i] + parts[j]
        assert chi2_pvalue(two, central.pmf, (-span, span)) > ALPHA, f"parts {i}+{j}"
        moments_ok(two, 2 * mu)


@pytest.mark.parametrize("eps,sens,delta", SKELLAM_CASES + [(0.3, 5, 1e-7)])
def test_skellam_calibration_is_private_exactly(eps, sens, delta):
    """The central Skellam noise meets (ε, δ) for every integer shift |s| ≤ Δ,
    checked by the exact hockey-stick divergence computed from the pmf."""
    mu = noise_params("skellam", eps, sens, delta=delta).mu
    dist = stats.skellam(mu, mu)
    span = int(dist.isf(1e-18)) + sens + 2
    k = np.arange(-span, span + 1)
    logp = dist.logpmf(k)
    for s in range(1, sens + 1):
        logq = dist.logpmf(k - s)
        hockey = np.sum(np.maximum(0.0, np.exp(logp) - np.exp(eps + logq)))
        assert hockey <= delta, f"shift {s}: δ(ε) = {hockey} > {delta}"
    # and it is not absurdly loose: 0.8·μ would already be calibrated for a larger ε
    assert skellam_epsilon(0.8 * mu, sens, delta) > eps


# ---------------------------------------------------------------- closed forms and intervals


@pytest.mark.parametrize("eps,sens", LAPLACE_CASES + [(0.05, 7)])
def test_laplace_interval_is_the_exact_quantile(eps, sens):
    prm = noise_params("laplace", eps, sens)
    pmf, off = nb_difference_pmf(1.5, prm.p)
    cdf_abs = lambda k: pmf[off - k: off + k + 1].sum()  # noqa: E731
    lo, hi = confidence_interval_95("laplace", eps, sens)
    assert lo == -hi
    assert cdf_abs(hi) >= 0.95 and (hi == 0 or cdf_abs(hi - 1) < 0.95)
    for k in (0, 1, hi // 2, hi, 2 * hi + 1):
        assert interval_coverage("laplace", eps, sens, k) == pytest.approx(cdf_abs(k), abs=1e-9)
    # two-part coverage equals the discrete Laplace's
    central = stats.dlaplace(eps / sens)
    assert interval_coverage("laplace", eps, sens, hi, parts=2) == pytest.approx(
        central.cdf(hi) - central.cdf(-hi - 1), abs=1e-9)


@pytest.mark.parametrize("eps,sens,delta", SKELLAM_CASES)
def test_skellam_interval_is_the_exact_quantile(eps, sens, delta):
    mu = noise_params("skellam", eps, sens, delta=delta).mu
    three = stats.skellam(1.5 * mu, 1.5 * mu)
    _, hi = confidence_interval_95("skellam", eps, sens, delta=delta)
    cov = lambda k: three.cdf(k) - three.cdf(-k - 1)  # noqa: E731
    assert cov(hi) >= 0.95 > cov(hi - 1)
    assert interval_coverage("skellam", eps, sens, hi, delta=delta) == pytest.approx(cov(hi), abs=1e-9)


@pytest.mark.parametrize("family,eps,sens,delta", [
    ("laplace", 0.3, 1000, 0.0),
    ("laplace", 0.01, 10**11, 0.0),  # DECIMAL sum with a wide bound: scale ~1e13
    ("skellam", 0.2, 10**6, 1e-6),
])
def test_interval_covers_at_the_stated_rate(family, eps, sens, delta):
    _, hi = confidence_interval_95(family, eps, sens, delta=delta)
    exact = interval_coverage(family, eps, sens, hi, delta=delta)
    assert 0.95 <= exact < 0.951
    total = draw_parts(family, eps, sens, RUNS, delta).sum(axis=0)
    inside = int(np.sum(np.abs(total) <= hi))
    assert stats.binomtest(inside, RUNS, exact).pvalue > ALPHA
    moments_ok(total, noise_variance(family, eps, sens, delta=delta))


@pytest.mark.parametrize("family,delta", [("laplace", 0.0), ("skellam", 1e-6)])
def test_large_scale_noise_has_uniform_low_bits(family, delta):
    total = draw_parts(family, 0.01, 10**11, RUNS, delta).sum(axis=0)
    counts = np.bincount((total % 16).astype(np.int64), minlength=16)
    assert stats.chisquare(counts).pvalue > ALPHA


def test_variance_overhead_and_diffprivlib_calibration():
    from diffprivlib.mechanisms import Geometric

    for eps, sens in [(1.0, 1), (0.1, 5), (2.0, 100)]:
        central = central_variance("laplace", eps, sens)
        assert central == pytest.approx(Geometric(epsilon=eps, sensitivity=sens).variance(0), rel=1e-9)
        assert noise_variance("laplace", eps, sens) == pytest.approx(1.5 * central, rel=1e-12)
        assert noise_variance("laplace", eps, sens, 1) == pytest.approx(3 * central, rel=1e-12)  # naive
        assert noise_scale("laplace", eps, sens) == pytest.approx(math.sqrt(1.5 * central), rel=1e-12)
    cv = central_variance("skellam", 0.5, 3, delta=1e-6)
    assert noise_variance("skellam", 0.5, 3, delta=1e-6) == pytest.approx(1.5 * cv, rel=1e-12)


@pytest.mark.parametrize("eps,sens,delta", [(1.0, 1, 1e-6), (0.5, 2, 1e-9)])
def test_partition_threshold_tail(eps, sens, delta):
    from executors.dp import partition_threshold

    tau = partition_threshold("laplace", eps, sens, delta)
    prm = noise_params("laplace", eps, sens)
    pmf, off = nb_difference_pmf(1.5, prm.p)
    tail = lambda k: pmf[k + off:].sum()  # noqa: E731  P(S >= k)
    assert tail(tau - sens) <= delta < tail(tau - sens - 1)


def test_rounding_is_conservative():
    # p is rounded up: the effective ε = Δ·log(1/p) never exceeds the stated one
    for eps, sens in [(1.0, 1), (0.1, 3), (1e-3, 10**9), (7.0, 2)]:
        p = noise_params("laplace", eps, sens).p
        assert sens * -math.log(p) <= eps


def test_only_the_os_csprng_is_used(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("numpy RNG used")

    for name in ("default_rng", "random", "rand", "randn", "randint", "normal", "poisson", "gamma", "seed"):
        monkeypatch.setattr(np.random, name, forbidden)
    # a deterministic stand-in for os.urandom makes the output deterministic: all randomness flows through it
    import hashlib

    def fake_urandom_factory():
        counter = itertools.count()

        def fake(n):
            out = b""
            while len(out) < n:
                out += hashlib.sha256(str(next(counter)).encode()).digest()
            return out[:n]
        return fake

    runs = []
    for _ in range(2):
        monkeypatch.setattr(N.os, "urandom", fake_urandom_factory())
        runs.append(np.concatenate([sample_party_noise("laplace", 0.5, 3, 50),
                                    sample_party_noise("skellam", 0.5, 3, 50, delta=1e-6)]))
    assert np.array_equal(runs[0], runs[1])
    assert runs[0].dtype == np.int64


@pytest.mark.parametrize("kwargs,match", [
    (dict(family="gauss", epsilon=1.0, sensitivity=1), "family"),
    (dict(family="laplace", epsilon=0.0, sensitivity=1), "epsilon"),
    (dict(family="laplace", epsilon=float("inf"), sensitivity=1), "epsilon"),
    (dict(family="laplace", epsilon=1.0, sensitivity=1.5), "sensitivity"),
    (dict(family="laplace", epsilon=1.0, sensitivity=0), "sensitivity"),
    (dict(family="laplace", epsilon=1.0, sensitivity=True), "sensitivity"),
    (dict(family="skellam", epsilon=1.0, sensitivity=1), "delta"),
    (dict(family="laplace", epsilon=1.0, sensitivity=1, parties_for_guarantee=4), "parties_for_guarantee"),
    (dict(family="laplace", epsilon=1e-9, sensitivity=10**9), "2\\^48"),
])
def test_bad_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_party_noise(n=3, **kwargs)


def test_zero_outputs_and_shapes():
    assert sample_party_noise("laplace", 1.0, 1, 0).shape == (0,)
    x = sample_party_noise("laplace", 1.0, 1, 7)
    assert x.shape == (7,) and x.dtype == np.int64


@pytest.mark.parametrize("eps,sens,delta", [(1.0, 1, 0.02), (0.5, 2, 0.01)])
def test_partition_selection_releases_at_the_stated_rates(eps, sens, delta):
    """The real sampler (three parts summed) against the stated release probabilities: a group
    made by one unit (count = Δ) at most δ, groups around τ at the exact rate, and a group of
    count_released_95 at least 95% of the time. δ is large here so the rates are measurable."""
    from executors.dp import count_released_95, partition_threshold, release_probability

    tau = partition_threshold("laplace", eps, sens, delta)
    n = 100_000
    s = draw_parts("laplace", eps, sens, n).sum(axis=0)
    sure = count_released_95(tau, "laplace", eps, sens)
    for count in (sens, tau - 2, tau, tau + 3, sure):
        stated = release_probability(count, tau, "laplace", eps, sens)
        seen = np.mean(count + s >= tau)
        se = math.sqrt(max(stated * (1 - stated), 1e-6) / n)
        assert abs(seen - stated) < 5 * se, (count, seen, stated)
    assert release_probability(sens, tau, "laplace", eps, sens) <= delta
    assert release_probability(sens, tau - 1, "laplace", eps, sens) > delta  # τ is the smallest that works
    assert release_probability(sure, tau, "laplace", eps, sens) >= 0.95
    assert release_probability(sure - 1, tau, "laplace", eps, sens) < 0.95


def test_huge_epsilon_calibrates_without_overflow() -> None:
    """`SET fedsql.epsilon = 1e7` crashed calibration (OverflowError in expm1); a huge ε now
    calibrates as for ε/Δ = 700 (more noise than asked for: the guarantee still holds)."""
    from executors.dp import noise_params, sample_party_noise

    for eps in (1e7, 1e300):
        params = noise_params("laplace", eps, 1)
        assert 0 < params.p < 1e-300 and params.central_variance >= 0
        assert sample_party_noise("laplace", eps, 1, 100, 2).tolist() == [0] * 100
    assert noise_params("skellam", 1e7, 1, delta=1e-6).central_variance >= 0
