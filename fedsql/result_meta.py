"""A result's metadata as a typed message (`ResultMeta` in fedsql/proto/node.proto).

Built here and only here (the node's queries, set operations, scratch and catalog answers all
call `result_events`), and turned back into the client's dict here (`to_dict`, called by
`ResultStream`, which fedsql/client.py and scratch use), where the leakage report is rendered as
text: one definition of every field instead of a JSON object assembled in six places.

A result travels as header (the ResultMeta, with the row count), chunks (one Arrow IPC stream cut
after record batches), end; `ResultStream` reads it lazily and checks that order, the bytes and
the row count, because a node's stream is untrusted input to the client (docs/decisions.md D-STREAM). The planner still words its leakage report as
lines ("to p1, p2: the number of groups"); `leakage_item` gives each line its structure (who
learns it, what) against the federation's party names, and `leakage_text` renders it back
exactly, so the text a user reads is unchanged.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from executors.peer_channel import MAX_MESSAGE_BYTES
from fedsql import errors
from fedsql.proto import node_pb2 as pb

MAX_RESULT_BYTES = MAX_MESSAGE_BYTES
"""The largest result (Arrow bytes) a node sends and a client accepts: 1 GiB, as when a result
travelled as one message."""
CHUNK_BYTES = 4 << 20
"""About this many bytes of record batches per ResultChunk."""

KINDS = {"rows": pb.ROWS, "explain": pb.EXPLAIN, "set": pb.SET, "ok": pb.OK}
_KIND_NAMES = {code: name for name, code in KINDS.items()}
_ADDRESSED = re.compile(r"to ([A-Za-z_]\w*(?:, [A-Za-z_]\w*)*)( only)?: (.*)", re.S)


def leakage_item(line: str, parties: Collection[str]) -> pb.LeakageItem:
    """One report line → its item; a line not addressed to parties of `parties` keeps its text."""
    m = _ADDRESSED.fullmatch(line)
    viewers = m.group(1).split(", ") if m else []
    if not m or not all(v in parties for v in viewers):
        return pb.LeakageItem(what=line)
    return pb.LeakageItem(viewers=viewers, only=bool(m.group(2)), what=m.group(3))


def leakage_text(item: pb.LeakageItem) -> str:
    """The line a person reads (the inverse of leakage_item)."""
    if not item.viewers:
        return item.what
    return f"to {', '.join(item.viewers)}{' only' if item.only else ''}: {item.what}"


def party_stats(stats: Mapping[str, Any]) -> pb.PartyStats:
    """A party's own counters (executors/runtime.py PartyRun.stats()) as a message."""
    steps = [pb.StepTime(step=str(s[0]), op=str(s[1]), wall_seconds=float(s[2]),
                         cpu_seconds=float(s[3]) if len(s) > 3 else 0.0) for s in stats.get("steps", ())]
    return pb.PartyStats(rounds=int(stats.get("rounds", 0)), bytes_sent=int(stats.get("bytes_sent", 0)), steps=steps)


def result_events(
    table: pa.Table | None,
    kind: str,
    *,
    parties: Collection[str],
    settings: Mapping[str, str],
    columns: Sequence[tuple[str, str]] = (),
    leakage: Iterable[str | pb.LeakageItem] = (),
    notes: Mapping[str, str] | None = None,
    intervals: Mapping[int, Sequence[Sequence[float] | None]] | None = None,
    stats: pb.QueryStats | None = None,
    plan_hash: str = "",
    query_id: str = "",
    rowcount: int | None = None,
) -> Iterator[pb.ExecuteEvent]:
    """The end of an Execute stream: the header (ResultMeta with `total_rows`), `table` (None or no
    columns: no rows) as ResultChunks of Arrow record batches, then the end marker; a table over
    MAX_RESULT_BYTES is refused with an error event before anything is sent.

    `columns`: (name, DuckDB type) in output order; `notes`: DP notes by column name;
    `intervals`: per-row 95% intervals by column index; `leakage`: report lines or items."""
    if kind not in KINDS:
        raise ValueError(f"unknown result kind {kind!r}")
    notes = notes or {}
    meta = pb.ResultMeta(kind=KINDS[kind], settings=dict(settings), plan_hash=plan_hash, query_id=query_id)
    for i, (name, typ) in enumerate(columns):
        col = meta.columns.add(name=name, type=typ)
        if notes.get(name) is not None:
            col.dp_note = notes[name]
        if intervals and i in intervals:
            col.confidence_interval_95.SetInParent()
            for row in intervals[i]:
                col.confidence_interval_95.rows.add(
                    **({"known": True, "low": float(row[0]), "high": float(row[1])} if row is not None else {}))
    for line in leakage:
        meta.leakage.append(line if isinstance(line, pb.LeakageItem) else leakage_item(line, parties))
    if stats is not None:
        meta.stats.CopyFrom(stats)
    if rowcount is not None:
        meta.rowcount = rowcount
    has_rows = table is not None and table.num_columns > 0
    if has_rows:
        if table.nbytes > MAX_RESULT_BYTES:
            err = errors.ResourceLimitExceeded(
                f"the result has {table.num_rows} rows and {table.nbytes} bytes, more than a result may carry "
                f"({MAX_RESULT_BYTES} bytes); aggregate, filter or add a LIMIT, or write it to a file with COPY")
            yield pb.ExecuteEvent(error=pb.Error(kind=err.kind, message=str(err)))
            return
        meta.total_rows = table.num_rows
    yield pb.ExecuteEvent(header=meta)
    if has_rows:
        for piece in _ipc_chunks(table):
            yield pb.ExecuteEvent(chunk=pb.ResultChunk(arrow_ipc=piece))
    yield pb.ExecuteEvent(end=pb.ResultEnd())


