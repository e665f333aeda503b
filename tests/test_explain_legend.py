"""Issue #15, item 10: EXPLAIN names the user's expressions next to the internal column names
(`__a1_sum = sum part of AVG(cost)`), and the legend does not change the plan hash."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fedsql.config import parse_config
from planner.compile import compile_query
from planner.explain import explain_lines
from plan.physical import with_hash
from tests.test_planner import CONFIG, SCHEMA


def test_explain_has_a_legend_and_the_hash_ignores_it() -> None:
    fed = parse_config(CONFIG, Path("/tmp/unit.toml"))
    plan = compile_query("SELECT diagnosis, AVG(cost) AS c, COUNT(*) FROM patients GROUP BY diagnosis",
                         fed, "h1", {}, lambda p, t: SCHEMA).plan
    text = "\n".join(explain_lines(plan))
    assert "__a1_sum = sum part of AVG(cost)" in text
    assert "__a0 = COUNT(*)" in text and "__g0 = diagnosis" in text
    reveal = [i for i, line in enumerate(explain_lines(plan)) if "reveal_result" in line][0]
    assert "legend: __g0 = diagnosis" in explain_lines(plan)[reveal + 2]
    assert with_hash(dataclasses.replace(plan, legend=())).hash == plan.hash


def test_explain_names_join_fragment_columns() -> None:
    fed = parse_config(CONFIG, Path("/tmp/unit.toml"))
    plan = compile_query("SELECT a.diagnosis, SUM(b.cost) FROM h1.patients a JOIN h2.patients b ON a.pid = b.pid "
                         "GROUP BY a.diagnosis", fed, "h1", {}, lambda p, t: SCHEMA).plan
    text = "\n".join(explain_lines(plan))
    assert "legend: __l0 = a.diagnosis, __l0__v = a.diagnosis IS NOT NULL" in text
    assert "__l1 = b.cost," in text
