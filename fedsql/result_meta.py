"""A result's metadata as a typed message (`ResultMeta` in fedsql/proto/node.proto).

Built here and only here (the node's queries, set operations, scratch and catalog answers all
call `result_events`), and turned back into the client's dict here (`to_dict`, called by
fedsql/client.py), where the leakage report is rendered as text: one definition of every field
instead of a JSON object assembled in six places. The planner still words its leakage report as
lines ("to p1, p2: the number of groups"); `leakage_item` gives each line its structure (who
learns it, what) against the federation's party names, and `leakage_text` renders it back
exactly, so the text a user reads is unchanged.
"""

from __future__ import annotations

import io
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
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
    """The end of an Execute stream: `table` (None or no columns: no rows) as ResultChunks of
    Arrow record batches, then the Result with its ResultMeta; a table over MAX_RESULT_BYTES is
    refused with an error event before anything is sent.

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
    if table is not None and table.num_columns:
        if table.nbytes > MAX_RESULT_BYTES:
            err = errors.ResourceLimitExceeded(
                f"the result has {table.num_rows} rows and {table.nbytes} bytes, more than a result may carry "
                f"({MAX_RESULT_BYTES} bytes); aggregate, filter or add a LIMIT, or write it to a file with COPY")
            yield pb.ExecuteEvent(error=pb.Error(kind=err.kind, message=str(err)))
            return
        for piece in _ipc_chunks(table):
            yield pb.ExecuteEvent(chunk=pb.ResultChunk(arrow_ipc=piece))
    yield pb.ExecuteEvent(result=pb.Result(meta=meta))


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


class ResultAssembler:
    """Joins one Execute stream's ResultChunks back into a table, refusing past MAX_RESULT_BYTES
    (a node that streams more than a result may carry is stopped, not buffered)."""

    def __init__(self, who: str, limit: int = MAX_RESULT_BYTES) -> None:
        self.who = who
        self.limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, chunk: pb.ResultChunk) -> None:
        self._size += len(chunk.arrow_ipc)
        if self._size > self.limit:
            raise errors.ResourceLimitExceeded(
                f"{self.who} sent a result of more than {self.limit} bytes, more than a result may carry; "
                "aggregate, filter or add a LIMIT, or write it to a file with COPY")
        self._parts.append(chunk.arrow_ipc)

    def table(self) -> pa.Table:
        """The result's table (no columns when no chunk came); InternalError if the bytes are not Arrow."""
        if not self._parts:
            return pa.table({})
        try:
            return pa.ipc.open_stream(b"".join(self._parts)).read_all()
        except (pa.ArrowInvalid, OSError) as exc:
            raise errors.InternalError(f"{self.who} sent a malformed Arrow result: {exc}") from None


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
    return out
