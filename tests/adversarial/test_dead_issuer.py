"""Issue #11, High 8: an issuer that dies mid-query must not hold the participants.

A data party p4 (not a compute party) issues a query over all four parties and its node
exits right after sending the Run requests. Each participant notices that the issuer's Run
call is gone, fails its run within seconds (audited), tells the other participants, and
frees its query slot: with max_concurrent_queries = 1 another query runs at once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tests.adversarial.harness import running, write_config

pytestmark = pytest.mark.e2e

CONFIG = """\
[federation]
name = "deadissuer"
compute = ["p1", "p2", "p3"]
deadline_seconds = 120
max_concurrent_queries = 1
{parties}
[federated.t]
union = ["p1.t", "p2.t", "p3.t", "p4.t"]
"""
PARTY = """
[parties.{p}]
address = "127.0.0.1:{{port{i}}}"
[parties.{p}.tables.t]
source = "{p}_t.parquet"
columns = {{{{ id = "private", k = "group_key", x = "aggregate" }}}}
"""
NOTICE_SECONDS = 5.0  # a participant must fail its run this soon after the issuer died


def _table(first: int, n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(first, first + n), pa.int64()),
                     "k": pa.array([f"k{i % 3}" for i in range(n)]),
                     "x": pa.array([i * 7 % 101 for i in range(n)], pa.int64())})


def _ends(fed, party: str, query_id: str) -> list[dict]:
    entries = [json.loads(line) for line in fed.audit_text(party).splitlines() if line.strip()]
    return [e for e in entries if e.get("query_id") == query_id and e["event"] in ("failed", "refused", "done")]


def test_participants_notice_a_dead_issuer_within_seconds(tmp_path: Path) -> None:
    parties = "".join(PARTY.format(p=f"p{i}", i=i) for i in range(1, 5))
    config = write_config(tmp_path, CONFIG.format(parties=parties),
                          {f"p{i}_t.parquet": _table(100 * i, 50) for i in range(1, 5)})
    with running(config, attacks={"p4": "dead_issuer_exit"}, params={"p4": {"delay": 1.5}}) as fed:
        with fed.connect("p4") as conn, pytest.raises(Exception):  # its node is gone
            conn.cursor().execute("SELECT k, SUM(x) FROM t GROUP BY k")
        (exit_record,) = [r for r in fed.attack_log("p4") if r["event"] == "exit"]
        query_id = exit_record["query_id"]
        died = exit_record["time"]
        waited_until = time.time() + NOTICE_SECONDS + 20
        ends: dict[str, list[dict]] = {}
        while time.time() < waited_until:
            ends = {p: _ends(fed, p, query_id) for p in ("p1", "p2", "p3")}
            if all(ends.values()):
                break
            time.sleep(0.2)
        for party, got in ends.items():
            assert got, f"{party} is still running the dead issuer's query"
            assert got[0]["event"] == "failed", (party, got[0])
            assert got[0]["time"] - died < NOTICE_SECONDS, (party, got[0]["time"] - died, got[0]["error"])
        # the slots are free again (max_concurrent_queries = 1): a query of p1 over p1-p3 runs
        with fed.connect("p1") as conn:
            cur = conn.cursor()
            cur.execute("SELECT COUNT(*) FROM p2.t")
            assert cur.fetchall() == [(50,)]