def _ipc_chunks(table: pa.Table) -> Iterator[bytes]:
    """One Arrow IPC stream, cut after every record batch of about CHUNK_BYTES."""
    rows = max(1, CHUNK_BYTES * table.num_rows // max(table.nbytes, 1))
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=rows):
            writer.write_batch(batch)
            yield sink.getvalue()
            sink.seek(0)
            sink.truncate()
    yield sink.getvalue()  # the end-of-stream marker (with the schema when there was no batch)


Cancel = Callable[[str | None], None]
"""Stops the stream's call: None when the client just stops reading (or the stream misbehaved),
a reason when the query itself must stop at the node (Ctrl-C)."""


class ResultStream:
    """One statement's result as it arrives: `meta` (the client's dict) and `total_rows` at once,
    then the rows as pyarrow RecordBatches read from the Execute stream on demand.

    Every departure from header → chunks → end, bytes that are not one Arrow IPC stream, more
    than MAX_RESULT_BYTES, or a row count other than the header's raises a clear error and stops
    the call: a partial result is never handed out as whole. Reading to the end checks it; a
    consumer that stops early calls `close` (a new execute or close on a cursor does)."""

    def __init__(self, events: Iterable[pb.ExecuteEvent], who: str, *,
                 on_progress: Callable[[float, str], None] | None = None, cancel: Cancel | None = None,
                 limit: int = MAX_RESULT_BYTES) -> None:
        self.who = who
        self.limit = limit
        self.rows_received = 0
        self._events = iter(events)
        self._cancel = cancel
        self._bytes = 0
        self._state = "header"  # header → rows → ended | closed
        self._reader: pa.RecordBatchStreamReader | None = None
        self._file: _ChunkFile | None = None
        self._schema: pa.Schema | None = None
        self._failure: BaseException | None = None  # raised inside pyarrow's read (it may wrap it)
        self._broken: str | None = None
        self.header = self._read_header(on_progress)
        try:
            self.meta = to_dict(self.header)
        except ValueError as exc:
            self._stop(None)
            raise errors.InternalError(f"{who} sent malformed result metadata: {exc}") from None
        self.total_rows: int | None = self.header.total_rows if self.header.HasField("total_rows") else None
        if self.total_rows is not None and self.total_rows < 0:
            self._stop(None)
            raise errors.InternalError(f"{who} sent a result header with a negative row count")

    # -- the event protocol ---------------------------------------------------------

    def _next(self) -> pb.ExecuteEvent | None:
        """The next event, None at the end of the call; any failure (Ctrl-C included) stops it."""
        try:
            return next(self._events)
        except StopIteration:
            self._cancel = None  # the call is complete: nothing to stop
            return None
        except KeyboardInterrupt:
            self._stop("interrupted by user")
            raise
        except BaseException:
            self._stop(None)
            raise

    def _protocol(self, what: str) -> errors.InternalError:
        self._stop(None)
        return errors.InternalError(f"{self.who} broke the result protocol: {what}; the result is discarded")

    def _read_header(self, on_progress: Callable[[float, str], None] | None) -> pb.ResultMeta:
        while True:
            event = self._next()
            which = event.WhichOneof("event") if event is not None else "none"
            if which == "none":
                raise errors.OperationalError(f"{self.who} ended the query without a result")
            if which == "progress":
                if on_progress is not None:
                    try:
                        on_progress(event.progress.elapsed_seconds, event.progress.step)
                    except BaseException as exc:
                        self._stop("interrupted by user" if isinstance(exc, KeyboardInterrupt) else None)
                        raise
            elif which == "error":
                raise errors.error_from_kind(event.error.kind, event.error.message)
            elif which == "header":
                self._state = "rows"
                return event.header
            elif which in ("chunk", "end"):
                raise self._protocol(f"it sent result {'rows' if which == 'chunk' else 'end'} before the header")
            else:
                raise self._protocol("it sent an event this client does not know (are the client and the node "
                                     "the same fedsql version?)")

    def _pull(self) -> bytes:
        """The next chunk's bytes, b"" at the end marker (the file `_ChunkFile` reads)."""
        if self._state != "rows":
            return b""
        event = self._next()
        which = event.WhichOneof("event") if event is not None else "none"
        if which == "chunk":
            if self.total_rows is None:
                raise self._protocol("it sent rows without announcing how many")
            data = event.chunk.arrow_ipc
            self._bytes += len(data)
            if self._bytes > self.limit:
                self._stop(None)  # a node that streams more than a result may carry is stopped, not buffered
                raise errors.ResourceLimitExceeded(
                    f"{self.who} sent a result of more than {self.limit} bytes, more than a result may carry; "
                    "aggregate, filter or add a LIMIT, or write it to a file with COPY")
            return data
        if which == "end":
            self._state = "ended"
            return b""
        if which == "error":  # the node failed while sending the rows
            self._stop(None)
            raise errors.error_from_kind(event.error.kind, event.error.message)
        if which == "none":
            self._stop(None)
            raise errors.InternalError(
                f"{self.who} stopped sending the result after {self.rows_received} of {self.total_rows} rows; "
                "the result is incomplete and was discarded")
        raise self._protocol(f"it sent a {which} event among the result's rows")

    def _stop(self, reason: str | None) -> None:
        if self._state != "ended":
            self._state = "closed"
        if self._cancel is not None:  # None: the call is complete, or was stopped already
            cancel, self._cancel = self._cancel, None
            cancel(reason)

    def _finish(self) -> None:
        """After the last batch: the end marker, nothing after it, and exactly the rows announced."""
        if (self._file is not None and self._file.pending()) or (self._state == "rows" and self._pull()):
            raise self._protocol("it sent bytes after the end of the Arrow stream")
        if self._state == "ended":
            if self._next() is not None:
                raise self._protocol("it sent events after the result's end")
        if self.rows_received != (self.total_rows or 0):
            raise self._protocol(f"it announced {self.total_rows or 0} rows but sent {self.rows_received}")

    def _arrow_failure(self, exc: BaseException) -> BaseException:
        if self._failure is not None:
            return self._failure
        if isinstance(exc, errors.Error):
            return exc
        self._stop(None)
        return errors.InternalError(f"{self.who} sent a malformed Arrow result: {exc}")

    # -- reading --------------------------------------------------------------------

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema (reads the first chunk; no columns when the result has none)."""
        if self._schema is None:
            self._guarded(self._open)
        return self._schema  # type: ignore[return-value]

    def _guarded(self, read: Callable[[], Any]) -> Any:
        """Run a read; a failure leaves the stream broken (later reads say so, none returns rows)."""
        if self._broken is not None:
            raise errors.InterfaceError(f"the result cannot be read: {self._broken}")
        if self._state == "closed":
            raise errors.InterfaceError("the result was closed before all its rows were read")
        try:
            return read()
        except BaseException as exc:
            self._broken = f"{type(exc).__name__} earlier ({exc})" if str(exc) else type(exc).__name__
            self._reader = None
            raise

    def _open(self) -> None:
        first = self._pull()
        if not first:  # header, end: a result without columns
            self._schema = pa.schema([])
            self._finish()
            return
        try:
            self._file = _ChunkFile(self, first)
            self._reader = pa.ipc.open_stream(self._file)
        except Exception as exc:  # noqa: BLE001 - whatever the bytes were, they are not a result
            raise self._arrow_failure(exc) from None
        self._schema = self._reader.schema

    def read_next_batch(self) -> pa.RecordBatch | None:
        """The next record batch as it arrives; None after the last (checked complete)."""
        if self._schema is None:
            self._guarded(self._open)
        if self._reader is None and self._broken is None and self._state != "closed":
            return None  # complete
        return self._guarded(self._next_batch)

    def _next_batch(self) -> pa.RecordBatch | None:
        assert self._reader is not None
        try:
            batch = self._reader.read_next_batch()
        except StopIteration:
            self._reader = None
            self._finish()
            return None
        except KeyboardInterrupt:
            self._stop("interrupted by user")
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._arrow_failure(exc) from None
        self.rows_received += batch.num_rows
        if self.rows_received > (self.total_rows or 0):
            raise self._protocol(f"it sent more rows than the {self.total_rows} it announced")
        return batch

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while (batch := self.read_next_batch()) is not None:
            yield batch

    def read_all(self) -> pa.Table:
        """The rows not read yet, as one table."""
        schema = self.schema
        return pa.Table.from_batches(list(self), schema=schema)

    def reader(self) -> pa.RecordBatchReader:
        """A RecordBatchReader over the rows not read yet, reading the live stream."""
        return pa.RecordBatchReader.from_batches(self.schema, iter(self))

    @property
    def done(self) -> bool:
        """Every row was read and checked, or the stream was closed or broke."""
        return self._state in ("ended", "closed") and self._reader is None

    def close(self) -> None:
        """Stop reading: the call is cancelled unless it is complete (the node stops sending)."""
        self._reader = None
        self._stop(None)

    def __enter__(self) -> "ResultStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ChunkFile(io.RawIOBase):
    """The result's chunks as one readable file for pyarrow's IPC stream reader (pulled on demand)."""

    def __init__(self, stream: ResultStream, first: bytes) -> None:
        super().__init__()
        self._stream = stream
        self._buf = memoryview(first)

    def readable(self) -> bool:
        return True

    def pending(self) -> int:
        """Bytes of the current chunk pyarrow has not read."""
        return len(self._buf)

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        want = n if n is not None and n >= 0 else None
        got = 0
        while want is None or got < want:
            if not self._buf:
                try:
                    more = self._stream._pull()
                except BaseException as exc:
                    self._stream._failure = exc
                    raise
                if not more:
                    break
                self._buf = memoryview(more)
            take = self._buf if want is None else self._buf[: want - got]
            parts.append(take.tobytes())
            got += len(take)
            self._buf = self._buf[len(take):]
        return b"".join(parts)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def _party_dict(s: pb.PartyStats) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": s.rounds, "bytes_sent": s.bytes_sent}
    if s.steps:
        out["steps"] = [[t.step, t.op, t.wall_seconds, t.cpu_seconds] for t in s.steps]
    return out


def stats_dict(stats: pb.QueryStats) -> dict[str, Any]:
    """QueryStats as the client's dict: elapsed_seconds, rounds, bytes_sent, steps, parties."""
    out: dict[str, Any] = {}
    if stats.HasField("elapsed_seconds"):
        out["elapsed_seconds"] = stats.elapsed_seconds
    if stats.HasField("own"):
        out.update(_party_dict(stats.own))
    if stats.parties:
        out["parties"] = {p: _party_dict(s) for p, s in sorted(stats.parties.items())}
    return out


