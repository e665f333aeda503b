"""[parties.P.tables.T.dp] policy parsing (fedsql/dp_config.py)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from fedsql.dp_config import DPPolicy, parse_dp_policy
from fedsql.errors import ConfigError

PATH = Path("/fed/federation.toml")
WHERE = "parties.h1.tables.patients.dp"

EXAMPLE = """
[parties.h1.tables.patients.dp]
unit = "patient_id"
max_rows = 1
bounds = { age = [0, 120], cost = [0, 100000.5] }
epsilon = 5.0
max_epsilon_per_query = 1.0
delta = 1e-6
mechanism = "skellam"
public_groups = { region = ["north", "south"], year = [2023, 2024] }
threshold = 20
"""


def dp(text: str) -> dict:
    return tomllib.loads(text)["parties"]["h1"]["tables"]["patients"]["dp"]


def parse(raw):
    return parse_dp_policy(raw, WHERE, PATH)


def test_full_example():
    pol = parse(dp(EXAMPLE))
    assert pol == DPPolicy(
        unit="patient_id", max_rows=1, bounds={"age": (0, 120), "cost": (0.0, 100000.5)}, epsilon=5.0,
        max_epsilon_per_query=1.0, delta=1e-6, max_delta_per_query=1e-6, mechanism="skellam",
        public_groups={"region": ("north", "south"), "year": (2023, 2024)}, threshold=20.0,
    )
    assert isinstance(pol.bounds["age"][0], int)  # integer bounds stay exact
    assert not pol.row_level and pol.bound("age") == (0, 120) and pol.bound("name") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        pol.epsilon = 9.0  # type: ignore[misc]
    assert pol.canonical()["bounds"] == {"age": [0, 120], "cost": [0.0, 100000.5]}


def test_defaults_for_row_privacy():
    pol = parse({"unit": "row", "epsilon": 2})
    assert pol.row_level and pol.max_rows == 1
    assert pol.max_epsilon_per_query == 2.0 and pol.delta == 0.0 and pol.mechanism == "laplace"
    assert pol.bounds == {} and pol.public_groups == {} and pol.threshold is None


BASE = {"unit": "patient_id", "max_rows": 2, "epsilon": 5.0, "max_epsilon_per_query": 1.0}


@pytest.mark.parametrize("change,key,fix", [
    ({"unit": None}, "unit", "privacy-unit column"),
    ({"unit": 3}, ".unit", "column name"),
    ({"max_rows": None}, "max_rows", "integer >= 1"),
    ({"max_rows": 0}, ".max_rows", "integer >= 1"),
    ({"max_rows": 1.5}, ".max_rows", "integer >= 1"),
    ({"max_rows": True}, ".max_rows", "integer >= 1"),
    ({"unit": "row", "max_rows": 3}, ".max_rows", 'unit = "row"'),
    ({"bounds": [0, 1]}, ".bounds", "column = [lo, hi]"),
    ({"bounds": {"age": [120, 0]}}, ".bounds.age", "lo < hi"),
    ({"bounds": {"age": [5, 5]}}, ".bounds.age", "lo < hi"),
    ({"bounds": {"age": [0]}}, ".bounds.age", "[lo, hi]"),
    ({"bounds": {"age": ["0", "9"]}}, ".bounds.age", "finite numbers"),
    ({"bounds": {"age": [0, float("inf")]}}, ".bounds.age", "finite numbers"),
    ({"bounds": {"patient_id": [0, 9]}}, ".bounds.patient_id", "privacy unit"),
    ({"epsilon": None}, "epsilon", "total privacy budget"),
    ({"epsilon": 0}, ".epsilon", "> 0"),
    ({"epsilon": -1.0}, ".epsilon", "> 0"),
    ({"epsilon": "5"}, ".epsilon", "> 0"),
    ({"max_epsilon_per_query": 0.0}, ".max_epsilon_per_query", "> 0"),
    ({"max_epsilon_per_query": 6.0}, ".max_epsilon_per_query", "exceeds the total epsilon"),
    ({"delta": 1.0}, ".delta", "[0, 1)"),
    ({"delta": -1e-9}, ".delta", "[0, 1)"),
    ({"delta": 1e-6, "max_delta_per_query": 1e-5}, ".max_delta_per_query", "exceeds the total delta"),
    ({"mechanism": "gaussian"}, ".mechanism", "laplace, skellam"),
    ({"mechanism": "skellam"}, ".mechanism", "needs delta > 0"),
    ({"public_groups": ["a"]}, ".public_groups", "column = [values...]"),
    ({"public_groups": {"region": []}}, ".public_groups.region", "non-empty list"),
    ({"public_groups": {"region": ["a", "a"]}}, ".public_groups.region", "listed twice"),
    ({"public_groups": {"region": ["a", 1]}}, ".public_groups.region", "mixes strings and numbers"),
    ({"public_groups": {"region": [{"x": 1}]}}, ".public_groups.region", "strings or numbers"),
    ({"public_groups": {"patient_id": [1, 2]}}, ".public_groups.patient_id", "privacy unit"),
    ({"threshold": 0}, ".threshold", "> 0"),
    ({"threshold": 20}, ".threshold", "needs delta > 0"),
    ({"epsilon_total": 3}, "unknown key", "known keys"),
])
def test_errors_name_file_key_and_fix(change, key, fix):
    raw = dict(BASE)
    for k, v in change.items():
        if v is None:
            raw.pop(k, None)
        else:
            raw[k] = v
    with pytest.raises(ConfigError) as exc:
        parse(raw)
    msg = str(exc.value)
    assert msg.startswith(f"{PATH}: {WHERE}"), msg
    assert key in msg and fix in msg, msg


def test_not_a_table():
    with pytest.raises(ConfigError, match="expected a table of DP settings"):
        parse(1.0)


def test_threshold_and_skellam_with_delta_are_accepted():
    pol = parse(dict(BASE, delta=1e-6, threshold=12.5, mechanism="skellam"))
    assert pol.threshold == 12.5 and pol.mechanism == "skellam"


def test_max_joined_rows():
    assert parse(dict(BASE)).joined_rows == 2  # default: max_rows
    pol = parse({**BASE, "max_joined_rows": 5})
    assert pol.joined_rows == 5 and pol.max_rows == 2 and pol.canonical()["max_joined_rows"] == 5
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ConfigError, match="max_joined_rows"):
            parse({**BASE, "max_joined_rows": bad})
