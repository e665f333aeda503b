"""NodeCatalog's cache (fedsql/catalog.py): own tables always fresh, peers' cached until the TTL
or an invalidation of that party, a refused reply never cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsql import errors
from fedsql.catalog import NodeCatalog
from fedsql.config import parse_config
from tests.test_planner_leakage import OPEN


def _catalog(replies: dict[tuple[str, str], list]) -> tuple[NodeCatalog, list]:
    calls: list = []

    def remote(party: str, table: str):
        calls.append((party, table))
        got = replies[(party, table)].pop(0)
        if isinstance(got, Exception):
            raise got
        return got

    fed = parse_config(OPEN, Path("/tmp/leak.toml"))
    local_calls = []
    catalog = NodeCatalog(fed, "p2", lambda t: local_calls.append(t) or (("cid", "BIGINT"),), remote, ttl=60.0)
    catalog.local_calls = local_calls  # type: ignore[attr-defined]
    return catalog, calls


def test_peers_cached_own_fresh_and_invalidation_per_party() -> None:
    s1, s2 = (("cid", "BIGINT"),), (("cid", "DOUBLE"),)
    catalog, calls = _catalog({("p3", "s"): [s1, s2, s2]})
    assert catalog.schema("p3", "s") == s1 and catalog.schema("p3", "s") == s1 and len(calls) == 1
    catalog.schema("p2", "c")
    catalog.schema("p2", "c")
    assert catalog.local_calls == ["c", "c"]  # type: ignore[attr-defined]  # own tables: never cached
    catalog.invalidate(["p1"])  # another party: p3's entry stays
    assert catalog.schema("p3", "s") == s1 and len(calls) == 1
    catalog.invalidate(["p3"])
    assert catalog.schema("p3", "s") == s2 and len(calls) == 2
    catalog.ttl = 0.0
    assert catalog.schema("p3", "s") == s2 and len(calls) == 3


def test_a_refused_reply_is_not_cached() -> None:
    catalog, calls = _catalog({("p3", "s"): [errors.ProgrammingError("invalid schema"), (("cid", "BIGINT"),)]})
    with pytest.raises(errors.ProgrammingError):
        catalog.schema("p3", "s")
    assert catalog.schema("p3", "s") == (("cid", "BIGINT"),) and len(calls) == 2


def test_list_resolve_and_describe_for_this_party() -> None:
    catalog, _ = _catalog({("p3", "s"): [(("cid", "BIGINT"), ("w", "BIGINT"), ("name", "VARCHAR"))]})
    assert ("p3", "s", "table") in catalog.tables() and ("p2", "c", "table") in catalog.tables()
    described = catalog.describe(catalog.resolve("p3", "s"))
    assert described == [("cid", "BIGINT", "join_key"), ("w", "BIGINT", "aggregate"), ("name", "VARCHAR", "group_key")]
    assert {lv for _, _, lv in catalog.describe(catalog.resolve("p2", "c"))} == {"public"}  # its own table
    with pytest.raises(errors.UnknownObjectError, match="no table 'nope'"):
        catalog.resolve("p3", "nope")
