"""DP accuracy: fedsql (noise inside the MPC, 3 parts) vs SmartNoise SQL (central DP), issue #5.

The same synthetic data (one row per person, region in 4 public groups, x an
integer bounded to [0, 100]) is held by three hospitals h1, h2, h3 of a real
local federation (`fedsql node` processes); a fourth party, `analyst`, owns
nothing and issues the queries, so every member table is DP-bound. The same
rows pooled into one pandas DataFrame go to SmartNoise SQL (`snsql.from_df`,
row privacy, bounds [0, 100], censor_dims off: the 4 groups are public in
both). Per group, the error of each released value against the exact answer
is collected over R repetitions; the table reports the error variance of both
systems, their ratio, and the analytic ratio (fedsql noise variance / central
discrete-Laplace variance, 1.5 by construction).

Same ε per noisy output in both systems: SmartNoise charges ε per aggregate
column (AVG = SUM and COUNT, 2ε), fedsql splits the query's ε across noisy
columns, so fedsql's AVG query runs with 2ε.

    python benchmarks/dp_accuracy.py [--reps 50] [--sn-reps 400] [--epsilon 1.0] [--rows 3000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

REGIONS = ["north", "south", "east", "west"]

CONFIG = """\
[federation]
name = "dpbench"
compute = ["h1", "h2", "h3"]
deadline_seconds = 120

