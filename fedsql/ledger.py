"""Privacy-budget ledger of one data owner (docs/dp.md).

Every data owner's node records each spend — issuer, party-qualified table,
ε, δ, query id, time — in a local durable store *before* its shares are used,
and refuses a spend that would take an issuer over the table's budget.

Store: SQLite in WAL mode with ``synchronous=FULL``. Why SQLite rather than an
append-only file with fsync:

* a reservation is a read-check-write (sum the spends, compare with the limit,
  append): SQLite makes it one atomic transaction under a database-wide write
  lock (``BEGIN IMMEDIATE``) that serialises threads *and* processes, where a
  hand-rolled file needs its own locking, torn-record detection and recovery;
* idempotency is a ``UNIQUE (query_id, table_name)`` constraint, enforced by
  the store itself, so a retried or replayed query can never count twice;
* with WAL + ``synchronous=FULL`` a transaction is durable when ``COMMIT``
  returns (the WAL is fsynced at every commit) and a crash at any instant —
  ``kill -9``, power loss — leaves either the whole reservation or nothing:
  the WAL frames of an uncommitted transaction are ignored on recovery;
* owners can inspect it with any SQLite tool; readers never block the writer.

ε and δ are stored as the decimal text of the float (``repr``) and summed as
``decimal.Decimal``, so ten spends of 0.1 use up exactly a budget of 1.0 (a
float sum would refuse the last or allow a sliver over the limit).
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple, Sequence

from fedsql.errors import BudgetExhausted, OperationalError, PolicyViolation  # noqa: F401 (re-exported)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spends (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    query_id    TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    table_name  TEXT NOT NULL,            -- party-qualified, e.g. "h1.patients"
    epsilon     TEXT NOT NULL,            -- decimal text, summed exactly
    delta       TEXT NOT NULL,
    created_at  REAL NOT NULL,            -- unix time (UTC seconds)
    UNIQUE (query_id, table_name)
);
CREATE INDEX IF NOT EXISTS spends_by_issuer_table ON spends (issuer, table_name);
"""


class Spent(NamedTuple):
    epsilon: float
    delta: float
    queries: int


@dataclass(frozen=True)
class LedgerEntry:
    seq: int
    query_id: str
    issuer: str
    table: str
    epsilon: float
    delta: float
    time: float  # unix seconds


@dataclass(frozen=True)
class Reservation:
    """One table's part of a multi-table reservation (see Ledger.reserve_many)."""

    table: str
    epsilon: float
    delta: float
    limit_epsilon: float
    limit_delta: float
    per_query_cap: float
    per_query_delta_cap: float | None = None


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def _fmt(x: Decimal | float) -> str:
    return format(float(x), ".6g")


