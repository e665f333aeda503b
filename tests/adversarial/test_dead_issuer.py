"""Issue #11, High 8: an issuer that dies mid-query must not hold the participants.

A data party p4 (not a compute party) issues a query over all four parties and its node
exits right after sending the Run requests, or is killed (SIGKILL) while its own part is in
a long local step. Each participant notices that the issuer's Run
call is gone, fails its run within seconds (audited), tells the other participants, and
frees its query slot: with max_concurrent_queries = 1 another query runs at once.
"""

from __future__ import annotations

import json
import threading
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


def _audit(fed, party: str) -> list[dict]:
    return [json.loads(line) for line in fed.audit_text(party).splitlines() if line.strip()]


def _ends(fed, party: str, query_id: str) -> list[dict]:
    entries = _audit(fed, party)
    return [e for e in entries if e.get("query_id") == query_id and e["event"] in ("failed", "refused", "done")]


def _config(directory: Path) -> Path:
    parties = "".join(PARTY.format(p=f"p{i}", i=i) for i in range(1, 5))
    return write_config(directory, CONFIG.format(parties=parties),
                        {f"p{i}_t.parquet": _table(100 * i, 50) for i in range(1, 5)})


def _wait_for_ends(fed, query_id: str, seconds: float) -> dict[str, list[dict]]:
    until = time.time() + seconds
    while True:
        ends = {p: _ends(fed, p, query_id) for p in ("p1", "p2", "p3")}
        if all(ends.values()) or time.time() > until:
            return ends
        time.sleep(0.2)


def _check_freed(fed, ends: dict[str, list[dict]], died: float) -> None:
    for party, got in ends.items():
        assert got, f"{party} is still running the dead issuer's query"
        assert got[0]["event"] == "failed", (party, got[0])
        assert got[0]["time"] - died < NOTICE_SECONDS, (party, got[0]["time"] - died, got[0]["error"])
    # the slots are free again (max_concurrent_queries = 1): a query of p1 over p1-p3 runs
    with fed.connect("p1") as conn:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM p2.t")
        assert cur.fetchall() == [(50,)]


def test_participants_notice_a_killed_issuer_mid_query(tmp_path: Path) -> None:
    """The issuer's own part stalls (a long local step); SIGKILL its node while the others wait."""
    from fedsql.client import NodeClient

    config = _config(tmp_path)
    with running(config, attacks={"p4": "stall"}, params={"p4": {"seconds": 120}}) as fed:
        def query() -> None:
            try:  # fails: its node is killed
                with NodeClient(fed.fed.parties["p4"].address, party="p4", config_path=str(config)) as c:
                    c.execute("SELECT k, SUM(x) FROM t GROUP BY k", query_id="killed-issuer")
            except Exception:  # noqa: BLE001
                pass

        worker = threading.Thread(target=query, daemon=True)
        worker.start()
        until = time.time() + 30
        while not all(any(e["event"] == "query" and e.get("query_id") == "killed-issuer" for e in _audit(fed, p))
                      for p in ("p1", "p2", "p3")):
            assert time.time() < until, "the participants never started the query"
            time.sleep(0.2)
        time.sleep(1.0)  # they are waiting on the issuer now
        died = time.time()
        fed.kill("p4")
        _check_freed(fed, _wait_for_ends(fed, "killed-issuer", NOTICE_SECONDS + 20), died)
        worker.join(30)


def test_participants_notice_a_dead_issuer_within_seconds(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with running(config, attacks={"p4": "dead_issuer_exit"}, params={"p4": {"delay": 1.5}}) as fed:
        with fed.connect("p4") as conn, pytest.raises(Exception):  # its node is gone
            conn.cursor().execute("SELECT k, SUM(x) FROM t GROUP BY k")
        (exit_record,) = [r for r in fed.attack_log("p4") if r["event"] == "exit"]
        query_id = exit_record["query_id"]
        _check_freed(fed, _wait_for_ends(fed, query_id, NOTICE_SECONDS + 20), exit_record["time"])
