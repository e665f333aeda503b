"""The DP rules over the whole statement (planner/passes/dp_guard.py), without nodes.

Issue #11 findings 2 and 3: a DP table anywhere in a statement must be noised and charged
by the plan's DP pass (or the statement is refused), and expressions over its rows cannot
fail (an error would be an un-noised oracle).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsql import errors
from fedsql.config import parse_config
from planner.compile import compile_query

CONFIG = """
[federation]
name = "guard"
[parties.bank]
address = "127.0.0.1:7201"
[parties.bank.tables.customers]
source = "b.parquet"
columns = { customer_id = "join_key", income = "aggregate", defaulted = "group_key" }
unique = ["customer_id"]
[parties.telco]
address = "127.0.0.1:7202"
[parties.telco.tables.subscribers]
source = "s.parquet"
columns = { customer_id = "join_key", tenure_months = "aggregate", plan = "group_key" }
unique = ["customer_id"]
[parties.telco.tables.usage]
source = "u.parquet"
columns = { customer_id = "aggregate", region = "group_key", minutes = "aggregate" }
[parties.telco.tables.usage.dp]
unit = "customer_id"
max_rows = 1
bounds = { minutes = [0, 3000] }
epsilon = 100.0
max_epsilon_per_query = 1.0
public_groups = { region = ["north", "south"] }
[parties.third]
address = "127.0.0.1:7203"
[parties.third.tables.x]
source = "x.parquet"
columns = { k = "aggregate" }
"""

SCHEMAS = {
    ("bank", "customers"): (("customer_id", "BIGINT"), ("income", "BIGINT"), ("defaulted", "BOOLEAN")),
    ("telco", "subscribers"): (("customer_id", "BIGINT"), ("tenure_months", "BIGINT"), ("plan", "VARCHAR")),
    ("telco", "usage"): (("customer_id", "BIGINT"), ("region", "VARCHAR"), ("minutes", "INTEGER")),
    ("third", "x"): (("k", "BIGINT"),),
}


@pytest.fixture(scope="module")
def fed():
    return parse_config(CONFIG, Path("/tmp/guard.toml"))


def plan(fed, sql: str, issuer: str = "bank"):
    return compile_query(sql, fed, issuer, {}, lambda p, t: SCHEMAS[(p, t)]).plan


def refused(fed, sql: str, issuer: str = "bank") -> str:
    with pytest.raises(errors.PolicyViolation) as info:
        plan(fed, sql, issuer)
    return str(info.value)


# -- finding 2: every statement shape -------------------------------------------------------

BYPASSES = {
    "exists": "SELECT SUM(s.tenure_months) FROM telco.subscribers s "
              "WHERE EXISTS (SELECT 1 FROM telco.usage u WHERE u.minutes > 500)",
    "correlated exists": "SELECT SUM(s.tenure_months) FROM telco.subscribers s "
                         "WHERE EXISTS (SELECT 1 FROM telco.usage u WHERE u.customer_id = s.customer_id "
                         "AND u.minutes > 500)",
    "not exists": "SELECT COUNT(*) FROM telco.subscribers s "
                  "WHERE NOT EXISTS (SELECT 1 FROM telco.usage u WHERE u.minutes > 500)",
    "in": "SELECT SUM(s.tenure_months) FROM telco.subscribers s "
          "WHERE s.customer_id IN (SELECT u.customer_id FROM telco.usage u WHERE u.minutes > 500)",
    "cte": "WITH heavy AS (SELECT customer_id FROM telco.usage WHERE minutes > 500) "
           "SELECT SUM(s.tenure_months) FROM telco.subscribers s JOIN heavy h ON s.customer_id = h.customer_id",
    "derived": "SELECT SUM(s.tenure_months) FROM telco.subscribers s JOIN "
               "(SELECT customer_id, MAX(minutes) AS m FROM telco.usage GROUP BY customer_id) d "
               "ON s.customer_id = d.customer_id WHERE d.m > 500",
    "scalar": "SELECT SUM(s.tenure_months) FROM telco.subscribers s "
              "WHERE s.tenure_months < (SELECT MAX(u.minutes) FROM telco.usage u WHERE u.customer_id = s.customer_id)",
    "union in subquery": "SELECT COUNT(*) FROM telco.subscribers s WHERE s.customer_id IN "
                         "(SELECT customer_id FROM telco.usage UNION SELECT customer_id FROM telco.subscribers)",
    "self exists": "SELECT COUNT(*) FROM telco.usage u WHERE EXISTS "
                   "(SELECT 1 FROM telco.usage v WHERE v.region = u.region AND v.minutes > 500)",
}


@pytest.mark.parametrize("shape", sorted(BYPASSES))
def test_a_dp_table_outside_the_dp_pass_is_refused_naming_it(fed, shape):
    with pytest.raises((errors.PolicyViolation, errors.UnsupportedSql)) as info:
        plan(fed, BYPASSES[shape])
    assert "telco.usage" in str(info.value)
    if isinstance(info.value, errors.PolicyViolation):
        assert "differential-privacy" in str(info.value)


SHAPES = {**BYPASSES,
          "union branch": "SELECT customer_id FROM telco.subscribers UNION SELECT customer_id FROM telco.usage",
          "intersect branch": "SELECT customer_id FROM telco.subscribers INTERSECT SELECT customer_id FROM telco.usage",
          "federated-free scalar": "SELECT (SELECT COUNT(*) FROM telco.usage) AS n"}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_the_one_place_check_finds_the_dp_table_in_every_shape(fed, shape):
    """require_dp_coverage walks the whole parsed statement: with nothing covered it refuses."""
    import sqlglot

    from planner.passes.dp_guard import require_dp_coverage

    ast = sqlglot.parse_one(SHAPES[shape], read="duckdb")
    with pytest.raises(errors.PolicyViolation, match="telco.usage has a differential-privacy policy"):
        require_dp_coverage(ast, fed, "bank", frozenset())
    require_dp_coverage(ast, fed, "telco", frozenset())  # the owner: its own policy does not bind it


def test_the_d17_bypass_is_refused_by_the_coverage_check(fed):
    msg = refused(fed, BYPASSES["exists"])
    assert "in an EXISTS subquery" in msg and "no budget is charged" in msg


def test_the_owner_itself_may_use_its_dp_table_anywhere(fed):
    p = plan(fed, BYPASSES["exists"], issuer="telco")
    assert p.dp is None


def test_a_covered_dp_table_is_still_noised_and_charged(fed):
    p = plan(fed, "SELECT COUNT(*), SUM(minutes) FROM telco.usage WHERE minutes > 10")
    assert {(c.party, c.table) for c in p.dp.charges} == {("telco", "usage")}


def test_a_dp_table_read_twice_is_refused(fed):
    import sqlglot

    from planner.passes.dp_guard import require_dp_coverage

    sql = "WITH u AS (SELECT * FROM telco.usage) SELECT COUNT(*) FROM u a JOIN u b ON a.customer_id = b.customer_id"
    with pytest.raises((errors.PolicyViolation, errors.UnsupportedSql), match="telco.usage"):
        plan(fed, sql)
    with pytest.raises(errors.PolicyViolation, match="reads it 2 times"):
        require_dp_coverage(sqlglot.parse_one(sql, read="duckdb"), fed, "bank", frozenset({"telco.usage"}))


# -- finding 3: expressions over DP rows cannot fail --------------------------------------


def test_error_function_over_a_dp_table_is_refused_by_name(fed):
    msg = refused(fed, "SELECT COUNT(*) FROM telco.usage WHERE CASE WHEN customer_id = 7 AND minutes > 500 "
                       "THEN error('x') ELSE true END")
    assert "ERROR()" in msg and "un-noised bit" in msg and "COALESCE" in msg


@pytest.mark.parametrize("expr", ["sqrt(minutes) > 1", "regexp_matches(region, 'a')", "minutes::VARCHAR ^@ '1'",
                                  "strptime(region, '%Y') IS NULL"])
def test_unlisted_functions_are_refused(fed, expr):
    refused(fed, f"SELECT COUNT(*) FROM telco.usage WHERE {expr}")


def test_arithmetic_and_casts_are_made_unable_to_fail(fed):
    p = plan(fed, "SELECT COUNT(*) FROM telco.usage WHERE minutes * 1000000 > 5 AND CAST(region AS INT) = 3 "
                  "AND minutes % (minutes - 10) = 0")
    sql = " ".join(getattr(s, "sql", "") or "" for s in p.steps)
    assert "TRY(minutes * 1000000)" in sql.replace('"', "")
    assert "TRY_CAST(" in sql and "CAST(region" not in sql.replace("TRY_CAST(region", "")


def test_group_keys_are_guarded_in_the_select_list_and_group_by(fed):
    refused(fed, "SELECT sqrt(minutes) AS r, COUNT(*) FROM telco.usage GROUP BY 1")


def test_post_processing_of_noisy_aggregates_is_not_restricted(fed):
    p = plan(fed, "SELECT ROUND(AVG(minutes), 1) AS a, region FROM telco.usage GROUP BY region ORDER BY a")
    assert p.dp is not None


def test_non_dp_tables_keep_every_function(fed):
    p = plan(fed, "SELECT COUNT(*) FROM telco.subscribers WHERE sqrt(tenure_months) > 2")
    assert p.dp is None


def test_owner_encoding_of_dp_values_cannot_fail():
    """A value too large to encode clamps by its sign; NULL stays NULL; sums saturate (no Overflow)."""
    import duckdb

    from plan.physical import VALUE_LIMIT
    from planner.encodings import clamped_encode_sql, saturated_sum_sql, value_encoding

    enc = value_encoding("DOUBLE", 20, "SUM(v)")
    sql = clamped_encode_sql("(v)", enc, -5 << 20, 7 << 20)
    rows = duckdb.sql(f"SELECT {sql} FROM (VALUES (NULL::DOUBLE), (1e300), (-1e300), (3.0), ('nan'::DOUBLE)) t(v)")
    # NaN: DuckDB orders it above every number, so it clamps to the upper bound
    assert [r[0] for r in rows.fetchall()] == [None, 7 << 20, -5 << 20, 3 << 20, 7 << 20]
    big = duckdb.sql(f"SELECT {saturated_sum_sql('SUM(v)')} FROM (SELECT 9223372036854775807::BIGINT AS v "
                     "FROM range(4)) t").fetchall()[0][0]
    assert big == VALUE_LIMIT - 1
    assert duckdb.sql(f"SELECT {saturated_sum_sql('SUM(v)')} FROM (SELECT 1::BIGINT AS v WHERE false) t"
                      ).fetchall()[0][0] == 0


def test_constants_are_left_as_written(fed):
    p = plan(fed, "SELECT COUNT(*) FROM telco.usage WHERE minutes BETWEEN -5 AND 2 * 1000")
    sql = " ".join(getattr(s, "sql", "") or "" for s in p.steps)
    assert "TRY(" not in sql.replace("TRY(CAST", "") and "BETWEEN -5 AND 2 * 1000" in sql


def test_parenthesised_arithmetic_is_wrapped_once(fed):
    p = plan(fed, "SELECT COUNT(*) FROM telco.usage WHERE (minutes * 2000000000) > 0 AND ((minutes + 1) * 2) > 0")
    sql = " ".join(getattr(s, "sql", "") or "" for s in p.steps).replace('"', "")
    assert "TRY((minutes * 2000000000))" in sql or "TRY(minutes * 2000000000)" in sql
    assert sql.count("TRY(") >= 2 and "TRY((TRY(" not in sql and "TRY(TRY(" not in sql
