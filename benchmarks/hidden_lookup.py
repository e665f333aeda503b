"""Hidden lookup benchmark (issue #13): k secret keys against an owner's table of n rows.

    python -m benchmarks.hidden_lookup --n 1000000 --keys 1,10000 [--mode sizes]

The federation of benchmarks/joins.py (b holds t(k, v, w) with v, w as `payload`); the issuer `a`
runs, with SET fedsql.hidden_params = on,

    SELECT y.v, y.w FROM b.t y WHERE y.k IN (?, …, ?)

with k keys, half of them in b's table; each result is checked (the multiset of v of the present keys).
Prints wall time at the client, rounds, MB sent and CPU seconds per party, and the slowest steps.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="rows of the owner's table")
    ap.add_argument("--keys", default="1,10000", help="comma list of key counts")
    ap.add_argument("--mode", default="sizes")
    args = ap.parse_args(argv)

    import numpy as np
    import pyarrow.parquet as pq

    import fedsql
    from benchmarks.joins import cpu_seconds, write_federation
    from benchmarks.tpch.run import machine
    from fedsql.launcher import start_federation

    os.environ.setdefault("FEDSQL_STEP_TIMES", "1")
    directory = Path(tempfile.mkdtemp(prefix="fedsql-lookup-"))
    config, _, _ = write_federation(directory, args.n)
    b = pq.read_table(directory / "b_t.parquet")
    b_keys, b_v = b["k"].to_numpy(), b["v"].to_numpy()
    rng = np.random.default_rng(9)
    print(f"# hidden lookup, n={args.n}, mode {args.mode}; {machine()}", flush=True)
    rows = []
    with start_federation(config, log_dir=directory / "logs", timeout=180) as procs:
        conn = fedsql.connect(str(config), party="a")
        cur = conn.cursor()
        cur.execute(f"SET fedsql.mode = '{args.mode}'")
        cur.execute("SET fedsql.hidden_params = on")
        for k in [int(x) for x in args.keys.split(",") if x]:
            present = rng.choice(len(b_keys), (k + 1) // 2, replace=False)
            absent = [int(x) for x in rng.integers(-(2**62), -1, k // 2)]  # b's keys are >= 0
            keys = [int(b_keys[i]) for i in present] + absent
            sql = f"SELECT y.v, y.w FROM b.t y WHERE y.k IN ({', '.join('?' for _ in keys)})"
            cpu0 = {p: cpu_seconds(nd.process.pid) for p, nd in procs.nodes.items()}
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            cur.execute(sql, keys)
            got = cur.fetch_arrow_table()
            wall = time.perf_counter() - t0
            want = sorted(int(b_v[i]) for i in present)
            if sorted(got["v"].to_pylist()) != want:
                print(f"WRONG result for {k} keys", flush=True)
                return 1
            cpu = {p: round(cpu_seconds(nd.process.pid) - cpu0[p], 2) for p, nd in procs.nodes.items()}
            stats = dict(cur.meta.get("stats") or {})
            per = dict(stats.get("parties") or {})
            per["a"] = {"bytes_sent": stats.get("bytes_sent"), "steps": stats.get("steps", [])}
            slowest: dict[str, float] = {}
            for p in per.values():
                for sid, op, t, *_ in p.get("steps", []):
                    slowest[f"{sid}:{op}"] = max(slowest.get(f"{sid}:{op}", 0.0), t)
            top = ", ".join(f"{s} {v:.2f}" for s, v in sorted(slowest.items(), key=lambda kv: -kv[1])[:3])
            sent = " / ".join(f"{(per.get(p) or {}).get('bytes_sent', 0) / 1e6:.1f}" for p in ("a", "b", "c"))
            print(f"{k} keys: {wall:.2f} s, {got.num_rows} rows ok, CPU s {cpu}, load {load:.1f}", flush=True)
            rows.append(f"| {k:,} | {args.n:,} | {got.num_rows:,} | {wall:.2f} | {stats.get('rounds')} | {sent} | "
                        f"{' / '.join(str(cpu[p]) for p in ('a', 'b', 'c'))} | {top} |")
        conn.close()
    print("\n| keys | owner rows | rows returned | wall (s) | rounds | MB sent (a / b / c) | node CPU s (a / b / c) "
          "| slowest steps (s) |\n|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
