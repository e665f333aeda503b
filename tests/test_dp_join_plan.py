"""DP over cross-party joins: planning and refusals (planner/passes/dp_join.py), without nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsql import errors
from fedsql.config import parse_config
from planner.compile import compile_query
from planner.explain import explain_lines
from planner.passes.dp import column_notes

CONFIG = """
[federation]
name = "unit"
compute = ["bank", "telco", "helper"]
[parties.bank]
address = "127.0.0.1:7101"
[parties.bank.tables.customers]
source = "c.parquet"
unique = ["cid"]
columns = { cid = "join_key", segment = "group_key", balance = "aggregate", name = "private" }
[parties.bank.tables.branches]
source = "b.parquet"
unique = ["bid"]
columns = { bid = "join_key", city = "group_key" }
[parties.telco]
address = "127.0.0.1:7102"
[parties.telco.tables.usage]
source = "u.parquet"
columns = { uid = "private", cid = "private", minutes = "private", plan = "private" }
[parties.telco.tables.usage.dp]
unit = "uid"
max_rows = 2
bounds = { minutes = [0, 500] }
epsilon = 10.0
max_epsilon_per_query = 2.0
delta = 1e-3
max_delta_per_query = 1e-6
public_groups = { plan = ["basic", "pro"] }
[parties.telco.tables.subscribers]
source = "s.parquet"
unique = ["cid"]
columns = { uid = "private", cid = "private", tier = "private" }
[parties.telco.tables.subscribers.dp]
unit = "uid"
max_rows = 1
max_joined_rows = 3
epsilon = 10.0
delta = 1e-3
max_delta_per_query = 1e-6
[parties.telco.tables.nodelta]
source = "u.parquet"
columns = { uid = "private", cid = "private", minutes = "private", plan = "private" }
[parties.telco.tables.nodelta.dp]
unit = "uid"
max_rows = 1
bounds = { minutes = [0, 500] }
epsilon = 10.0
[parties.telco.tables.plans]
source = "p.parquet"
unique = ["plan"]
columns = { plan = "public", price = "public" }
[parties.helper]
address = "127.0.0.1:7103"
[parties.helper.tables.regions]
source = "r.parquet"
unique = ["bid"]
columns = { bid = "join_key", region = "group_key" }
[parties.helper.tables.calls]
source = "k.parquet"
columns = { cid = "join_key", kind = "group_key" }
"""

SCHEMAS = {
    "customers": (("cid", "BIGINT"), ("segment", "VARCHAR"), ("balance", "DECIMAL(10,2)"), ("name", "VARCHAR"),
                  ("bid", "BIGINT")),
    "branches": (("bid", "BIGINT"), ("city", "VARCHAR")),
    "usage": (("uid", "BIGINT"), ("cid", "BIGINT"), ("minutes", "INTEGER"), ("plan", "VARCHAR")),
    "nodelta": (("uid", "BIGINT"), ("cid", "BIGINT"), ("minutes", "INTEGER"), ("plan", "VARCHAR")),
    "subscribers": (("uid", "BIGINT"), ("cid", "BIGINT"), ("tier", "VARCHAR")),
    "regions": (("bid", "BIGINT"), ("region", "VARCHAR")),
    "plans": (("plan", "VARCHAR"), ("price", "INTEGER")),
    "calls": (("cid", "BIGINT"), ("kind", "VARCHAR")),
}


@pytest.fixture(scope="module")
def fed():
    return parse_config(CONFIG, Path("/tmp/unit.toml"))


def plan(fed, sql, issuer="bank", settings=None):
    return compile_query(sql, fed, issuer, settings or {}, lambda p, t: SCHEMAS[t]).plan


def ops(p):
    return [s.op for s in p.steps]


def test_global_count_and_sums_over_n_to_1_join(fed):
    p = plan(fed, "SELECT COUNT(*), SUM(u.minutes), AVG(LEAST(GREATEST(c.balance, 0), 1000)) "
                  "FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid WHERE c.segment = 'gold'",
             settings={"fedsql.epsilon": "1.0"})
    assert dict(p.settings)["fedsql.mode"] == "oblivious"  # forced: join sizes are not noised
    assert "oblivious_join" in ops(p) and "secure_join" not in ops(p)
    join = next(s for s in p.steps if s.op == "oblivious_join")
    assert join.pk == "right" and join.left == "s_telco"  # the DP table is the many side
    noise = next(s for s in p.steps if s.op == "add_noise").noise
    assert [n.sensitivity for n in noise] == [2, 2 * 500, 2 * 1000 * 100, 2]
    assert [n.epsilon for n in noise] == [0.25] * 4
    assert [(c.party, c.table, c.epsilon) for c in p.dp.charges] == [("telco", "usage", 1.0)]
    frag = next(s for s in p.steps if s.op == "local_query" and s.party == "telco")
    assert "ROW_NUMBER() OVER (PARTITION BY \"uid\"" in frag.sql and "<= 2" in frag.sql
    assert "LEAST(GREATEST(" in frag.sql and "__rows" in frag.sql and " WHERE " not in frag.sql.split("FROM")[-1]
    notes = column_notes(p.dp)
    assert any("DP noisy count" in n for n in notes.values())
    assert any("clamped to [0, 1000]" in n for n in notes.values())
    text = "\n".join(explain_lines(p))
    assert "oblivious mode whatever fedsql.mode says" in text and "telco.usage epsilon 1" in text


def test_sizes_and_reveal_mode_are_forced_oblivious(fed):
    for mode in ("sizes", "reveal"):
        p = plan(fed, "SELECT COUNT(*) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid",
                 settings={"fedsql.mode": mode})
        assert dict(p.settings)["fedsql.mode"] == "oblivious" and "secure_join" not in ops(p)


def test_group_by_uses_partition_selection(fed):
    p = plan(fed, "SELECT c.segment, COUNT(*) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid "
                  "GROUP BY c.segment")
    assert ops(p)[-5:] == ["oblivious_group", "add_noise", "partition_select", "reveal_result", "final_query"]
    assert p.dp.selection is not None and p.dp.delta == 1e-6
    # the issuer owns the keys: only its rank travels, the labels stay at the issuer
    assert next(s for s in p.steps if s.op == "reveal_result").local_keys == "f_bank"
    p2 = plan(fed, "SELECT u.plan, SUM(u.minutes) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid "
                   "GROUP BY u.plan")
    frag = next(s for s in p2.steps if s.op == "local_query" and s.party == "telco")
    assert "IN ('basic', 'pro')" in frag.sql and "strlen" in frag.sql
    share = next(s for s in p2.steps if s.op == "share_table" and s.party == "telco")
    assert share.width == 5 and "agree_width" not in ops(p2)
    assert p2.dp.selection.hidden


def test_chain_of_n_to_1_joins(fed):
    p = plan(fed, "SELECT r.region, COUNT(*) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid "
                  "JOIN helper.regions r ON c.bid = r.bid GROUP BY r.region")
    assert [s.pk for s in p.steps if s.op == "oblivious_join"] == ["right", "right"]


def test_refusals(fed):
    with pytest.raises(errors.UnsupportedSql, match="M:N joins"):  # neither side unique
        plan(fed, "SELECT COUNT(*) FROM telco.usage u JOIN bank.customers c ON u.uid = c.bid")
    with pytest.raises(errors.PolicyViolation, match=r"needs a known range.*LEAST\(GREATEST"):
        plan(fed, "SELECT SUM(c.balance) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid")
    with pytest.raises(errors.PolicyViolation, match="MIN and MAX"):
        plan(fed, "SELECT MAX(u.minutes) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid")
    with pytest.raises(errors.PolicyViolation, match="needs delta > 0"):
        plan(fed, "SELECT c.segment, COUNT(*) FROM telco.nodelta u JOIN bank.customers c ON u.cid = c.cid "
                  "GROUP BY c.segment")
    with pytest.raises(errors.PolicyViolation, match="privacy unit"):
        plan(fed, "SELECT u.uid, COUNT(*) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid GROUP BY u.uid")
    with pytest.raises(errors.PolicyViolation, match="would reveal rows"):
        plan(fed, "SELECT u.minutes FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid")
    with pytest.raises(errors.UnsupportedSql, match="fragment must be the DP table alone"):
        plan(fed, "SELECT COUNT(*) FROM telco.usage u JOIN telco.plans p ON u.plan = p.plan "
                  "JOIN bank.customers c ON u.cid = c.cid")
    with pytest.raises(errors.UnsupportedSql, match="several DP-protected tables"):
        plan(fed, "SELECT COUNT(*) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid "
                  "JOIN telco.subscribers s ON s.cid = c.cid", issuer="helper")
    with pytest.raises(errors.PolicyViolation, match="IN/EXISTS subquery"):
        plan(fed, "SELECT COUNT(*) FROM bank.customers c WHERE c.cid IN (SELECT cid FROM telco.usage)")
    with pytest.raises(errors.PolicyViolation, match="bounds"):
        plan(fed, "SELECT SUM(u.cid) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid")
    with pytest.raises(errors.UnsupportedSql, match="LEFT JOINed table"):
        plan(fed, "SELECT COUNT(*) FROM bank.customers c LEFT JOIN telco.usage u ON u.cid = c.cid")
    p = plan(fed, "SELECT COUNT(*), COUNT(c.segment) FROM telco.usage u LEFT JOIN bank.customers c ON u.cid = c.cid")
    assert next(s for s in p.steps if s.op == "oblivious_join").outer
    with pytest.raises(errors.UnsupportedSql, match="VAR/STDDEV"):
        plan(fed, "SELECT VAR_POP(u.minutes) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid")


def test_private_columns_of_the_dp_table_may_be_used(fed):
    # uid, cid, minutes, plan are 'private': every output they influence is noised
    p = plan(fed, "SELECT COUNT(*) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid "
                  "WHERE u.minutes > 10 AND u.plan = 'pro'")
    frag = next(s for s in p.steps if s.op == "local_query" and s.party == "telco")
    assert "__fedsql_w" in frag.sql and "'pro'" in frag.sql
    with pytest.raises(errors.PolicyViolation, match="customers.name"):  # the bank's rules still hold
        plan(fed, "SELECT COUNT(*) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid WHERE c.name = 'x'",
             issuer="helper")


def test_dp_table_on_the_unique_side_is_bounded_after_the_join(fed):
    # subscribers (unique cid) is the "one" side: customers.bid repeats, so a subscriber meets many rows
    p = plan(fed, "SELECT COUNT(*), SUM(LEAST(GREATEST(c.balance, 0), 1000)) "
                  "FROM telco.subscribers s JOIN bank.customers c ON s.cid = c.bid",
             settings={"fedsql.mode": "sizes"})
    assert dict(p.settings)["fedsql.mode"] == "oblivious"
    join = next(s for s in p.steps if s.op == "oblivious_join")
    assert join.pk == "left" and join.left == "s_telco"  # the DP table is the unique side
    frag = next(s for s in p.steps if s.op == "local_query" and s.party == "telco")
    assert 'DENSE_RANK() OVER (ORDER BY "s"."uid" NULLS FIRST) AS __unit' in frag.sql
    share = next(s for s in p.steps if s.op == "share_table" and s.party == "telco")
    assert "__unit" in [c.name for c in share.columns]
    o = ops(p)
    assert o[o.index("oblivious_join") + 1:o.index("add_noise")] == [
        "secure_eval", "bound_per_unit", "secure_eval", "group_combine"]
    bound = next(s for s in p.steps if s.op == "bound_per_unit")
    assert (bound.input, bound.unit, bound.flag, bound.bound) == ("e0", "__unit", "__keep", 3)
    assert [n for n, _ in next(s for s in p.steps if s.id == "e0").outputs] == ["__keep"]
    noise = next(s for s in p.steps if s.op == "add_noise").noise
    assert [n.sensitivity for n in noise] == [3, 3 * 1000 * 100]  # max_joined_rows, not max_rows = 1
    assert "clear __keep after each unit's first 3 kept rows" in "\n".join(explain_lines(p))
    # GROUP BY: partition selection calibrated to the same bound (a unit makes <= 3 candidate groups)
    g = plan(fed, "SELECT c.segment, COUNT(*) FROM telco.subscribers s JOIN bank.customers c ON s.cid = c.bid "
                  "WHERE s.tier = 'gold' GROUP BY c.segment")
    assert "bound_per_unit" in ops(g) and g.dp.selection.count.sensitivity == 3
    # the N:1 shape needs no bounding after the join
    assert "bound_per_unit" not in ops(plan(fed, "SELECT COUNT(*) FROM telco.usage u JOIN bank.customers c "
                                                 "ON u.cid = c.cid"))
    # 1:1 (both keys unique): N:1 from the DP table, no bounding, max_rows
    p11 = plan(fed, "SELECT COUNT(*) FROM telco.subscribers s JOIN bank.customers c ON s.cid = c.cid")
    assert "bound_per_unit" not in ops(p11)
    assert [n.sensitivity for n in next(s for s in p11.steps if s.op == "add_noise").noise] == [1]
    # then a chain N:1 onto a unique key is still fine
    pc = plan(fed, "SELECT COUNT(*) FROM telco.subscribers s JOIN bank.customers c ON s.cid = c.bid "
                   "JOIN helper.regions r ON c.bid = r.bid", issuer="bank")
    assert [s.pk for s in pc.steps if s.op == "oblivious_join"] == ["left", "right"] and "bound_per_unit" in ops(pc)


def test_unique_side_refusals_kept(fed):
    # a 1:N join that is not the DP table's first join: the joined rows cannot be the unique side
    with pytest.raises(errors.UnsupportedSql, match="1:N joins further down"):
        plan(fed, "SELECT COUNT(*) FROM telco.subscribers s JOIN bank.customers c ON s.cid = c.cid "
                  "JOIN helper.calls k ON k.cid = s.cid")
    # the DP table NULL-padded by a LEFT JOIN: still refused
    with pytest.raises(errors.UnsupportedSql, match="LEFT JOINed table"):
        plan(fed, "SELECT COUNT(*) FROM bank.customers c LEFT JOIN telco.subscribers s ON s.cid = c.bid")
    # the DP table LEFT JOINing many rows onto its unique key: the oblivious LEFT JOIN needs N:1
    with pytest.raises(errors.UnsupportedSql):
        plan(fed, "SELECT COUNT(*) FROM telco.subscribers s LEFT JOIN bank.customers c ON s.cid = c.bid")
    # an M:N join onto a column of the DP table that is not unique
    with pytest.raises(errors.UnsupportedSql, match="M:N joins"):
        plan(fed, "SELECT COUNT(*) FROM telco.subscribers s JOIN bank.customers c ON s.uid = c.bid")
