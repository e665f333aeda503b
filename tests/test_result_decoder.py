"""The client's result decoder (fedsql/result_meta.py ResultStream) against a buggy or hostile node.

A node's Execute stream is untrusted input: header → chunks → end, one Arrow IPC stream, exactly
the rows announced. Every departure (order, truncation, bytes that are not Arrow, too many or too
few rows, events after the end) must raise a clear error and stop the call, never hand out a
partial result as whole; a well-formed stream is read lazily, one batch at a time.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import pyarrow as pa
import pytest

from fedsql import errors, result_meta
from fedsql.proto import node_pb2 as pb

WHO = "party 'p1' node"


def _table(n: int = 3000) -> pa.Table:
    return pa.table({"x": pa.array([None if i % 97 == 0 else -i for i in range(n)], pa.int64()),
                     "s": [f"v{i % 13}" for i in range(n)]})


def _events(table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> list[pb.ExecuteEvent]:
    """A well-formed stream of several chunks, as the bytes on the wire decode."""
    monkeypatch.setattr(result_meta, "CHUNK_BYTES", 1 << 12)
    events = list(result_meta.result_events(table, "rows", parties={"p1"}, settings={},
                                            columns=[("x", "BIGINT"), ("s", "VARCHAR")]))
    return [pb.ExecuteEvent.FromString(e.SerializeToString()) for e in events]


def _open(events: Iterable[pb.ExecuteEvent], stopped: list | None = None) -> result_meta.ResultStream:
    return result_meta.ResultStream(events, WHO, cancel=(stopped.append if stopped is not None else None))


def _kinds(events: list[pb.ExecuteEvent]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def test_a_well_formed_stream_is_read_lazily_batch_by_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    table = _table()
    events = _events(table, monkeypatch)
    assert _kinds(events)[0] == "header" and _kinds(events)[-1] == "end" and len(events) > 6
    pulled = 0

    def wire() -> Iterator[pb.ExecuteEvent]:
        nonlocal pulled
        for e in events:
            pulled += 1
            yield e

    result = _open(wire())
    assert pulled == 1 and result.total_rows == 3000 and result.meta["total_rows"] == 3000  # the header alone
    assert [c["name"] for c in result.meta["columns"]] == ["x", "s"]
    first = result.read_next_batch()
    assert 0 < first.num_rows < 3000 and pulled < len(events) - 2
    rest = result.read_all()
    assert pa.concat_tables([pa.Table.from_batches([first]), rest]).equals(table)
    assert result.done and result.rows_received == 3000 and pulled == len(events)


def test_any_cut_of_the_bytes_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are only pieces of one IPC stream: a node may cut them anywhere."""
    events = _events(_table(), monkeypatch)
    data = b"".join(e.chunk.arrow_ipc for e in events[1:-1])
    pieces = [data[i:i + 777] for i in range(0, len(data), 777)]
    recut = [events[0], *(pb.ExecuteEvent(chunk=pb.ResultChunk(arrow_ipc=p)) for p in pieces), events[-1]]
    assert _open(recut).read_all().equals(_table())