def _check_number(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PolicyViolation(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise PolicyViolation(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise PolicyViolation(f"{name} must be a non-empty string, got {value!r}")
    return value


class Ledger:
    """The budget ledger at `path` (created with its directory if missing).

    Thread-safe; several processes may open the same file (SQLite's locks
    serialise the reservations). Use as a context manager or call close().
    """

    def __init__(self, path: str | os.PathLike, *, busy_timeout: float = 30.0):
        self.path = Path(path)
        created = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise OperationalError(f"cannot open the budget ledger {self.path}: {exc}") from None
        self._lock = threading.RLock()
        try:
            with self._lock:
                c = self._conn
                c.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise OperationalError(f"budget ledger {self.path}: cannot switch to WAL mode (got {mode})")
                c.execute("PRAGMA synchronous = FULL")
                c.execute("BEGIN IMMEDIATE")
                try:
                    version = c.execute("PRAGMA user_version").fetchone()[0]
                    if version not in (0, SCHEMA_VERSION):
                        raise OperationalError(
                            f"budget ledger {self.path} has schema version {version}; this fedsql "
                            f"understands version {SCHEMA_VERSION}"
                        )
                    for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                        c.execute(stmt)
                    c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    c.execute("COMMIT")
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            self._conn.close()
            raise OperationalError(f"cannot open the budget ledger {self.path}: {exc}") from None
        if created:
            _fsync_dir(self.path.parent)

    # -- context management ------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- spending ------------------------------------------------------------

    def reserve(self, query_id: str, issuer: str, table: str, epsilon: float, delta: float,
                limit_epsilon: float, limit_delta: float, per_query_cap: float,
                per_query_delta_cap: float | None = None) -> bool:
        """Record that `issuer`'s query `query_id` spends (ε, δ) on `table`.

        Durable when it returns; call it before the table's shares are used.
        Idempotent per (query_id, table): a retry or replay of the same query
        is a no-op (it neither counts twice nor is refused for budget).
        Returns True when the spend was recorded now, False when it was
        already recorded. NOTE for the node: False means this query id has
        been admitted before; fresh noise on a second execution would be a
        second, uncharged release, so the node must run a query id's secure
        part at most once (refuse re-execution when it already started it).
        Raises BudgetExhausted when the spend would take the issuer's total on
        this table over (limit_epsilon, limit_delta), PolicyViolation when ε
        exceeds the per-query cap or the query id was recorded with other
        parameters. Nothing is recorded when it raises.
        """
        return self.reserve_many(query_id, issuer, [Reservation(table, epsilon, delta, limit_epsilon, limit_delta,
                                                                per_query_cap, per_query_delta_cap)])

    def reserve_many(self, query_id: str, issuer: str, items: Sequence[Reservation]) -> bool:
        """Reserve on several tables of this owner atomically: all or none.
        Returns True when anything was recorded now (see `reserve`)."""
        _check_name("query id", query_id)
        _check_name("issuer", issuer)
        checked = []
        for it in items:
            _check_name("table", it.table)
            eps = _check_number(f"epsilon for {it.table}", it.epsilon, positive=True)
            dlt = _check_number(f"delta for {it.table}", it.delta, positive=False)
            lim_e = _check_number(f"epsilon budget of {it.table}", it.limit_epsilon, positive=True)
            lim_d = _check_number(f"delta budget of {it.table}", it.limit_delta, positive=False)
            cap = _check_number(f"per-query epsilon cap of {it.table}", it.per_query_cap, positive=True)
            dcap = lim_d if it.per_query_delta_cap is None else _check_number(
                f"per-query delta cap of {it.table}", it.per_query_delta_cap, positive=False)
            if _dec(eps) > _dec(cap):
                raise PolicyViolation(
                    f"query {query_id}: epsilon {_fmt(eps)} on {it.table} exceeds the owner's per-query cap "
                    f"max_epsilon_per_query = {_fmt(cap)}; lower it with SET fedsql.epsilon"
                )
            if _dec(dlt) > _dec(dcap):
                raise PolicyViolation(
                    f"query {query_id}: delta {dlt:g} on {it.table} exceeds the owner's per-query cap {dcap:g}"
                )
            checked.append((it.table, eps, dlt, lim_e, lim_d))
        if len({t for t, *_ in checked}) != len(checked):
            raise PolicyViolation(f"query {query_id}: a table appears twice in one reservation")
        now = time.time()
        with self._lock:
            c = self._conn
            try:
                c.execute("BEGIN IMMEDIATE")
                try:
                    todo = []
                    for table, eps, dlt, lim_e, lim_d in checked:
                        row = c.execute(
                            "SELECT issuer, epsilon, delta FROM spends WHERE query_id = ? AND table_name = ?",
                            (query_id, table),
                        ).fetchone()
                        if row is not None:
                            if row[0] != issuer or Decimal(row[1]) != _dec(eps) or Decimal(row[2]) != _dec(dlt):
                                raise PolicyViolation(
                                    f"query id {query_id!r} is already recorded on {table} with different "
                                    f"parameters (issuer {row[0]}, epsilon {row[1]}); refusing the replay"
                                )
                            continue  # the same spend again: idempotent
                        spent_e, spent_d, _ = self._sum(issuer, table)
                        if spent_e + _dec(eps) > _dec(lim_e) or spent_d + _dec(dlt) > _dec(lim_d):
                            left_e = max(Decimal(0), _dec(lim_e) - spent_e)
                            what = (f"epsilon: spent {_fmt(spent_e)} of {_fmt(lim_e)}, {_fmt(left_e)} left, "
                                    f"this query needs {_fmt(eps)}")
                            if spent_d + _dec(dlt) > _dec(lim_d):
                                what = (f"delta: spent {float(spent_d):g} of {lim_d:g}, this query needs "
                                        f"{dlt:g}")
                            raise BudgetExhausted(
                                f"privacy budget of {table} for issuer {issuer} is exhausted ({what}); "
                                f"the owner of {table} refuses query {query_id}"
                            )
                        todo.append((query_id, issuer, table, repr(eps), repr(dlt), now))
                    c.executemany(
                        "INSERT INTO spends (query_id, issuer, table_name, epsilon, delta, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", todo)
                    c.execute("COMMIT")
                    return bool(todo)
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise OperationalError(f"budget ledger {self.path}: {exc}") from None

    # -- inspection ------------------------------------------------------------

    def _sum(self, issuer: str, table: str) -> tuple[Decimal, Decimal, int]:
        rows = self._conn.execute(
            "SELECT epsilon, delta FROM spends WHERE issuer = ? AND table_name = ?", (issuer, table)
        ).fetchall()
        return (sum((Decimal(e) for e, _ in rows), Decimal(0)), sum((Decimal(d) for _, d in rows), Decimal(0)),
                len(rows))

    def spent(self, issuer: str, table: str) -> Spent:
        """Total (ε, δ, number of queries) `issuer` has spent on `table`."""
        with self._lock:
            try:
                e, d, n = self._sum(issuer, table)
            except sqlite3.Error as exc:
                raise OperationalError(f"budget ledger {self.path}: {exc}") from None
        return Spent(float(e), float(d), n)

    def has(self, query_id: str, table: str) -> bool:
        """True when the spend of `query_id` on `table` is recorded."""
        with self._lock:
            return self._conn.execute(
                "SELECT 1 FROM spends WHERE query_id = ? AND table_name = ?", (query_id, table)
            ).fetchone() is not None

    def entries(self) -> list[LedgerEntry]:
        """Every recorded spend, oldest first."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT seq, query_id, issuer, table_name, epsilon, delta, created_at FROM spends ORDER BY seq"
                ).fetchall()
            except sqlite3.Error as exc:
                raise OperationalError(f"budget ledger {self.path}: {exc}") from None
        return [LedgerEntry(s, q, i, t, float(e), float(d), ts) for s, q, i, t, e, d, ts in rows]

    def totals(self) -> dict[tuple[str, str], Spent]:
        """(issuer, table) → total spent, over the whole ledger."""
        out: dict[tuple[str, str], list] = {}
        with self._lock:
            rows = self._conn.execute("SELECT issuer, table_name, epsilon, delta FROM spends").fetchall()
        for issuer, table, e, d in rows:
            acc = out.setdefault((issuer, table), [Decimal(0), Decimal(0), 0])
            acc[0] += Decimal(e)
            acc[1] += Decimal(d)
            acc[2] += 1
        return {k: Spent(float(e), float(d), n) for k, (e, d, n) in out.items()}


def _fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable (POSIX)."""
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
