"""Owners' approvals without nodes: the configuration keys, query shapes, the store, which tables
a plan reads, and the owner's CLI refusals (fedsql/approvals.py, fedsql/approvals_cli.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fedsql import errors
from fedsql.approvals import (ApprovalStore, owner_epsilon, owners_to_ask, parse_duration, query_shape, required,
                              store_path, tables_read)
from fedsql.config import load_config, parse_config
from tests.adversarial.approvals_federation import approvals_federation

BASE = """\
[federation]
name = "a"
compute = ["p1", "p2", "p3"]
[parties.p1]
address = "127.0.0.1:7101"
{party}
[parties.p1.tables.t]
source = "t.parquet"
{table}
[parties.p2]
address = "127.0.0.1:7102"
[parties.p3]
address = "127.0.0.1:7103"
"""


def _parse(party: str = "", table: str = ""):
    return parse_config(BASE.format(party=party, table=table), Path("/cfg/federation.toml"))


def test_approval_defaults_to_auto_and_tables_inherit_their_partys() -> None:
    assert _parse().table("p1", "t").approval == "auto"
    fed = _parse('approval = "manual"\napproval_timeout_seconds = 60')
    assert fed.table("p1", "t").approval == "manual" and fed.party("p1").approval_timeout_seconds == 60.0
    assert _parse('approval = "manual"', 'approval = "template"').table("p1", "t").approval == "template"
    assert _parse().party("p1").approval_timeout_seconds == 86400.0


@pytest.mark.parametrize("party, table, names", [
    ('approval = "ask"', "", "parties.p1.approval: unknown approval 'ask'"),
    ("", 'approval = "Manual"', "parties.p1.tables.t.approval: unknown approval 'Manual'"),
    ("approval_timeout_seconds = 0", "", "approval_timeout_seconds: expected a positive number"),
    ('approval_timeout_seconds = "1h"', "", "approval_timeout_seconds: expected a positive number"),
    ('aproval = "manual"', "", "did you mean 'approval'?"),
    ("", 'approvel = "manual"', "did you mean 'approval'?"),
])
def test_bad_approval_keys_say_what_is_wrong(party: str, table: str, names: str) -> None:
    with pytest.raises(errors.ConfigError, match=None) as err:
        _parse(party, table)
    assert names in str(err.value), str(err.value)


def test_shape_replaces_literals_keeps_ordinals_structure_issuer_and_mode() -> None:
    a = query_shape("SELECT k, COUNT(*) FROM t WHERE x > 5 AND s = 'a' GROUP BY 1 ORDER BY 1 LIMIT 3", "p1", {})
    b = query_shape("select k, count(*) from T where x > -70 and s = 'zz' group by 1 order by 1 limit 10", "p1", {})
    assert a == b and "'a'" not in a.text and "5" not in a.text
    assert query_shape("SELECT k FROM t GROUP BY 2", "p1", {}) != query_shape("SELECT k FROM t GROUP BY 1", "p1", {})
    assert query_shape("SELECT x FROM t WHERE x < 5", "p1", {}) != query_shape("SELECT x FROM t WHERE x > 5", "p1", {})
    assert query_shape("SELECT x FROM t WHERE x IN (1, 2)", "p1", {}) != \
        query_shape("SELECT x FROM t WHERE x IN (1, 2, 3)", "p1", {})
    assert query_shape("SELECT 1", "p1", {}) != query_shape("SELECT 1", "p2", {})
    eps = query_shape("SELECT 1", "p1", {"fedsql.epsilon": "0.5"})
    assert eps == query_shape("SELECT 1", "p1", {"fedsql.epsilon": "2"})  # ε is capped, not matched
    assert eps != query_shape("SELECT 1", "p1", {"fedsql.mode": "reveal"})


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "30m", "12h", "7d", "1.5h")] == [90, 90, 1800, 43200, 604800, 5400]
    for bad in ("", "0", "-1h", "tomorrow", "3w"):
        with pytest.raises(errors.InterfaceError, match="expected a duration"):
            parse_duration(bad)


def _submit(store: ApprovalStore, key: str = "p2/q1", plan_hash: str = "h1", sql: str = "SELECT 1",
            epsilon: float = 0.0, expires_in: float = 60.0, mode: str = "template"):
    issuer, _, qid = key.partition("/")
    return store.submit(key=key, query_id=qid, issuer=issuer, user="", sql=sql, settings={}, plan_hash=plan_hash,
                        shape=query_shape(sql, issuer, {}), tables=["t"], leakage=["line"], epsilon=epsilon,
                        mode=mode, note="", expires_at=time.time() + expires_in)[0]


def test_store_decides_once_and_an_approval_is_used_once_for_its_plan_only(tmp_path: Path) -> None:
    with ApprovalStore(tmp_path / "a.sqlite") as store:
        first = _submit(store)
        assert _submit(store, plan_hash="other") == first  # a key is recorded once
        assert store.submit(key="p2/q1", query_id="q1", issuer="p2", user="", sql="SELECT 2", settings={},
                            plan_hash="x", shape=query_shape("SELECT 2", "p2", {}), tables=[], leakage=[],
                            epsilon=0.0, mode="manual", note="", expires_at=0.0) == (first, False)
        assert not store.use("p2/q1", "h1")  # pending: nothing to use
        assert store.decide("p2/q1", "approved", "me", "ok")
        assert not store.decide("p2/q1", "rejected", "me", "late")  # decided already
        assert not store.use("p2/q1", "other")  # bound to its plan hash
        assert store.use("p2/q1", "h1") and not store.use("p2/q1", "h1")  # once
        assert [r.key for r in store.unaudited()] == ["p2/q1"]
        store.mark_audited("p2/q1")
        assert store.unaudited() == []


def test_an_approval_not_run_soon_after_the_decision_is_stale(tmp_path: Path) -> None:
    """An issuer that keeps an approval cannot run the query later over the owner's newer data."""
    from fedsql.approvals import USE_WINDOW_SECONDS

    with ApprovalStore(tmp_path / "a.sqlite") as store:
        _submit(store)
        assert store.decide("p2/q1", "approved", "me", "ok")
        decided = store.get("p2/q1").decided_at
        assert not store.use("p2/q1", "h1", now=decided + USE_WINDOW_SECONDS + 1)
        assert store.get("p2/q1").status == "approved"  # still on record as approved, never run
        assert store.use("p2/q1", "h1", now=decided + USE_WINDOW_SECONDS - 1)


