"""Load: C concurrent clients x Q queries against a local 3-party federation (issue #6).

Every result is compared with DuckDB over the pooled data; node RSS is read from
/proc before the run, after a warm-up, and at the end, to show that nothing leaks
across queries. Prints a Markdown table (append it to benchmarks/RESULTS.md).

    python benchmarks/load.py --clients 8 --queries 50 --rows 20000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fedsql  # noqa: E402
from tests.conftest import write_test_federation  # noqa: E402

QUERIES = [
    "SELECT COUNT(*) AS n FROM t",
    "SELECT g, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY g ORDER BY g",
    "SELECT k, MIN(x) AS lo, MAX(x) AS hi FROM t WHERE x > -500 GROUP BY k ORDER BY k NULLS FIRST",
    "SELECT SUM(d) AS sd, AVG(x) AS ax FROM t WHERE b",
    "SELECT g, k, COUNT(*) AS n FROM t WHERE f > 0 GROUP BY g, k ORDER BY g, k NULLS FIRST",
]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reference(data: dict, sql: str) -> list[tuple]:
    import duckdb

    db = duckdb.connect()
    db.register("t", data["t"])
    return [tuple(r) for r in db.execute(sql).fetchall()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--queries", type=int, default=50, help="queries per client")
    ap.add_argument("--rows", type=int, default=20000, help="rows at p1 and at p2 (p3's table is empty)")
    args = ap.parse_args()

    from fedsql.launcher import start_federation

    directory = Path(tempfile.mkdtemp(prefix="fedsql-load-"))
    config, data = write_test_federation(directory, sizes=(args.rows, args.rows, 0))
    expected = {sql: reference(data, sql) for sql in QUERIES}
    with start_federation(config, log_dir=directory / "logs", timeout=120) as procs:
        pids = {p: n.process.pid for p, n in procs.nodes.items()}
        rss_start = {p: rss_mib(pid) for p, pid in pids.items()}
        # warm-up: one of each query (imports, DuckDB caches, gRPC channels)
        with fedsql.connect(str(config), party="p1") as conn:
            for sql in QUERIES:
                conn.cursor().execute(sql)
        rss_warm = {p: rss_mib(pid) for p, pid in pids.items()}
        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()

        def client(i: int) -> None:
            try:
                with fedsql.connect(str(config), party=("p1", "p2", "p3")[i % 3]) as conn:
                    cur = conn.cursor()
                    for j in range(args.queries):
                        sql = QUERIES[(i + j) % len(QUERIES)]
                        t0 = time.monotonic()
                        cur.execute(sql)
                        got = [tuple(r) for r in cur.fetchall()]
                        dt = time.monotonic() - t0
                        with lock:
                            latencies.append(dt)
                            if got != expected[sql]:
                                failures.append(f"client {i} query {j}: wrong result for {sql}")
            except Exception as exc:  # noqa: BLE001
                with lock:
                    failures.append(f"client {i}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - start
        rss_mid = {p: rss_mib(pid) for p, pid in pids.items()}
        # a second identical round: memory must not keep growing
        latencies2_start = len(latencies)
        failures1 = len(failures)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        start2 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall2 = time.monotonic() - start2
        rss_end = {p: rss_mib(pid) for p, pid in pids.items()}
        alive = all(n.process.poll() is None for n in procs.nodes.values())

    total = args.clients * args.queries
    lat = sorted(latencies)
    p50 = statistics.median(lat)
    p95 = lat[int(0.95 * (len(lat) - 1))]
    print(f"## Load (issue #6)\n")
    print(f"Command: `python benchmarks/load.py --clients {args.clients} --queries {args.queries} --rows {args.rows}`\n")
    print(f"{args.clients} clients (issuers p1/p2/p3 in turn) x {args.queries} queries each, two rounds back to back, "
          f"over a 3-party federation on this machine (p1, p2 {args.rows} rows each, p3 empty), mutual TLS, "
          f"audit log on. Queries cycle through {len(QUERIES)} union aggregates (COUNT/SUM/AVG/MIN/MAX, GROUP BY).\n")
    print("| round | queries | wrong or failed | wall (s) | queries/s | p50 latency (s) | p95 latency (s) |")
    print("|---|---|---|---|---|---|---|")
    r1 = sorted(latencies[:latencies2_start])
    r2 = sorted(latencies[latencies2_start:])
    for name, r, w, bad in (("1", r1, wall, failures1), ("2", r2, wall2, len(failures) - failures1)):
        if r:
            print(f"| {name} | {total} | {bad} | {w:.1f} | {total / w:.1f} | "
                  f"{statistics.median(r):.3f} | {r[int(0.95 * (len(r) - 1))]:.3f} |")
    print(f"\nAll results correct: {'yes' if not failures else 'NO'} ({len(failures)} failures); "
          f"all nodes alive at the end: {'yes' if alive else 'NO'}. Overall p50 {p50:.3f} s, p95 {p95:.3f} s.\n")
    print("| node | RSS start (MiB) | after warm-up | after round 1 | after round 2 |")
    print("|---|---|---|---|---|")
    for p in pids:
        print(f"| {p} | {rss_start[p]:.0f} | {rss_warm[p]:.0f} | {rss_mid[p]:.0f} | {rss_end[p]:.0f} |")
    for f in failures[:10]:
        print(f"- {f}", file=sys.stderr)
    return 0 if not failures and alive else 1


if __name__ == "__main__":
    sys.exit(main())
