"""Differential privacy inside the MPC: distributed integer noise (see docs/dp.md).

Sampling lives here; calibration is plan/dp_calibration.py (shared with the planner), re-exported
so a caller sees one DP API."""

from executors.dp.noise import sample_party_noise
from plan.dp_calibration import (
    FAMILIES,
    MAX_STD,
    N_PARTIES,
    NoiseParams,
    central_variance,
    confidence_interval,
    confidence_interval_95,
    count_released_95,
    interval_coverage,
    noise_params,
    noise_scale,
    noise_variance,
    partition_threshold,
    release_probability,
    skellam_epsilon,
)

__all__ = [
    "FAMILIES", "MAX_STD", "N_PARTIES", "NoiseParams", "central_variance", "confidence_interval",
    "confidence_interval_95", "count_released_95", "interval_coverage", "noise_params", "noise_scale", "noise_variance", "partition_threshold",
    "release_probability", "sample_party_noise", "skellam_epsilon",
]
