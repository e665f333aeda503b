"""Issue #11 High 7: a keyed-tag join opens its match structure to all three compute parties
(reveal mode: which rows matched; sizes mode: the pairs of shuffled rows), so each of them needs
`join_key` for the key columns, not only the issuer. Here cid is `join_key` for the issuer p0 by
a grant and `aggregate` for p1, the compute party that matches the tags."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from fedsql import errors
from fedsql.proto import node_pb2 as pb
from tests.adversarial.harness import running, write_config

pytestmark = pytest.mark.e2e

CONFIG = """\
[federation]
name = "joinviewers"
compute = ["p1", "p2", "p3"]
deadline_seconds = 60

[parties.p0]
address = "127.0.0.1:{port1}"

[parties.p1]
address = "127.0.0.1:{port2}"

[parties.p2]
address = "127.0.0.1:{port3}"
[parties.p2.tables.c]
source = "p2_c.parquet"
columns = {{ cid = "aggregate", v = "aggregate" }}
grants = {{ p0 = {{ cid = "join_key" }} }}
unique = ["cid"]

[parties.p3]
address = "127.0.0.1:{port4}"
[parties.p3.tables.s]
source = "p3_s.parquet"
columns = {{ cid = "aggregate", w = "aggregate" }}
grants = {{ p0 = {{ cid = "join_key" }} }}
"""

TABLES = {
    "p2_c.parquet": pa.table({"cid": pa.array(range(1, 51), pa.int64()),
                              "v": pa.array([i % 7 for i in range(1, 51)], pa.int64())}),
    "p3_s.parquet": pa.table({"cid": pa.array([i % 70 for i in range(120)], pa.int64()),
                              "w": pa.array(range(120), pa.int64())}),
}
JOIN = "SELECT COUNT(*), SUM(s.w), SUM(c.v) FROM p2.c AS c JOIN p3.s AS s ON c.cid = s.cid"


def _reference() -> list[tuple]:
    db = duckdb.connect()
    db.register("c", TABLES["p2_c.parquet"])
    db.register("s", TABLES["p3_s.parquet"])
    return [tuple(r) for r in db.execute(JOIN.replace("p2.c", "c").replace("p3.s", "s")).fetchall()]


@pytest.mark.parametrize("mode", ["reveal", "sizes"])
def test_join_refused_when_a_compute_party_may_not_see_the_match(tmp_path: Path, mode: str) -> None:
    config = write_config(tmp_path, CONFIG, TABLES)
    with running(config, attacks={"p1": "observe"}) as fed:
        with fed.connect("p0") as conn:
            cur = conn.cursor()
            cur.execute(f"SET fedsql.mode = '{mode}'")
            with pytest.raises(errors.PolicyViolation) as info:
                cur.execute(JOIN)
            msg = str(info.value)
            assert "is 'aggregate' for party 'p1'" in msg and "'join_key'" in msg, msg
            assert "SET fedsql.mode = 'oblivious'" in msg
            with pytest.raises(errors.PolicyViolation, match="for party 'p1'"):
                cur.execute("EXPLAIN " + JOIN)
        assert not [r for r in fed.attack_log("p1") if r.get("rpc") == "Run"]  # nothing reached the matcher

        # an issuer that skips its own check: the key owner's node refuses on its own compile
        reply = fed.stub("p0", "p2").Run(pb.RunRequest(
            query_id=f"forged-{mode}", issuer="p0", sql=JOIN, settings={"fedsql.mode": mode},
            plan_hash="0" * 64, deadline_unix=time.time() + 10), timeout=30)
        assert not reply.ok and reply.error.kind == "PolicyViolation", reply
        assert "for party 'p1'" in reply.error.message
        assert "refused" in fed.audit_text("p2")


def test_oblivious_join_runs_with_the_grant(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG, TABLES)
    with running(config) as fed:
        with fed.connect("p0", mode="oblivious") as conn:
            cur = conn.cursor()
            cur.execute(JOIN)
            assert [tuple(r) for r in cur.fetchall()] == _reference()
            assert any("whether the key declared unique on p2's side" in line for line in cur.leakage)
