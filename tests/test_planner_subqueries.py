"""Planner tests: derived tables of one party, their column levels, decorrelation, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsql import errors
from fedsql.config import parse_config
from planner.compile import compile_query

CONFIG = """
[federation]
name = "sub"
compute = ["a", "b", "c"]
[parties.a]
address = "127.0.0.1:7201"
[parties.a.tables.cust]
source = "a.parquet"
columns = { cid = "join_key", seg = "group_key", lim = "aggregate", note = "private" }
[parties.b]
address = "127.0.0.1:7202"
[parties.b.tables.ord]
source = "b.parquet"
columns = { cid = "join_key", amount = "aggregate", ch = "group_key", memo = "private", qty = "aggregate" }
[parties.b.tables.ship]
source = "s.parquet"
columns = { cid = "join_key", days = "aggregate" }
[parties.c]
address = "127.0.0.1:7203"
[parties.c.tables.ord]
source = "c.parquet"
columns = { cid = "join_key", amount = "aggregate", ch = "group_key", memo = "private", qty = "aggregate" }
[federated.allord]
union = ["b.ord", "c.ord"]
"""

SCHEMAS = {
    "cust": (("cid", "BIGINT"), ("seg", "VARCHAR"), ("lim", "INTEGER"), ("note", "VARCHAR")),
    "ord": (("cid", "BIGINT"), ("amount", "DECIMAL(10,2)"), ("ch", "VARCHAR"), ("memo", "VARCHAR"),
            ("qty", "INTEGER")),
    "ship": (("cid", "BIGINT"), ("days", "INTEGER")),
}


@pytest.fixture(scope="module")
def fed():
    return parse_config(CONFIG, Path("/tmp/sub.toml"))


def plan(fed, sql, issuer="a", mode="sizes"):
    return compile_query(sql, fed, issuer, {"fedsql.mode": mode}, lambda p, t: SCHEMAS[t]).plan


def local_sql(p, party):
    return [s.sql for s in p.steps if s.op == "local_query" and s.party == party]


def test_aggregating_cte_runs_at_its_owner(fed):
    p = plan(fed, "WITH t AS (SELECT cid, SUM(amount) AS s FROM b.ord GROUP BY cid) "
                  "SELECT c.seg, SUM(t.s) FROM a.cust c JOIN t ON c.cid = t.cid GROUP BY c.seg")
    (frag,) = local_sql(p, "b")
    assert "GROUP BY" in frag and '"ord"' in frag


def test_aggregating_in_subquery_becomes_a_semi_join_on_a_local_view(fed):
    p = plan(fed, "SELECT COUNT(*) FROM a.cust c WHERE c.cid IN (SELECT cid FROM b.ord GROUP BY cid HAVING SUM(qty) > 3)")
    assert any("HAVING" in s for s in local_sql(p, "b"))
    assert "secure_join" in [s.op for s in p.steps]


def test_correlated_subquery_joins_inside_the_owner_when_the_outer_equates_keys(fed):
    p = plan(fed, "SELECT COUNT(*) FROM a.cust c JOIN b.ord o ON c.cid = o.cid "
                  "WHERE o.amount > (SELECT AVG(o2.amount) FROM b.ord o2 WHERE o2.cid = c.cid)")
    (frag,) = local_sql(p, "b")
    assert "__sq0.__c0 = o.cid" in frag and "AVG" in frag


def test_correlated_subquery_across_parties_is_a_keyed_join(fed):
    p = plan(fed, "SELECT COUNT(*) FROM a.cust c WHERE c.lim < (SELECT SUM(o.qty) FROM b.ord o WHERE o.cid = c.cid)")
    assert "secure_join" in [s.op for s in p.steps]


def test_issuer_owned_subqueries_run_whole_at_the_issuer(fed):
    p = plan(fed, "SELECT seg, COUNT(*) FROM a.cust c WHERE lim > (SELECT AVG(lim) FROM a.cust d WHERE d.seg = c.seg) "
                  "GROUP BY seg", issuer="a")
    assert [s.op for s in p.steps] == ["local_query"]
    p = plan(fed, "WITH t AS (SELECT cid, MAX(memo) AS m FROM b.ord GROUP BY cid) SELECT m FROM t", issuer="b")
    assert [s.op for s in p.steps] == ["local_query"]


def test_derived_output_levels_bind_the_outer_query(fed):
    # a per-customer SUM is 'aggregate': fine inside an aggregate, not as a group label
    plan(fed, "WITH t AS (SELECT cid, SUM(amount) AS s FROM b.ord GROUP BY cid) SELECT MAX(s) FROM t")
    with pytest.raises(errors.PolicyViolation, match=r"derived table t\)\.s is 'aggregate'"):
        plan(fed, "WITH t AS (SELECT cid, SUM(amount) AS s FROM b.ord GROUP BY cid) SELECT s, COUNT(*) FROM t GROUP BY s")
    # a COUNT per join_key group is capped by the key's level: no group label either
    with pytest.raises(errors.PolicyViolation, match="'join_key'"):
        plan(fed, "SELECT k, COUNT(*) FROM (SELECT cid, COUNT(*) AS k FROM b.ord GROUP BY cid) s GROUP BY k")
    # per group_key group it may label groups
    plan(fed, "SELECT k, COUNT(*) FROM (SELECT ch, COUNT(*) AS k FROM b.ord GROUP BY ch) s GROUP BY k")
    # a private column stays private through an aggregate
    with pytest.raises(errors.PolicyViolation, match=r"t\)\.m is 'private'"):
        plan(fed, "WITH t AS (SELECT cid, MAX(memo) AS m FROM b.ord GROUP BY cid) "
                  "SELECT COUNT(*) FROM a.cust c JOIN t ON c.cid = t.cid WHERE t.m > 'x'")


@pytest.mark.parametrize("sql", [
    "WITH t AS (SELECT cid, SUM(amount) AS s FROM b.ord WHERE memo LIKE '%x%' GROUP BY cid) SELECT SUM(s) FROM t",
    "SELECT COUNT(*) FROM (SELECT memo FROM b.ord GROUP BY memo) s",
    "SELECT COUNT(*) FROM (SELECT DISTINCT memo FROM b.ord) s",
    "SELECT COUNT(*) FROM a.cust c WHERE c.cid IN (SELECT cid FROM b.ord GROUP BY cid HAVING MAX(memo) > 'a')",
])
def test_derived_table_filters_and_groups_need_aggregate_level(fed, sql):
    with pytest.raises(errors.PolicyViolation, match="memo is 'private'"):
        plan(fed, sql)


@pytest.mark.parametrize("sql,fragment", [
    ("WITH t AS (SELECT o.cid, SUM(o.amount) AS s FROM b.ord o JOIN a.cust c ON o.cid = c.cid GROUP BY o.cid) "
     "SELECT SUM(s) FROM t", "several parties (a, b)"),
    ("SELECT COUNT(*) FROM (SELECT ch, COUNT(*) AS k FROM allord GROUP BY ch) s", "federated union"),
    ("SELECT COUNT(*) FROM a.cust c WHERE c.lim < (SELECT COALESCE(SUM(o.qty), 0) FROM b.ord o "
     "WHERE o.cid = c.cid)", "COALESCE"),
    ("SELECT COUNT(*) FROM a.cust c WHERE c.lim < (SELECT SUM(o.qty) FROM b.ord o WHERE o.cid > c.cid)",
     "equalities"),
    ("SELECT COUNT(*) FROM a.cust c WHERE c.lim < (SELECT SUM(o.qty) FROM b.ord o WHERE o.cid = c.cid) OR c.lim > 5",
     "AND-ed condition"),
    ("SELECT COUNT(*) FROM a.cust c WHERE c.cid IN (SELECT o.cid FROM b.ord o GROUP BY o.cid "
     "HAVING SUM(o.qty) > c.lim)", "correlated"),
    ("SELECT COUNT(*) FROM a.cust c WHERE c.cid IN (SELECT s.cid FROM b.ship s WHERE s.days > "
     "(SELECT AVG(x.amount) FROM c.ord x WHERE x.cid = s.cid))", "several parties"),
])
def test_unsupported_subqueries_are_refused_by_name(fed, sql, fragment):
    with pytest.raises(errors.UnsupportedSql, match=None) as info:
        plan(fed, sql)
    assert fragment.lower() in str(info.value).lower()


def test_plans_are_deterministic(fed):
    sql = ("WITH t AS (SELECT cid, SUM(amount) AS s FROM b.ord GROUP BY cid) "
           "SELECT c.seg, SUM(t.s) FROM a.cust c JOIN t ON c.cid = t.cid WHERE c.lim < "
           "(SELECT AVG(o.qty) FROM b.ord o WHERE o.cid = c.cid) GROUP BY c.seg")
    assert plan(fed, sql).hash == plan(fed, sql).hash


def test_a_correlated_count_becomes_a_left_join_with_zero_for_no_group(fed):
    p = plan(fed, "SELECT COUNT(*) FROM a.cust c WHERE c.lim < (SELECT COUNT(*) FROM b.ord o WHERE o.cid = c.cid)")
    assert any(s.op == "secure_join" and s.kind == "left" for s in p.steps)
    local = next(s for s in p.steps if s.op == "local_query" and s.party == "b")
    assert "GROUP BY" in local.sql and "__p" in local.sql
