"""Federation config: a good file loads; each broken file is a ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsql.config import LEVELS, level_at_least, load_config, parse_config
from fedsql.errors import ConfigError, InterfaceError

GOOD = """\
[federation]
name = "demo"
compute = ["h1", "h2", "h3"]
deadline_seconds = 60
fixed_point_bits = 16
default_mode = "oblivious"

[parties.h1]
address = "127.0.0.1:7101"
flight = "127.0.0.1:7201"
[parties.h1.tables.patients]
source = "data/h1.parquet"
columns = { patient_id = "private", age = "aggregate", diagnosis = "group_key" }
grants = { h2 = { patient_id = "join_key" } }

[parties.h2]
address = "127.0.0.1:7102"
[parties.h2.tables.patients]
source = "data/h2.csv"

[parties.h3]
address = "127.0.0.1:7103"

[federated.patients]
union = ["h1.patients", "h2.patients"]
"""


def parse(text: str) -> object:
    return parse_config(text, Path("/cfg/federation.toml"))


def test_good_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "federation.toml"
    path.write_text(GOOD)
    fed = load_config(path)
    assert fed.name == "demo"
    assert fed.compute == ("h1", "h2", "h3")
    assert fed.deadline_seconds == 60.0
    assert fed.fixed_point_bits == 16
    assert fed.default_mode == "oblivious"
    assert fed.parties["h1"].flight == "127.0.0.1:7201"
    t = fed.table("h1", "patients")
    assert t.source == (tmp_path / "data/h1.parquet").resolve()
    assert t.format == "parquet"
    assert fed.table("h2", "patients").format == "csv"
    assert t.level("age") == "aggregate"
    assert t.level("unlisted") == "private"
    assert t.level("patient_id", issuer="h2") == "join_key"
    assert t.level("patient_id", issuer="h1") == "public"  # owners are unrestricted
    assert fed.parties["h3"].is_helper
    assert fed.federated["patients"].members == (("h1", "patients"), ("h2", "patients"))


def test_compute_optional_with_three_parties() -> None:
    text = GOOD.replace('compute = ["h1", "h2", "h3"]\n', "")
    assert parse(text).compute == ("h1", "h2", "h3")  # type: ignore[attr-defined]


def test_levels_order() -> None:
    assert level_at_least("group_key", "aggregate")
    assert level_at_least("join_key", "aggregate")
    assert not level_at_least("join_key", "group_key")
    assert not level_at_least("aggregate", "group_key")
    assert all(level_at_least("public", lvl) for lvl in LEVELS)


@pytest.mark.parametrize(
    "broken, names",
    [
        ("[federation\nname = 1", "not valid TOML"),
        (GOOD.replace('address = "127.0.0.1:7102"\n', ""), "parties.h2"),
        (GOOD.replace('address = "127.0.0.1:7102"', 'address = "localhost"'), "parties.h2.address"),
        (GOOD.replace('address = "127.0.0.1:7102"', 'address = "127.0.0.1:99999"'), "parties.h2.address"),
        (GOOD.replace('age = "aggregate"', 'age = "secret"'), "parties.h1.tables.patients.columns.age"),
        (GOOD.replace('compute = ["h1", "h2", "h3"]', 'compute = ["h1", "h2", "h9"]'), "federation.compute"),
        (GOOD.replace('compute = ["h1", "h2", "h3"]', 'compute = ["h1", "h2"]'), "federation.compute"),
        (GOOD.replace('compute = ["h1", "h2", "h3"]', 'compute = ["h1", "h1", "h2"]'), "federation.compute"),
        (GOOD.replace('union = ["h1.patients", "h2.patients"]', 'union = ["h1.patients", "h9.patients"]'),
         "federated.patients.union"),
        (GOOD.replace('union = ["h1.patients", "h2.patients"]', 'union = ["h1.patients", "h2.nope"]'),
         "federated.patients.union"),
        (GOOD.replace('address = "127.0.0.1:7102"', 'address = "127.0.0.1:7101"'), "parties.h2.address"),
        (GOOD.replace('source = "data/h2.csv"', 'source = "data/h2.xlsx"'), "parties.h2.tables.patients.source"),
        (GOOD.replace('source = "data/h2.csv"', 'sauce = "data/h2.csv"'), "parties.h2.tables.patients"),
        (GOOD.replace("deadline_seconds = 60", "deadline_seconds = -1"), "federation.deadline_seconds"),
        (GOOD.replace("fixed_point_bits = 16", "fixed_point_bits = 60"), "federation.fixed_point_bits"),
        (GOOD.replace('default_mode = "oblivious"', 'default_mode = "fast"'), "federation.default_mode"),
        ("[federation]\nname = 'x'\n", "[parties]"),
    ],
    ids=[
        "bad-toml", "missing-address", "address-without-port", "port-out-of-range", "bad-level",
        "unknown-compute-party", "two-compute-parties", "duplicate-compute-party", "unknown-union-party",
        "unknown-union-table", "duplicate-address", "bad-source-type", "unknown-table-key",
        "negative-deadline", "fixed-point-bits", "bad-mode", "no-parties",
    ],
)
def test_broken_config_names_the_key(broken: str, names: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(broken)
    message = str(info.value)
    assert names in message
    assert "/cfg/federation.toml" in message
    assert isinstance(info.value, InterfaceError)


def test_compute_required_unless_three_parties() -> None:
    text = GOOD.replace('compute = ["h1", "h2", "h3"]\n', "").replace(
        '[parties.h3]\naddress = "127.0.0.1:7103"\n', '[parties.h3]\naddress = "127.0.0.1:7103"\n[parties.h4]\naddress = "127.0.0.1:7104"\n'
    )
    with pytest.raises(ConfigError, match="federation.compute"):
        parse(text)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "broken, where, hint",
    [
        (GOOD.replace('flight = "127.0.0.1:7201"', 'flght = "127.0.0.1:7201"'), "parties.h1", "'flight'"),
        (GOOD.replace("[federation]", "[federaton]"), "top level", "'federation'"),
        (GOOD.replace("deadline_seconds = 60", "deadline_secs = 60"), "[federation]", "'deadline_seconds'"),
        (GOOD + "\n[federatd.x]\nunion = []\n", "top level", "'federated'"),
        (GOOD.replace('union = ["h1.patients", "h2.patients"]',
                      'union = ["h1.patients", "h2.patients"]\nmembers = 2'), "federated.patients", "union"),
    ],
    ids=["party-key-typo", "section-typo", "federation-key-typo", "top-level-typo", "federated-key"],
)
def test_unknown_keys_are_errors_that_name_them(broken: str, where: str, hint: str) -> None:
    """issue #15: `flght = …` silently disabled Flight SQL; `[federaton]` said "got NoneType None"."""
    with pytest.raises(ConfigError) as info:
        parse(broken)
    message = str(info.value)
    assert f"{where}: unknown key" in message and hint in message and "known keys:" in message
    assert "NoneType" not in message
