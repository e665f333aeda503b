"""Distributed integer noise for differential privacy inside the MPC.

Each of the ``n_parties`` (= 3) compute parties calls :func:`sample_party_noise`
and inputs the returned integers as secret shares; the MPC adds the three parts
to the (scaled-integer) aggregate before revealing it. The parts are drawn so
that the sum of ANY ``parties_for_guarantee`` (= 2) of them already has the
distribution of the central mechanism that gives the stated guarantee: a
corrupt compute party that knows (and subtracts) its own part still faces the
full noise of the two honest parties.

Families
--------
``"laplace"`` — distributed discrete Laplace (pure ε-DP).
    Central mechanism: discrete Laplace (two-sided geometric) with
    ``p = exp(-ε/Δ)``, pmf ``(1-p)/(1+p) · p^|k|``. A discrete Laplace variable
    is ``NB(1,p) − NB(1,p)`` (difference of two geometrics) and the negative
    binomial (Pólya) law is infinitely divisible in its shape ``r``:
    ``NB(r1,p) + NB(r2,p) = NB(r1+r2,p)``. Each party draws
    ``X − Y`` with ``X, Y ~ NB(1/t, p)`` (t = ``parties_for_guarantee``), so any
    t parts sum to ``NB(1,p) − NB(1,p)`` exactly, and all three sum to
    ``NB(3/t,p) − NB(3/t,p)``: variance ``3/t`` times the central one (1.5x for
    t = 2; the naive "every party adds full noise" is t = 1, 3x).

``"skellam"`` — distributed Skellam ((ε,δ)-DP via Rényi DP / zCDP).
    Central mechanism: ``Pois(μ) − Pois(μ)`` (variance ``2μ``), calibrated
    with the Rényi-DP bound of Agarwal, Kairouz and Liu (NeurIPS 2021,
    "The Skellam Mechanism for Differentially Private Federated Learning"),
    converted to (ε,δ) with the conversion of Canonne, Kamath and Steinke
    (2020). Poisson is infinitely divisible too: each party draws
    ``Pois(μ/t) − Pois(μ/t)``. Needs ``delta > 0``.

Randomness and exactness
------------------------
All randomness comes from ``os.urandom`` (the kernel CSPRNG); numpy's RNGs
are never used. Uniforms carry 53 random bits; exponentials are built from an
unbounded run of random bits for the binary exponent plus a 53-bit mantissa,
so their tail is not truncated at 2^-53.

The negative binomial with non-integer shape has no practical exact sampler
at the scales we need (the scaled-integer sensitivities reach 10^10 and
more), so the sampler uses the Gamma–Poisson mixture
``NB(r,p) = Pois(G·p/(1−p))``, ``G ~ Gamma(r,1)``: ``Gamma(1/2) = E·cos²(2πV)``
(E exponential, V uniform; an exact transform), other shapes by
Marsaglia–Tsang; Poisson by inversion (λ < 10) or Hörmann's PTRS
transformed rejection (λ ≥ 10) with a cancellation-free log-pmf (Loader's
``bd0``/``stirlerr``). Floating point is therefore used for the *mixing
intensity* and inside rejection tests; it is never used to represent the
output. Why that keeps the floating-point attack surface small:

* Mironov's attack (CCS 2012) on textbook Laplace works because the set of
  floating-point outputs ``x + noise`` depends on ``x`` (gaps and rounding
  patterns). Here the output is an exact int64 added to an exact integer
  inside the MPC; its support is all of Z for every input, and there is no
  rounding of the released value.
* Floating point can only perturb the *probabilities* of integer outcomes,
  by relative amounts of order 1e-15 (the accuracy of ``log``/``exp``/
  ``lgamma`` near the bulk) and by ≤ 2^-53 in the extreme tails of the
  uniforms. That is a δ-like slack many orders below any δ in use; it is not
  a structural leak.
* The Poisson sampler works in centred form ``k = floor(λ) + j`` and only
  ``j`` (of size ~√λ, far below 2^52) goes through ``floor``, so every unit
  of the output is resolved and no low-order bit is constant — a constant
  low bit would reveal the true value's low bit. (Skellam parts use only the
  ``j``'s, as the common ``floor(λ)`` cancels.)
* ``p`` is rounded *up* (more noise) so the effective ε never exceeds the
  stated one because of rounding.

Units
-----
``sensitivity`` is an integer in the *scaled* domain (the lead adds noise to
fixed-point / decimal scaled integers): e.g. a SUM over a DECIMAL(10,2)
column bounded by [0, 1000] has sensitivity ``1000 · 10^2`` per unit row.
Results (variance, scale, intervals) are in the same scaled units.
"""


from __future__ import annotations

import math
import os

import numpy as np

from plan.dp_calibration import N_PARTIES, noise_params

_PTRS_MIN = 10.0

# ---------------------------------------------------------------------------
# cryptographic uniforms and exponentials


def _words(n: int) -> np.ndarray:
    return np.frombuffer(os.urandom(8 * n), dtype=np.uint64).copy()


