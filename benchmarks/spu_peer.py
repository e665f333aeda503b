"""SPU ABY3 side of benchmarks/primitives.py; runs in SecretFlow's own venv.

Usage: SPU_PYTHON benchmarks/spu_peer.py N  → prints one JSON line of timings.
"""

import json
import sys
import time

import numpy as np
import spu.utils.simulation as spsim
import spu.libspu as libspu
import jax.numpy as jnp


def main() -> None:
    n = int(sys.argv[1])
    config = libspu.RuntimeConfig(protocol=libspu.ProtocolKind.ABY3, field=libspu.FieldType.FM64)
    sim = spsim.Simulator(3, config)
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 30), 1 << 30, n, dtype=np.int64)
    y = rng.integers(-(1 << 30), 1 << 30, n, dtype=np.int64)
    out = {}
    for name, fn in (("mul", lambda a, b: a * b), ("lt", lambda a, b: a < b), ("eq", lambda a, b: a == b)):
        f = spsim.sim_jax(sim, fn)
        f(x[:10], y[:10])  # compile once
        start = time.perf_counter()
        f(x, y)
        out[name] = time.perf_counter() - start
    sort = spsim.sim_jax(sim, lambda a: jnp.sort(a))
    m = min(n, 100_000)
    sort(x[:10])
    start = time.perf_counter()
    sort(x[:m])
    out["sort_1e5"] = time.perf_counter() - start
    print(json.dumps(out))


if __name__ == "__main__":
    main()
