"""A result's metadata as a typed message (`ResultMeta` in fedsql/proto/node.proto).

Built here and only here (the node's queries, set operations, scratch and catalog answers all
call `result_event`), and turned back into the client's dict here (`to_dict`, called by
fedsql/client.py), where the leakage report is rendered as text: one definition of every field
instead of a JSON object assembled in six places. The planner still words its leakage report as
lines ("to p1, p2: the number of groups"); `leakage_item` gives each line its structure (who
learns it, what) against the federation's party names, and `leakage_text` renders it back
exactly, so the text a user reads is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from fedsql.proto import node_pb2 as pb

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


def result_event(
    table: Any,
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
) -> pb.ExecuteEvent:
    """The Execute stream's result event: `table` (None or no columns: no rows) and its ResultMeta.

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
    from executors.runtime import table_to_ipc  # late: clients read results without loading the runtime

    payload = table_to_ipc(table) if table is not None and table.num_columns else b""
    return pb.ExecuteEvent(result=pb.Result(arrow_ipc=payload, meta=meta))


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
