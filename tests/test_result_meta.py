"""ResultMeta (issue #18 item 4): one builder, typed fields, leakage as items rendered at the edge.

The leakage of real plans (every mode, joins, semi-joins, grouping, DP notes) must come back
as exactly the planner's lines after item → text; lines addressed to something that is not a
party stay text; the client's dict keeps its keys; a result of unknown kind is refused.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from fedsql import result_meta
from fedsql.config import parse_config
from fedsql.proto import node_pb2 as pb
from planner.compile import compile_query
from tests.test_planner_leakage import OPEN, SCHEMAS

PARTIES = {"p0", "p1", "p2", "p3"}
QUERIES = [
    "SELECT COUNT(*), SUM(s.w) FROM p2.c AS c JOIN p3.s AS s ON c.cid = s.cid",
    "SELECT COUNT(*) FROM p2.c AS c WHERE c.cid IN (SELECT s.cid FROM p3.s AS s)",
    "SELECT s.name, COUNT(*) FROM p2.c AS c JOIN p3.s AS s ON c.cid = s.cid GROUP BY s.name",
    "SELECT seg, SUM(v) FROM p2.c GROUP BY seg HAVING SUM(v) > 3 ORDER BY 2 DESC LIMIT 2",
    "SELECT COUNT(*) FROM p2.c",
]


@pytest.fixture(scope="module")
def fed():
    return parse_config(OPEN, Path("/tmp/leak.toml"))


@pytest.mark.parametrize("sql", QUERIES)
@pytest.mark.parametrize("mode", ["reveal", "sizes", "oblivious"])
@pytest.mark.parametrize("issuer", ["p0", "p2"])
def test_plan_leakage_round_trips_exactly(fed, sql: str, mode: str, issuer: str) -> None:
    plan = compile_query(sql, fed, issuer, {"fedsql.mode": mode}, lambda p, t: SCHEMAS[t]).plan
    items = [result_meta.leakage_item(line, fed.parties) for line in plan.leakage]
    assert [result_meta.leakage_text(i) for i in items] == list(plan.leakage)
    addressed = [i for i in items if i.viewers]
    if "p3.s" in sql:  # a cross-party plan says who learns what
        assert addressed, plan.leakage
    assert all(set(i.viewers) <= set(fed.parties) and i.what for i in addressed)


@pytest.mark.parametrize("line, viewers, only, what", [
    ("to p1 only: the result", ["p1"], True, "the result"),
    ("to p1, p2, p3: the number of groups", ["p1", "p2", "p3"], False, "the number of groups"),
    ("to p1, p2: a: b: c", ["p1", "p2"], False, "a: b: c"),
    ("to the compute parties: the sizes", [], False, "to the compute parties: the sizes"),
    ("to p9: not a party", [], False, "to p9: not a party"),  # not a party of this federation
    ("to p1,p2: spacing differs", [], False, "to p1,p2: spacing differs"),
    ("the query text and plan are public", [], False, "the query text and plan are public"),
    ("", [], False, ""),
])
def test_leakage_items(line: str, viewers: list[str], only: bool, what: str) -> None:
    item = result_meta.leakage_item(line, PARTIES)
    assert (list(item.viewers), item.only, item.what) == (viewers, only, what)
    assert result_meta.leakage_text(item) == line


def _roundtrip(event: pb.ExecuteEvent) -> tuple[pa.Table, dict]:
    wire = pb.ExecuteEvent.FromString(event.SerializeToString()).result
    table = pa.ipc.open_stream(wire.arrow_ipc).read_all() if wire.arrow_ipc else pa.table({})
    return table, result_meta.to_dict(wire.meta)


def test_rows_result_with_dp_notes_intervals_and_stats() -> None:
    table = pa.table({"k": ["a", None], "avg_x": [1.5, None]})
    stats = pb.QueryStats(elapsed_seconds=0.25, own=result_meta.party_stats(
        {"rounds": 7, "bytes_sent": 1234, "steps": [("s1", "local_query", 0.1, 0.05)]}),
        parties={"p2": pb.PartyStats(rounds=7, bytes_sent=99)})
    event = result_meta.result_event(
        table, "rows", parties=PARTIES, settings={"fedsql.mode": "sizes"},
        columns=[("k", "VARCHAR"), ("avg_x", "DOUBLE")], leakage=["to p1 only: the result", "public text"],
        notes={"avg_x": "ε = 0.5"}, intervals={1: [(-0.5, 3.5), None]}, stats=stats, plan_hash="h", query_id="q")
    got, meta = _roundtrip(event)
    assert got.equals(table)
    assert meta["kind"] == "rows" and meta["plan_hash"] == "h" and meta["query_id"] == "q"
    assert meta["columns"] == [{"name": "k", "type": "VARCHAR", "note": None},
                               {"name": "avg_x", "type": "DOUBLE", "note": "ε = 0.5",
                                "confidence_interval_95": [[-0.5, 3.5], None]}]
    assert meta["leakage"] == ["to p1 only: the result", "public text"]
    assert meta["leakage_items"][0] == {"viewers": ["p1"], "only": True, "what": "the result"}
    assert meta["settings"] == {"fedsql.mode": "sizes"}
    assert meta["stats"] == {"elapsed_seconds": 0.25, "rounds": 7, "bytes_sent": 1234,
                             "steps": [["s1", "local_query", 0.1, 0.05]],
                             "parties": {"p2": {"rounds": 7, "bytes_sent": 99}}}
    assert "rowcount" not in meta


def test_set_and_ok_results_carry_no_rows() -> None:
    _, meta = _roundtrip(result_meta.result_event(None, "set", parties=PARTIES, settings={"fedsql.mode": "reveal"}))
    assert meta == {"kind": "set", "columns": [], "leakage": [], "leakage_items": [],
                    "settings": {"fedsql.mode": "reveal"}, "stats": {}}
    table, meta = _roundtrip(result_meta.result_event(pa.table({}), "ok", parties=PARTIES, settings={}, rowcount=0))
    assert table.num_columns == 0 and meta["kind"] == "ok" and meta["rowcount"] == 0  # zero is not "absent"


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown result kind"):
        result_meta.result_event(None, "table", parties=PARTIES, settings={})
    with pytest.raises(ValueError, match="same fedsql version"):
        result_meta.to_dict(pb.ResultMeta())  # RESULT_KIND_UNSPECIFIED: a node that set no kind
