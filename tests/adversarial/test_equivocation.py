"""Issue #11, High 4: a malicious issuer sends different plans to different participants.

The modified issuer p1 sends `SELECT SUM(x) FROM t` to p2 (and runs it itself) but a GROUP BY
over the same column to p3, each with the hash of the receiver's own compile, under one query
id. Each participant's own check passes; the plan agreement must refuse the query at every
honest party before any share is dealt or opened: the issuer receives nothing but the
agreement messages, and the honest parties audit a PlanMismatch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e

HONEST = "SELECT SUM(x) FROM t"
LIE = "SELECT k, SUM(x) FROM t GROUP BY k"


def _audit(fed, party: str) -> list[dict]:
    return [json.loads(line) for line in fed.audit_text(party).splitlines() if line.strip()]


def test_equivocating_issuer_is_refused_before_any_share_moves(tmp_path: Path) -> None:
    config, _ = standard_federation(tmp_path)
    with running(config, attacks={"p1": "equivocation_plans"}, params={"p1": {"sql": {"p3": LIE}}}) as fed:
        with fed.connect("p1") as conn, pytest.raises(Exception) as err:
            conn.cursor().execute(HONEST)
        assert "PlanMismatch" in type(err.value).__name__ or "different plans" in str(err.value)

        log = fed.attack_log("p1")
        sent = {r["to"]: r["plan_hash"] for r in log if r["event"] == "sent"}
        assert sent["p2"] != sent["p3"]  # the attack really equivocated
        received = {(r["sender"], r["tag"]) for r in log if r["event"] == "peer_message"}
        assert received, "the honest parties sent no agreement message at all"
        assert {tag for _, tag in received} == {"agree"}, f"share traffic reached the issuer: {sorted(received)}"

        for party in ("p2", "p3"):
            ends = [e for e in _audit(fed, party) if e["event"] in ("failed", "refused")]
            assert ends, f"{party} recorded no refusal"
            assert ends[-1]["error"]["kind"] == "PlanMismatch", (party, ends[-1]["error"])
            assert "different plans" in ends[-1]["error"]["message"]
