"""Issue #11 High 5: a scalar subquery's value is inlined into the SQL every participant of the
outer query receives. Each receiving party must be allowed to see it (planned as if it had issued
the subquery) and named in the leakage report; otherwise the statement is refused before
anything runs, and the value reaches no other party's SQL, audit log or node log."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from fedsql import errors
from tests.adversarial.harness import running, standard_federation, write_config

pytestmark = pytest.mark.e2e

# p1 issues; p2 (a bank) owns c; p3 (a hospital) owns big, whose v is `aggregate` for p1 only.
CONFIG = """\
[federation]
name = "scalarleak"
compute = ["p1", "p2", "p3"]
deadline_seconds = 60

[parties.p1]
address = "127.0.0.1:{port1}"

[parties.p2]
address = "127.0.0.1:{port2}"
[parties.p2.tables.c]
source = "p2_c.parquet"
columns = {{ cid = "join_key", income = "aggregate" }}

[parties.p3]
address = "127.0.0.1:{port3}"
[parties.p3.tables.big]
source = "p3_big.parquet"
columns = {{ v = "private" }}
grants = {{ p1 = {{ v = "aggregate" }} }}
"""

V = [123_456_001, 234_567_002, 345_678_003]
SECRET = str(sum(V))  # 703701006: what p3 lets p1 learn, and nobody else
TABLES = {
    "p2_c.parquet": pa.table({"cid": pa.array(range(1, 41), pa.int64()),
                              "income": pa.array([i * 20_000_000 for i in range(1, 41)], pa.int64())}),
    "p3_big.parquet": pa.table({"v": pa.array(V, pa.int64())}),
}
LEAKY = "SELECT COUNT(*) FROM p2.c WHERE income > (SELECT SUM(v) FROM p3.big)"


def _seen_by(fed, party: str) -> str:
    """Everything `party` received or wrote: its Run requests, audit log and node log."""
    runs = " ".join(r.get("sql", "") for r in fed.attack_log(party))
    return runs + fed.audit_text(party) + fed.node_log(party)


def test_refused_when_a_receiving_party_may_not_see_the_value(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG, TABLES)
    with running(config, attacks={"p2": "observe"}) as fed:
        with fed.connect("p1") as conn:
            cur = conn.cursor()
            cur.execute("SELECT SUM(v) FROM p3.big")  # p1 itself may see it (the grant)
            assert cur.fetchall() == [(int(SECRET),)]
            with pytest.raises(errors.PolicyViolation) as info:
                cur.execute(LEAKY)
            msg = str(info.value)
            assert "party 'p2' may not see that value" in msg and "p3.big.v is 'private' for issuer 'p2'" in msg
            assert "ask the owners to allow 'p2'" in msg and "Traceback" not in msg
            with pytest.raises(errors.PolicyViolation):  # EXPLAIN refuses the same way
                cur.execute("EXPLAIN " + LEAKY)
        assert SECRET not in _seen_by(fed, "p2")
        assert not [r for r in fed.attack_log("p2") if r.get("rpc") == "Run" and "income" in r.get("sql", "")]


def test_allowed_receivers_are_named_and_nobody_else_gets_the_value(tmp_path: Path) -> None:
    config, data = standard_federation(tmp_path)
    # SUM(x) over the union t runs under MPC: only the issuer p1 learns it. The outer query runs at
    # p2 alone (its own table), so p2 receives the value (x is `aggregate` for p2: allowed); p3 must not.
    total = sum(v for v in data["t"].column("x").to_pylist() if v is not None)
    inner = "SELECT SUM(x) + 7000000 FROM t"
    secret = str(total + 7_000_000)
    sql = f"SELECT COUNT(*) FROM p2.t WHERE x < ({inner})"
    with running(config, attacks={"p2": "observe", "p3": "observe"}) as fed:
        with fed.connect("p1") as conn:
            cur = conn.cursor()
            cur.execute(sql)
            assert cur.fetchall() == [(sum(1 for v in data["p2.t"].column("x").to_pylist() if v is not None),)]
            report = "\n".join(cur.leakage)
        assert "its value was revealed to the issuer and written into the SQL of the outer query, which p2 " \
               "receive" in report, report
        assert secret in " ".join(r.get("sql", "") for r in fed.attack_log("p2"))  # the named receiver
        assert secret not in _seen_by(fed, "p3")  # took part in the subquery only: never sees its value
        assert any(r.get("rpc") == "Run" for r in fed.attack_log("p3"))
