"""Issue #16 item 1: attacks of an issuer on owners' approvals.

- The modified issuer bank gets a query approved by telco (by hand, then through a template) and
  runs a different query under the approved query id (attacks/approval_swap.py). telco must refuse
  its part — it compiled the swapped SQL itself, and its approval is for another plan hash — so the
  swapped query never runs and telco audits the refusal.
- bank floods telco with requests for approval: refused beyond a quota per issuer.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from fedsql import errors
from tests.adversarial.approvals_federation import Background, approvals_federation, fedsql_cli, wait_pending
from tests.adversarial.harness import Running, running

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
    assert isinstance(q.error, errors.Error), q.error  # (which party's error comes first is the attacker's choice)
    log = fed.attack_log("bank")
    swapped = [r for r in log if r["event"] == "swapped" and r["query_id"] == q.query_id]
    assert swapped and swapped[0]["approved_hash"] != swapped[0]["sent_hash"]  # the attack really swapped
    [telco] = [r for r in log if r["event"] == "reply" and r["party"] == "telco" and r["query_id"] == q.query_id]
    assert not telco["ok"] and telco["kind"] == "ApprovalRefused", telco
    assert "approval binds to the plan" in telco["message"], telco
    assert not [r for r in fed.attack_log("bank") if r["event"] == "swap_ran"]
    mine = [e for e in _audit(fed, "telco") if e.get("query_id") == q.query_id]
    assert not [e for e in mine if e["event"] == "query"], "telco ran its part of the swapped plan"
    refused = [e for e in mine if e["event"] == "refused"]
    assert refused and refused[-1]["error"]["kind"] == "ApprovalRefused", mine
    assert refused[-1]["plan_hash"] == swapped[0]["sent_hash"]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    config = approvals_federation(tmp_path_factory.mktemp("approval-attacks"), timeout=600)
    swaps = {APPROVED: SWAPPED, SHAPE.format(300): OTHER_SHAPE}
    with running(config, attacks={"bank": "approval_swap"}, params={"bank": {"swap": swaps}}) as r:
        yield r


def test_a_swapped_plan_under_an_approved_query_id_or_template_is_refused(fed: Running) -> None:
    config = fed.config
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


def test_an_issuer_cannot_flood_the_owner_with_held_requests(fed: Running) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from fedsql.approval_gate import MAX_PENDING_PER_ISSUER
    from fedsql.proto import node_pb2 as pb

    sql = APPROVED.replace(">= 0", ">= 5")
    probe = Background(fed.fed, fed.config, sql)
    plan_hash = wait_pending(fed.config, probe.query_id).plan_hash
    probe.client.cancel(probe.query_id)
    probe.join(30)
    stub = fed.stub("bank", "telco")  # the test acts as bank's node: it asks and never waits

    def ask(i: int):
        return stub.Authorize(pb.AuthorizeRequest(query_id=f"flood{i}", issuer="bank", sql=sql, plan_hash=plan_hash),
                              timeout=60)

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(ask, range(MAX_PENDING_PER_ISSUER)))
    assert all(r.status == "pending" for r in replies), [r for r in replies if r.status != "pending"][:1]
    over = ask(MAX_PENDING_PER_ISSUER)
    assert over.error.kind == "ResourceLimitExceeded", over
    assert f"{MAX_PENDING_PER_ISSUER} queries waiting for approval by 'telco'" in over.error.message
    for i in range(MAX_PENDING_PER_ISSUER):
        stub.Abort(pb.CancelRequest(query_id=f"bank/flood{i}", reason="flood over"), timeout=10)
    again = Background(fed.fed, fed.config, sql)  # cancelled requests free the quota
    wait_pending(fed.config, again.query_id)
    again.client.cancel(again.query_id)
    again.join(30)
    assert isinstance(again.error, errors.QueryCancelled), again.error


def test_running_without_asking_or_replaying_a_used_approval_is_refused(fed: Running) -> None:
    import time

    from fedsql.proto import node_pb2 as pb

    sql = APPROVED.replace(">= 0", ">= 6")
    honest = Background(fed.fed, fed.config, sql)
    plan_hash = wait_pending(fed.config, honest.query_id).plan_hash
    _approve(fed, honest.query_id)
    honest.join()
    assert honest.error is None, honest.error
    stub = fed.stub("bank", "telco")  # the test acts as bank's node

    def run(query_id: str):
        return stub.Run(pb.RunRequest(query_id=query_id, issuer="bank", sql=sql, plan_hash=plan_hash,
                                      deadline_unix=time.time() + 20), timeout=30)

    skipped = run("never-asked")  # an issuer whose configuration says auto, or that skips Authorize
    assert not skipped.ok and skipped.error.kind == "ApprovalRefused", skipped
    assert "never submitted" in skipped.error.message
    replay = run(honest.query_id)  # the approval was consumed by its run
    assert not replay.ok and replay.error.kind == "ApprovalRefused", replay
    assert "used by its run already" in replay.error.message


def test_another_party_cannot_ask_run_or_cancel_in_the_issuers_name_nor_run_while_pending(fed: Running) -> None:
    """third (a compute party of bank's plan) acts with its own node certificate in bank's name;
    then bank itself sends Run while telco's decision is still pending. None of it runs telco's
    part, cancels bank's request or approves it."""
    import time

    import grpc

    from fedsql.proto import node_pb2 as pb

    sql = APPROVED.replace(">= 0", ">= 7")
    q = Background(fed.fed, fed.config, sql)
    held = wait_pending(fed.config, q.query_id)
    third = fed.stub("third", "telco")
    for call, request in (
            (third.Authorize, pb.AuthorizeRequest(query_id=q.query_id, issuer="bank", sql=sql,
                                                  plan_hash=held.plan_hash)),
            (third.Run, pb.RunRequest(query_id=q.query_id, issuer="bank", sql=sql, plan_hash=held.plan_hash,
                                      deadline_unix=time.time() + 20)),
            (third.Abort, pb.CancelRequest(query_id=f"bank/{q.query_id}", reason="not yours"))):
        with pytest.raises(grpc.RpcError) as refused:
            call(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, refused.value
    after = wait_pending(fed.config, q.query_id)
    assert after.status == "pending" and after.decided_by is None  # neither cancelled nor approved
    assert q.thread.is_alive()
    _approve(fed, q.query_id, "--reason", "after third's attempts")
    q.join()  # (not in the modified bank's swap list: it runs as asked)
    assert q.error is None, q.error

    sql = APPROVED.replace(">= 0", ">= 8")
    q = Background(fed.fed, fed.config, sql)
    held = wait_pending(fed.config, q.query_id)
    early = fed.stub("bank", "telco").Run(pb.RunRequest(query_id=q.query_id, issuer="bank", sql=sql,
                                                        plan_hash=held.plan_hash, deadline_unix=time.time() + 20),
                                          timeout=30)
    assert not early.ok and early.error.kind == "ApprovalRefused", early
    assert "waiting for approval by telco" in early.error.message
    after = wait_pending(fed.config, q.query_id)
    assert after.status == "pending" and after.decided_by is None  # a Run before the decision consumes nothing
    mine = [e for e in _audit(fed, "telco") if e.get("query_id") == q.query_id]
    assert not [e for e in mine if e["event"] == "query"], "telco ran its part before its decision"
    q.client.cancel(q.query_id, reason="test done")
    q.join(30)
    assert isinstance(q.error, errors.QueryCancelled), q.error
