"""Secret GROUP BY and ORDER BY … LIMIT over secret values (issue #4 targets).

    python -m benchmarks.secret_groupby [--n 1000000] [--groups 1000] [--k 10]

Three OS processes over loopback gRPC run the same operators the runtime
uses for oblivious mode (executors/runtime.py ObliviousGroup / SecureFinish):
- GROUP BY a secret key with `groups` distinct values over n rows, SUM and
  COUNT per group: oblivious sort, segment starts, segmented scans, shuffle,
  open only the "last row of a group" flags, open the groups' results;
- ORDER BY a secret value DESC LIMIT k over n rows: oblivious sort, open k rows.
Targets: each under 60 s with n = 10^6.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.mpc_procs import run_three
from benchmarks.primitives import machine


def group_by(mpc, n: int, groups: int) -> dict:
    import executors.mpc as m
    from executors.mpc import AShare

    rng = np.random.default_rng(7)
    key = rng.integers(0, groups, n).astype(np.uint64)
    value = rng.integers(-1000, 1000, n).astype(np.uint64)
    owner = mpc.compute[0]
    k = m.share_input(mpc, owner, key if mpc.me == owner else None, n)
    v = m.share_input(mpc, owner, value if mpc.me == owner else None, n)
    ones = m.add_public(mpc, AShare(np.zeros(n, np.uint64), np.zeros(n, np.uint64)), 1)
    r0 = mpc.rounds
    start = time.perf_counter()
    (ks,), (vs, cs) = m.sort_by(mpc, [k], [v, ones])
    starts = m.segment_starts(mpc, [ks])
    sums, counts = m.segmented_scan(mpc, starts, [vs, cs], ["sum", "sum"])
    one = m.add_public(mpc, AShare(np.zeros(1, np.uint64), np.zeros(1, np.uint64)), 1)
    last = m.concat([AShare(starts.a[1:], starts.b[1:]), one])
    shuffled = m.shuffle(mpc, [ks, sums, counts, last])
    keep = np.flatnonzero(m.reveal(mpc, shuffled[-1], None) != 0)
    opened = m.reveal_many(mpc, [m.take(c, keep) for c in shuffled[:3]], None)
    seconds = time.perf_counter() - start
    got = {int(a): (int(s), int(c)) for a, s, c in zip(*(o.view(np.int64) for o in opened))}
    want_sum = np.bincount(key.astype(np.int64), weights=value.view(np.int64), minlength=groups)
    want_cnt = np.bincount(key.astype(np.int64), minlength=groups)
    correct = all(got.get(g) == (int(want_sum[g]), int(want_cnt[g])) for g in range(groups) if want_cnt[g])
    return {"seconds": seconds, "rounds": mpc.rounds - r0, "groups": len(keep), "correct": correct,
            "mb_sent": mpc.channel.bytes_sent / 1e6}


def top_k(mpc, n: int, k: int) -> dict:
    import executors.mpc as m

    rng = np.random.default_rng(8)
    value = rng.integers(-(1 << 40), 1 << 40, n)
    owner = mpc.compute[1]
    v = m.share_input(mpc, owner, value.astype(np.uint64) if mpc.me == owner else None, n)
    r0 = mpc.rounds
    start = time.perf_counter()
    (vs,), _ = m.sort_by(mpc, [v], [], [True])
    top = m.reveal(mpc, m.take(vs, np.arange(min(k, n))), None).view(np.int64)
    seconds = time.perf_counter() - start
    correct = np.array_equal(top, np.sort(value)[::-1][:k])
    return {"seconds": seconds, "rounds": mpc.rounds - r0, "correct": bool(correct)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    g = run_three(group_by, args.n, args.groups)
    t = run_three(top_k, args.n, args.k)
    print(f"machine: {machine()}")
    print(f"n = {args.n}")
    print("| operation | seconds (slowest party) | rounds | correct |")
    print("|---|---|---|---|")
    print(f"| secret GROUP BY ({args.groups} groups): SUM, COUNT | "
          f"{max(r['seconds'] for r in g.values()):.1f} | {g['c0']['rounds']} | {all(r['correct'] for r in g.values())} |")
    print(f"| ORDER BY secret DESC LIMIT {args.k} | {max(r['seconds'] for r in t.values()):.1f} | "
          f"{t['c0']['rounds']} | {all(r['correct'] for r in t.values())} |")


if __name__ == "__main__":
    main()
