"""Owners' approvals end to end (issue #16 item 1): real nodes, the real `fedsql approve|reject`.

telco's `subscribers` is manual, its DP table `usage` is template (tests/adversarial/
approvals_federation.py); bank issues every query.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from fedsql import errors
from tests.adversarial.approvals_federation import (APPROVAL_TIMEOUT, Background, approvals_federation, fedsql_cli,
                                                    reference, wait_pending)
from tests.adversarial.dp_federation import spent
from tests.adversarial.harness import Running, running
from tests.result_compare import assert_matches

pytestmark = pytest.mark.e2e

JOIN = ("SELECT COUNT(*) AS n, SUM(s.tenure_months) AS months, MIN(c.income) AS low "
        "FROM bank.customers c JOIN telco.subscribers s ON c.customer_id = s.customer_id WHERE s.tenure_months >= 0")
DP = "SELECT region, COUNT(*) AS n FROM telco.usage WHERE minutes > {} GROUP BY region ORDER BY region"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    config = approvals_federation(tmp_path_factory.mktemp("approvals"))
    with running(config) as r:
        yield r


def _audit(fed: Running, party: str) -> list[dict]:
    return [json.loads(line) for line in fed.audit_text(party).splitlines() if line.strip()]


def _decisions(fed: Running, query_id: str) -> list[dict]:
    import time

    for _ in range(50):  # the node audits a CLI decision within a second
        found = [e for e in _audit(fed, "telco") if e["event"] == "approval" and e["query_id"] == query_id]
        if found:
            return found
        time.sleep(0.2)
    return []


def _cli(fed: Running, *args: str) -> str:
    done = fedsql_cli(args[0], str(fed.config), "--party", "telco", *args[1:])
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_manual_query_waits_until_approved_then_equals_duckdb(fed: Running) -> None:
    q = Background(fed.fed, fed.config, JOIN, user="alice")
    req = wait_pending(fed.config, q.query_id)
    assert q.thread.is_alive() and q.result is None
    listing = _cli(fed, "approvals")
    for part in (f"bank/{q.query_id}", "issuer:    bank (user alice)", req.plan_hash, JOIN, "telco.subscribers",
                 "reveals:"):
        assert part in listing, (part, listing)
    out = _cli(fed, "approve", q.query_id, "--reason", "monthly churn report", "--by", "owner-ops")
    assert f"approved query bank/{q.query_id}" in out
    q.join()
    assert q.error is None, q.error
    table, meta = q.result
    assert_matches(table, reference(fed.config, JOIN), JOIN)
    assert any(p.startswith("waiting for approval by telco") for p in q.progress), q.progress
    assert meta["plan_hash"] == req.plan_hash
    [decision] = _decisions(fed, q.query_id)
    assert (decision["decision"], decision["decided_by"], decision["reason"]) == \
        ("approved", "owner-ops", "monthly churn report")
    assert decision["plan_hash"] == req.plan_hash
    asked = [e for e in _audit(fed, "telco") if e["event"] == "approval_requested" and e["query_id"] == q.query_id]
    assert asked and asked[0]["user"] == "alice" and asked[0]["plan_hash"] == req.plan_hash
    verify = fedsql_cli("audit", "verify", str(fed.config), "--party", "telco")
    assert verify.returncode == 0, verify.stderr


def test_reject_names_owner_and_reason_reveals_nothing_and_charges_no_budget(fed: Running) -> None:
    before = spent(fed.config)
    sql = DP.format(150)
    q = Background(fed.fed, fed.config, sql, {"fedsql.epsilon": "0.5"})
    req = wait_pending(fed.config, q.query_id)
    assert req.mode == "template" and req.epsilon == 0.5
    _cli(fed, "reject", q.query_id, "--reason", "regional figures are embargoed")
    q.join()
    assert isinstance(q.error, errors.ApprovalRefused), q.error
    message = str(q.error)
    assert "telco" in message and "rejected" in message and "regional figures are embargoed" in message
    assert q.result is None
    assert spent(fed.config) == before  # never reached the ledger
    ran = [e for e in _audit(fed, "telco") if e.get("query_id") == q.query_id and e["event"] == "query"]
    assert not ran, "telco ran its part of a rejected query"
    [decision] = _decisions(fed, q.query_id)
    assert decision["decision"] == "rejected" and decision["reason"] == "regional figures are embargoed"


def test_no_decision_expires_with_a_clear_error(fed: Running) -> None:
    q = Background(fed.fed, fed.config, JOIN.replace(">= 0", ">= 1"))
    wait_pending(fed.config, q.query_id)
    q.join(APPROVAL_TIMEOUT + 30)
    assert isinstance(q.error, errors.ApprovalRefused), q.error
    assert "expired" in str(q.error) and "telco" in str(q.error) and "approval_timeout_seconds" in str(q.error)
    [decision] = _decisions(fed, q.query_id)
    assert decision["decision"] == "expired"
    late = fedsql_cli("approve", str(fed.config), "--party", "telco", q.query_id)
    assert late.returncode != 0 and "expired" in late.stderr


def test_the_clients_timeout_bounds_the_wait(fed: Running) -> None:
    q = Background(fed.fed, fed.config, JOIN.replace(">= 0", ">= 2"), timeout=3)
    wait_pending(fed.config, q.query_id)
    q.join(30)
    assert isinstance(q.error, errors.QueryTimeout), q.error
    assert "approval by telco" in str(q.error)
    [decision] = _decisions(fed, q.query_id)
    assert decision["decision"] == "cancelled"


def test_issuer_cancels_while_waiting(fed: Running) -> None:
    q = Background(fed.fed, fed.config, JOIN.replace(">= 0", ">= 3"))
    wait_pending(fed.config, q.query_id)
    q.client.cancel(q.query_id, reason="changed my mind")
    q.join(30)
    assert isinstance(q.error, errors.QueryCancelled), q.error
    assert "waiting for approval by telco" in str(q.error) and "changed my mind" in str(q.error)
    [decision] = _decisions(fed, q.query_id)
    assert decision["decision"] == "cancelled"
    late = fedsql_cli("approve", str(fed.config), "--party", "telco", q.query_id)
    assert late.returncode != 0 and "cancelled" in late.stderr


def test_template_admits_its_shape_with_other_literals_and_holds_others(fed: Running) -> None:
    first = Background(fed.fed, fed.config, DP.format(200), {"fedsql.epsilon": "0.5"})
    wait_pending(fed.config, first.query_id)
    out = _cli(fed, "approve", first.query_id, "--template", "--max-epsilon", "0.6", "--expires", "1h",
               "--reason", "daily regional statistic")
    assert "template" in out
    first.join()
    assert first.error is None, first.error
    assert first.result[0].column("region").to_pylist() == ["north", "south"]

    again = Background(fed.fed, fed.config, DP.format(350), {"fedsql.epsilon": "0.4"}).join()
    assert again.error is None, again.error
    assert not any("waiting for approval" in p for p in again.progress), again.progress
    assert again.result[0].column("region").to_pylist() == ["north", "south"]
    [decision] = _decisions(fed, again.query_id)
    assert decision["decided_by"].startswith("template ")
    templates = [e for e in _audit(fed, "telco") if e["event"] == "approval_template"]
    assert templates and templates[-1]["max_epsilon"] == 0.6 and templates[-1]["reason"] == "daily regional statistic"

    other_shape = Background(fed.fed, fed.config, DP.format(200).replace(">", "<"), {"fedsql.epsilon": "0.5"})
    assert "no approved template" in wait_pending(fed.config, other_shape.query_id).note
    over_cap = Background(fed.fed, fed.config, DP.format(250), {"fedsql.epsilon": "1.0"})
    held = wait_pending(fed.config, over_cap.query_id)
    assert "allows epsilon up to 0.6" in held.note
    for q in (other_shape, over_cap):
        q.client.cancel(q.query_id, reason="test done")
        q.join(30)
        assert isinstance(q.error, errors.QueryCancelled), q.error


def test_template_cannot_approve_a_manual_table(fed: Running) -> None:
    q = Background(fed.fed, fed.config, JOIN.replace(">= 0", ">= 4"))
    wait_pending(fed.config, q.query_id)
    refused = fedsql_cli("approve", str(fed.config), "--party", "telco", q.query_id, "--template")
    assert refused.returncode != 0 and 'approval = "manual"' in refused.stderr
    _cli(fed, "reject", q.query_id)
    q.join(30)
    assert isinstance(q.error, errors.ApprovalRefused) and "no reason given" in str(q.error)

