"""DP planning (planner/passes/dp.py) and the AddNoise step (executors/dp/mpc_noise.py), without nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsql import errors
from fedsql.config import parse_config
from planner.compile import compile_query
from planner.explain import explain_lines
from planner.passes.dp import column_notes

BASE = """
[federation]
name = "unit"
[parties.h1]
address = "127.0.0.1:7101"
[parties.h1.tables.patients]
source = "a.parquet"
columns = { age = "aggregate", diagnosis = "group_key", cost = "aggregate" }
[parties.h2]
address = "127.0.0.1:7102"
[parties.h2.tables.patients]
source = "b.parquet"
columns = { age = "aggregate", diagnosis = "private", cost = "private" }
[parties.h2.tables.patients.dp]
unit = "pid"
max_rows = 3
bounds = { age = [0, 120], cost = [0.5, 1000.25], w = [-2.5, 2.5] }
epsilon = 5.0
max_epsilon_per_query = 2.0
public_groups = { diagnosis = ["flu", "cold", "o'brien"] }
[parties.h3]
address = "127.0.0.1:7103"
[parties.h3.tables.patients]
source = "c.parquet"
columns = { age = "aggregate", diagnosis = "group_key", cost = "aggregate" }
[parties.h3.tables.patients.dp]
unit = "row"
bounds = { age = [10, 90], cost = [0, 500] }
epsilon = 5.0
max_epsilon_per_query = 0.5
public_groups = { diagnosis = ["cold", "flu"] }
[federated.patients]
union = ["h1.patients", "h2.patients", "h3.patients"]
"""

SCHEMA = (("id", "BIGINT"), ("pid", "BIGINT"), ("age", "INTEGER"), ("diagnosis", "VARCHAR"),
          ("cost", "DECIMAL(10,2)"), ("w", "DOUBLE"))


@pytest.fixture(scope="module")
def fed():
    return parse_config(BASE, Path("/tmp/unit.toml"))


def plan(fed, sql, issuer="h1", settings=None):
    return compile_query(sql, fed, issuer, settings or {}, lambda p, t: SCHEMA).plan


def test_default_epsilon_is_capped_by_every_table_and_split(fed):
    p = plan(fed, "SELECT COUNT(*), SUM(age) FROM patients")
    assert p.dp.epsilon == 0.5  # min(1.0, h2 cap 2.0, h3 cap 0.5)
    noise = next(s for s in p.steps if s.op == "add_noise").noise
    assert [n.epsilon for n in noise] == [0.25, 0.25]
    # COUNT: the largest max_rows; SUM(age): max over members of max_rows * max|bound|
    assert [n.sensitivity for n in noise] == [3, 3 * 120]
    assert {(c.party, c.table, c.epsilon) for c in p.dp.charges} == {("h2", "patients", 0.5), ("h3", "patients", 0.5)}
    assert dict(p.settings)["fedsql.epsilon"] == "0.5"


def test_plan_hash_covers_dp_parameters(fed):
    a = plan(fed, "SELECT COUNT(*) FROM patients", settings={"fedsql.epsilon": "0.25"})
    b = plan(fed, "SELECT COUNT(*) FROM patients", settings={"fedsql.epsilon": "0.5"})
    assert a.hash != b.hash
    assert a.hash == plan(fed, "SELECT COUNT(*) FROM patients", settings={"fedsql.epsilon": "0.25"}).hash


def test_bounds_are_scaled_exactly_and_clamped_at_each_dp_owner(fed):
    p = plan(fed, "SELECT SUM(cost), AVG(w) FROM h2.patients", issuer="h1")
    sql = p.step("p_h2").sql
    assert "LEAST(GREATEST(CAST(CAST((cost) AS DECIMAL(38,2)) * 100 AS BIGINT), 50), 100025)" in sql
    assert f"LEAST(GREATEST(CAST(round(CAST((w) AS DOUBLE) * {float(1 << 20)!r}) AS BIGINT), -2621440), 2621440)" in sql
    assert 'PARTITION BY "pid"' in sql and '"__fedsql_rn" <= 3' in sql and "random()" not in sql
    noise = {n.column: n.sensitivity for n in p.step("n").noise}
    assert noise["__a0_sum"] == 3 * 100025
    assert noise["__a1_sum"] == 3 * int(2.5 * (1 << 20)) and noise["__a1_cnt"] == 3


def test_row_privacy_needs_no_bounding_and_issuer_rows_are_untouched(fed):
    p = plan(fed, "SELECT diagnosis, SUM(age) FROM patients GROUP BY diagnosis")
    assert "ROW_NUMBER" not in p.step("p_h3").sql and "LEAST(GREATEST(CAST((age) AS BIGINT), 10), 90)" in p.step("p_h3").sql
    assert "LEAST" not in p.step("p_h1").sql  # the issuer's own table: no policy binds it


def test_public_groups_are_the_common_declared_values_and_every_owner_sends_all(fed):
    p = plan(fed, "SELECT diagnosis, COUNT(*) FROM patients GROUP BY diagnosis")
    assert dict(p.dp.groups)["diagnosis"] == ("flu", "cold")  # h2 ∩ h3, in h2's order
    for owner in ("h1", "h2", "h3"):
        sql = p.step(f"p_{owner}").sql
        assert "LEFT JOIN" in sql and "(VALUES (CAST('flu' AS VARCHAR)), (CAST('cold' AS VARCHAR)))" in sql


def test_private_columns_may_feed_noisy_outputs_only(fed):
    # h2 declares diagnosis and cost 'private': allowed because every output they influence is noised
    p = plan(fed, "SELECT diagnosis, SUM(cost) FROM h2.patients WHERE cost > 10 GROUP BY diagnosis")
    assert p.dp is not None
    assert dict(p.dp.groups)["diagnosis"] == ("flu", "cold", "o'brien")
    assert "'o''brien'" in p.step("p_h2").sql


@pytest.mark.parametrize("sql, needle", [
    ("SELECT age FROM h2.patients", "would reveal rows"),
    ("SELECT MAX(age) FROM patients", "MIN and MAX"),
    ("SELECT SUM(id) FROM patients", "has no bounds"),
    ("SELECT AVG(age + 1) FROM patients", "not expressions"),
    ("SELECT age, COUNT(*) FROM patients GROUP BY age", "no public groups"),
    ("SELECT upper(diagnosis), COUNT(*) FROM patients GROUP BY upper(diagnosis)", "public_groups"),
])
def test_refusals(fed, sql, needle):
    with pytest.raises(errors.PolicyViolation, match=needle):
        plan(fed, sql)


def test_epsilon_above_a_cap_is_refused_at_planning(fed):
    with pytest.raises(errors.PolicyViolation, match=r"h3.patients \(max_epsilon_per_query = 0.5\)"):
        plan(fed, "SELECT COUNT(*) FROM patients", settings={"fedsql.epsilon": "1.0"})


def test_owner_alone_is_unrestricted(fed):
    p = plan(fed, "SELECT MAX(cost), age FROM h2.patients GROUP BY age", issuer="h2")
    assert p.dp is None and not p.secure


def test_explain_and_notes(fed):
    p = plan(fed, "SELECT COUNT(*) AS n, SUM(cost) / 2 AS half, AVG(age) AS a FROM patients",
             settings={"fedsql.epsilon": "0.3"})
    text = "\n".join(explain_lines(p))
    assert "differential privacy: epsilon 0.3" in text and "add_noise" in text
    assert "95% interval" in text and "sensitivity 300075" in text
    notes = column_notes(p.dp)
    assert notes["n"].startswith("DP noisy count: count epsilon 0.075")
    assert notes["half"].startswith("DP: computed from noisy SUM(cost)")
    assert "noisy sum / noisy count, clamped to [0, 120]" in notes["a"]
    leak = "\n".join(p.leakage)
    assert "no NULL bit" in leak and "un-noised" in leak


def test_set_epsilon_validation():
    from planner.parse import parse_statement

    assert parse_statement("SET fedsql.epsilon = 0.5").setting == ("fedsql.epsilon", "0.5")
    for bad in ("0", "-1", "'x'", "'inf'"):
        with pytest.raises(errors.SqlSyntaxError):
            parse_statement(f"SET fedsql.epsilon = {bad}")


def test_budget_exhausted_is_rebuilt_by_clients():
    from fedsql.ledger import BudgetExhausted

    err = errors.error_from_kind("BudgetExhausted", "x")
    assert type(err) is BudgetExhausted and isinstance(err, errors.PolicyViolation)


def test_config_rejects_bad_dp_and_keeps_none_without_it(fed):
    assert fed.table("h1", "patients").dp is None
    assert fed.table("h3", "patients").dp.row_level
    bad = BASE.replace("max_epsilon_per_query = 0.5", "max_epsilon_per_query = 50")
    with pytest.raises(errors.ConfigError, match="max_epsilon_per_query"):
        parse_config(bad, Path("/tmp/unit.toml"))


def test_add_noise_inside_mpc_opens_only_noisy_values():
    """Three compute parties over loopback gRPC: each inputs its part; the opened value is
    value + the three parts, with the stated (1.5x central) variance."""
    from executors import mpc as ops
    from executors.dp import noise_variance
    from executors.dp.mpc_noise import add_noise
    from executors.secure_table import SecretTable
    from planner.physical import NoiseSpec
    from tests.mpc_harness import Federation

    n = 1000
    spec = NoiseSpec("v", "laplace", 0.5, 0.0, 4)
    truth = np.arange(n, dtype=np.uint64) * np.uint64(7)

    def body(mpc):
        shared = ops.share_input(mpc, mpc.compute[0], truth if mpc.me == mpc.compute[0] else None, n)
        noisy = add_noise(mpc, mpc.compute, SecretTable(n=n, secret={"v": shared}), (spec,))
        return ops.reveal(mpc, noisy.secret["v"], None)

    fed = Federation()
    try:
        opened = fed.run_mpc(body)
    finally:
        fed.close()
    assert all(np.array_equal(opened[0], o) for o in opened)
    err = (opened[0] - truth).view(np.int64).astype(float)
    var = noise_variance("laplace", 0.5, 4, 2)
    assert abs(err.mean()) < 5 * np.sqrt(var / n)
    assert 0.75 * var < err.var() < 1.3 * var  # relative sd of the estimate ~0.07


def test_budget_command(tmp_path, capsys):
    from fedsql.cli import main

    config = tmp_path / "fed.toml"
    config.write_text(BASE, encoding="utf-8")
    assert main(["budget", str(config), "--party", "h2"]) == 0
    out = capsys.readouterr().out
    assert "privacy budget of party h2" in out and "not created yet" in out and "h2.patients" in out
    assert main(["budget", str(config), "--party", "nobody"]) == 2
