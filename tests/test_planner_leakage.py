"""Issue #11 (leakage findings): who sees a join's match needs `join_key`; the leakage report
names every opened value and who learns it; session settings are checked where they enter."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsql import errors
from fedsql.config import parse_config
from fedsql.settings import MODES, SETTINGS, check_settings
from planner.compile import compile_query, session_mode
from planner.explain import explain_lines
from planner.parse import parse_statement

# p0 issues (no compute role); p1 is a helper compute party (the matcher); p2 and p3 own the keys.
# cid is `join_key` for p0 only (a grant), `aggregate` for everyone else.
CONFIG = """
[federation]
name = "leak"
compute = ["p1", "p2", "p3"]
[parties.p0]
address = "127.0.0.1:7100"
[parties.p1]
address = "127.0.0.1:7101"
[parties.p2]
address = "127.0.0.1:7102"
[parties.p2.tables.c]
source = "c.parquet"
columns = { cid = "aggregate", v = "aggregate", seg = "group_key" }
grants = { p0 = { cid = "join_key" } }
unique = ["cid"]
[parties.p3]
address = "127.0.0.1:7103"
[parties.p3.tables.s]
source = "s.parquet"
columns = { cid = "aggregate", w = "aggregate", name = "group_key" }
grants = { p0 = { cid = "join_key" } }
"""

OPEN = CONFIG.replace('cid = "aggregate"', 'cid = "join_key"')  # the same, join_key for everyone

SCHEMAS = {"c": (("cid", "BIGINT"), ("v", "BIGINT"), ("seg", "VARCHAR")),
           "s": (("cid", "BIGINT"), ("w", "BIGINT"), ("name", "VARCHAR"))}

JOIN = "SELECT COUNT(*), SUM(s.w) FROM p2.c AS c JOIN p3.s AS s ON c.cid = s.cid"
SEMI = "SELECT COUNT(*) FROM p2.c AS c WHERE c.cid IN (SELECT s.cid FROM p3.s AS s)"


def plan(fed, sql, mode, issuer="p0"):
    return compile_query(sql, fed, issuer, {"fedsql.mode": mode}, lambda p, t: SCHEMAS[t]).plan


@pytest.fixture(scope="module")
def granted():
    return parse_config(CONFIG, Path("/tmp/leak.toml"))


@pytest.fixture(scope="module")
def open_fed():
    return parse_config(OPEN, Path("/tmp/leak.toml"))


@pytest.mark.parametrize("sql", [JOIN, SEMI])
@pytest.mark.parametrize("mode", ["sizes", "reveal"])
def test_match_viewers_need_join_key_not_only_the_issuer(granted, sql, mode):
    # the match pairs go to all three compute parties: p1 (the matcher) may not see cid's pattern
    with pytest.raises(errors.PolicyViolation) as info:
        plan(granted, sql, mode)
    msg = str(info.value)
    assert "for party 'p1'" in msg and "'join_key'" in msg and "match structure" in msg
    assert "SET fedsql.mode = 'oblivious'" in msg


@pytest.mark.parametrize("sql", [JOIN, SEMI])
def test_oblivious_match_opens_nothing_so_the_grant_suffices(granted, sql):
    p = plan(granted, sql, "oblivious")
    assert not any(s.op == "secure_join" for s in p.steps)


def test_join_leakage_names_match_structure_viewers(open_fed):
    sizes = plan(open_fed, JOIN, "sizes")
    assert any(line.startswith("to p1, p2, p3: the match structure of the shuffled p2–p3 join inputs on (c.cid, "
                               "s.cid)") for line in sizes.leakage), sizes.leakage
    reveal = plan(open_fed, JOIN, "reveal")
    assert any(line.startswith("to p1, p2, p3: which rows of p2 and p3 matched (reveal mode), on (c.cid, s.cid)")
               for line in reveal.leakage), reveal.leakage
    assert any("match structure" in line for line in explain_lines(sizes))


def test_oblivious_join_reports_the_uniqueness_bit_and_string_width(open_fed):
    p = plan(open_fed, "SELECT s.name, COUNT(*) FROM p2.c AS c JOIN p3.s AS s ON c.cid = s.cid GROUP BY s.name",
             "oblivious")
    assert "to p1, p2, p3: whether the key declared unique on p2's side of the p2–p3 join repeats (one bit; a " \
           "repeat fails the query)" in p.leakage
    assert any(line.startswith("to p1, p2, p3: the length of the longest string key shared by p3, in 7-byte words")
               for line in p.leakage), p.leakage


def test_union_string_key_width_names_the_compute_parties():
    fed = parse_config("""
