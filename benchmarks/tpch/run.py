"""Run TPC-H over the three-party federation and check every result with DuckDB (issue #3).

    python -m benchmarks.tpch.run --sf 0.1 --mode sizes [--dir DIR] [--queries 3,5,10,12,14]
                                  [--net lan --net "rtt=20ms,bw=100mbit"]

Starts the federation of DIR/federation.toml (made by benchmarks.tpch.setup when
missing; DIR defaults to /tmp/fedsql-tpch-sf<SF>), then for each query sends
benchmarks/tpch/queries/qN.sql (the fedsql form) as party `retail` (--issuer)
and runs the standard TPC-H text benchmarks/tpch/queries/reference/qN.sql in
plain DuckDB over the same Parquet files. Per query it records: status (ok,
WRONG, refused with the engine's message, error), secure wall time at the
client, plaintext DuckDB time (best of --ref-repeat runs), their ratio, rounds
and bytes sent (issuer's counters, and every party's own counters from its
RunReply), and the issuer's step timeline. Prints a Markdown table and writes
DIR/results-<mode>.json.

`--net` (repeatable) runs everything once per network: `lan` is this machine's loopback as it is,
any other value a WAN profile emulated in the transport (executors/netem.py, FEDSQL_NET); the
table then shows each query on every network side by side, with the bound no implementation of
the same traffic can beat on that link (MPC rounds x one-way latency + half the busiest party's bytes
at the link rate: its two peer links carry in parallel). The bound counts only the MPC's rounds, whose messages each wait for the
previous answer; sharing inputs and opening results add messages it does not count, so a
union aggregate (no MPC round) shows a bound of 0.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUERIES = HERE / "queries"
REQUIRED = (3, 5, 10, 12, 14)
WARMUP = ("SELECT COUNT(*) FROM retail.orders o, logistics.lineitem l, supply.part p "
          "WHERE o.o_orderkey = l.l_orderkey AND l.l_partkey = p.p_partkey AND l.l_orderkey < 1000 "
          "AND o.o_orderkey < 1000 AND p.p_partkey < 1000")
TABLES = ("customer", "orders", "lineitem", "supplier", "part", "partsupp", "nation", "region")


def default_dir(sf: float) -> Path:
    return Path(f"/tmp/fedsql-tpch-sf{sf:g}")


def fedsql_text(n: int) -> str:
    """The fedsql form without its comment header (comments explain the rewrite)."""
    lines = (QUERIES / f"q{n}.sql").read_text().splitlines()
    return "\n".join(ln for ln in lines if not ln.lstrip().startswith("--")).strip().rstrip(";")


def reference_text(n: int) -> str:
    return (QUERIES / "reference" / f"q{n}.sql").read_text().strip().rstrip(";")


def reference_db(data: Path):
    import duckdb

    db = duckdb.connect()
    for t in TABLES:
        db.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data / (t + '.parquet')}')")
    return db


def run_reference(db, sql: str, repeat: int) -> tuple[list[tuple], float]:
    best = math.inf
    rows: list[tuple] = []
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        rows = [tuple(r) for r in db.execute(sql).fetchall()]
        best = min(best, time.perf_counter() - t0)
    return rows, best


# -- comparison -----------------------------------------------------------------

def _num(v):
    if isinstance(v, (decimal.Decimal, float, int)) and not isinstance(v, bool):
        return float(v)
    return None


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    x, y = _num(a), _num(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-2)
    if isinstance(a, (datetime.date, datetime.datetime)) or isinstance(b, (datetime.date, datetime.datetime)):
        return str(a)[:10] == str(b)[:10]
    return str(a).rstrip() == str(b).rstrip()


def _rows_equal(got: list[tuple], want: list[tuple]) -> bool:
    return len(got) == len(want) and all(
        len(g) == len(w) and all(_same(x, y) for x, y in zip(g, w)) for g, w in zip(got, want)
    )


def _sort_key(row):
    return tuple((v is None, _num(v) if _num(v) is not None else 0.0, str(v)) for v in row)


def compare(got: list[tuple], want: list[tuple]) -> str:
    """'ok', 'ok (ties reordered)' or a short description of the difference."""
    if _rows_equal(got, want):
        return "ok"
    if _rows_equal(sorted(got, key=_sort_key), sorted(want, key=_sort_key)):
        return "ok (ties reordered)"
    if len(got) != len(want):
        return f"WRONG: {len(got)} rows, DuckDB {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if not (len(g) == len(w) and all(_same(x, y) for x, y in zip(g, w))):
            return f"WRONG at row {i}: got {g!r}, DuckDB {w!r}"
    return "WRONG"


# -- the run ----------------------------------------------------------------------

def revision() -> str:
    """The engine's git commit (+ "dirty" when the tree has changes), for the record."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"nproc={os.cpu_count()}, CPU: {model}, {mem}, Python {platform.python_version()}"