def test_store_expires_pending_requests(tmp_path: Path) -> None:
    with ApprovalStore(tmp_path / "a.sqlite") as store:
        _submit(store, expires_in=-1)
        _submit(store, key="p2/q2")
        assert store.expire() == 1
        assert store.get("p2/q1").status == "expired" and store.get("p2/q2").status == "pending"
        assert [r.key for r in store.find("q2")] == ["p2/q2"] and store.find("q1") == []


def test_templates_match_their_shape_within_cap_and_lifetime(tmp_path: Path) -> None:
    with ApprovalStore(tmp_path / "a.sqlite") as store:
        req = _submit(store, sql="SELECT COUNT(*) FROM t WHERE x > 1", epsilon=0.5)
        t = store.add_template(req, "me", "daily", max_epsilon=0.6, expires_at=time.time() + 60)
        same = query_shape("SELECT COUNT(*) FROM t WHERE x > 99", "p2", {}).hash
        assert store.match("p2", same, 0.6)[0] == t
        assert store.match("p3", query_shape("SELECT COUNT(*) FROM t WHERE x > 99", "p3", {}).hash, 0.1)[0] is None
        miss, why = store.match("p2", same, 0.7)
        assert miss is None and "allows epsilon up to 0.6" in why
        assert store.match("p2", same, 0.1, now=time.time() + 120) == (None, f"template {t.id} expired")
        assert store.revoke(t.id) and not store.revoke(t.id)
        assert store.match("p2", same, 0.1) == (None, f"template {t.id} was revoked")
        assert store.match("p2", "nope", 0.1)[1] == "no approved template has this query's shape"


def test_which_owners_a_plan_needs_and_the_tables_it_reads(tmp_path: Path) -> None:
    import duckdb

    from planner.compile import compile_query

    config = approvals_federation(tmp_path)
    fed = load_config(config)

    def schema_of(party: str, table: str):
        src = fed.table(party, table).source
        return tuple((r[0], r[1]) for r in duckdb.sql(f"DESCRIBE SELECT * FROM '{src}'").fetchall())

    def plan(sql: str, issuer: str = "bank", settings: dict | None = None):
        return compile_query(sql, fed, issuer, settings or {}, schema_of).plan

    join = plan("SELECT COUNT(*) FROM bank.customers c JOIN telco.subscribers s ON c.customer_id = s.customer_id")
    assert tables_read(join, fed, "telco") == ["subscribers"] and tables_read(join, fed, "bank") == ["customers"]
    assert required(join, fed, "telco") == ("manual", ["subscribers"]) and owners_to_ask(join, fed) == ["telco"]
    dp = plan("SELECT region, COUNT(*) FROM telco.usage GROUP BY region", settings={"fedsql.epsilon": "0.25"})
    assert required(dp, fed, "telco") == ("template", ["usage"]) and owner_epsilon(dp, "telco") == 0.25
    own = plan("SELECT COUNT(*) FROM telco.subscribers", issuer="telco")
    assert required(own, fed, "telco") == ("auto", []) and owners_to_ask(own, fed) == []  # an owner's own query


def test_owner_cli_refuses_clearly(tmp_path: Path) -> None:
    from fedsql.approvals_cli import run_decide, run_list, run_revoke

    config = approvals_federation(tmp_path)
    with pytest.raises(errors.InterfaceError, match="no table of party 'bank' needs approval"):
        run_list(str(config), "bank")
    with pytest.raises(errors.InterfaceError, match="no pending query 'q9'"):
        run_decide(str(config), "telco", "q9", True)
    with pytest.raises(errors.InterfaceError, match="add --template"):
        run_decide(str(config), "telco", "q9", True, max_epsilon=1.0)
    with ApprovalStore(store_path(config, "telco")) as store:
        _submit(store, key="bank/q9", epsilon=0.5)
        _submit(store, key="third/q9")
    with pytest.raises(errors.InterfaceError, match="several issuers sent query id 'q9'"):
        run_decide(str(config), "telco", "q9", True)
    with pytest.raises(errors.InterfaceError, match="above --max-epsilon 0.25"):
        run_decide(str(config), "telco", "bank/q9", True, template=True, max_epsilon=0.25)
    assert run_decide(str(config), "telco", "bank/q9", False, reason="no") == 0
    with pytest.raises(errors.InterfaceError, match="it is rejected"):
        run_decide(str(config), "telco", "bank/q9", True)
    with pytest.raises(errors.InterfaceError, match="no live template 'tnone'"):
        run_revoke(str(config), "telco", "tnone")
    with ApprovalStore(store_path(config, "telco")) as store:
        tid = store.add_template(store.get("third/q9"), "me", "", None, None).id
    assert run_revoke(str(config), "telco", tid) == 0
    with ApprovalStore(store_path(config, "telco")) as store:
        assert store.template(tid).revoked
