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


def _roundtrip(events) -> tuple[pa.Table, dict]:
    """What a client does with the end of an Execute stream (over the wire bytes)."""
    events = [pb.ExecuteEvent.FromString(e.SerializeToString()) for e in events]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["header"] + ["chunk"] * (len(events) - 2) + ["end"], kinds
    with result_meta.ResultStream(events, "node") as result:
        return result.read_all(), result.meta


def test_rows_result_with_dp_notes_intervals_and_stats() -> None:
    table = pa.table({"k": ["a", None], "avg_x": [1.5, None]})
    stats = pb.QueryStats(elapsed_seconds=0.25, own=result_meta.party_stats(
        {"rounds": 7, "bytes_sent": 1234, "steps": [("s1", "local_query", 0.1, 0.05)]}),
        parties={"p2": pb.PartyStats(rounds=7, bytes_sent=99)})
    event = result_meta.result_events(
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
    assert "rowcount" not in meta and meta["total_rows"] == 2


def test_set_and_ok_results_carry_no_rows() -> None:
    _, meta = _roundtrip(result_meta.result_events(None, "set", parties=PARTIES, settings={"fedsql.mode": "reveal"}))
    assert meta == {"kind": "set", "columns": [], "leakage": [], "leakage_items": [],
                    "settings": {"fedsql.mode": "reveal"}, "stats": {}}
    table, meta = _roundtrip(result_meta.result_events(pa.table({}), "ok", parties=PARTIES, settings={}, rowcount=0))
    assert table.num_columns == 0 and meta["kind"] == "ok" and meta["rowcount"] == 0  # zero is not "absent"


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown result kind"):
        list(result_meta.result_events(None, "table", parties=PARTIES, settings={}))
    with pytest.raises(ValueError, match="same fedsql version"):
        result_meta.to_dict(pb.ResultMeta())  # RESULT_KIND_UNSPECIFIED: a node that set no kind


def test_large_results_stream_as_record_batches(monkeypatch) -> None:
    """Several chunks of about CHUNK_BYTES, joined back to the same table (NULLs, negatives, zero rows)."""
    monkeypatch.setattr(result_meta, "CHUNK_BYTES", 1 << 12)
    table = pa.table({"x": pa.array([None if i % 97 == 0 else -i for i in range(5000)], pa.int64()),
                      "s": [f"v{i % 13}" for i in range(5000)]})
    events = list(result_meta.result_events(table, "rows", parties=PARTIES, settings={},
                                            columns=[("x", "BIGINT"), ("s", "VARCHAR")]))
    assert len(events) > 10 and all(len(e.chunk.arrow_ipc) < 3 * (1 << 12) for e in events[1:-1])
    got, _ = _roundtrip(events)
    assert got.equals(table)
    empty = table.slice(0, 0)
    got, _ = _roundtrip(result_meta.result_events(empty, "rows", parties=PARTIES, settings={},
                                                  columns=[("x", "BIGINT"), ("s", "VARCHAR")]))
    assert got.num_rows == 0 and got.schema.equals(table.schema)


def test_a_result_past_the_limit_is_refused_at_both_ends(monkeypatch) -> None:
    """The node sends an error instead of the rows; a client stops a node that streams on anyway."""
    from fedsql import errors

    table = pa.table({"x": pa.array(range(10_000), pa.int64())})
    monkeypatch.setattr(result_meta, "MAX_RESULT_BYTES", table.nbytes - 1)
    events = list(result_meta.result_events(table, "rows", parties=PARTIES, settings={}, columns=[("x", "BIGINT")]))
    assert [e.WhichOneof("event") for e in events] == ["error"]
    assert "LIMIT" in events[0].error.message and "bytes" in events[0].error.message
    stopped = []
    header = pb.ExecuteEvent(header=pb.ResultMeta(kind=pb.ROWS, total_rows=10))
    big = b"\xff\xff\xff\xff" + (5000).to_bytes(4, "little")  # an IPC message of 5000 bytes of metadata
    chunk = pb.ExecuteEvent(chunk=pb.ResultChunk(arrow_ipc=big + b"\0" * 592))
    result = result_meta.ResultStream([header, chunk] + [pb.ExecuteEvent(chunk=pb.ResultChunk(arrow_ipc=b"\0" * 600))] * 5, "party 'p1' node", limit=1000,
                                      cancel=stopped.append)
    with pytest.raises(errors.ResourceLimitExceeded, match="more than 1000 bytes"):
        result.read_all()
    assert stopped == [None]  # the call is cancelled, not read on
