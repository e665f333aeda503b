"""How a hidden lookup is planned, per mode and policy: in `sizes`/`reveal` mode a compute party
holding no input matches the keyed tags and alone learns how many rows match (the owner learns
nothing of the hits), and the result is opened compactly between it and the issuer; in
`oblivious` mode, or when that party may not see the key's match structure, no party matches."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsql.config import parse_config
from planner.compile import compile_query

CONFIG = """
[federation]
name = "lookup"
compute = ["a", "b", "c"]
[parties.a]
address = "127.0.0.1:7100"
[parties.b]
address = "127.0.0.1:7101"
[parties.c]
address = "127.0.0.1:7102"
[parties.c.tables.blacklist]
source = "c.parquet"
columns = { phone = "join_key", risk = "payload" }
[parties.d]
address = "127.0.0.1:7103"
"""
SCHEMAS = {"blacklist": (("phone", "VARCHAR"), ("risk", "BIGINT"))}
LOOKUP = "SELECT t.risk FROM c.blacklist t WHERE t.phone IN (?, ?, ?)"


def plan(text: str, mode: str, issuer: str = "a"):
    fed = parse_config(text, Path("/tmp/lookup.toml"))
    return compile_query(LOOKUP, fed, issuer, {"fedsql.mode": mode, "fedsql.hidden_params": "on"},
                         lambda p, t: SCHEMAS[t]).plan


def _step(p, op):
    return next((s for s in p.steps if s.op == op), None)


@pytest.mark.parametrize("mode", ["sizes", "reveal"])
def test_the_party_holding_no_input_matches_and_alone_learns_the_count(mode):
    p = plan(CONFIG, mode)
    join = _step(p, "secure_join")
    assert join is not None and join.mark and join.matcher == "b" and join.shuffle
    assert _step(p, "reveal_result").count_to == ("a", "b")
    assert any(line.startswith("to b: how many rows of c match each hidden value") for line in p.leakage), p.leakage
    assert not any(line.startswith(("to c:", "to a, b, c: how many rows")) for line in p.leakage), p.leakage


def test_oblivious_mode_matches_nothing_and_opens_every_row_zeroed():
    p = plan(CONFIG, "oblivious")
    assert _step(p, "secure_join") is None and _step(p, "oblivious_semi_join") is not None
    assert _step(p, "reveal_result").count_to == ()


def test_a_matcher_without_join_key_means_no_matcher_not_a_refusal():
    granted = CONFIG.replace('columns = { phone = "join_key", risk = "payload" }',
                             'columns = { phone = "payload", risk = "payload" }\ngrants = { a = { phone = "join_key" } }')
    p = plan(granted, "sizes")
    assert _step(p, "secure_join") is None and _step(p, "oblivious_semi_join") is not None


def test_an_issuer_outside_the_compute_parties_gets_the_rows_from_two_parties_holding_no_input():
    p = plan(CONFIG, "sizes", issuer="d")
    assert _step(p, "secure_join").matcher == "a" and _step(p, "reveal_result").count_to == ("a", "b")
    assert any(line.startswith("to a, b: the number of result rows") for line in p.leakage), p.leakage
    owner_too = CONFIG.replace('[parties.d]', '[parties.b.tables.other]\nsource = "o.parquet"\n'
                               'columns = { phone = "join_key" }\n[parties.d]')
    fed = parse_config(owner_too, Path("/tmp/lookup.toml"))
    sql = "SELECT t.risk FROM c.blacklist t JOIN b.other o ON t.phone = o.phone WHERE t.phone IN (?, ?)"
    p = compile_query(sql, fed, "d", {"fedsql.hidden_params": "on"},
                      lambda p, t: SCHEMAS.get(t, (("phone", "VARCHAR"),))).plan
    assert _step(p, "reveal_result").count_to == ()  # only a holds no input: every row zeroed and opened