def _uniform(n: int) -> np.ndarray:
    """n uniforms in (0, 1), 53 random bits each (never 0, never 1)."""
    return ((_words(n) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _clz64(w: np.ndarray) -> np.ndarray:
    """Count of leading zero bits of each uint64 (64 for zero)."""
    w = w.copy()
    n = np.zeros(w.shape, dtype=np.int64)
    for shift in (32, 16, 8, 4, 2, 1):
        top = w >> np.uint64(64 - shift)
        empty = top == 0
        n[empty] += shift
        w[empty] <<= np.uint64(shift)
    n[w == 0] = 64  # only when the word was 0 (all shifts applied, still 0)
    return n


def _exponential(n: int) -> np.ndarray:
    """n Exp(1) variates: -log(U) with U = 2^-(j+1)·(1+f), j ~ Geom(1/2) from
    an unbounded stream of random bits, f a 53-bit mantissa. The tail is
    resolved far beyond 2^-53 (a 64-bit word of zeros just continues)."""
    j = np.zeros(n, dtype=np.int64)
    pending = np.arange(n)
    while pending.size:
        z = _clz64(_words(pending.size))
        j[pending] += z
        pending = pending[z == 64]
    f = ((_words(n) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    return (j + 1) * math.log(2.0) - np.log1p(f)


def _normal(n: int) -> np.ndarray:
    """Box–Muller from a crypto exponential and uniform."""
    return np.sqrt(2.0 * _exponential(n)) * np.cos(2.0 * math.pi * _uniform(n))


def _gamma(shape: float, n: int) -> np.ndarray:
    """Gamma(shape, 1) variates for 0 < shape <= 1."""
    if shape == 1.0:
        return _exponential(n)
    if shape == 0.5:
        # Gamma(1/2) = Exp(1) · Beta(1/2,1/2), and cos²(2πV) ~ Beta(1/2,1/2).
        return _exponential(n) * np.cos(2.0 * math.pi * _uniform(n)) ** 2
    # Marsaglia–Tsang for shape+1, then the boost Gamma(a) = Gamma(a+1)·U^(1/a).
    a = shape + 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = np.empty(n)
    pending = np.arange(n)
    while pending.size:
        m = pending.size
        x = _normal(m)
        v = (1.0 + c * x) ** 3
        ok = v > 0
        logu = -_exponential(m)
        with np.errstate(divide="ignore", invalid="ignore"):
            accept = ok & (logu < 0.5 * x * x + d - d * v + d * np.log(np.where(ok, v, 1.0)))
        out[pending[accept]] = d * v[accept]
        pending = pending[~accept]
    return out * np.exp(-_exponential(n) / shape)


# ---------------------------------------------------------------------------
# Poisson


_S = (1.0 / 12, 1.0 / 360, 1.0 / 1260, 1.0 / 1680, 1.0 / 1188)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _stirlerr(k: np.ndarray) -> np.ndarray:
    """log(k!) − [(k+½)log k − k + ½log 2π], accurately (Loader 2000)."""
    from scipy.special import gammaln

    k = np.asarray(k, dtype=np.float64)
    out = np.empty_like(k)
    big = k > 15
    kb = k[big]
    nn = kb * kb
    out[big] = (_S[0] - (_S[1] - (_S[2] - (_S[3] - _S[4] / nn) / nn) / nn) / nn) / kb
    ks = k[~big]
    out[~big] = gammaln(ks + 1.0) - (ks + 0.5) * np.log(ks) + ks - _HALF_LOG_2PI
    return out


def _bd0(k: np.ndarray, lam: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """k·log(k/λ) + λ − k without cancellation (Loader 2000); diff = k − λ exactly."""
    out = k * np.log1p(diff / lam) - diff
    near = np.abs(diff) < 0.1 * (k + lam)
    if near.any():
        kk, ll, dd = k[near], lam[near], diff[near]
        v = dd / (kk + ll)
        s = dd * v
        ej = 2.0 * kk * v
        v2 = v * v
        for j in range(1, 40):
            ej = ej * v2
            term = ej / (2 * j + 1)
            s = s + term
            if np.all(np.abs(term) <= 1e-17 * np.abs(s)):
                break
        out[near] = s
    return out


def _log_poisson_pmf(k: np.ndarray, lam: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """log P(K = k) for K ~ Pois(λ), k ≥ 0 (float array of integers), diff = k − λ."""
    out = -lam.copy()
    pos = k > 0
    kp, lp = k[pos], lam[pos]
    out[pos] = -_bd0(kp, lp, diff[pos]) - _HALF_LOG_2PI - 0.5 * np.log(kp) - _stirlerr(kp)
    return out


def _poisson_inversion(lam: np.ndarray) -> np.ndarray:
    u = _uniform(lam.size)
    k = np.zeros(lam.size, dtype=np.int64)
    p = np.exp(-lam)
    cdf = p.copy()
    active = np.nonzero(u > cdf)[0]
    step = 0
    while active.size and step < 400:  # λ < 10: the cdf is 1 − 1e-16 long before 400
        step += 1
        k[active] += 1
        p[active] *= lam[active] / k[active]
        cdf[active] += p[active]
        active = active[u[active] > cdf[active]]
    return k


def _poisson_ptrs(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hörmann (1993) PTRS transformed rejection, vectorised, λ ≥ 10, in
    *centred* form: returns (base, j) with base = floor(λ) (float, exact
    integer) and the sample k = base + j. Only j (|j| ~ √λ ≪ 2^52) goes
    through floor(), so every unit of the output is resolved whatever λ is."""
    base = np.floor(lam)
    frac = lam - base
    out = np.empty(lam.size, dtype=np.int64)
    slam = np.sqrt(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    log_invalpha = np.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2.0)
    pending = np.arange(lam.size)
    while pending.size:
        m = pending.size
        L, A, B, F0, B0 = lam[pending], a[pending], b[pending], frac[pending], base[pending]
        u = _uniform(m) - 0.5
        v = _uniform(m)
        us = 0.5 - np.abs(u)
        jf = np.floor((2.0 * A / us + B) * u + F0 + 0.43)
        jf = np.clip(jf, -(2.0**62), 2.0**62)
        fast = (us >= 0.07) & (v <= vr[pending])
        reject = (jf < -B0) | ((us < 0.013) & (v > us))
        slow = ~fast & ~reject
        accept = fast.copy()
        if slow.any():
            js = jf[slow]
            ks = B0[slow] + js
            lhs = np.log(v[slow]) + log_invalpha[pending][slow] - np.log(A[slow] / (us[slow] ** 2) + B[slow])
            accept[slow] = lhs <= _log_poisson_pmf(ks, L[slow], js - F0[slow])
        out[pending[accept]] = jf[accept].astype(np.int64)
        pending = pending[~accept]
    return base, out


def _poisson_centred(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pois(λ) for each λ ≥ 0 as (base, j): sample = base + j, base = 0 or floor(λ)."""
    lam = np.asarray(lam, dtype=np.float64).ravel()
    if lam.size and (not np.all(np.isfinite(lam)) or lam.min() < 0):
        raise ValueError("Poisson mean must be finite and >= 0")
    base = np.zeros(lam.size)
    j = np.zeros(lam.size, dtype=np.int64)
    small = (lam > 0) & (lam < _PTRS_MIN)
    if small.any():
        j[small] = _poisson_inversion(lam[small])
    mid = lam >= _PTRS_MIN
    if mid.any():
        base[mid], j[mid] = _poisson_ptrs(lam[mid])
    return base, j


_LAM_MAX = float(2**61)


def _poisson(lam: np.ndarray) -> np.ndarray:
    """Pois(λ) for each 0 ≤ λ ≤ 2^61 in `lam` (int64)."""
    lam = np.asarray(lam, dtype=np.float64).ravel()
    if lam.size and lam.max() > _LAM_MAX:
        raise ValueError("Poisson mean above 2^61")
    base, j = _poisson_centred(lam)
    return base.astype(np.int64) + j


def _skellam_part(m: float, n: int) -> np.ndarray:
    """Pois(m) − Pois(m), n times; the common floor(m) cancels, so m may exceed int64."""
    lam = np.full(n, m)
    _, j1 = _poisson_centred(lam)
    _, j2 = _poisson_centred(lam)
    return j1 - j2


def _negative_binomial(shape: float, c: float, n: int) -> np.ndarray:
    """NB(shape, p) with c = p/(1−p): number of failures, mean shape·c.

    The Gamma draw is capped so that λ ≤ 2^61; with c ≤ 2^48 (MAX_STD) the cap
    only bites when Gamma > 2^13, an event of probability below e^-8000."""
    return _poisson(np.minimum(_gamma(shape, n) * c, _LAM_MAX))



# ---------------------------------------------------------------------------
# public API


def sample_party_noise(family: str, epsilon: float, sensitivity: int, n: int, parties_for_guarantee: int = 2, *,
                       delta: float = 0.0, n_parties: int = N_PARTIES) -> np.ndarray:
    """This party's part of the noise for `n` outputs, as int64.

    Every compute party calls this with the same arguments and inputs the
    result as a secret share; the sum of any `parties_for_guarantee` parts is
    the central mechanism (discrete Laplace with p = exp(−ε/Δ), or the
    calibrated Skellam), the sum of all `n_parties` parts has
    `n_parties / parties_for_guarantee` times its variance.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    prm = noise_params(family, epsilon, sensitivity, parties_for_guarantee, delta=delta, n_parties=n_parties)
    n = int(n)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if family == "laplace":
        x = _negative_binomial(prm.part_shape, prm.c, n)
        y = _negative_binomial(prm.part_shape, prm.c, n)
    else:
        return _skellam_part(prm.part_shape, n)
    return (x - y).astype(np.int64)


