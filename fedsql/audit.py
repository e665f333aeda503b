"""Per-node audit log: append-only, hash-chained JSON lines.

Every line is one JSON object with `seq` (1, 2, ...), `prev` (the previous
line's `hash`; 64 zeros for the first line) and `hash` = SHA-256 of the line's
canonical JSON without `hash`. Editing, deleting, inserting or reordering a
line breaks the chain at that line, which `fedsql audit verify` reports.
Lines are written with O_APPEND and fsync'ed before the node goes on.

The chain detects edits by anyone who cannot also rewrite every later line;
an operator with write access to the file can rewrite the whole tail, so
anchor the chain elsewhere when that matters (e.g. note the last hash from
`fedsql audit verify` in another system from time to time). See docs/security.md.

Location: `<config dir>/.fedsql/<party>/audit.log` (next to the DP ledger).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsql import errors

GENESIS = "0" * 64
MAX_SQL_CHARS = 100_000


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


def audit_path(fed: Any, party: str) -> Path:
    from fedsql.state import state_dir

    return state_dir(fed.path, party) / "audit.log"


class AuditLog:
    """Append-only hash-chained log; thread-safe; one per node process."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise errors.OperationalError(f"cannot open the audit log {self.path}: {exc}") from None
        self._seq, self._prev = self._tail()

    def _tail(self) -> tuple[int, str]:
        """(seq, hash) of the last complete line; a torn last line is closed with a newline
        (it stays in the file, and `verify` reports it)."""
        size = self.path.stat().st_size
        if size == 0:
            return 0, GENESIS
        with open(self.path, "rb") as f:
            back = min(size, 1 << 20)
            f.seek(size - back)
            chunk = f.read()
        if not chunk.endswith(b"\n"):
            os.write(self._fd, b"\n")
            os.fsync(self._fd)
        for raw in reversed(chunk.splitlines()):
            try:
                obj = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                continue  # a torn or garbled line: `verify` reports it
            if isinstance(obj, dict) and isinstance(obj.get("seq"), int) and isinstance(obj.get("hash"), str):
                return obj["seq"], obj["hash"]
        return 0, GENESIS

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one entry (fsync'ed) and return it."""
        with self._lock:
            entry: dict[str, Any] = {"seq": self._seq + 1, "time": round(time.time(), 6), "event": event}
            entry.update(fields)
            entry["prev"] = self._prev
            entry["hash"] = entry_hash(entry)
            line = _canonical(entry) + b"\n"
            try:
                os.write(self._fd, line)
                os.fsync(self._fd)
            except OSError as exc:
                raise errors.OperationalError(f"cannot write the audit log {self.path}: {exc}") from None
            self._seq += 1
            self._prev = entry["hash"]
            return entry

    def close(self) -> None:
        with self._lock:
            try:
                os.close(self._fd)
            except OSError:
                pass


@dataclass
class VerifyResult:
    path: Path
    lines: int
    ok: bool
    broken_line: int | None = None
    problem: str = ""
    last_hash: str = GENESIS

    def describe(self) -> str:
        if self.ok:
            return f"{self.path}: {self.lines} entries, chain intact; last hash {self.last_hash}"
        return f"{self.path}: chain broken at line {self.broken_line}: {self.problem}"


def verify(path: str | os.PathLike[str]) -> VerifyResult:
    """Check the whole chain; reports the first broken link (1-based line number)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise errors.OperationalError(f"cannot read the audit log {p}: {exc}") from None
    prev, n = GENESIS, 0
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for n, raw in enumerate(lines, 1):
        def broken(problem: str) -> VerifyResult:
            return VerifyResult(p, n - 1, False, n, problem, prev)

        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return broken("not a JSON line (edited, or torn by a crash while writing)")
        if not isinstance(obj, dict) or not isinstance(obj.get("hash"), str):
            return broken("not an audit entry")
        if obj.get("seq") != n:
            return broken(f"sequence number {obj.get('seq')!r}, expected {n} (line deleted, inserted or moved)")
        if obj.get("prev") != prev:
            return broken("does not link to the previous line's hash (line deleted, inserted or moved)")
        if entry_hash(obj) != obj["hash"]:
            return broken("content does not match its hash (line edited)")
        prev = obj["hash"]
    return VerifyResult(p, n, True, last_hash=prev)


def read_entries(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    out = []
    for raw in Path(path).read_bytes().splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


# -- what a plan makes this party reveal ----------------------------------------------


def revealed_by(plan: Any, party: str) -> list[dict[str, Any]]:
    """The steps of `plan` where `party` sends plaintext or opens values, and to whom."""
    out: list[dict[str, Any]] = []
    compute = tuple(plan.compute)
    for s in plan.steps:
        op = getattr(s, "op", "")
        if op == "send_plain" and s.party == party:
            out.append({"step": s.id, "what": f"plaintext result of step {s.source}"
                        + (f" ({s.purpose})" if s.purpose else ""), "to": [s.to]})
        elif op == "share_table" and s.party == party:
            out.append({"step": s.id, "what": f"secret shares of {len(s.columns)} column(s) of step {s.source}; "
                        "their row count is visible", "to": list(compute)})
        elif party in compute and op == "agree_width":
            out.append({"step": s.id, "what": f"the widest string key of {s.column} (opened)", "to": list(compute)})
        elif party in compute and op == "group_combine":
            out.append({"step": s.id, "what": f"group keys {list(s.keys)} after a secret shuffle (opened)",
                        "to": list(compute)})
        elif party in compute and op == "reveal_result":
            out.append({"step": s.id, "what": f"its shares of result columns {[c.name for c in s.columns]}",
                        "to": [s.to]})
        elif op in ("send_plain", "share_table", "agree_width", "group_combine", "reveal_result"):
            continue
        elif getattr(s, "to", None) and getattr(s, "party", None) == party and s.to != party:
            # steps added later (joins, DP...) that move data from this party
            out.append({"step": s.id, "what": f"output of step {s.id} ({op})", "to": [s.to]})
    return out


def user_field(user: str | None) -> dict[str, str]:
    """`{"user": name}` for an issuer's records when a front end named its user (a malformed
    name is an InterfaceError: it would go into the log), else nothing."""
    if not user:
        return {}
    from fedsql.users import check_name

    return {"user": check_name(user)}


def query_fields(query_id: str, issuer: str, sql: str, plan: Any, party: str, role: str,
                 user: str | None = None) -> dict[str, Any]:
    """The fields of a `query` record; `user`: the account that asked, when a front end checked
    its password (a well-formed name, else the record is refused); by default the plan's user. The
    plan's roles too: every party records whose grants it applied (the issuer's word for others)."""
    fields: dict[str, Any] = {"query_id": query_id, "issuer": issuer, "role": role,
                              "sql": sql if len(sql) <= MAX_SQL_CHARS else sql[:MAX_SQL_CHARS] + "…(truncated)"}
    fields.update(user_field(user or getattr(plan, "user", None)))
    if getattr(plan, "roles", ()):
        fields["roles"] = list(plan.roles)
    if plan is not None:
        fields.update(plan_hash=plan.hash, participants=list(plan.participants),
                      settings=dict(plan.settings), leakage=list(plan.leakage),
                      revealed=revealed_by(plan, party))
    return fields
