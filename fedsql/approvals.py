"""Owners' approvals of other parties' queries: which queries need one, their shape, the store.

A table's `approval` (fedsql/config.py) is `auto` (run at once), `manual` (every query that reads
it waits for its owner's decision) or `template` (a query whose *shape* the owner approved runs at
once; others wait like manual ones). The node side of the protocol is fedsql/approval_gate.py; the
owner's commands are fedsql/approvals_cli.py.

Store: SQLite (WAL, synchronous=FULL, like the DP ledger, fedsql/ledger.py) at
`<config dir>/.fedsql/<party>/approvals.sqlite`. The node writes requests and reads decisions; the
owner's CLI writes decisions and templates. Both are local processes of the owner that can read the
party's private state directory (0700), which is the authentication: no network door to approve.
The node alone writes the audit chain: it audits every decision it finds (fedsql/approval_gate.py).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from fedsql import errors

USE_WINDOW_SECONDS = 600.0
"""How long an approval may wait for its run: the waiting issuer runs at once; a stale one asks again."""

STATUSES = ("pending", "approved", "rejected", "expired", "cancelled", "used")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key         TEXT PRIMARY KEY,          -- issuer/query id (peer_channel.query_key)
    query_id    TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    user        TEXT NOT NULL,             -- the issuer's account that asked ('' when none was named)
    sql         TEXT NOT NULL,
    settings    TEXT NOT NULL,             -- JSON
    plan_hash   TEXT NOT NULL,             -- the plan this owner compiled; the approval binds to it
    shape_hash  TEXT NOT NULL,
    shape       TEXT NOT NULL,             -- the normalised SQL, literals as placeholders
    tables      TEXT NOT NULL,             -- JSON list of this owner's tables the query reads
    leakage     TEXT NOT NULL,             -- JSON list of the plan's leakage lines
    epsilon     REAL NOT NULL,             -- this owner's DP charge (0: none)
    mode        TEXT NOT NULL,             -- manual | template
    note        TEXT NOT NULL,             -- why no template matched, for the owner
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    status      TEXT NOT NULL,
    decided_by  TEXT,
    reason      TEXT,
    decided_at  REAL,
    template_id TEXT,
    audited     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_by_status ON requests (status);
CREATE TABLE IF NOT EXISTS templates (
    id          TEXT PRIMARY KEY,
    issuer      TEXT NOT NULL,
    shape_hash  TEXT NOT NULL,
    shape       TEXT NOT NULL,
    tables      TEXT NOT NULL,
    max_epsilon REAL,                      -- NULL: the table's own per-query cap alone
    expires_at  REAL,                      -- NULL: never
    created_by  TEXT NOT NULL,
    created_at  REAL NOT NULL,
    reason      TEXT NOT NULL,
    source_key  TEXT NOT NULL,             -- the request it was approved from
    revoked     INTEGER NOT NULL DEFAULT 0,
    audited     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS templates_by_shape ON templates (issuer, shape_hash);
"""


# -- which queries need approval ---------------------------------------------------------------


def tables_read(plan: Any, fed: Any, party: str) -> list[str]:
    """The tables of `party` that `plan` reads: every read of an owner's rows is a local query at
    the owner (planner: local first), so the tables its SQL names, plus those its DP charges name."""
    import sqlglot
    from sqlglot import exp

    own = set(fed.party(party).tables)
    found: set[str] = set()
    for step in plan.steps:
        if getattr(step, "op", "") != "local_query" or step.party != party:
            continue
        try:
            tree = sqlglot.parse_one(step.sql, read="duckdb")
        except sqlglot.errors.ParseError:  # the planner wrote it; be conservative if it cannot be read
            return sorted(own)
        found.update(t.name for t in tree.find_all(exp.Table) if t.name in own)
    if plan.dp is not None:
        found.update(c.table for c in plan.dp.charges if c.party == party)
    for name, _ in plan.schemas:
        owner, _, table = name.partition(".")
        if owner == party and table in own:
            found.add(table)
    return sorted(found)


def required(plan: Any, fed: Any, party: str) -> tuple[str, list[str]]:
    """(mode, tables): `manual` when a table `party` owns and `plan` reads is manual, else
    `template` when one is, else `auto`. The issuer's own tables never wait for itself."""
    if party == plan.issuer or party not in fed.parties:
        return "auto", []
    if all(t.approval == "auto" for t in fed.party(party).tables.values()):
        return "auto", []  # the common case, without reading the plan's fragments
    tables = tables_read(plan, fed, party)
    modes = {fed.table(party, t).approval for t in tables}
    held = [t for t in tables if fed.table(party, t).approval != "auto"]
    if "manual" in modes:
        return "manual", held
    if "template" in modes:
        return "template", held
    return "auto", []


def owners_to_ask(plan: Any, fed: Any) -> list[str]:
    """The participants whose approval `plan` needs, by the issuer's copy of the configuration
    (an owner that requires more refuses the run itself: approval_gate.OwnerGate.check_run)."""
    return [p for p in plan.participants if required(plan, fed, p)[0] != "auto"]