def peak_rss_mib(pid: int) -> int | None:
    """VmHWM: the node's peak resident memory so far (MiB)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a node process so far (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def run_query(conn, n: int, mode: str) -> dict:
    import fedsql

    sql = fedsql_text(n)
    cur = conn.cursor()
    timeline: list[tuple[float, str]] = []

    def progress(elapsed: float, step: str) -> None:
        if not timeline or timeline[-1][1] != step:
            timeline.append((round(elapsed, 3), step))

    t0 = time.perf_counter()
    try:
        cur.execute(sql, on_progress=progress)
        rows = [tuple(r) for r in cur.fetchall()]
    except fedsql.Error as exc:
        kind = "refused" if isinstance(exc, (fedsql.NotSupportedError, fedsql.ProgrammingError)) else "error"
        return {"query": n, "status": kind, "message": f"{type(exc).__name__}: {exc}",
                "secure_s": round(time.perf_counter() - t0, 3)}
    secure = time.perf_counter() - t0
    stats = dict(cur.meta.get("stats") or {})
    return {"query": n, "rows": rows, "secure_s": round(secure, 3), "stats": stats, "timeline": timeline,
            "leakage": list(cur.leakage)}


def _mb(x) -> str:
    return "" if x is None else f"{x / 1e6:.1f}"


def _party_bytes(r: dict) -> dict[str, int | None]:
    stats = r.get("stats") or {}
    per = {p: (v or {}).get("bytes_sent") for p, v in dict(stats.get("parties") or {}).items()}
    per[r.get("issuer", "retail")] = stats.get("bytes_sent")
    return per


def lower_bound(r: dict, net: str) -> float | None:
    """MPC rounds x one-way latency + the busiest party's bytes over its two links (executors/netem.py)."""
    from executors.netem import NetProfile

    stats = r.get("stats") or {}
    if net == "lan" or "rounds" not in stats:
        return None
    sent = max((b for b in _party_bytes(r).values() if b), default=0)
    return round(NetProfile.parse(net).lower_bound_s(int(stats["rounds"]), int(sent), links=2), 3)  # 3 parties


