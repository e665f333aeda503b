"""NodeClient.stream over a real gRPC socket against a scripted (buggy or slow) node service.

The timeout bounds a statement up to its result's header, not the reading of its rows (a slow
reader of a large result is not cut off); a node that sends no header in time is a QueryTimeout
and its call is cancelled; a stream cut after some rows, or ended with an error status, is an
error and never a result. (The real node: tests/test_result_stream.py.)
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any, Callable, Iterator

import grpc
import pyarrow as pa
import pytest

from fedsql import client as client_mod
from fedsql import errors, result_meta
from fedsql.proto import node_pb2 as pb
from fedsql.proto import node_pb2_grpc

TABLE = pa.table({"x": pa.array(range(20_000), pa.int64())})


class Scripted(node_pb2_grpc.NodeServicer):
    def __init__(self) -> None:
        self.script: Callable[[Any], Iterator[pb.ExecuteEvent]] = lambda context: iter(())
        self.cancelled = threading.Event()

    def Execute(self, request: pb.ExecuteRequest, context: Any) -> Iterator[pb.ExecuteEvent]:
        context.add_callback(lambda: self.cancelled.set() if not context.is_active() else None)
        yield from self.script(context)


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[Scripted, str]]:
    servicer = Scripted()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    node_pb2_grpc.add_NodeServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def _events(monkeypatch: pytest.MonkeyPatch) -> list[pb.ExecuteEvent]:
    monkeypatch.setattr(result_meta, "CHUNK_BYTES", 1 << 14)
    return list(result_meta.result_events(TABLE, "rows", parties={"p1"}, settings={}, columns=[("x", "BIGINT")]))


def test_the_timeout_bounds_the_header_not_the_rows(node, monkeypatch: pytest.MonkeyPatch) -> None:
    servicer, address = node
    events = _events(monkeypatch)
    monkeypatch.setattr(client_mod, "DEADLINE_GRACE_SECONDS", 0.1)

    def slow_rows(context: Any) -> Iterator[pb.ExecuteEvent]:
        yield events[0]
        for e in events[1:]:
            time.sleep(0.6 / len(events))  # the rows take longer than the timeout
            yield e

    servicer.script = slow_rows
    with client_mod.NodeClient(address, secure=False) as c:
        table, meta = c.execute("SELECT x", timeout=0.2)
    assert table.equals(TABLE) and meta["total_rows"] == TABLE.num_rows

    def no_header(context: Any) -> Iterator[pb.ExecuteEvent]:
        while context.is_active():
            time.sleep(0.05)
        yield from ()

    servicer.cancelled.clear()
    servicer.script = no_header
    started = time.monotonic()
    with client_mod.NodeClient(address, secure=False) as c, pytest.raises(errors.QueryTimeout, match="0.2 s"):
        c.stream("SELECT x", timeout=0.2)
    assert time.monotonic() - started < 3
    assert servicer.cancelled.wait(3)  # the node saw the call end: it aborts the query everywhere


@pytest.mark.parametrize("how", ["cut", "status"])
def test_a_stream_that_stops_early_is_an_error(node, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    servicer, address = node
    events = _events(monkeypatch)
    assert len(events) > 4

    def cut(context: Any) -> Iterator[pb.ExecuteEvent]:
        yield from events[:3]
        if how == "status":
            context.abort(grpc.StatusCode.UNAVAILABLE, "the node went away")

    servicer.script = cut
    with client_mod.NodeClient(address, secure=False) as c:
        result = c.stream("SELECT x")
        assert result.total_rows == TABLE.num_rows
        expected = errors.InternalError if how == "cut" else errors.PartyUnavailable
        with pytest.raises(expected):
            result.read_all()