def owner_epsilon(plan: Any, party: str) -> float:
    """The ε `plan` charges to `party`'s ledger (0 without DP)."""
    if plan.dp is None:
        return 0.0
    return float(sum(c.epsilon for c in plan.dp.charges if c.party == party))


# -- query shapes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    hash: str
    text: str  # the normalised SQL with `?` for every literal


def query_shape(sql: str, issuer: str, settings: dict[str, str]) -> Shape:
    """The shape of a query: its SQL parsed and printed canonically with each literal replaced by
    a placeholder (ordinals in GROUP BY / ORDER BY stay: they pick columns), plus the issuer and the
    settings other than ε (a template's ε is capped instead). Queries of one shape differ only in
    literal values; the plan is a deterministic function of the SQL, so they share one plan shape."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise errors.SqlSyntaxError(f"cannot normalise the query for its shape: {exc}") from None
    tree = tree.copy()
    for lit in list(tree.find_all(exp.Literal)):
        parent = lit.parent
        if isinstance(parent, exp.Ordered) or isinstance(parent, exp.Group):
            continue
        if isinstance(parent, exp.Neg):  # -70 is one literal parameter, as is 70
            lit = parent
        lit.replace(exp.Placeholder())
    text = tree.sql(dialect="duckdb", normalize=True, pretty=False)
    kept = {k: v for k, v in sorted(settings.items()) if k != "fedsql.epsilon"}
    body = json.dumps({"issuer": issuer, "sql": text, "settings": kept}, sort_keys=True, separators=(",", ":"))
    return Shape(hashlib.sha256(body.encode()).hexdigest(), text)


# -- durations ---------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "30m", "12h" or "7d" (a template's --expires)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise errors.InterfaceError(f"--expires {text!r}: expected a duration like 3600, 90s, 30m, 12h or 7d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


# -- the store ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    key: str
    query_id: str
    issuer: str
    user: str
    sql: str
    settings: dict[str, str]
    plan_hash: str
    shape_hash: str
    shape: str
    tables: list[str]
    leakage: list[str]
    epsilon: float
    mode: str
    note: str
    created_at: float
    expires_at: float
    status: str
    decided_by: str | None
    reason: str | None
    decided_at: float | None
    template_id: str | None


@dataclass(frozen=True)
class Template:
    id: str
    issuer: str
    shape_hash: str
    shape: str
    tables: list[str]
    max_epsilon: float | None
    expires_at: float | None
    created_by: str
    created_at: float
    reason: str
    source_key: str
    revoked: bool


def store_path(fed_path: str | Path, party: str) -> Path:
    """`<config dir>/.fedsql/<party>/approvals.sqlite`."""
    from fedsql.state import state_dir

    return state_dir(fed_path, party) / "approvals.sqlite"


def _request(row: sqlite3.Row) -> Request:
    d = dict(row)
    d.pop("audited", None)
    for k in ("settings", "tables", "leakage"):
        d[k] = json.loads(d[k])
    return Request(**d)


def _template(row: sqlite3.Row) -> Template:
    d = dict(row)
    d.pop("audited", None)
    d["tables"] = json.loads(d["tables"])
    d["revoked"] = bool(d["revoked"])
    return Template(**d)


class ApprovalStore:
    """Requests, decisions and templates of one owner; safe across threads and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            new = not self.path.exists()
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            if new:
                self.path.chmod(0o600)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise errors.OperationalError(f"cannot open the approvals store {self.path}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "ApprovalStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    rows = self._db.execute(sql, tuple(args)).fetchall()
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                return rows
            except sqlite3.Error as exc:
                raise errors.OperationalError(f"approvals store {self.path}: {exc}") from None

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as exc:
                raise errors.OperationalError(f"approvals store {self.path}: {exc}") from None

    # -- requests --

    def submit(self, *, key: str, query_id: str, issuer: str, user: str, sql: str, settings: dict[str, str],
               plan_hash: str, shape: Shape, tables: list[str], leakage: list[str], epsilon: float, mode: str,
               note: str, expires_at: float, status: str = "pending", decided_by: str | None = None,
               reason: str | None = None, template_id: str | None = None) -> tuple[Request, bool]:
        """Record a request (a template match is recorded already approved) → (request, whether
        this call recorded it); an existing request of this key is returned unchanged, whatever was
        asked now (a key is decided once)."""
        now = time.time()
        rows = self._tx("INSERT OR IGNORE INTO requests (key, query_id, issuer, user, sql, settings, plan_hash, "
                        "shape_hash, shape, tables, leakage, epsilon, mode, note, created_at, expires_at, status, "
                        "decided_by, reason, decided_at, template_id) "
                        "VALUES (" + ", ".join("?" * 21) + ") RETURNING key",
                        (key, query_id, issuer, user, sql, json.dumps(settings, sort_keys=True), plan_hash, shape.hash,
                         shape.text, json.dumps(tables), json.dumps(leakage), epsilon, mode, note, now, expires_at,
                         status, decided_by, reason, now if status != "pending" else None, template_id))
        got = self.get(key)
        assert got is not None
        return got, bool(rows)

    def get(self, key: str) -> Request | None:
        rows = self._read("SELECT * FROM requests WHERE key = ?", (key,))
        return _request(rows[0]) if rows else None

    def find(self, query_id: str, status: str | None = "pending") -> list[Request]:
        """Requests by `issuer/query id` or by bare query id (any issuer)."""
        where = "(key = ? OR query_id = ?)" + (" AND status = ?" if status else "")
        args = (query_id, query_id) + ((status,) if status else ())
        return [_request(r) for r in self._read(f"SELECT * FROM requests WHERE {where} ORDER BY created_at", args)]

    def pending_count(self, issuer: str) -> int:
        return self._read("SELECT COUNT(*) FROM requests WHERE status = 'pending' AND issuer = ?", (issuer,))[0][0]

    def pending(self) -> list[Request]:
        return [_request(r) for r in self._read("SELECT * FROM requests WHERE status = 'pending' ORDER BY created_at")]

    def decide(self, key: str, status: str, by: str, reason: str, template_id: str | None = None) -> bool:
        """pending → `status` (approved, rejected, expired, cancelled); False when it was not pending."""
        if status not in STATUSES or status == "pending":
            raise ValueError(status)
        rows = self._tx("UPDATE requests SET status = ?, decided_by = ?, reason = ?, decided_at = ?, template_id = ? "
                        "WHERE key = ? AND status = 'pending' RETURNING key",
                        (status, by, reason, time.time(), template_id, key))
        return bool(rows)

    def use(self, key: str, plan_hash: str, now: float | None = None) -> bool:
        """approved (for this plan hash, within USE_WINDOW_SECONDS of the decision) → used, once: True
        when this call consumed the approval. The owner approved a run now, over its data as it is now,
        not one an issuer may keep and run months later."""
        now = time.time() if now is None else now
        rows = self._tx("UPDATE requests SET status = 'used' WHERE key = ? AND status = 'approved' "
                        "AND plan_hash = ? AND decided_at > ? RETURNING key",
                        (key, plan_hash, now - USE_WINDOW_SECONDS))
        return bool(rows)

    def expire(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        rows = self._tx("UPDATE requests SET status = 'expired', decided_by = 'timeout', decided_at = ?, "
                        "reason = 'no decision before approval_timeout_seconds' "
                        "WHERE status = 'pending' AND expires_at <= ? RETURNING key", (now, now))
        return len(rows)

    def unaudited(self) -> list[Request]:
        return [_request(r) for r in self._read(
            "SELECT * FROM requests WHERE audited = 0 AND status != 'pending' ORDER BY decided_at")]

    def mark_audited(self, key: str) -> None:
        self._tx("UPDATE requests SET audited = 1 WHERE key = ?", (key,))

    # -- templates --

    def add_template(self, request: Request, by: str, reason: str, max_epsilon: float | None,
                     expires_at: float | None) -> Template:
        tid = "t" + secrets.token_hex(4)
        self._tx("INSERT INTO templates (id, issuer, shape_hash, shape, tables, max_epsilon, expires_at, created_by, "
                 "created_at, reason, source_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (tid, request.issuer, request.shape_hash, request.shape, json.dumps(request.tables), max_epsilon,
                  expires_at, by, time.time(), reason, request.key))
        return self.template(tid)  # type: ignore[return-value]

    def template(self, tid: str) -> Template | None:
        rows = self._read("SELECT * FROM templates WHERE id = ?", (tid,))
        return _template(rows[0]) if rows else None

    def templates(self) -> list[Template]:
        return [_template(r) for r in self._read("SELECT * FROM templates ORDER BY created_at")]

    def revoke(self, tid: str) -> bool:
        rows = self._tx("UPDATE templates SET revoked = 1, audited = 0 WHERE id = ? AND revoked = 0 RETURNING id",
                        (tid,))
        return bool(rows)

    def match(self, issuer: str, shape_hash: str, epsilon: float, now: float | None = None
              ) -> tuple[Template | None, str]:
        """(the live template this shape matches within its ε cap, else None and why not)."""
        now = time.time() if now is None else now
        rows = [_template(r) for r in self._read(
            "SELECT * FROM templates WHERE issuer = ? AND shape_hash = ? ORDER BY created_at DESC",
            (issuer, shape_hash))]
        if not rows:
            return None, "no approved template has this query's shape"
        why = []
        for t in rows:
            if t.revoked:
                why.append(f"template {t.id} was revoked")
            elif t.expires_at is not None and t.expires_at <= now:
                why.append(f"template {t.id} expired")
            elif t.max_epsilon is not None and epsilon > t.max_epsilon:
                why.append(f"template {t.id} allows epsilon up to {t.max_epsilon:g}, this query spends {epsilon:g}")
            else:
                return t, ""
        return None, "; ".join(why)

    def unaudited_templates(self) -> list[Template]:
        return [_template(r) for r in self._read("SELECT * FROM templates WHERE audited = 0 ORDER BY created_at")]

    def mark_template_audited(self, tid: str) -> None:
        self._tx("UPDATE templates SET audited = 1 WHERE id = ?", (tid,))
