"""Issue #16 item 1: an approval binds to the plan every party agreed on.

The modified issuer bank gets a query approved by telco (by hand, then through a template) and
runs a different query under the approved query id (attacks/approval_swap.py). telco must refuse
its part — it compiled the swapped SQL itself, and its approval is for another plan hash — so the
swapped query never runs and telco audits the refusal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsql import errors
from tests.adversarial.approvals_federation import Background, approvals_federation, fedsql_cli, wait_pending
from tests.adversarial.harness import running

pytestmark = pytest.mark.e2e

APPROVED = ("SELECT COUNT(*) AS n FROM bank.customers c JOIN telco.subscribers s "
            "ON c.customer_id = s.customer_id WHERE s.tenure_months >= 0")
SWAPPED = ("SELECT SUM(s.tenure_months) AS months FROM bank.customers c JOIN telco.subscribers s "
           "ON c.customer_id = s.customer_id WHERE c.income > 20000")
SHAPE = "SELECT region, COUNT(*) AS n FROM telco.usage WHERE minutes > {} GROUP BY region"
OTHER_SHAPE = "SELECT region, SUM(minutes) AS total FROM telco.usage GROUP BY region"


def _audit(fed, party: str) -> list[dict]:
    return [json.loads(line) for line in fed.audit_text(party).splitlines() if line.strip()]


def _approve(fed, query_id: str, *extra: str) -> None:
    done = fedsql_cli("approve", str(fed.config), "--party", "telco", query_id, *extra)
    assert done.returncode == 0, done.stderr


def _assert_refused_by_telco(fed, q: Background) -> None:
    assert isinstance(q.error, errors.Error), q.error
    assert "approval binds to the plan" in str(q.error), q.error
    swapped = [r for r in fed.attack_log("bank") if r["event"] == "swapped" and r["query_id"] == q.query_id]
    assert swapped and swapped[0]["approved_hash"] != swapped[0]["sent_hash"]  # the attack really swapped
    assert not [r for r in fed.attack_log("bank") if r["event"] == "swap_ran"]
    mine = [e for e in _audit(fed, "telco") if e.get("query_id") == q.query_id]
    assert not [e for e in mine if e["event"] == "query"], "telco ran its part of the swapped plan"
    refused = [e for e in mine if e["event"] == "refused"]
    assert refused and refused[-1]["error"]["kind"] == "ApprovalRefused", mine
    assert refused[-1]["plan_hash"] == swapped[0]["sent_hash"]


def test_a_swapped_plan_under_an_approved_query_id_or_template_is_refused(tmp_path: Path) -> None:
    config = approvals_federation(tmp_path)
    swaps = {APPROVED: SWAPPED, SHAPE.format(300): OTHER_SHAPE}
    with running(config, attacks={"bank": "approval_swap"}, params={"bank": {"swap": swaps}}) as fed:
        manual = Background(fed.fed, config, APPROVED)
        wait_pending(config, manual.query_id)
        _approve(fed, manual.query_id, "--reason", "count only")
        manual.join()
        _assert_refused_by_telco(fed, manual)

        # a template: the first query of the shape is approved with it, the second runs by it
        first = Background(fed.fed, config, SHAPE.format(200), {"fedsql.epsilon": "0.5"})
        wait_pending(config, first.query_id)
        _approve(fed, first.query_id, "--template", "--max-epsilon", "1")
        first.join()
        assert first.error is None, first.error
        by_template = Background(fed.fed, config, SHAPE.format(300), {"fedsql.epsilon": "0.5"}).join()
        _assert_refused_by_telco(fed, by_template)
