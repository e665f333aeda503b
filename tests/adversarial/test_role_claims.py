"""A modified issuer lies about its users' roles (docs/security.md, "Users and roles across parties").

What the owner cannot check: the issuer's accounts, so a claimed role of the issuer's own user
is applied (and recorded in the owner's audit log under the claimed user and roles). What it can:
the role's grants are only the ones it wrote for that issuer (`bank:ROLE`, never another party's);
the names are well formed; and the plan hash binds the user and roles, so an issuer that names
other roles in its RunRequest than the plan was checked under, or different roles to different
participants, is refused before any share moves.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fedsql import errors
from fedsql.proto import node_pb2 as pb
from fedsql.users import Accounts
from tests.adversarial.harness import running, write_config
from tests.result_compare import assert_matches
from tests.test_users_roles import CONFIG, PASSWORD, Q_FILTER, Q_GROUP, Q_JOIN, Q_REGION_ROWS, TABLES, _reference

pytestmark = pytest.mark.e2e


def _audit(fed, party: str) -> list[dict]:
    return [json.loads(line) for line in fed.audit_text(party).splitlines() if line.strip()]


def _start(tmp_path: Path, params: dict):
    config = write_config(tmp_path, CONFIG, TABLES)
    return running(config, attacks={"bank": "role_claims"}, params={"bank": params})


def _add_users(fed) -> None:
    accounts = Accounts.of(fed.fed, "bank")
    accounts.add("ann", PASSWORD, ["analyst"])
    accounts.add("bob", PASSWORD)


def _query(fed, sql: str, user: str):
    with fed.connect("bank", user=user, password=PASSWORD) as conn:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetch_arrow_table()


def test_a_claimed_role_gets_only_that_issuers_role_grants(tmp_path: Path) -> None:
    with _start(tmp_path, {"claim": {"roles": ["analyst"]}}) as fed:
        _add_users(fed)
        # bob has no role in bank's accounts; the lying node claims "analyst" and shop cannot tell
        assert_matches(_query(fed, Q_GROUP, "bob"), _reference(Q_GROUP), Q_GROUP)
        ran = [r for r in _audit(fed, "shop") if r["event"] == "query" and r.get("sql") == Q_GROUP]
        assert ran and ran[-1]["user"] == "bob" and ran[-1]["roles"] == ["analyst"], ran  # but it is on record
        # "helper:analyst" is helper's grant: a role claimed by bank never reaches it
        with pytest.raises(errors.PolicyViolation, match="lacks permission 'public'"):
            _query(fed, Q_REGION_ROWS, "bob")

        # the test process as bank's node, skipping bank's own checks: shop refuses on its own compile
        stub = fed.stub("bank", "shop")

        def forged(sql: str, user: str, roles: list[str], qid: str) -> pb.RunReply:
            return stub.Run(pb.RunRequest(query_id=qid, issuer="bank", sql=sql, settings={}, plan_hash="0" * 64,
                                          deadline_unix=time.time() + 10, user=user, roles=roles), timeout=30)

        reply = forged(Q_REGION_ROWS, "bob", ["analyst", "auditor"], "forged-rows")
        assert not reply.ok and reply.error.kind == "PolicyViolation", reply
        assert "lacks permission 'public'" in reply.error.message
        for user, roles, words in (("bob", ["helper:analyst"], "invalid user or role"),
                                   ("bob", ["analyst", "a b"], "invalid user or role"),
                                   ("", ["analyst"], "names roles but no user"),
                                   ("bad user", [], "invalid user or role"),
                                   ("bob", [f"r{i}" for i in range(40)], "at most 32")):
            reply = forged(Q_FILTER, user, roles, f"forged-{len(roles)}-{len(user)}")
            assert not reply.ok and words in reply.error.message, (user, roles, reply)
        refused = [r for r in _audit(fed, "shop") if r["event"] == "refused" and r.get("query_id") == "forged-rows"]
        assert refused and refused[0]["claimed_user"] == "bob" and refused[0]["claimed_roles"] == ["analyst", "auditor"]


def test_roles_sent_must_be_the_roles_the_plan_was_checked_under(tmp_path: Path) -> None:
    """The issuer plans as ann (analyst) but tells shop the query is bob's, without roles, with
    ann's plan hash: shop's compile under what it was told differs, so it refuses."""
    with _start(tmp_path, {"send": {"shop": {"user": "bob", "roles": []}}, "hash": "own"}) as fed:
        _add_users(fed)
        with pytest.raises(errors.Error) as info:
            _query(fed, Q_FILTER, "ann")  # allowed either way: only the binding tells them apart
        assert "differs from the plan" in str(info.value) or "PlanMismatch" in type(info.value).__name__, info.value
        ends = [r for r in _audit(fed, "shop") if r["event"] == "refused"]
        assert ends and ends[-1]["error"]["kind"] == "PlanMismatch", ends
        assert ends[-1]["claimed_user"] == "bob"
        with pytest.raises(errors.PolicyViolation):  # a query only the analyst may run: refused on shop's own check
            _query(fed, Q_GROUP, "ann")


def test_different_roles_to_different_participants_are_refused_before_any_share(tmp_path: Path) -> None:
    """Each participant gets the hash of its own compile under the user/roles it was told, so each
    one's check passes; the plan agreement compares the hashes, which bind the user and roles."""
    send = {"shop": {"user": "ann", "roles": ["analyst"]}, "helper": {"user": "", "roles": []}}
    with _start(tmp_path, {"send": send}) as fed:
        _add_users(fed)
        with pytest.raises(errors.Error) as info:
            _query(fed, Q_JOIN, "ann")
        assert "PlanMismatch" in type(info.value).__name__ or "different plans" in str(info.value), info.value
        log = fed.attack_log("bank")
        sent = {r["to"]: r["plan_hash"] for r in log if r["event"] == "sent"}
        assert sent["shop"] != sent["helper"]  # the attack really told them different things
        received = {r["tag"] for r in log if r["event"] == "peer_message"}
        assert received == {"agree"}, f"share traffic reached the issuer: {sorted(received)}"
        for party in ("shop", "helper"):
            ends = [e for e in _audit(fed, party) if e["event"] in ("failed", "refused")]
            assert ends and ends[-1]["error"]["kind"] == "PlanMismatch", (party, ends)
