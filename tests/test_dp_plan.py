"""DP planning (planner/passes/dp.py) and the AddNoise step (executors/operators/noise.py), without nodes."""

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
    # TRY: a value too large to encode clamps by its sign instead of failing (issue #11, finding 3)
    assert "LEAST(GREATEST(TRY(CAST(CAST((cost) AS DECIMAL(38,2)) * 100 AS BIGINT)), 50), 100025)" in sql
    assert (f"LEAST(GREATEST(TRY(CAST(round(CAST((w) AS DOUBLE) * {float(1 << 20)!r}) AS BIGINT)), -2621440), "
            "2621440)") in sql
    assert 'PARTITION BY "pid"' in sql and '"__fedsql_rn" <= 3' in sql and "random()" not in sql
    noise = {n.column: n.sensitivity for n in p.step("n").noise}
    assert noise["__a0_sum"] == 3 * 100025
    assert noise["__a1_sum"] == 3 * int(2.5 * (1 << 20)) and noise["__a1_cnt"] == 3


def test_row_privacy_needs_no_bounding_and_issuer_rows_are_untouched(fed):
    p = plan(fed, "SELECT diagnosis, SUM(age) FROM patients GROUP BY diagnosis")
    assert "ROW_NUMBER" not in p.step("p_h3").sql and "LEAST(GREATEST(TRY(CAST((age) AS BIGINT)), 10), 90)" in p.step("p_h3").sql
    assert "LEAST(GREATEST(TRY(" not in p.step("p_h1").sql  # the issuer's own table: no policy binds it


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
    ("SELECT age, COUNT(*) FROM patients GROUP BY age", r"delta = 0: age has no declared dp.public_groups.*needs delta > 0"),
    ("SELECT upper(diagnosis), COUNT(*) FROM patients GROUP BY upper(diagnosis)", "public_groups"),
    ("SELECT pid, COUNT(*) FROM h2.patients GROUP BY pid", "privacy unit"),
    ("SELECT COUNT(DISTINCT age) FROM patients", "COUNT.DISTINCT"),
    ("SELECT VAR_POP(id) FROM patients", "has no bounds"),
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
    from executors.operators.noise import add_noise
    from executors.secure_table import SecretTable
    from plan.physical import AddNoise, NoiseSpec
    from tests.mpc_harness import Federation

    n = 1000
    spec = NoiseSpec("v", "laplace", 0.5, 0.0, 4)
    truth = np.arange(n, dtype=np.uint64) * np.uint64(7)

    def body(mpc):
        shared = ops.share_input(mpc, mpc.compute[0], truth if mpc.me == mpc.compute[0] else None, n)
        noisy = add_noise(mpc, {"t": SecretTable(n=n, secret={"v": shared})}, AddNoise("z", "t", (spec,)))
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


# -- secret GROUP BY keys: private partition selection (docs/dp.md §5.4) ------------------

SEL = (BASE.replace("max_epsilon_per_query = 2.0\n", "max_epsilon_per_query = 2.0\ndelta = 1e-4\nmax_delta_per_query = 1e-5\n")
           .replace("max_epsilon_per_query = 0.5\n", "max_epsilon_per_query = 0.5\ndelta = 1e-4\nmax_delta_per_query = 2e-5\n"))


@pytest.fixture(scope="module")
def sel_fed():
    return parse_config(SEL, Path("/tmp/unit.toml"))


def test_secret_keys_plan_a_partition_selection(sel_fed):
    from executors.dp import partition_threshold

    p = plan(sel_fed, "SELECT age, COUNT(*) AS n, SUM(cost) FROM patients GROUP BY age")
    ops = [s.op for s in p.steps]
    assert ops[-6:] == ["secure_union", "oblivious_group", "add_noise", "partition_select", "reveal_result",
                        "final_query"]
    group, sel = p.step("g"), p.step("sel")
    assert group.mark == "__last" and group.flag == "__keep" and p.step("r").secret_keys
    eps = 0.5 / 2  # COUNT(*) (also the selection count) and SUM
    # delta: the smallest max_delta_per_query; one unit makes at most max_rows = 3 groups
    count = next(a for a in ("__a0", "__a1") if f'AS "n"' in p.step("result").sql and f'"{a}" AS BIGINT) AS "n"'
                 in p.step("result").sql)
    assert sel.threshold == partition_threshold("laplace", eps, 3, 1e-5 / 3) and sel.count == count
    assert {(c.party, c.epsilon, c.delta) for c in p.dp.charges} == {("h2", 0.5, 1e-5), ("h3", 0.5, 1e-5)}
    assert p.dp.delta == 1e-5 and p.dp.selection.threshold == sel.threshold
    h2 = p.step("p_h2").sql
    # every row is shared (no GROUP BY at the owner), the keep flag bounds units among WHERE-passing rows
    assert "GROUP BY" not in h2 and 'PARTITION BY "pid", "__fedsql_w"' in h2 and '"__fedsql_rn" <= 3' in h2
    assert "GROUP BY" not in p.step("p_h1").sql and "ROW_NUMBER" not in p.step("p_h1").sql  # the issuer's own rows


