"""The AddNoise step: DP noise added to shared aggregates inside the MPC (docs/dp.md §2).

Every compute party samples its own part of the noise for every noisy column
with the OS CSPRNG (`sample_party_noise`, any two parts already give the
central mechanism) and inputs all its parts in ONE sharing; the three shared
parts are added to the aggregate shares. Nothing is opened here: the next step
reveals the noisy values only, so no party, the issuer included, ever sees an
un-noised aggregate.
"""

from __future__ import annotations

import numpy as np

from executors import mpc as ops
from executors.dp.noise import sample_party_noise
from plan.dp_calibration import PARTIES_FOR_GUARANTEE
from executors.secure_table import SecretTable, slice_rows


def add_noise(mpc: ops.MPC, compute: tuple[str, str, str], table: SecretTable, noise) -> SecretTable:
    """`noise`: NoiseSpec's (plan/physical.py) of columns of `table`; returns the noised table."""
    n = table.n
    parts = [
        sample_party_noise(s.family, s.epsilon, s.sensitivity, n, PARTIES_FOR_GUARANTEE, delta=s.delta)
        for s in noise
    ]
    mine = np.concatenate(parts).astype(np.int64).view(np.uint64) if parts else np.zeros(0, np.uint64)
    total = None
    for owner in compute:  # one sharing per compute party, all columns batched
        share = ops.share_input(mpc, owner, mine if owner == mpc.me else None, len(mine))
        total = share if total is None else ops.add(total, share)
    out = SecretTable(n=n, secret=dict(table.secret), public=dict(table.public))
    for i, s in enumerate(noise):
        out.secret[s.column] = ops.add(table.secret[s.column], slice_rows(total, i * n, (i + 1) * n))
    return out
