"""The AddNoise step: DP noise added to shared aggregates inside the MPC (docs/dp.md §2).

Every compute party samples its own part of the noise for every noisy column
with the OS CSPRNG (`sample_party_noise`, any two parts already give the
central mechanism) and inputs all its parts in ONE sharing; the three shared
parts are added to the aggregate shares. Nothing is opened here: the next step
reveals the noisy values only, so no party, the issuer included, ever sees an
un-noised aggregate.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from executors import mpc as ops
from executors.dp.noise import sample_party_noise
from executors.mpc import MPC
from executors.operators.base import MemoryCheck, no_memory_limit
from executors.secure_table import SecretTable
from plan.dp_calibration import PARTIES_FOR_GUARANTEE
from plan.physical import AddNoise


def add_noise(mpc: MPC, inputs: Mapping[str, SecretTable], step: AddNoise, *,
              check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """The input with each column of `step.noise` (NoiseSpec's, plan/physical.py) noised:
    the three parties' parts are shared in three sharings (one per party, all columns batched)
    and added. Every party samples even for an empty table (no rows: no noise to add)."""
    table = inputs[step.input]
    n = table.n
    parts = [sample_party_noise(s.family, s.epsilon, s.sensitivity, n, PARTIES_FOR_GUARANTEE, delta=s.delta)
             for s in step.noise]
    mine = np.concatenate(parts).astype(np.int64).view(np.uint64) if parts else np.zeros(0, np.uint64)
    total = ops.zeros(len(mine))
    for owner in mpc.compute:
        total = ops.add(total, ops.share_input(mpc, owner, mine if owner == mpc.me else None, len(mine)))
    out = SecretTable(n=n, secret=dict(table.secret), public=dict(table.public))
    for s, noise in zip(step.noise, ops.split(total, [n] * len(step.noise))):
        out.secret[s.column] = ops.add(table.secret[s.column], noise)
    return out