def markdown(results: list[dict], mode: str, net: str = "lan") -> str:
    parties = ("retail", "logistics", "supply")
    out = [
        "| Q | mode | network | result | secure (s) | WAN bound (s) | DuckDB (s) | ratio | rounds "
        "| MB sent (retail / logistics / supply) | node CPU s (retail / logistics / supply) | peak RSS MiB (max node) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        stats = r.get("stats") or {}
        per = _party_bytes(r)
        ok = r["status"].startswith(("ok", "WRONG"))
        sent = " / ".join(_mb(per.get(p)) or "-" for p in parties) if ok else ""
        bound = lower_bound(r, net) if ok else None
        cpu = " / ".join(str((r.get("cpu_s") or {}).get(p, "-")) for p in parties) if ok else ""
        status = r["status"] if ok else f"{r['status']}: {r.get('message', '')}"
        ratio = f"{r['secure_s'] / r['plain_s']:.0f}x" if r.get("plain_s") and ok else ""
        rss = max((v for v in (r.get("peak_rss_mib") or {}).values() if v), default="") if ok else ""
        out.append(
            f"| {r['query']} | {mode} | {net} | {status} | {r['secure_s'] if ok else ''} | {'' if bound is None else bound} "
            f"| {r.get('plain_s', '')} | {ratio} "
            f"| {stats.get('rounds', '') if ok else ''} | {sent} | {cpu} | {rss} |"
        )
    return "\n".join(out)


def side_by_side(all_results: dict[tuple[str, str], list[dict]], nets: list[str]) -> str:
    """One row per query and mode: the secure time on every network, and each WAN's bound."""
    head = "| Q | mode | " + " | ".join(f"{n} (s)" + ("" if n == "lan" else f" | {n} bound (s)") for n in nets) + " |"
    out = [head, "|" + "---|" * (2 + sum(1 if n == "lan" else 2 for n in nets))]
    modes = list(dict.fromkeys(mode for mode, _ in all_results))
    for mode in modes:
        by_net = {n: {r["query"]: r for r in all_results.get((mode, n), [])} for n in nets}
        for q in by_net[nets[0]]:
            cells = []
            for n in nets:
                r = by_net[n].get(q) or {"status": "-"}
                ok = r["status"].startswith("ok")
                cells.append(str(r["secure_s"]) if ok else r["status"])
                if n != "lan":
                    bound = lower_bound(r, n) if ok else None
                    cells.append("" if bound is None else str(bound))
            out.append(f"| {q} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sf", type=float, default=0.1)
    ap.add_argument("--mode", default="sizes", help="sizes | reveal | oblivious, or a comma list")
    ap.add_argument("--dir", type=Path, default=None, help="federation dir (default /tmp/fedsql-tpch-sf<SF>)")
    ap.add_argument("--queries", default="all", help="comma list of TPC-H query numbers (default: all 22)")
    ap.add_argument("--issuer", default="retail", help="party that issues the queries (default retail)")
    ap.add_argument("--ref-repeat", type=int, default=3, help="DuckDB runs per query; the best is kept")
    ap.add_argument("--timeout", type=float, default=None, help="per-query timeout in seconds")
    ap.add_argument("--net", action="append", default=None,
                    help="'lan' or a WAN profile such as 'rtt=20ms,bw=100mbit' (repeatable; default lan)")
    args = ap.parse_args(argv)
    nets = args.net or ["lan"]

    sys.path.insert(0, str(HERE.parents[1]))
    import fedsql
    from benchmarks.tpch.setup import write_federation
    from fedsql.launcher import start_federation

    os.environ.setdefault("FEDSQL_STEP_TIMES", "1")  # nodes report per-step seconds (executors/runtime.py)
    directory = args.dir or default_dir(args.sf)
    config = directory / "federation.toml"
    marker = directory / "data" / "SF"
    if marker.is_file() and marker.read_text().strip() != f"{args.sf:g}":
        raise SystemExit(f"{directory} holds SF {marker.read_text().strip()}, not {args.sf:g}: "
                         f"pass --sf {marker.read_text().strip()} or another --dir")
    write_federation(args.sf, directory)  # data kept when present; config always from this code's policies
    numbers = list(range(1, 23)) if args.queries == "all" else [int(q) for q in args.queries.split(",") if q]
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]

    ref = reference_db(directory / "data")
    reference: dict[int, tuple[list[tuple], float]] = {}
    for n in numbers:
        reference[n] = run_reference(ref, reference_text(n), args.ref_repeat)

    rev = revision()  # at the start: the tree may change while a long run goes on
    print(f"# TPC-H SF {args.sf:g}, issuer {args.issuer}, {machine()}, fedsql {rev}", flush=True)
    all_results: dict[tuple[str, str], list[dict]] = {}
    from executors.netem import ENV as NET_ENV, NetProfile

    for net in nets:
        if net != "lan":
            NetProfile.parse(net)  # a bad profile fails here, before any node starts
            os.environ[NET_ENV] = net  # the nodes read it when they start
        else:
            os.environ.pop(NET_ENV, None)
        print(f"## network: {net}", flush=True)
        with start_federation(config, log_dir=directory / "logs", timeout=180) as procs:
            conn = fedsql.connect(str(config), party=args.issuer, timeout=args.timeout)
            try:
                for mode in modes:
                    cur = conn.cursor()
                    cur.execute(f"SET fedsql.mode = '{mode}'")
                    cur.execute(WARMUP)  # imports, peer connections, file cache: not part of any figure
                    results = []
                    for n in numbers:
                        cpu0 = {p: cpu_seconds(node.process.pid) for p, node in procs.nodes.items()}
                        load0 = os.getloadavg()[0]
                        r = run_query(conn, n, mode)
                        r["cpu_s"] = {p: round(cpu_seconds(node.process.pid) - cpu0[p], 2)
                                      for p, node in procs.nodes.items() if cpu0[p] is not None}
                        r["load_before"] = round(load0, 1)
                        r["issuer"] = args.issuer
                        want, plain = reference[n]
                        r["plain_s"] = round(plain, 4)
                        r["peak_rss_mib"] = {p: peak_rss_mib(node.process.pid) for p, node in procs.nodes.items()}
                        if "rows" in r:
                            r["status"] = compare(r["rows"], want)
                            r["rows_out"] = len(r.pop("rows"))
                        results.append(r)
                        line = (f"Q{n} {mode}: {r['status']} secure {r['secure_s']} s, DuckDB {r['plain_s']} s"
                                + (f", rounds {r['stats'].get('rounds')}, issuer sent {_mb(r['stats'].get('bytes_sent'))} MB"
                                   if r.get("stats") else "")
                                + (f" — {r['message']}" if r.get("message") else "")
                                + f"; CPU s {r['cpu_s']}; load {r['load_before']}; peak RSS MiB {r['peak_rss_mib']}")
                        print(line, flush=True)
                    all_results[(mode, net)] = results
            finally:
                conn.close()
    os.environ.pop(NET_ENV, None)
    for (mode, net), results in all_results.items():
        print()
        print(markdown(results, mode, net))
        suffix = "" if net == "lan" else "-" + re.sub(r"[^a-z0-9]+", "_", net.lower()).strip("_")
        out = directory / f"results-{mode}{suffix}.json"
        out.write_text(json.dumps({"sf": args.sf, "mode": mode, "network": net, "machine": machine(), "revision": rev,
                                   "results": results},
                                  indent=1, default=str))
        print(f"\n(details with step timelines: {out})")
    if len(nets) > 1:
        print()
        print(side_by_side(all_results, nets))
    bad = [r for rs in all_results.values() for r in rs if r["status"].startswith("WRONG")]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
