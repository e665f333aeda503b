"""The queries of one party's audit chain, indexed for the console's list (search, filters, pages).

The chain (fedsql/audit.py) has one `query` line when a query starts at this node and one `done`,
`failed` or `refused` line when it ends. The index folds them into one record per query, reading
the file incrementally: only lines appended since the last look are parsed, so a page over 10^5
records costs a filter over memory, not a re-read of the chain. A file that shrank or was replaced
(another inode) is read again from the start. Verification is not done here: the console calls
`fedsql.audit.verify` for that, on the bytes themselves.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

OUTCOMES = ("running", "done", "failed", "refused")
"""`running`: a `query` line without its end yet (or the node stopped before writing one)."""


@dataclass
class QueryRecord:
    """One query as this party's chain recorded it (nothing here is a row value: see the audit module)."""

    seq: int
    query_id: str
    time: float
    issuer: str
    role: str
    sql: str
    user: str | None = None
    plan_hash: str | None = None
    participants: list[str] = field(default_factory=list)
    leakage: list[Any] = field(default_factory=list)
    revealed: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    outcome: str = "running"
    finished: float | None = None
    rows: int | None = None
    error_kind: str | None = None
    error_message: str | None = None
    search: str = ""

    @property
    def duration(self) -> float | None:
        return None if self.finished is None else max(0.0, self.finished - self.time)


@dataclass(frozen=True)
class Filters:
    """What the owner asked the list for; every field optional. Dates are UTC, `until` inclusive."""

    text: str = ""
    issuer: str = ""
    outcome: str = ""
    role: str = ""
    since: float | None = None
    until: float | None = None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _record(entry: dict[str, Any]) -> QueryRecord:
    rec = QueryRecord(
        seq=int(entry.get("seq") or 0), query_id=_str(entry.get("query_id")), time=float(entry.get("time") or 0.0),
        issuer=_str(entry.get("issuer")), role=_str(entry.get("role")), sql=_str(entry.get("sql")),
        user=entry.get("user") if isinstance(entry.get("user"), str) else None,
        plan_hash=entry.get("plan_hash") if isinstance(entry.get("plan_hash"), str) else None,
        participants=[_str(p) for p in entry.get("participants") or []] if isinstance(entry.get("participants"), list)
        else [],
        leakage=list(entry.get("leakage") or []) if isinstance(entry.get("leakage"), list) else [],
        revealed=[r for r in entry.get("revealed") or [] if isinstance(r, dict)]
        if isinstance(entry.get("revealed"), list) else [],
        settings=dict(entry.get("settings") or {}) if isinstance(entry.get("settings"), dict) else {},
    )
    rec.search = " ".join(filter(None, (rec.sql, rec.query_id, rec.user, rec.plan_hash, rec.issuer))).lower()
    return rec


def _finish(rec: QueryRecord, entry: dict[str, Any], outcome: str) -> None:
    rec.outcome = outcome
    rec.finished = float(entry.get("time") or rec.time)
    if isinstance(entry.get("rows"), int):
        rec.rows = entry["rows"]
    error = entry.get("error")
    if isinstance(error, dict):
        rec.error_kind = _str(error.get("kind")) or None
        rec.error_message = _str(error.get("message")) or None


class AuditIndex:
    """Thread-safe, incrementally refreshed index of the queries in one audit log."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, inode: int | None) -> None:
        self._inode = inode
        self._offset = 0
        self._records: list[QueryRecord] = []  # in chain order
        self._open: dict[str, QueryRecord] = {}  # query id → the latest record still running
        self.other_events: dict[str, int] = {}  # e.g. refused logins at the node (no query id)
        self.lines = 0

    def refresh(self) -> None:
        """Read what was appended since the last call (from the start when the file was replaced)."""
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._reset(None)
                return
            if st.st_ino != self._inode or st.st_size < self._offset:
                self._reset(st.st_ino)
            if st.st_size == self._offset:
                return
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read(st.st_size - self._offset)
            end = chunk.rfind(b"\n") + 1  # a line being written is read next time
            for raw in chunk[:end].splitlines():
                self._add(raw)
            self._offset += end

    def _add(self, raw: bytes) -> None:
        self.lines += 1
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return  # a torn or edited line: the verification page reports it
        if not isinstance(entry, dict):
            return
        event, query_id = entry.get("event"), entry.get("query_id")
        if not isinstance(query_id, str) or not query_id:
            key = _str(event) + (f" ({entry['reason']})" if isinstance(entry.get("reason"), str) else "")
            self.other_events[key] = self.other_events.get(key, 0) + 1
            return
        if event == "query":
            rec = _record(entry)
            self._records.append(rec)
            self._open[query_id] = rec
        elif event in ("done", "failed", "refused"):
            rec = self._open.pop(query_id, None)
            if rec is None and event != "refused":  # an end without its start: nothing to attach it to
                self.other_events[f"{event} (no query line)"] = self.other_events.get(f"{event} (no query line)", 0) + 1
                return
            if rec is None:  # refused before it started (no `query` line): the refusal carries the fields
                rec = _record(entry)
                self._records.append(rec)
                _finish(rec, entry, event)
                rec.finished = None  # it never ran: no duration
                return
            _finish(rec, entry, event)
        else:
            self.other_events[_str(event)] = self.other_events.get(_str(event), 0) + 1

    def search(self, filters: Filters, offset: int = 0, limit: int = 50) -> tuple[list[QueryRecord], int]:
        """(the page of matching records, newest first; how many match in all)."""
        self.refresh()
        text = filters.text.strip().lower()
        with self._lock:
            matches = [r for r in reversed(self._records)
                       if (not filters.issuer or r.issuer == filters.issuer)
                       and (not filters.outcome or r.outcome == filters.outcome)
                       and (not filters.role or r.role == filters.role)
                       and (filters.since is None or r.time >= filters.since)
                       and (filters.until is None or r.time < filters.until)
                       and (not text or text in r.search)]
        return matches[offset:offset + limit], len(matches)

    def issuers(self) -> list[str]:
        self.refresh()
        with self._lock:
            return sorted({r.issuer for r in self._records if r.issuer})


def utc(ts: float) -> str:
    """A record's time as the console shows it: ISO 8601, UTC, seconds."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