def test_selection_count_is_hidden_when_the_query_has_no_count(sel_fed):
    p = plan(sel_fed, "SELECT age, SUM(cost) FROM patients GROUP BY age")
    noise = {n.column: n for n in p.step("n").noise}
    assert set(noise) == {"__a0_sum", "__sel"} and noise["__sel"].epsilon == 0.25 and noise["__sel"].sensitivity == 3
    assert p.step("sel").count == "__sel" and p.dp.selection.hidden
    assert "__sel" not in {c.name for c in p.step("r").columns}  # never opened


def test_declared_threshold_only_raises_tau(sel_fed):
    low = parse_config(SEL.replace("delta = 1e-4\nmax_delta_per_query = 2e-5\n",
                                   "delta = 1e-4\nmax_delta_per_query = 2e-5\nthreshold = 2\n"), Path("/tmp/u.toml"))
    high = parse_config(SEL.replace("delta = 1e-4\nmax_delta_per_query = 2e-5\n",
                                    "delta = 1e-4\nmax_delta_per_query = 2e-5\nthreshold = 5000\n"), Path("/tmp/u.toml"))
    sql = "SELECT age, COUNT(*) FROM patients GROUP BY age"
    derived = plan(sel_fed, sql).step("sel").threshold
    assert plan(low, sql).step("sel").threshold == derived > 2
    assert plan(high, sql).step("sel").threshold == 5000
    assert "raised by the owners' declared threshold" in "\n".join(explain_lines(plan(high, sql)))


def test_declared_values_still_bind_and_string_keys_have_a_fixed_width(sel_fed):
    from planner.passes.split_aggregates import DP_KEY_WORDS

    # diagnosis is declared public by both DP owners, age is not: a secret GROUP BY where each DP
    # owner drops its rows with undeclared diagnoses
    p = plan(sel_fed, "SELECT diagnosis, age, COUNT(*) FROM patients GROUP BY diagnosis, age")
    assert p.dp.selection is not None and not p.dp.groups
    assert "IN (CAST('flu' AS VARCHAR), CAST('cold' AS VARCHAR), CAST('o''brien' AS VARCHAR))" in p.step("p_h2").sql
    assert "IN (CAST('cold' AS VARCHAR), CAST('flu' AS VARCHAR))" in p.step("p_h3").sql
    assert " IN (" not in p.step("p_h1").sql
    assert not any(s.op == "agree_width" for s in p.steps)  # a data-derived width would leak
    assert {s.width for s in p.steps if s.op == "share_table"} == {DP_KEY_WORDS}
    assert f"strlen((diagnosis)) <= {7 * DP_KEY_WORDS}" in p.step("p_h2").sql


def test_selection_with_skellam_splits_delta(sel_fed):
    fed = parse_config(SEL.replace("public_groups = { diagnosis", 'mechanism = "skellam"\npublic_groups = { diagnosis'),
                       Path("/tmp/u.toml"))
    p = plan(fed, "SELECT age, COUNT(*) FROM patients GROUP BY age")
    assert p.dp.family == "skellam" and p.dp.delta == pytest.approx(1e-5)
    assert p.dp.selection.delta == pytest.approx(5e-6) and p.step("n").noise[0].delta == pytest.approx(5e-6)


def test_explain_and_notes_of_a_selection(sel_fed):
    p = plan(sel_fed, "SELECT age AS a, COUNT(*) AS n FROM patients GROUP BY age")
    tau = p.step("sel").threshold
    text = "\n".join(explain_lines(p))
    assert f"tau = {tau}" in text and "only the number of released groups" in text
    assert "released with probability >= 95%" in text
    leak = "\n".join(p.leakage)
    assert "number of groups released by private partition selection" in leak and "not even how many" in leak
    assert f"noisy count reached {tau}" in column_notes(p.dp)["a"]


# -- VAR / STDDEV under DP ---------------------------------------------------------------


def test_variance_is_centred_with_three_noisy_parts(fed):
    p = plan(fed, "SELECT VAR_POP(age) AS v, STDDEV_SAMP(age) AS s FROM patients", settings={"fedsql.epsilon": "0.3"})
    noise = {n.column: n for n in p.step("n").noise}
    # centre (0 + 120) // 2 = 60 over h2 [0, 120] (max_rows 3) and h3 [10, 90] (row privacy)
    assert noise["__a0_sum"].sensitivity == max(3 * 60, 50)
    assert noise["__a0_sq"].sensitivity == max(3 * 60 ** 2, 50 ** 2)
    assert noise["__a0_cnt"].sensitivity == 3
    assert all(n.epsilon == pytest.approx(0.05) for n in noise.values()) and len(noise) == 6
    assert "- 60)" in p.step("p_h2").sql and "HUGEINT" in p.step("p_h2").sql
    final = p.step("result").sql
    assert "sqrt(" in final.lower() and "3600.0" in final  # clamped to the largest variance in [0, 120]
    notes = column_notes(p.dp)
    assert notes["v"].startswith("DP: variance from a noisy centred sum") and "95% interval" in notes["v"]
    assert "standard deviation" in notes["s"] and "NULL when the noisy count is <= 1" in notes["s"]


def test_variance_sensitivity_of_a_fixed_point_column(fed):
    p = plan(fed, "SELECT VAR_SAMP(w) FROM h2.patients")
    noise = {n.column: n.sensitivity for n in p.step("n").noise}
    half = int(2.5 * (1 << 20))  # centre 0: bounds [-2.5, 2.5] in 2^20 units
    assert noise["__a0_sum"] == 3 * half and noise["__a0_sq"] == 3 * (half * half >> 20)
