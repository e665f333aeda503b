"""The permission model (fedsql/permissions.py): list form, single-level compatibility, per-role
grants, and the planner's checks asking it (docs/configuration.md "Column permissions", D-ROLES)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsql import errors
from fedsql.config import LEVELS, level_at_least, parse_config
from fedsql.permissions import NAMES, PERMISSIONS, Principal, describe, parse_permissions, permits
from planner.compile import compile_query

HEAD = """
[federation]
name = "perm"
compute = ["a", "b", "c"]
[parties.a]
address = "127.0.0.1:7201"
[parties.a.tables.t]
source = "a.parquet"
columns = {{ k = ["join_key", "group_key"], v = "aggregate", Mixed_Case = "group_key" }}
unique = ["k"]
[parties.b]
address = "127.0.0.1:7202"
[parties.b.tables.u]
source = "b.parquet"
columns = {{ k = ["join_key", "group_key"], w = "aggregate", g = {g} }}
{grants}
[parties.c]
address = "127.0.0.1:7203"
"""

SCHEMAS = {"t": (("k", "BIGINT"), ("v", "BIGINT"), ("Mixed_Case", "VARCHAR")),
           "u": (("k", "BIGINT"), ("w", "BIGINT"), ("g", "VARCHAR"))}


def _fed(g: str = '"aggregate"', grants: str = ""):
    return parse_config(HEAD.format(g=g, grants=grants), Path("/tmp/perm.toml"))


def _plan(fed, sql: str, issuer="a", mode: str = "sizes"):
    return compile_query(sql, fed, issuer, {"fedsql.mode": mode}, lambda p, t: SCHEMAS[t]).plan


def test_levels_keep_their_meaning() -> None:
    """Each level is the set of permissions at and below it; join_key and group_key are independent."""
    want = {"private": set(), "aggregate": {"filter", "aggregate"},
            "join_key": {"filter", "aggregate", "join_key"}, "group_key": {"filter", "aggregate", "group_key"},
            "public": set(PERMISSIONS)}
    for level in LEVELS:
        assert parse_permissions(level) == want[level]
        assert describe(parse_permissions(level)) == level
    for a in LEVELS:  # the old order relation is set inclusion
        for b in LEVELS:
            assert level_at_least(a, b) == (want[b] <= want[a]), (a, b)
    assert not level_at_least("join_key", "group_key") and not level_at_least("group_key", "join_key")


def test_list_form_is_the_union() -> None:
    assert parse_permissions(["join_key", "group_key"]) == {"filter", "aggregate", "join_key", "group_key"}
    assert describe(parse_permissions(["join_key", "group_key"])) == "join_key+group_key"
    assert parse_permissions(["filter"]) == {"filter"} and describe(frozenset({"filter"})) == "filter"
    assert parse_permissions(["aggregate", "public"]) == set(PERMISSIONS)
    assert parse_permissions([]) == frozenset() and describe(frozenset()) == "private"
    assert set(NAMES) == set(LEVELS) | {"filter", "payload"}


def test_payload_stands_alone_and_public_implies_it() -> None:
    """`payload` (a column's values on the rows matching a join, to the issuer) implies nothing else:
    it permits no aggregate or filter over all of the owner's rows; `public` includes it."""
    assert parse_permissions("payload") == {"payload"} and describe(frozenset({"payload"})) == "payload"
    assert "payload" in parse_permissions("public")
    assert describe(parse_permissions(["aggregate", "payload"])) == "aggregate+payload"


@pytest.mark.parametrize("value, words", [
    ('"secret"', "unknown permission 'secret'; use one of private, filter, aggregate"),
    ('["join_key", "grup_key"]', "unknown permission 'grup_key'"),
    ('["private", "aggregate"]', '"private" means no permission'),
    ("3", "expected a name or a list of names"),
    ('["join_key", 1]', "expected a name or a list of names"),
])
def test_bad_policy_values_name_the_column_and_the_fix(value: str, words: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        _fed(g=value)
    assert "parties.b.tables.u.columns.g" in str(info.value) and words in str(info.value), str(info.value)


@pytest.mark.parametrize("grants, words", [
    ('grants = { "x:analyst" = { w = "public" } }', "'x' is not a party of this federation"),
    ('grants = { "a:bad role" = { w = "public" } }', "invalid role name 'bad role'"),
    ('grants = { "a:" = { w = "public" } }', "invalid role name ''"),
    ('grants = { "a:analyst" = { w = "publik" } }', "grants.a:analyst.w: unknown permission 'publik'"),
])
def test_bad_grant_keys(grants: str, words: str) -> None:
    with pytest.raises(errors.ConfigError, match="parties.b.tables.u.grants") as info:
        _fed(grants=grants)
    assert words in str(info.value), str(info.value)


def test_role_grants_add_to_the_party_grant_and_stay_in_their_party() -> None:
    fed = _fed(grants='grants = { a = { w = "filter" }, "a:analyst" = { g = "group_key", w = "aggregate" }, '
                      '"c:analyst" = { w = "public" }, "a:auditor" = { w = "public" }, '
                      '"a:ops" = { g = ["filter", "join_key"] } }')
    u = fed.table("b", "u")
    assert u.permissions("w", "a") == {"filter"}  # the party grant replaces `columns` (narrows here)
    assert u.permissions("w", Principal("a", "ann", ("analyst",))) == {"filter", "aggregate"}
    assert u.permissions("w", Principal("a", "ann", ("analyst", "auditor"))) == set(PERMISSIONS)
    assert u.permissions("w", Principal("a", "eve", ("nobody",))) == {"filter"}
    assert u.permissions("w", "c") == {"filter", "aggregate"}  # c's party grant: none, so `columns`
    assert u.permissions("w", Principal("c", "x", ("analyst",))) == set(PERMISSIONS)
    assert u.permissions("w", Principal("b", "", ())) == set(PERMISSIONS)  # the owner
    assert permits(u, "g", Principal("a", "ann", ("analyst",)), "group_key")
    ops = u.permissions("g", Principal("a", "oz", ("ops",)))  # the list form in a grant
    assert ops == {"filter", "aggregate", "join_key"} and describe(ops) == "join_key"
    both = u.permissions("g", Principal("a", "oz", ("analyst", "ops")))
    assert describe(both) == "join_key+group_key"
    assert not permits(u, "g", "a", "group_key")
    with pytest.raises(ValueError):
        permits(u, "g", "a", "row")


def test_planner_applies_the_roles_and_the_plan_binds_them() -> None:
    fed = _fed(grants='grants = { "a:analyst" = { g = "group_key" } }')
    sql = "SELECT g, SUM(w) FROM b.u GROUP BY g"
    with pytest.raises(errors.PolicyViolation) as info:
        _plan(fed, sql)
    assert "b.u.g is 'aggregate' for issuer 'a', which lacks permission 'group_key'" in str(info.value)
    with pytest.raises(errors.PolicyViolation, match=r"\(user 'bob', no roles\)"):
        _plan(fed, sql, Principal("a", "bob"))
    ann = _plan(fed, sql, Principal("a", "ann", ("analyst",)))
    assert ann.user == "ann" and ann.roles == ("analyst",)
    other = _plan(fed, sql, Principal("a", "zed", ("analyst",)))
    assert ann.hash != other.hash  # the user is bound
    assert _plan(fed, "SELECT SUM(w) FROM b.u", "a").hash != _plan(fed, "SELECT SUM(w) FROM b.u",
                                                                     Principal("a", "ann", ("analyst",))).hash
    # derived tables apply the roles too (their outputs' permissions are the meet of their sources')
    cte = "WITH d AS (SELECT g, w FROM b.u WHERE w > 0) SELECT g, COUNT(*) FROM d GROUP BY g"
    with pytest.raises(errors.PolicyViolation, match="group_key"):
        _plan(fed, cte, Principal("a", "bob"))
    assert _plan(fed, cte, Principal("a", "ann", ("analyst",))).roles == ("analyst",)


@pytest.mark.parametrize("mode", ["sizes", "reveal", "oblivious"])
def test_join_key_and_group_key_without_public(mode: str) -> None:
    """k is ["join_key", "group_key"] at both owners: joined across parties and a label, not public."""
    fed = _fed()
    sql = "SELECT t.k, COUNT(*) FROM a.t t JOIN b.u u ON t.k = u.k GROUP BY t.k"
    assert _plan(fed, sql, "c", mode).hash
    with pytest.raises(errors.PolicyViolation, match="lacks permission 'public'"):
        _plan(fed, "SELECT k FROM b.u", "c", mode)


def test_a_single_permission_is_not_enough_for_the_other_role() -> None:
    """join_key alone does not label groups; group_key alone does not join (as the levels before)."""
    join_only = HEAD.replace('k = ["join_key", "group_key"]', 'k = "join_key"')  # both sides (no relabelling)
    fed = parse_config(join_only.format(g='"aggregate"', grants=""), Path("/tmp/perm.toml"))
    with pytest.raises(errors.PolicyViolation, match="k is 'join_key' for issuer 'c', which lacks permission "
                                                     "'group_key'"):
        _plan(fed, "SELECT u.k, COUNT(*) FROM a.t t JOIN b.u u ON t.k = u.k GROUP BY u.k", "c")
    group_only = HEAD.replace('k = ["join_key", "group_key"], w', 'k = "group_key", w')
    fed = parse_config(group_only.format(g='"aggregate"', grants=""), Path("/tmp/perm.toml"))
    with pytest.raises(errors.PolicyViolation, match="lacks permission 'join_key'"):
        _plan(fed, "SELECT COUNT(*) FROM a.t t JOIN b.u u ON t.k = u.k", "c")


def test_filter_only_permits_predicates() -> None:
    fed = _fed(g='"filter"')
    assert _plan(fed, "SELECT COUNT(*) FROM b.u WHERE g = 'x'").hash
    with pytest.raises(errors.PolicyViolation, match="b.u.g is 'filter' for issuer 'a', which lacks permission "
                                                     "'aggregate'"):
        _plan(fed, "SELECT COUNT(DISTINCT g) FROM b.u")
    fed = _fed(g='"private"')
    with pytest.raises(errors.PolicyViolation, match="b.u.g is 'private' for issuer 'a', which lacks permission "
                                                     "'filter'"):
        _plan(fed, "SELECT COUNT(*) FROM b.u WHERE g = 'x'")


def test_mixed_case_column_names_keep_their_policy() -> None:
    fed = _fed()
    assert _plan(fed, 'SELECT "Mixed_Case", COUNT(*) FROM a.t GROUP BY "Mixed_Case"', "b").hash
    with pytest.raises(errors.PolicyViolation, match="lacks permission 'public'"):
        _plan(fed, 'SELECT "Mixed_Case" FROM a.t', "b")