[federation]
name = "u"
compute = ["a", "b", "h"]
[parties.a]
address = "127.0.0.1:7101"
[parties.a.tables.t]
source = "a.parquet"
columns = { k = "group_key", x = "aggregate" }
[parties.b]
address = "127.0.0.1:7102"
[parties.b.tables.t]
source = "b.parquet"
columns = { k = "group_key", x = "aggregate" }
[parties.h]
address = "127.0.0.1:7103"
[federated.t]
union = ["a.t", "b.t"]
""", Path("/tmp/u.toml"))
    p = compile_query("SELECT k, SUM(x) FROM t GROUP BY k", fed, "a", {}, lambda _p, _t: (("k", "VARCHAR"),
                                                                                           ("x", "BIGINT"))).plan
    assert "to a, b, h: the length of the longest string group key, in 7-byte words" in p.leakage


# -- session settings: one definition, checked where they enter ---------------------------------

def test_modes_have_one_definition():
    assert SETTINGS["fedsql.mode"] is MODES


@pytest.mark.parametrize("sql, match", [
    ("SET fedsql.mode = 'bogus'", r"fedsql.mode must be one of reveal, sizes, oblivious"),
    ("SET fedsql.nope = 'x'", r"unknown setting 'fedsql.nope'; the settings are: fedsql.mode, fedsql.epsilon"),
    ("SET fedsql.epsilon = 'abc'", r"fedsql.epsilon must be a number > 0"),
])
def test_set_refuses_bad_names_and_values(sql, match):
    with pytest.raises(errors.Error, match=match):
        parse_statement(sql)


@pytest.mark.parametrize("settings", [{"fedsql.mode": "bogus"}, {"fedsql.mode": "REVEAL"}, {"mode": "reveal"},
                                      {"fedsql.epsilon": "-1"}, {"fedsql.epsilon": "nan"}])
def test_compile_refuses_bad_settings_maps(open_fed, settings):
    # a settings map that did not come through SET (a client's Execute, a peer's RunRequest):
    # 'bogus' used to plan as reveal mode (no shuffle) without a word
    with pytest.raises((errors.SqlSyntaxError, errors.UnsupportedSql)) as info:
        compile_query("SELECT COUNT(*) FROM p2.c", open_fed, "p0", settings, lambda p, t: SCHEMAS[t])
    assert "fedsql." in str(info.value)
    with pytest.raises((errors.SqlSyntaxError, errors.UnsupportedSql)):
        check_settings(settings)


def test_session_mode_checks_the_mode(open_fed):
    assert session_mode(open_fed, {}) == "sizes"
    assert session_mode(open_fed, {"fedsql.mode": "oblivious"}) == "oblivious"
    with pytest.raises(errors.SqlSyntaxError, match="must be one of reveal, sizes, oblivious"):
        session_mode(open_fed, {"fedsql.mode": "reveal; DROP"})


# -- scalar subqueries: every party that receives the inlined value is a viewer ------------------

SCALAR = """
[federation]
name = "scalar"
compute = ["p1", "p2", "p3"]
[parties.p1]
address = "127.0.0.1:7101"
[parties.p2]
address = "127.0.0.1:7102"
[parties.p2.tables.c]
source = "c.parquet"
columns = { cid = "join_key", income = "aggregate" }
[parties.p3]
address = "127.0.0.1:7103"
[parties.p3.tables.big]
source = "big.parquet"
columns = { v = "private" }
grants = { p1 = { v = "aggregate" } }
"""
SCALAR_SCHEMAS = {"c": (("cid", "BIGINT"), ("income", "BIGINT")), "big": (("v", "BIGINT"),)}
LEAKY = "SELECT COUNT(*) FROM p2.c WHERE income > (SELECT SUM(v) FROM p3.big)"


def _resolve(config: str, sql: str):
    from fedsql.scalar_subqueries import resolve

    fed = parse_config(config, Path("/tmp/scalar.toml"))
    ran: list[str] = []

    def run(inner: str):
        ran.append(inner)
        return 703701006, "HUGEINT", ["inner leakage"]

    def compile_as(text: str, party: str):
        return compile_query(text, fed, party, {}, lambda p, t: SCALAR_SCHEMAS[t])

    return resolve(sql, run, compile_as, "p1"), ran


@pytest.mark.parametrize("sql", [LEAKY, "EXPLAIN " + LEAKY])
def test_scalar_value_refused_before_it_runs_when_a_receiver_may_not_see_it(sql):
    with pytest.raises(errors.PolicyViolation) as info:
        _resolve(SCALAR, sql)
    msg = str(info.value)
    assert "party 'p2' may not see that value" in msg and "p3.big.v is 'private' for issuer 'p2'" in msg
    assert "ask the owners to allow 'p2' this result" in msg


def test_scalar_value_receivers_are_named():
    (sql, leakage), ran = _resolve(SCALAR.replace('v = "private"', 'v = "aggregate"'), LEAKY)
    assert ran == ["SELECT SUM(v) FROM p3.big"] and "703701006" in sql
    assert leakage[0] == ("scalar subquery (SELECT SUM(v) FROM p3.big) ran first; its value was revealed to the "
                          "issuer and written into the SQL of the outer query, which p2 receive")
    (_, explained), ran = _resolve(SCALAR.replace('v = "private"', 'v = "aggregate"'), "EXPLAIN " + LEAKY)
    assert not ran and "which p2 receive" in explained[0]


def test_scalar_value_may_go_to_its_own_owner():
    (sql, leakage), _ = _resolve(SCALAR, "SELECT COUNT(*) FROM p3.big WHERE v > (SELECT SUM(v) / 3 FROM p3.big)")
    assert "which p3 receive" in leakage[0]


def test_dp_join_reports_the_uniqueness_bit_too():
    # a DP join runs obliviously: its uniqueness check opens the same bit, and the report says so
    from tests.test_dp_join_plan import CONFIG as DP_CONFIG, SCHEMAS as DP_SCHEMAS

    fed = parse_config(DP_CONFIG, Path("/tmp/unit.toml"))
    p = compile_query("SELECT COUNT(*) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid", fed, "bank",
                      {"fedsql.epsilon": "1.0"}, lambda _p, t: DP_SCHEMAS[t]).plan
    assert any(line.startswith("to bank, telco, helper: whether the key declared unique on bank's side of the "
                               "telco–bank join repeats (one bit") for line in p.leakage), p.leakage