def _kind_name(code: int) -> str:
    if code not in _KIND_NAMES:
        raise ValueError(f"result of unknown kind {code}; are the client and the node the same fedsql version?")
    return _KIND_NAMES[code]


def to_dict(meta: pb.ResultMeta) -> dict[str, Any]:
    """The client API's meta dict (DB-API, shell, Flight SQL read it): the leakage report as
    text lines (`leakage`) and as items (`leakage_items`: viewers, only, what)."""
    columns = []
    for c in meta.columns:
        col: dict[str, Any] = {"name": c.name, "type": c.type, "note": c.dp_note if c.HasField("dp_note") else None}
        if c.HasField("confidence_interval_95"):
            col["confidence_interval_95"] = [[r.low, r.high] if r.known else None
                                             for r in c.confidence_interval_95.rows]
        columns.append(col)
    out: dict[str, Any] = {
        "kind": _kind_name(meta.kind),
        "columns": columns,
        "leakage": [leakage_text(item) for item in meta.leakage],
        "leakage_items": [{"viewers": list(i.viewers), "only": i.only, "what": i.what} for i in meta.leakage],
        "settings": dict(meta.settings),
        "stats": stats_dict(meta.stats) if meta.HasField("stats") else {},
    }
    if meta.plan_hash:
        out["plan_hash"] = meta.plan_hash
    if meta.query_id:
        out["query_id"] = meta.query_id
    if meta.HasField("rowcount"):
        out["rowcount"] = meta.rowcount
    if meta.HasField("total_rows"):
        out["total_rows"] = meta.total_rows
    return out
