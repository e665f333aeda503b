"""Planner unit tests: placement, policy refusals, unsupported SQL, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsql import errors
from fedsql.config import parse_config
from planner.compile import compile_query
from planner.explain import explain_lines

CONFIG = """
[federation]
name = "unit"
[parties.h1]
address = "127.0.0.1:7101"
[parties.h1.tables.patients]
source = "a.parquet"
columns = { age = "aggregate", diagnosis = "group_key", cost = "aggregate", zip = "public", pid = "join_key" }
[parties.h2]
address = "127.0.0.1:7102"
[parties.h2.tables.patients]
source = "b.parquet"
columns = { age = "aggregate", diagnosis = "group_key", cost = "aggregate", zip = "public", pid = "join_key" }
grants = { h3 = { age = "private" } }
[parties.h3]
address = "127.0.0.1:7103"
[parties.h3.tables.patients]
source = "c.parquet"
columns = { age = "aggregate", diagnosis = "group_key", cost = "aggregate", zip = "public", pid = "join_key" }
[federated.patients]
union = ["h1.patients", "h2.patients", "h3.patients"]
"""

SCHEMA = (("id", "BIGINT"), ("pid", "BIGINT"), ("age", "INTEGER"), ("diagnosis", "VARCHAR"),
          ("cost", "DECIMAL(10,2)"), ("zip", "VARCHAR"), ("w", "DOUBLE"))


@pytest.fixture(scope="module")
def fed():
    return parse_config(CONFIG, Path("/tmp/unit.toml"))


def plan(fed, sql, issuer="h1", settings=None):
    return compile_query(sql, fed, issuer, settings or {}, lambda p, t: SCHEMA).plan


def ops(p):
    return [(s.op, getattr(s, "party", None)) for s in p.steps]


def test_own_table_runs_locally(fed):
    p = plan(fed, "SELECT * FROM h1.patients")
    assert ops(p) == [("local_query", "h1")]
    assert not p.secure and p.participants == ("h1",)


def test_single_owner_runs_at_owner_and_sends_result(fed):
    p = plan(fed, "SELECT diagnosis, COUNT(*) FROM h2.patients GROUP BY diagnosis")
    assert ops(p) == [("local_query", "h2"), ("send_plain", "h2")]
    assert p.participants == ("h1", "h2")


def test_union_aggregate_pushes_filter_and_partials_to_owners(fed):
    p = plan(fed, "SELECT diagnosis, AVG(cost) FROM patients WHERE age > 30 GROUP BY diagnosis")
    local = [s for s in p.steps if s.op == "local_query"]
    assert [s.party for s in local] == ["h1", "h2", "h3"]
    assert all("WHERE age > 30" in s.sql and "GROUP BY diagnosis" in s.sql for s in local)
    assert {"share_table", "secure_union", "group_combine", "reveal_result", "final_query"} <= {s.op for s in p.steps}
    assert p.output == (("diagnosis", "VARCHAR"), ('avg("cost")', "DOUBLE"))


def test_plan_is_deterministic_and_hash_covers_settings(fed):
    sql = "SELECT COUNT(*) FROM patients"
    assert plan(fed, sql).hash == plan(fed, sql).hash
    assert plan(fed, sql).hash != plan(fed, sql, settings={"fedsql.mode": "reveal"}).hash
    assert plan(fed, sql).hash != plan(fed, sql, issuer="h2").hash


@pytest.mark.parametrize(
    "sql,fragment",
    [
        ("SELECT age FROM patients", "non-aggregate"),
        ("SELECT pid, COUNT(*) FROM patients GROUP BY pid", "GROUP BY key"),
        ("SELECT SUM(id) FROM patients", "h2.patients.id is 'private'"),
        ("SELECT COUNT(*) FROM patients WHERE id = 1", "WHERE predicate"),
        ("SELECT COUNT(*) FROM h2.patients ORDER BY COUNT(*)", None),
    ],
)
def test_policy(fed, sql, fragment):
    if fragment is None:
        plan(fed, sql)
        return
    with pytest.raises(errors.PolicyViolation) as info:
        plan(fed, sql)
    assert fragment in str(info.value)
    assert "party 'h2'" in str(info.value)


def test_per_issuer_grant_lowers_a_level(fed):
    plan(fed, "SELECT SUM(age) FROM h2.patients", issuer="h1")
    with pytest.raises(errors.PolicyViolation, match="h2.patients.age is 'private' for issuer 'h3'"):
        plan(fed, "SELECT SUM(age) FROM h2.patients", issuer="h3")


def test_owner_is_unrestricted_on_its_own_table(fed):
    plan(fed, "SELECT id, age FROM h2.patients", issuer="h2")


@pytest.mark.parametrize(
    "sql,cls,fragment",
    [
        ("SELEC 1", errors.SqlSyntaxError, "syntax"),
        ("SELECT 1; SELECT 2", errors.SqlSyntaxError, "one statement"),
        ("", errors.SqlSyntaxError, "empty"),
        ("DELETE FROM h1.patients", errors.UnsupportedSql, "DELETE"),
        ("SELECT COUNT(*) FROM nowhere", errors.UnknownObjectError, "unknown table 'nowhere'"),
        ("SELECT COUNT(*) FROM h9.patients", errors.UnknownObjectError, "unknown party 'h9'"),
        ("SELECT COUNT(*) FROM h1.nope", errors.UnknownObjectError, "no table 'nope'"),
        ("SELECT nope FROM patients", errors.UnknownObjectError, "no column 'nope'"),
        ("SELECT MODE(age) FROM patients", errors.UnsupportedSql, "MODE"),
        ("SELECT MEDIAN(zip) FROM patients", errors.UnsupportedSql, "VARCHAR"),
        ("SELECT SUM(age) OVER () FROM patients", errors.UnsupportedSql, "window"),
        ("SELECT COUNT(*) FROM patients a JOIN h2.patients b ON a.pid = b.pid", errors.UnsupportedSql, "JOIN"),
        ("SELECT COUNT(*) FROM (SELECT diagnosis, COUNT(*) c FROM patients GROUP BY 1) s", errors.UnsupportedSql, "union"),
        ("SELECT MIN(diagnosis) FROM patients", errors.UnsupportedSql, "VARCHAR"),
        ("SELECT SUM(diagnosis) FROM patients", errors.ProgrammingError, ""),
    ],
)
def test_refusals_name_the_problem(fed, sql, cls, fragment):
    with pytest.raises(cls) as info:
        plan(fed, sql)
    assert fragment.lower() in str(info.value).lower()


def test_median_over_a_union_groups_the_owners_rows_by_value(fed):
    p = plan(fed, "SELECT diagnosis, MEDIAN(age), SUM(cost) FROM patients GROUP BY diagnosis")
    local = next(s for s in p.steps if s.op == "local_query")
    assert local.sql.endswith("GROUP BY diagnosis, age")  # one row per (group, value), with its count
    combine = next(s for s in p.steps if s.op == "group_combine").combine
    assert any(c.how == "median" and c.weight == c.column + "_cnt" for c in combine)
    assert any("how many distinct (diagnosis, age)" in line for line in p.leakage), p.leakage


def test_each_count_distinct_column_gets_its_own_marking_sort(fed):
    p = plan(fed, "SELECT diagnosis, COUNT(DISTINCT age), COUNT(DISTINCT cost), COUNT(DISTINCT age) AS again "
                  "FROM patients GROUP BY diagnosis")
    marks = [s for s in p.steps if s.op == "distinct_mark"]
    assert [(s.column, s.out, s.valid) for s in marks] == [("__dx", "__dmark", "__dxv"),
                                                           ("__dx1", "__dmark1", "__dxv1")]
    assert marks[1].input == marks[0].id  # chained: the second sort carries the first mark
    local = [s.sql for s in p.steps if s.op == "local_query"]
    assert all("GROUP BY diagnosis, age, cost" in sql for sql in local)


def test_set_mode(fed):
    compiled = compile_query("SET fedsql.mode = 'oblivious'", fed, "h1", {}, lambda p, t: SCHEMA)
    assert compiled.setting == ("fedsql.mode", "oblivious")
    with pytest.raises(errors.SqlSyntaxError):
        compile_query("SET fedsql.mode = 'fast'", fed, "h1", {}, lambda p, t: SCHEMA)


def test_oblivious_mode_uses_secret_group_by(fed):
    p = plan(fed, "SELECT diagnosis, COUNT(*) FROM patients GROUP BY 1", settings={"fedsql.mode": "oblivious"})
    assert "oblivious_group" in [s.op for s in p.steps] and "group_combine" not in [s.op for s in p.steps]
    assert not any("group key values" in line for line in p.leakage)
    assert any("number of groups" in line for line in p.leakage)


def test_explain_lists_each_step_and_the_leakage_report(fed):
    text = "\n".join(explain_lines(plan(fed, "SELECT diagnosis, SUM(cost) FROM patients GROUP BY 1")))
    assert "leakage report:" in text
    assert "to h1 only" in text
    assert "oblivious shuffle" in text
    assert "at h3 (local DuckDB, plaintext)" in text



# -- GROUP BY keys opened to the compute parties need their level for each of them --------

VIEWERS = """
[federation]
name = "viewers"
[parties.h1]
address = "127.0.0.1:7101"
[parties.h1.tables.patients]
source = "a.parquet"
columns = { age = "aggregate", cost = "aggregate", pid = "join_key" }
[parties.h2]
address = "127.0.0.1:7102"
[parties.h2.tables.patients]
source = "b.parquet"
columns = { age = "aggregate", cost = "aggregate", pid = "join_key" }
grants = { h1 = { age = "group_key" } }
unique = ["pid"]
[parties.h3]
address = "127.0.0.1:7103"
[parties.h3.tables.patients]
source = "c.parquet"
columns = { age = "aggregate", cost = "aggregate", pid = "join_key" }
grants = { h1 = { age = "group_key" } }
[federated.patients]
union = ["h1.patients", "h2.patients", "h3.patients"]
"""

JOIN_ON_OWN_KEY = ("SELECT a.age, SUM(b.cost) FROM h1.patients AS a JOIN h2.patients AS b ON a.pid = b.pid "
                   "GROUP BY a.age")


@pytest.fixture(scope="module")
def viewers():
    return parse_config(VIEWERS, Path("/tmp/viewers.toml"))


@pytest.mark.parametrize("mode", ["sizes", "reveal"])
def test_union_group_key_granted_to_the_issuer_only_is_refused_when_keys_open_to_compute(viewers, mode):
    # h2 and h3 grant h1 `age` as a group key, but in sizes/reveal mode the keys are opened to
    # all compute parties after the shuffle: h2 would see h3's ages (and h1's).
    with pytest.raises(errors.PolicyViolation, match=r"for party 'h\d'.*opened to the compute parties.*oblivious"):
        plan(viewers, "SELECT age, COUNT(*) FROM patients GROUP BY age", settings={"fedsql.mode": mode})


@pytest.mark.parametrize("mode", ["sizes", "reveal"])
def test_issuer_owned_group_key_is_refused_when_keys_open_to_compute(viewers, mode):
    # h1 owns `age` (public to itself), yet h2 and h3 would see its values after the join
    with pytest.raises(errors.PolicyViolation, match=r"h1\.patients\.age is 'aggregate' for party 'h2'"):
        plan(viewers, JOIN_ON_OWN_KEY, settings={"fedsql.mode": mode})


def test_oblivious_mode_opens_keys_to_the_issuer_only_so_both_run(viewers):
    settings = {"fedsql.mode": "oblivious"}
    union = plan(viewers, "SELECT age, COUNT(*) FROM patients GROUP BY age", settings=settings)
    joined = plan(viewers, JOIN_ON_OWN_KEY, settings=settings)
    for p in (union, joined):
        assert "oblivious_group" in {s.op for s in p.steps}
        assert not any("group key values" in line for line in p.leakage)


def test_oblivious_group_by_the_issuers_own_keys_keeps_the_labels_at_the_issuer(viewers):
    p = plan(viewers, JOIN_ON_OWN_KEY, settings={"fedsql.mode": "oblivious"})
    reveal = next(s for s in p.steps if s.op == "reveal_result")
    assert reveal.local_keys == "f_h1" and [c.how for c in reveal.columns][0] == "local_key"
    shared = next(s for s in p.steps if s.op == "share_table" and s.party == "h1")
    names = {c.name for c in shared.columns}
    label = reveal.columns[0].source
    assert "__grank" in names and label not in names and f"{label}__v" not in names  # the rank, not the labels


def test_keys_needed_by_a_secure_order_by_limit_stay_shared(viewers):
    p = plan(viewers, JOIN_ON_OWN_KEY + " ORDER BY a.age LIMIT 2", settings={"fedsql.mode": "oblivious"})
    reveal = next(s for s in p.steps if s.op == "reveal_result")
    assert not reveal.local_keys and "secure_finish" in {s.op for s in p.steps}


def test_a_subquery_over_the_outer_tables_own_party_runs_in_its_duckdb(viewers):
    p = plan(viewers, "SELECT COUNT(*) FROM h1.patients a JOIN h2.patients b ON a.pid = b.pid WHERE EXISTS "
                      "(SELECT * FROM h2.patients b2 WHERE b2.pid = b.pid AND b2.age <> b.age)")
    local = [s for s in p.steps if s.op == "local_query" and s.party == "h2"]
    assert len(local) == 1 and "EXISTS" in local[0].sql and '"patients" AS b2' in local[0].sql
    assert not any(s.op == "secure_join" and s.kind != "inner" for s in p.steps)


def test_a_same_party_subquery_still_needs_its_columns_levels(viewers):
    with pytest.raises(errors.PolicyViolation, match=r"h2\.patients\.id is 'private'"):
        plan(viewers, "SELECT COUNT(*) FROM h1.patients a JOIN h2.patients b ON a.pid = b.pid WHERE EXISTS "
                      "(SELECT 1 FROM h2.patients b2 WHERE b2.pid = b.pid AND b2.id > 3)")
