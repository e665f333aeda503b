"""Oblivious sort and segmented scan benchmark (issue #4).

Three OS processes (multiprocessing, spawn), each with its own gRPC server on
loopback, run the fedsql MPC engine exactly as nodes do (structure of
benchmarks/primitives.py): sort_by of n secret int64 values for each n in
--sizes (one carried column), then segmented_scan "sum" and "min" over
--scan-n rows. Optionally SPU ABY3 `jnp.sort` of 10^5 values runs in the same
invocation through benchmarks/spu_peer.py (its "sort_1e5" figure).

    python benchmarks/sort.py [--sizes 100000,1000000] [--scan-n 1000000]
                              [--spu-python /tmp/spu-venv2/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.mpc_procs import PARTIES, run_three  # noqa: E402
from benchmarks.primitives import machine  # noqa: E402


def measure(mpc, sizes: list[int], scan_n: int, key_bits: int, opts: dict) -> dict:
    """One compute party (run at each by benchmarks/mpc_procs.py): time sort and scans."""
    import numpy as np

    import executors.mpc as m

    name = mpc.me
    result: dict = {}

    def timed(label, fn):
        m.reveal(mpc, m.sum_all(x), None)  # barrier-ish: align parties before timing
        r0, b0 = mpc.rounds, mpc.bytes_sent
        t0, c0 = time.perf_counter(), time.process_time()
        res = fn()
        result[label] = {"time": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                         "rounds": mpc.rounds - r0, "bytes": mpc.bytes_sent - b0}
        return res

    # benchmark inputs are public test data: numpy's RNG is fine here (never for secrets)
    rng = np.random.default_rng(1)
    for n in sizes:
        vals = rng.integers(-2**40, 2**40, n).astype(np.int64)
        vals[: n // 4] = rng.integers(-100, 100, n // 4)  # a quarter heavy duplicates (all fit in 41 bits)
        x = m.share_input(mpc, "c0", vals.view(np.uint64) if name == "c0" else None, n)
        payload = m.share_input(mpc, "c1", np.arange(n, dtype=np.uint64) if name == "c1" else None, n)
        order = np.argsort(vals, kind="stable")
        variants = [(f"sort_{n}", None)] + ([(f"sort_{n}_kb{key_bits}", [key_bits])] if key_bits else [])
        for label, kb in variants:
            st: dict = {}
            (sk,), (sp,) = timed(label, lambda: m.sort_by(mpc, [x], [payload], key_bits=kb, stats=st, **opts))
            result[label].update(levels=st["levels"], comparisons=st["comparisons"])
            got_k, got_p = m.reveal_many(mpc, [sk, sp], None)
            result[f"check_{label}"] = bool(np.array_equal(got_k.view(np.int64), vals[order])
                                            and np.array_equal(got_p, order.astype(np.uint64)))
    if scan_n:
        n = scan_n
        groups = np.sort(rng.integers(0, max(1, n // 1000), n))  # ~1000 rows per group
        vals = rng.integers(-2**40, 2**40, n).astype(np.int64)
        starts_pub = np.r_[1, (groups[1:] != groups[:-1])].astype(np.uint64)
        x = m.share_input(mpc, "c0", vals.view(np.uint64) if name == "c0" else None, n)
        starts = m.share_input(mpc, "c1", starts_pub if name == "c1" else None, n)
        (ssum,) = timed(f"scan_sum_{n}", lambda: m.segmented_scan(mpc, starts, [x], ["sum"]))
        (smin,) = timed(f"scan_min_{n}", lambda: m.segmented_scan(mpc, starts, [x], ["min"]))
        got_sum, got_min = m.reveal_many(mpc, [ssum, smin], None)
        seg = np.cumsum(starts_pub.astype(np.int64)) - 1
        first = np.flatnonzero(starts_pub)
        csum = np.cumsum(vals)
        want_sum = csum - np.r_[0, csum][first][seg]
        want_min = np.empty(n, np.int64)
        for s, e in zip(first, np.r_[first[1:], n]):  # plaintext check only
            want_min[s:e] = np.minimum.accumulate(vals[s:e])
        result["check_scan"] = bool(np.array_equal(got_sum.view(np.int64), want_sum)
                                    and np.array_equal(got_min.view(np.int64), want_min))
    return result


def run_fedsql(sizes: list[int], scan_n: int, key_bits: int, opts: dict) -> dict:
    results = run_three(measure, sizes, scan_n, key_bits, opts)
    summary: dict = {}
    for label in results["c0"]:
        if label.startswith("check"):
            summary[label] = all(results[p][label] for p in PARTIES)
            continue
        r = results["c0"][label]
        summary[label] = {
            "time": max(results[p][label]["time"] for p in PARTIES),
            "cpu": max(results[p][label]["cpu"] for p in PARTIES),
            "rounds": r["rounds"],
            "bytes_per_party": {p: results[p][label]["bytes"] for p in PARTIES},
            **{k: r[k] for k in ("levels", "comparisons") if k in r},
        }
    return summary


def run_spu(python: str) -> dict:
    """benchmarks/spu_peer.py at n = 10^5 (it times mul/lt/eq and jnp.sort of min(n, 10^5) values)."""
    try:
        proc = subprocess.run([python, os.path.join(ROOT, "benchmarks", "spu_peer.py"), "100000"],
                              capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"could not run SPU: {exc}"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": f"SPU run failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated sort sizes")
    ap.add_argument("--scan-n", type=int, default=1_000_000, help="rows for the segmented scans (0: skip)")
    ap.add_argument("--spu-python", default=None, help="python of a venv with `spu` installed")
    ap.add_argument("--key-bits", type=int, default=41,
                    help="also sort with key_bits=[this] (the data fit in 41 bits; 0: skip)")
    ap.add_argument("--small", type=int, default=8, help="segments up to this size sort all-pairs (sort_by)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"machine: {machine()}")
    print(f"sort_by options: small={args.small}")
    ours = run_fedsql(sizes, args.scan_n, args.key_bits, {"small": args.small})
    spu_res = run_spu(args.spu_python) if args.spu_python else {"error": "not requested (--spu-python)"}
    print("| op | fedsql time (s) | max CPU s per party | rounds | quicksort levels | comparisons "
          "| MB sent per party (c0/c1/c2) | correct |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in ours.items():
        if label.startswith("check"):
            continue
        mb = "/".join(f"{r['bytes_per_party'][p] / 1e6:.1f}" for p in PARTIES)
        check = ours.get(f"check_{label}", ours.get("check_scan")) if label.startswith(("sort", "scan")) else "?"
        print(f"| {label} | {r['time']:.2f} | {r['cpu']:.2f} | {r['rounds']} | {r.get('levels', '-')} "
              f"| {r.get('comparisons', '-')} "
              f"| {mb} | {check} |")
    if "sort_1e5" in spu_res:
        print(f"SPU ABY3 FM64 jnp.sort of 10^5 (simulator, same run): {spu_res['sort_1e5']:.2f} s")
        if "sort_100000" in ours:
            print(f"speed-up fedsql vs SPU at 10^5: {spu_res['sort_1e5'] / ours['sort_100000']['time']:.1f}x")
    else:
        print(f"SPU: {spu_res.get('error')}")
    print(json.dumps({"fedsql": ours, "spu": spu_res}))


if __name__ == "__main__":
    main()