def test_an_empty_and_a_columnless_result(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = _open(_events(_table(0).slice(0, 0), monkeypatch))
    got = empty.read_all()
    assert got.num_rows == 0 and got.column_names == ["x", "s"] and empty.total_rows == 0
    ok = _open(result_meta.result_events(None, "ok", parties={"p1"}, settings={}, rowcount=4))
    assert ok.read_all().num_columns == 0 and ok.meta["rowcount"] == 4 and ok.total_rows is None and ok.done


def _chunk(data: bytes) -> pb.ExecuteEvent:
    return pb.ExecuteEvent(chunk=pb.ResultChunk(arrow_ipc=data))


@pytest.mark.parametrize("case, message", [
    ("chunk first", "rows before the header"),
    ("end first", "end before the header"),
    ("old node", "does not know"),
    ("nothing", "without a result"),
])
def test_malformed_order_before_the_header(case: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _events(_table(), monkeypatch)
    stream = {"chunk first": [events[1], events[0], *events[2:]],
              "end first": [events[-1], *events],
              "old node": [pb.ExecuteEvent.FromString(b"\x12\x00")],  # field 2: the retired Result
              "nothing": []}[case]
    stopped: list = []
    with pytest.raises(errors.Error, match=message):
        _open(stream, stopped)
    if case != "nothing":
        assert stopped == [None]


def test_errors_from_the_node_keep_their_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    events = _events(_table(), monkeypatch)
    refused = pb.ExecuteEvent(error=pb.Error(kind="PolicyViolation", message="p2.t.id is private"))
    with pytest.raises(errors.PolicyViolation, match="private"):
        _open([pb.ExecuteEvent(progress=pb.Progress(step="planning")), refused])
    stopped: list = []
    failed = pb.ExecuteEvent(error=pb.Error(kind="QueryCancelled", message="cancelled by the client"))
    result = _open([*events[:3], failed], stopped)
    with pytest.raises(errors.QueryCancelled):
        result.read_all()
    assert stopped == [None]


@pytest.mark.parametrize("case, message", [
    ("no end", "stopped sending the result after"),
    ("truncated", "stopped sending the result after"),
    ("truncated, then end", "announced 3000 rows but sent"),
    ("too many rows", "more rows than the 10"),
    ("events after the end", "events after the result's end"),
    ("second header", "header event among the result's rows"),
    ("progress among rows", "progress event among the result's rows"),
    ("no row count", "without announcing how many"),
    ("not arrow", "malformed Arrow"),
    ("bytes after the stream", "bytes after the end of the Arrow stream"),
])
def test_a_broken_stream_is_never_a_result(case: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _events(_table(), monkeypatch)
    header, chunks, end = events[0], events[1:-1], events[-1]
    cut = len(chunks) // 2
    few = pb.ExecuteEvent(header=pb.ResultMeta(kind=pb.ROWS, total_rows=10))
    bare = pb.ExecuteEvent(header=pb.ResultMeta(kind=pb.ROWS))
    stream = {  # (stopped: [] where the node's call had ended by itself, [None] where the client stopped it)
        "no end": [header, *chunks],
        "truncated": [header, *chunks[:cut]],
        "truncated, then end": [header, *chunks[:cut], chunks[-1], end],  # cut at a batch, EOS marker and all
        "too many rows": [few, *chunks, end],
        "events after the end": [*events, end],
        "second header": [header, chunks[0], header, *chunks[1:], end],
        "progress among rows": [header, chunks[0], pb.ExecuteEvent(progress=pb.Progress(step="x")), *chunks[1:], end],
        "no row count": [bare, *chunks, end],
        "not arrow": [header, _chunk(b"not arrow at all"), end],
        "bytes after the stream": [header, *chunks[:-1], _chunk(chunks[-1].chunk.arrow_ipc + b"\0" * 8), end],
    }[case]
    stopped: list = []
    result = _open(stream, stopped)
    with pytest.raises(errors.InternalError, match=message):
        for _ in result:
            pass
    assert stopped == ([] if case in ("no end", "truncated", "truncated, then end") else [None])
    with pytest.raises(errors.Error):
        result.read_next_batch()  # and nothing more comes out of it


def test_ctrl_c_while_reading_cancels_the_query(monkeypatch: pytest.MonkeyPatch) -> None:
    events = _events(_table(), monkeypatch)

    def wire() -> Iterator[pb.ExecuteEvent]:
        yield from events[:3]
        raise KeyboardInterrupt

    stopped: list = []
    result = _open(wire(), stopped)
    with pytest.raises(KeyboardInterrupt):
        result.read_all()
    assert stopped == ["interrupted by user"]


def test_closing_early_stops_the_call_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list = []
    with _open(_events(_table(), monkeypatch), stopped) as result:
        assert result.read_next_batch() is not None
    result.close()
    assert stopped == [None] and result.done
    with pytest.raises(errors.InterfaceError, match="closed"):
        result.read_next_batch()