[parties.analyst]
address = "127.0.0.1:PORT0"
"""

PARTY = """
[parties.P]
address = "127.0.0.1:PORTN"
[parties.P.tables.t]
source = "P.parquet"
columns = { region = "group_key", x = "aggregate" }
[parties.P.tables.t.dp]
unit = "row"
bounds = { x = [0, 100] }
epsilon = 1000000.0
max_epsilon_per_query = 10.0
public_groups = { region = ["north", "south", "east", "west"] }
"""

QUERIES = {
    "COUNT": ("SELECT region, COUNT(*) AS v FROM {t} GROUP BY region", 1),
    "SUM": ("SELECT region, SUM(x) AS v FROM {t} GROUP BY region", 1),
    "AVG": ("SELECT region, AVG(x) AS v FROM {t} GROUP BY region", 2),
}


def make_data(rows: int, seed: int = 5):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"region": rng.choice(REGIONS, rows, p=[0.4, 0.3, 0.2, 0.1]),
                       "x": rng.integers(0, 101, rows).astype("int64")})
    cuts = [0, rows // 2, rows * 5 // 6, rows]  # unequal shares across h1, h2, h3
    return df, [df.iloc[cuts[i]:cuts[i + 1]].reset_index(drop=True) for i in range(3)]


def exact(df) -> dict[str, dict[str, float]]:
    g = df.groupby("region")["x"]
    return {"COUNT": g.size().astype(float).to_dict(), "SUM": g.sum().astype(float).to_dict(),
            "AVG": g.mean().to_dict()}


def run_fedsql(parts, reps: int, epsilon: float, truth) -> dict[str, list[float]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fedsql.client import NodeClient
    from fedsql.config import load_config
    from fedsql.launcher import free_ports, start_federation

    directory = Path(tempfile.mkdtemp(prefix="fedsql-dpbench-"))
    ports = free_ports(4)
    text = CONFIG.replace("PORT0", str(ports[0]))
    for i, (name, part) in enumerate(zip(("h1", "h2", "h3"), parts), 1):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), directory / f"{name}.parquet")
        text += PARTY.replace("PORTN", str(ports[i])).replace("P", name)
    text += '\n[federated.t]\nunion = ["h1.t", "h2.t", "h3.t"]\n'
    config = directory / "dpbench.toml"
    config.write_text(text, encoding="utf-8")
    errs: dict[str, list[float]] = {k: [] for k in QUERIES}
    with start_federation(config, log_dir=directory / "logs", timeout=120):
        fed = load_config(config)
        with NodeClient(fed.parties["analyst"].address, party="analyst", config_path=str(config),
                        default_timeout=120) as client:
            for name, (sql, k) in QUERIES.items():
                settings = {"fedsql.epsilon": repr(epsilon * k)}
                for _ in range(reps):
                    table, _ = client.execute(sql.format(t="t"), settings)
                    for row in table.to_pylist():
                        if row["v"] is not None:
                            errs[name].append(float(row["v"]) - truth[name][row["region"]])
    return errs


def run_smartnoise(df, reps: int, epsilon: float, truth) -> dict[str, list[float]]:
    import snsql
    from snsql import Privacy

    meta = {"Collection": {"public": {"t": {
        "row_privacy": True, "censor_dims": False, "rows": len(df),
        "region": {"type": "string"}, "x": {"type": "int", "lower": 0, "upper": 100}}}}}
    errs: dict[str, list[float]] = {k: [] for k in QUERIES}
    reader = snsql.from_df(df, privacy=Privacy(epsilon=epsilon, delta=1e-6), metadata=meta)
    for name, (sql, _) in QUERIES.items():
        for _ in range(reps):
            rows = reader.execute(sql.format(t="public.t"))
            for region, v in rows[1:]:
                if v is not None:
                    errs[name].append(float(v) - truth[name][region])
    return errs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=50, help="fedsql repetitions per query (real nodes)")
    ap.add_argument("--sn-reps", type=int, default=400, help="SmartNoise repetitions per query")
    ap.add_argument("--epsilon", type=float, default=1.0, help="epsilon per noisy output")
    ap.add_argument("--rows", type=int, default=3000)
    args = ap.parse_args()

    import numpy as np

    from executors.dp import central_variance, noise_variance

    df, parts = make_data(args.rows)
    truth = exact(df)
    t0 = time.time()
    fs = run_fedsql(parts, args.reps, args.epsilon, truth)
    t_fs = time.time() - t0
    try:
        t0 = time.time()
        sn = run_smartnoise(df, args.sn_reps, args.epsilon, truth)
        t_sn = time.time() - t0
        import snsql  # noqa: F401

        from importlib.metadata import version
        sn_version = version("smartnoise-sql")
    except ImportError:
        sn, t_sn, sn_version = None, 0.0, "not installed"

    eps = args.epsilon
    analytic = {"COUNT": noise_variance("laplace", eps, 1) / central_variance("laplace", eps, 1),
                "SUM": noise_variance("laplace", eps, 100) / central_variance("laplace", eps, 100)}
    print(f"machine: {platform.machine()}, nproc={os.cpu_count()}, Python {platform.python_version()}, "
          f"smartnoise-sql {sn_version}")
    print(f"rows={args.rows} (h1/h2/h3 = 1/2, 1/3, 1/6), 4 public groups, epsilon per noisy output = {eps}, "
          f"fedsql reps={args.reps} ({t_fs:.0f} s, real nodes), SmartNoise reps={args.sn_reps} ({t_sn:.0f} s)")
    print()
    print("| aggregate (per group) | fedsql error variance | SmartNoise error variance | ratio | analytic ratio | "
          "fedsql RMSE | SmartNoise RMSE |")
    print("|---|---|---|---|---|---|---|")
    for name in QUERIES:
        a = np.asarray(fs[name])
        va = float(np.mean(a ** 2))
        if sn is not None:
            b = np.asarray(sn[name])
            vb = float(np.mean(b ** 2))
            ratio, sn_var, sn_rmse = f"{va / vb:.2f}", f"{vb:.4g}", f"{vb ** 0.5:.4g}"
        else:
            ratio = sn_var = sn_rmse = "n/a"
        an = f"{analytic[name]:.2f}" if name in analytic else "-"
        print(f"| {name} | {va:.4g} | {sn_var} | {ratio} | {an} | {va ** 0.5:.4g} | {sn_rmse} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
