"""A party's node: serves its own clients and takes part in peers' queries.

The issuer's node compiles the query, asks every other participant to run it
(each compiles it again and refuses on a different plan hash or a policy
violation), runs its own part, and streams progress and the result back. A
failure anywhere cancels the query everywhere; the error names the party.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator

import grpc

from executors import codec, netem
from executors.mpc.prg import PRG
from executors.local_duckdb import LocalExecutor
from executors.runtime import PartyRun
from executors.peer_channel import (MESSAGE_OPTIONS, Channel, Mailbox, PeerLinks, add_peer_servicer,
                                    call_with_reconnect, key_issuer, query_key)
from executors.transport_errors import TransportError
from fedsql import __version__, errors, tls
from fedsql.approval_gate import OwnerGate
from fedsql.audit import AuditLog, audit_path, query_fields, user_field
from fedsql.webhook import Webhook, webhook_url
from fedsql.catalog import NodeCatalog, decode_described, encode_described
from fedsql import composite as composites, result_meta, scalar_subqueries
from fedsql.config import Federation
from fedsql.locked_duckdb import for_remote
from fedsql.permissions import Principal
from fedsql.users import Accounts, claimed_principal
from fedsql.proto import node_pb2 as pb
from fedsql.proto import node_pb2_grpc as rpc
from fedsql.scratch import IssuerLocal
from fedsql import hidden_params
from planner.passes.hidden_params import numbered  # how many ? marks (quotes and comments respected)
from fedsql.settings import check_settings
from plan.physical import MATCH_TAG_BITS
from plan.schemas import Schema
from planner import compose
from planner.compile import Compiled, compile_query
from planner.explain import explain_lines

import pyarrow as pa

log = logging.getLogger("fedsql.node")

GRPC_OPTIONS = [
    *MESSAGE_OPTIONS,
    # a restarted peer is reachable again within a second (grpc's default backoff grows to 2 min)
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # not grpc.min_reconnect_backoff_ms: it is also the minimum *connect timeout*, and a small
    # one fails TLS handshakes on a busy machine (UNAVAILABLE under concurrent clients)
]
DESCRIBE_TIMEOUT = 10.0
SCHEMA_TTL = 60.0
"""Seconds a peer's checked schema stays cached (a changed source file is seen after this)."""
ABORT_GRACE_SECONDS = 3.0
"""After a failure the issuer waits this long for the other parties' own errors (to report the
root cause), not for a party stuck in a long local step: the user hears of the failure at once."""


def _error_event(exc: errors.Error) -> pb.ExecuteEvent:
    return pb.ExecuteEvent(error=pb.Error(kind=exc.kind, message=str(exc)))


def as_fedsql_error(exc: BaseException, where: str = "") -> errors.Error:
    """Any failure → a fedsql error safe to show (no data, no traceback)."""
    if isinstance(exc, errors.Error):
        return exc
    if isinstance(exc, TransportError):
        name = type(exc).__name__
        kind = {
            "PeerTimeout": errors.QueryTimeout,
            "PeerUnavailable": errors.PartyUnavailable,
            "QueryCancelled": errors.QueryCancelled,
        }.get(name, errors.OperationalError)
        return kind(str(exc))
    log.exception("internal error %s", where)
    return errors.InternalError(
        f"internal error{' ' + where if where else ''} ({type(exc).__name__}); the node logged the details"
    )


class Node(rpc.NodeServicer):
    def __init__(self, fed: Federation, party: str):
        self.fed = fed
        self.me = party
        self.party = fed.party(party)
        self.executor = LocalExecutor(self.party, max_memory_mb=fed.max_memory_mb,
                                      secrets_dir=tls.state_dir(fed, party), statement_timeout=fed.deadline_seconds)
        self.executor.max_rows = fed.rows_limit(party)
        self.mailbox = Mailbox()
        # mutual TLS with pinned party certificates (fedsql/tls.py); missing keys: ConfigError
        self.identity = tls.Identity(fed, party)
        self.identity.check()
        peers = {p: cfg.address for p, cfg in fed.parties.items() if p != party}
        creds = {p: self.identity.channel_credentials(p) for p in peers}
        self.links = PeerLinks(party, peers, GRPC_OPTIONS, credentials=creds)
        self._channels = {p: self.identity.secure_channel(p, GRPC_OPTIONS) for p in peers}
        self.stubs = {p: rpc.NodeStub(ch) for p, ch in self._channels.items()}
        self._retired: list[grpc.Channel] = []
        self.audit = AuditLog(audit_path(fed, party))
        self._slots = threading.BoundedSemaphore(fed.max_concurrent_queries)
        self._running: dict[str, frozenset[str]] = {}  # query key (issuer/id) -> participants, for Abort checks
        self._hidden: dict[str, dict[str, pa.Table]] = {}  # query key -> its hidden parameters' values (issuer only)
        self._schema_lock = threading.Lock()  # guards stub replacement (_reconnect)
        self.catalog = NodeCatalog(fed, party, self.executor.schema, self._describe_peer, SCHEMA_TTL)
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix=f"fedsql-{party}")
        self.accounts = Accounts.of(fed, party)  # this party's users and their roles (fedsql/users.py)
        self.issuer_local = IssuerLocal(self)  # scratch space and catalog statements (fedsql/scratch.py)
        self._ledger = None  # DP budget ledger (fedsql/ledger.py), opened on first use
        self._ledger_lock = threading.Lock()
        self.gate = OwnerGate(self)  # owners' approvals (fedsql/approval_gate.py)
        self.webhook = _owners_webhook(fed, party)  # fedsql/webhook.py: None unless the owner set one
        self._closing = threading.Event()
        if self.gate.active:  # decisions made by `fedsql approve|reject` reach the audit chain within a second
            threading.Thread(target=self._sweep_approvals, name=f"fedsql-{party}-approvals", daemon=True).start()

    def _sweep_approvals(self) -> None:
        while not self._closing.wait(1.0):
            try:
                self.gate.sweep()
            except Exception:  # noqa: BLE001 - retried next second; the store or audit log said why
                log.exception("approvals sweep")

    # -- catalog -----------------------------------------------------------------

    def schema_of(self, party: str, table: str) -> Schema:
        """The public schema of `party.table`, from the node's catalog (fedsql/catalog.py)."""
        return self.catalog.schema(party, table)

    def _describe_peer(self, party: str, table: str) -> Schema:
        """A peer's Describe reply for one table, checked in full (plan/schemas.py)."""
        try:
            stub = self.stubs[party]
            reply = call_with_reconnect(stub.Describe, pb.DescribeRequest(tables=[table]),
                                        time.monotonic() + DESCRIBE_TIMEOUT,
                                        lambda: self._reconnect(party, stub).Describe)
        except grpc.RpcError as exc:
            raise self._unreachable(party, exc) from None
        if reply.error.kind:
            raise errors.error_from_kind(reply.error.kind, f"party '{party}': {reply.error.message}")
        return decode_described(party, table, reply.tables)

    def _reconnect(self, party: str, failed) -> rpc.NodeStub:
        """A fresh channel to `party` after UNAVAILABLE (a restarted peer is reachable at once,
        not after grpc's reconnect backoff); the old channel stays open for calls in flight."""
        with self._schema_lock:
            if self.stubs[party] is failed:
                self._retired.append(self._channels[party])
                del self._retired[:-8]
                self._channels[party] = self.identity.secure_channel(party, GRPC_OPTIONS)
                self.stubs[party] = rpc.NodeStub(self._channels[party])
            return self.stubs[party]

    def _unreachable(self, party: str, exc: grpc.RpcError) -> errors.Error:
        code = exc.code() if hasattr(exc, "code") else None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return errors.QueryTimeout(f"party '{party}' did not answer in time")
        return errors.PartyUnavailable(
            f"party '{party}' is not reachable at {self.fed.parties[party].address}; "
            "is its node running? (start the federation with `fedsql up CONFIG`)"
        )

    def compile(self, sql: str, issuer: Principal | str, settings: dict[str, str]) -> Compiled:
        return compile_query(sql, self.fed, issuer, settings, self.schema_of)

    # -- authentication and limits --------------------------------------------------

    def _caller(self, context, allowed: str, claimed: str | None = None) -> str:
        """Who calls (by pinned certificate); aborts the RPC unless allowed.

        allowed: "client" (own party's client certificate), "party" (a federation node,
        equal to `claimed` when given), "any" (either)."""
        who = self.identity.identify(context)
        client = f"client:{self.me}"
        ok = (
            who is not None
            and (allowed == "any" or (allowed == "client") == (who == client))
            and (claimed is None or who == claimed)
        )
        if not ok:
            what = "an unknown certificate" if who is None else f"the certificate of {who!r}"
            need = {"client": f"a client certificate of party '{self.me}'",
                    "party": f"the node certificate of party '{claimed}'" if claimed else "a party's node certificate",
                    "any": "a certificate of this federation"}[allowed]
            msg = f"party '{self.me}' refused a call made with {what}; it needs {need}"
            self._audit_safe("refused", reason="authentication", caller=who, message=msg)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, msg)
        return who  # type: ignore[return-value]

    def _slot(self) -> None:
        if not self._slots.acquire(blocking=False):
            raise errors.ResourceLimitExceeded(
                f"party '{self.me}' is running its maximum of {self.fed.max_concurrent_queries} queries "
                "(max_concurrent_queries); try again shortly"
            )

    def _audit_safe(self, event: str, **fields) -> None:
        try:
            entry = self.audit.append(event, **fields)
        except errors.Error:
            log.exception("audit log write failed")
            return
        if self.webhook is not None:
            self.webhook.notify(event, entry)

    # -- client API ----------------------------------------------------------------

    def Health(self, request, context):
        self._caller(context, "any")
        return pb.HealthReply(party=self.me, federation=self.fed.name, version=__version__)

    def Cancel(self, request, context):
        self._caller(context, "client")
        self._abort_everywhere(query_key(self.me, request.query_id), request.reason or "cancelled by the client",
                               set(self.fed.parties))
        return pb.Empty()

    def Execute(self, request, context) -> Iterator[pb.ExecuteEvent]:
        self._caller(context, "client")  # only this party's own users (client certificate)
        try:  # statements only the issuer takes part in: scratch tables, SHOW TABLES, DESCRIBE
            user_field(request.user)  # a malformed user name is refused before anything is logged
            routed = self.issuer_local.route(request.sql)
            # the user's roles as its account has them now: their grants apply at every party
            who = self.accounts.principal(self.me, request.user) if routed is None else Principal(self.me)
        except errors.Error as exc:
            yield _error_event(exc)
            return
        if routed is not None:
            if request.hidden_params:
                yield _error_event(errors.UnsupportedSql(
                    "hidden parameters look up another party's rows; this statement runs at your own node only "
                    "(SET fedsql.hidden_params = off)"))
                return
            yield from self.issuer_local.execute(routed, request, context)
            return
        started = time.monotonic()
        query_id = request.query_id or uuid.uuid4().hex
        settings = dict(request.settings)
        try:  # set operations, windows over groups, outer queries over grouped derived tables
            composite, explain = compose.parse(request.sql, self.fed)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a clear error
            yield _error_event(as_fedsql_error(exc, "while planning"))
            return
        hidden_values = None
        if request.hidden_params or settings.get("fedsql.hidden_params") == "on":
            try:  # SET fedsql.hidden_params = on: the ? values came beside the SQL and stay at this node
                if composite is not None and (request.hidden_params or numbered(request.sql)[1]):
                    raise errors.UnsupportedSql("hidden parameters work in a single SELECT, not in a set operation "
                                                "or over grouped derived tables; split the statement")
                hidden_values = hidden_params.decode(request.hidden_params) if request.hidden_params \
                    else pa.array([], pa.string())
            except errors.Error as exc:
                yield _error_event(exc)
                return
        if composite is not None:  # every part is a query of its own
            yield from self._execute_composite(composite, explain, settings, query_id, started, who)
            return
        try:  # uncorrelated scalar subqueries run first, as queries of their own
            sql, sub_leakage = scalar_subqueries.resolve(
                request.sql, lambda inner: self._run_scalar(inner, settings, query_id, who),
                lambda text, as_party: self.compile(text, as_party, settings), self.me)
            compiled = self._plan_as_issuer(sql, settings, query_id, who, request.sql)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a clear error
            yield _error_event(as_fedsql_error(exc, "while planning"))
            return
        if compiled.kind == "set":
            name, value = compiled.setting
            yield from result_meta.result_events(None, "set", parties=self.fed.parties, settings={**settings, name: value})
            return
        plan = compiled.plan
        key = query_key(self.me, query_id)
        if hidden_values is not None and compiled.kind == "select":
            try:
                self._hidden[key] = hidden_params.tables(plan.hidden, hidden_values)
            except errors.Error as exc:
                yield _error_event(exc)
                return
        try:
            yield from self._execute_plan(compiled, request, context, sql, settings, query_id, started, sub_leakage)
        finally:
            self._hidden.pop(key, None)

    def _execute_plan(self, compiled: Compiled, request, context, sql: str, settings: dict[str, str], query_id: str,
                      started: float, sub_leakage: list[str]) -> Iterator[pb.ExecuteEvent]:
        """EXPLAIN, or run the planned statement as its issuer and stream the result."""
        plan = compiled.plan
        if compiled.kind == "explain":
            yield from result_meta.result_events(
                pa.table({"plan": explain_lines(plan)}), "explain", parties=self.fed.parties, settings=settings,
                columns=[("plan", "VARCHAR")], leakage=list(plan.leakage) + sub_leakage, plan_hash=plan.hash)
            return
        timeout = min(request.timeout_seconds or self.fed.deadline_seconds, self.fed.deadline_seconds)
        events: queue.Queue = queue.Queue()
        try:
            self._slot()
        except errors.Error as exc:
            yield _error_event(exc)
            return
        finished = threading.Event()

        def _client_gone() -> None:
            if not finished.is_set():
                self._abort_everywhere(query_key(self.me, query_id), "the client went away", set(plan.participants))

        context.add_callback(_client_gone)
        wait_until = time.time() + request.timeout_seconds if request.timeout_seconds else None
        worker = self.pool.submit(self._run_as_issuer, plan, sql, settings, query_id, timeout, events.put,
                                  wait_until)
        worker.add_done_callback(lambda _f: self._slots.release())
        yield from _progress_events(worker, events, started)
        finished.set()
        try:
            table, stats, intervals = worker.result()
        except Exception as exc:  # noqa: BLE001 - _run_as_issuer recorded the failure
            yield _error_event(as_fedsql_error(exc, "while running the query"))
            return
        stats.elapsed_seconds = round(time.monotonic() - started, 6)
        yield from result_meta.result_events(
            table, "rows", parties=self.fed.parties, settings=settings, columns=plan.output,
            leakage=list(plan.leakage) + sub_leakage, notes=_dp_notes(plan), intervals=intervals, stats=stats,
            plan_hash=plan.hash, query_id=query_id)

    def _execute_composite(self, composite: compose.Composite, explain: bool, settings: dict[str, str],
                           query_id: str, started: float, who: Principal) -> Iterator[pb.ExecuteEvent]:
        """A composite statement (planner/compose.py): each part is planned, audited and logged as
        an issuer query of its own (with the user), and the progress line says which part runs."""
        if explain:
            try:
                lines = composites.explain(composite, lambda part: self._explain_part(part, settings, query_id, who))
                leakage = composite.leakage()
            except Exception as exc:  # noqa: BLE001
                yield _error_event(as_fedsql_error(exc, "while planning"))
                return
            yield from result_meta.result_events(
                pa.table({"plan": lines}), "explain", parties=self.fed.parties, settings=settings,
                columns=[("plan", "VARCHAR")], leakage=leakage)
            return
        events: queue.Queue = queue.Queue()
        try:
            self._slot()
        except errors.Error as exc:
            yield _error_event(exc)
            return
        worker = self.pool.submit(self._run_composite, composite, settings, query_id, who, events.put, 0)
        worker.add_done_callback(lambda _f: self._slots.release())
        yield from _progress_events(worker, events, started)
        try:
            table, leakage = worker.result()
        except Exception as exc:  # noqa: BLE001
            yield _error_event(as_fedsql_error(exc, "while running the statement"))
            return
        yield from result_meta.result_events(
            table, "rows", parties=self.fed.parties, settings=settings,
            columns=list(zip(table.column_names, duckdb_types(table))), leakage=leakage,
            stats=pb.QueryStats(elapsed_seconds=round(time.monotonic() - started, 6)), query_id=query_id)

    def _run_composite(self, composite: compose.Composite, settings: dict[str, str], query_id: str,
                       who: Principal, progress: Callable[[str], None], depth: int) -> tuple[pa.Table, list[str]]:
        if depth >= composites.MAX_DEPTH:
            raise errors.UnsupportedSql(f"the statement nests set operations and derived tables more than "
                                        f"{composites.MAX_DEPTH} deep; simplify it")

        def run_part(part: compose.Part, index: int, total: int) -> tuple[pa.Table, list[str]]:
            part_id = f"{query_id}.p{index + 1}.{uuid.uuid4().hex[:8]}"
            label = (f"branch {index + 1}/{total}" if part.what.startswith("branch ")
                     else part.what if total == 1 else f"{part.what} ({index + 1}/{total})")
            say = lambda step: progress(f"{label}: {step}")  # noqa: E731
            inner, _ = compose.parse(part.sql, self.fed)
            if inner is not None:
                return self._run_composite(inner, settings, part_id, who, say, depth + 1)
            say("planning")
            sql, sub_leakage = scalar_subqueries.resolve(
                part.sql, lambda text: self._run_scalar(text, settings, part_id, who),
                lambda text, as_party: self.compile(text, as_party, settings), self.me)
            compiled = self._plan_as_issuer(sql, settings, part_id, who, part.sql)
            if compiled.kind != "select":
                raise errors.UnsupportedSql(f"{part.what} must be a SELECT")
            table, _, _ = self._run_as_issuer(compiled.plan, sql, settings, part_id, self.fed.deadline_seconds, say)
            return table, list(compiled.plan.leakage) + sub_leakage

        output = compose.output_of(composite, self.fed, self.schema_of)
        return composites.run(composite, run_part, output)

    def _explain_part(self, part: compose.Part, settings: dict[str, str], query_id: str,
                      who: Principal) -> list[str]:
        inner, _ = compose.parse(part.sql, self.fed)
        if inner is not None:
            return composites.explain(inner, lambda p: self._explain_part(p, settings, query_id, who))
        compiled = self._plan_as_issuer(part.sql, settings, query_id, who)
        if compiled.kind != "select":
            raise errors.UnsupportedSql(f"{part.what} must be a SELECT")
        return explain_lines(compiled.plan) + [f"leakage: {line}" for line in compiled.plan.leakage]

    def _plan_as_issuer(self, sql: str, settings: dict[str, str], query_id: str, who: Principal,
                        audited_sql: str | None = None) -> Compiled:
        """Compile `sql` as this party's query for `who` (its user's roles' grants apply); a policy
        refusal is audited and logged (with the user and roles)."""
        started = time.monotonic()
        user = who.user or None
        try:
            return self.compile(sql, who, settings)
        except Exception as exc:  # noqa: BLE001
            err = as_fedsql_error(exc, "while planning")
            if isinstance(err, (errors.PolicyViolation, errors.PlanMismatch)):
                self._audit_safe("refused", query_id=query_id, issuer=self.me, role="issuer",
                                 sql=audited_sql or sql, error={"kind": err.kind, "message": str(err)},
                                 **user_field(user), **({"roles": list(who.roles)} if who.roles else {}))
                self._log_query("refused", query_id, self.me, "issuer", None, started, user, error=err)
            raise err from None

    def _run_as_issuer(self, plan, sql: str, settings: dict[str, str], query_id: str, timeout: float,
                       progress: Callable[[str], None],
                       wait_until: float | None = None) -> tuple[pa.Table, pb.QueryStats, dict]:
        """One federated query as its issuer: the `query` audit record, the owners' approvals (held
        until `wait_until`, the client's timeout, when given), the run, then `done` or `failed` and
        one log line; returns the result, its stats and the DP per-row intervals (output column
        index → list). Ordinary queries and every set-operation branch go through here, so each has
        the same records and names the same user (the plan's)."""
        started = time.monotonic()
        user = plan.user or None
        self.audit.append("query", **query_fields(query_id, self.me, sql, plan, self.me, "issuer"))
        try:
            self.gate.await_approvals(plan, sql, settings, query_id, user, progress, wait_until)
            if wait_until is not None:  # the client's timeout covers the wait and the run
                timeout = max(0.1, min(timeout, wait_until - time.time()))
            table, stats = self._coordinate(plan, sql, settings, query_id, timeout, progress)
        except Exception as exc:  # noqa: BLE001
            err = as_fedsql_error(exc, "while running the query")
            if isinstance(err, errors.PlanMismatch):  # a peer compiled another plan: its schema may have changed
                self.catalog.invalidate(plan.participants)
            self._audit_safe("failed", query_id=query_id, error={"kind": err.kind, "message": str(err)})
            self._log_query("failed", query_id, self.me, "issuer", plan, started, user, error=err)
            raise err from None
        table, intervals = _split_intervals(table, plan)
        self._audit_safe("done", query_id=query_id, rows=table.num_rows)
        self._log_query("done", query_id, self.me, "issuer", plan, started, user, rows=table.num_rows)
        return table, stats, intervals

    def _log_query(self, outcome: str, query_id: str, issuer: str, role: str, plan, started: float,
                   user: str | None = None, rows: int | None = None, error: errors.Error | None = None) -> None:
        """One structured line per query in the node log (logger `fedsql.node`, INFO), next to its
        audit outcome. Identifiers, counts and the error kind only: never the SQL, a value or an
        error message (a message can quote a literal or a value; the audit log keeps it)."""
        line = {"event": "query", "outcome": outcome, "query_id": query_id, "issuer": issuer, "role": role,
                "plan_hash": plan.hash if plan is not None else None,
                "duration_seconds": round(time.monotonic() - started, 3)}
        user = user or (plan.user if plan is not None else None)  # participants: the plan's user and roles
        if user:
            line["user"] = user
        if plan is not None and plan.roles:
            line["roles"] = list(plan.roles)
        if rows is not None:
            line["rows"] = rows
        if error is not None:
            line["error_kind"] = error.kind
        log.info("%s", json.dumps(line, sort_keys=True))

    def _run_scalar(self, sql: str, settings: dict[str, str], parent_id: str, who: Principal) -> tuple:
        """Run a scalar subquery as its own federated query (audited and logged as one, with the
        user); its value is revealed to this issuer."""
        query_id = f"{parent_id}.s{uuid.uuid4().hex[:8]}"
        compiled = self._plan_as_issuer(sql, settings, query_id, who)
        if compiled.kind != "select":
            raise errors.UnsupportedSql("a scalar subquery must be a SELECT")
        plan = compiled.plan
        table, _, _ = self._run_as_issuer(plan, sql, settings, query_id, self.fed.deadline_seconds,
                                          lambda _step: None)
        return scalar_subqueries.single_value(table), plan.output[0][1], list(plan.leakage)

    def _coordinate(self, plan, sql, settings, query_id, timeout, progress) -> tuple[pa.Table, pb.QueryStats]:
        deadline_unix = time.time() + timeout
        others = [p for p in plan.participants if p != self.me]
        key = query_key(self.me, query_id)
        if key in self._running:
            raise errors.ProgrammingError(
                f"query id {query_id} is already running at '{self.me}'; send it with a new id")
        self._running[key] = frozenset(plan.participants)
        futures: dict[str, Future] = {}
        for p in others:
            req = pb.RunRequest(query_id=query_id, issuer=self.me, sql=sql, settings=settings,
                                plan_hash=plan.hash, deadline_unix=deadline_unix, user=plan.user, roles=plan.roles)
            futures[p] = self.pool.submit(self._call_run, p, req, timeout)
        own = self.pool.submit(self._run_part, plan, key, deadline_unix, progress)
        failures: list[tuple[str, errors.Error]] = []
        party_stats: dict[str, pb.PartyStats] = {}
        try:
            pending = {self.me: own, **futures}
            give_up = float("inf")  # after a failure: how long the others get to report theirs
            while pending and time.monotonic() < give_up:
                for party, fut in list(pending.items()):
                    if not fut.done():
                        continue
                    del pending[party]
                    try:
                        party_stats[party] = fut.result()
                    except Exception as exc:  # noqa: BLE001
                        failures.append((party, as_fedsql_error(exc)))
                        self._abort_everywhere(key, f"party '{party}' failed", set(plan.participants))
                        give_up = min(give_up, time.monotonic() + ABORT_GRACE_SECONDS)
                time.sleep(0.005)
            if failures:
                raise _root_cause(failures)
            table, stats = own.result()
            # each party's own counters (its RunReply), e.g. for benchmarks: bytes sent per party
            parties = {p: s for p, s in party_stats.items() if p != self.me}
            return _cast_output(table, plan.output), pb.QueryStats(own=stats, parties=parties)
        finally:
            self._running.pop(key, None)
            self.mailbox.drop(key)

    def _call_run(self, party: str, req: pb.RunRequest, timeout: float) -> pb.PartyStats:
        try:
            stub = self.stubs[party]
            reply = call_with_reconnect(stub.Run, req, time.monotonic() + timeout + 5,
                                        lambda: self._reconnect(party, stub).Run)
        except grpc.RpcError as exc:
            raise self._unreachable(party, exc) from None
        if not reply.ok:
            raise errors.error_from_kind(reply.error.kind, f"party '{party}': {reply.error.message}")
        return reply.stats

    def _run_part(self, plan, key: str, deadline_unix: float, progress: Callable[[str], None] | None):
        """This party's part of the query `key` (issuer/query id): the plan agreement is
        PartyRun's first step; the DP ledger is charged per issuer and query id."""
        deadline = time.monotonic() + max(0.0, deadline_unix - time.time())
        self._reserve_budget(plan, key)  # DP: the owner's ledger, before any of its shares is used
        channel = Channel(self.me, key, self.links, self.mailbox, deadline)
        run = PartyRun(self.me, plan, self.executor, channel, progress,
                       hidden=self._hidden.get(key) if plan.issuer == self.me else None)
        try:
            table = run.run()
        except Exception as exc:  # noqa: BLE001
            if plan.dp is not None and plan.dp.charges:
                raise _dp_failure(self.me, exc) from None
            raise
        return table, result_meta.party_stats(run.stats())

    def _reserve_budget(self, plan, query_id: str) -> None:
        """Record this owner's DP spend durably, or refuse (docs/dp.md §6). A query id runs at most once:
        fresh noise on a second run would be a second, uncharged release."""
        charges = [c for c in plan.dp.charges if c.party == self.me] if plan.dp else []
        if not charges:
            return
        from fedsql.budget_cli import default_ledger_path
        from fedsql.ledger import Ledger, Reservation

        items = []
        for c in charges:
            policy = self.party.tables[c.table].dp
            if policy is None:  # the plan hash matched, so this cannot happen with one config
                raise errors.PolicyViolation(f"table {self.me}.{c.table} has no DP policy here; refused")
            items.append(Reservation(f"{self.me}.{c.table}", c.epsilon, c.delta, policy.epsilon, policy.delta,
                                     policy.max_epsilon_per_query, policy.max_delta_per_query))
        with self._ledger_lock:
            if self._ledger is None:
                self._ledger = Ledger(default_ledger_path(self.fed.path, self.me))
        if not self._ledger.reserve_many(query_id, plan.issuer, items):
            raise errors.PolicyViolation(
                f"query id {query_id} has already run at '{self.me}' (its privacy spend is recorded); a DP query "
                "runs at most once, since fresh noise would be a second, uncharged release: send it with a new id"
            )

    def _abort_everywhere(self, key: str, reason: str, parties: set[str]) -> None:
        """Cancel query `key` (issuer/query id) here and at `parties`, without waiting."""
        self.mailbox.cancel(key, reason)
        self.gate.wake(key, reason)  # an issuer still waiting for owners' approvals stops too
        for p in parties - {self.me}:
            self.pool.submit(self._send_abort, p, key, reason)

    def _send_abort(self, party: str, key: str, reason: str) -> None:
        try:  # node to node, the query id field carries the query key (issuer/query id)
            self.stubs[party].Abort(pb.CancelRequest(query_id=key, reason=reason), timeout=5)
        except grpc.RpcError:
            pass  # a party that is down has nothing left to cancel

    # -- peer API ------------------------------------------------------------------

    def Describe(self, request, context):
        self._caller(context, "any")
        try:
            return pb.DescribeReply(tables=encode_described({t: self.executor.schema(t) for t in request.tables}))
        except Exception as exc:  # noqa: BLE001
            err = as_fedsql_error(exc, "describing tables")
            return pb.DescribeReply(error=pb.Error(kind=err.kind, message=str(err)))

    def Abort(self, request, context):
        """A peer cancels query `issuer/query id` here: a participant of that issuer's running
        query, or the issuer itself (also before its Run request arrived)."""
        who = self._caller(context, "party")
        key = request.query_id
        running = self._running.get(key)
        allowed = who in running if running is not None else who == key_issuer(key)
        if not allowed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"party '{who}' takes no part in query {key} at '{self.me}'; abort refused")
        self.mailbox.cancel(key, request.reason or f"aborted by '{who}'")
        if who == key_issuer(key):  # the issuer gave up: its request for approval here ends
            self.gate.cancel(key, request.reason or f"aborted by '{who}'")
        return pb.Empty()

    def Authorize(self, request, context):
        """An issuer asks this owner to approve a query (fedsql/approval_gate.py); only the issuer
        itself, by its node certificate, can ask in its name."""
        self._caller(context, "party", claimed=request.issuer)
        return self.gate.authorize(request)

    def Run(self, request, context):
        # the issuer is whoever holds the calling connection's certificate: no party can
        # make this node run a query in another party's name
        self._caller(context, "party", claimed=request.issuer)
        started, slot, plan, key, who = False, False, None, None, None
        began = time.monotonic()
        finished = threading.Event()
        try:
            if request.issuer not in self.fed.parties:
                raise errors.ProgrammingError(f"unknown issuer '{request.issuer}'")
            if not request.query_id or len(request.query_id) > 128:
                raise errors.ProgrammingError("a query id of 1 to 128 characters is required")
            key = query_key(request.issuer, request.query_id)
            if key in self._running:  # (a finished one fails at once: the mailbox and the ledger remember it)
                key = None  # not ours to abort or drop: the run that uses it does
                raise errors.ProgrammingError(f"query id {request.query_id} of '{request.issuer}' is already "
                                              f"running at '{self.me}'; send it with a new id")
            self._watch_issuer(context, key, request.issuer, finished)
            try:  # the issuer's word: checked like a client's SET before it reaches the planner
                settings = check_settings(dict(request.settings))
            except errors.Error as exc:
                raise type(exc)(f"the settings sent by '{request.issuer}' are invalid: {exc}") from None
            # the issuer's word on its own user and roles: checked for form, applied as sent, bound by the hash
            who = claimed_principal(request.issuer, request.user, tuple(request.roles))
            compiled = self.compile(request.sql, who, settings)
            plan = compiled.plan
            if plan is None or plan.hash != request.plan_hash:
                if plan is not None:  # e.g. a schema changed since one side cached it: both describe again
                    self.catalog.invalidate(plan.participants)
                raise errors.PlanMismatch(
                    f"the plan sent by '{request.issuer}' differs from the plan '{self.me}' compiled itself; refused "
                    "(if a table's schema just changed, run the query again: the parties describe it anew)"
                )
            if self.me not in plan.participants:
                raise errors.ProgrammingError(f"party '{self.me}' has no part in this plan")
            self.gate.check_run(plan, request.issuer, request.query_id)  # bound to this plan's hash
            self._slot()
            slot = True
            self.audit.append("query", **query_fields(request.query_id, request.issuer, request.sql, plan,
                                                      self.me, "participant"))
            started = True
            self._running[key] = frozenset(plan.participants)
            # never run longer than this node's own deadline, whatever the issuer asks
            deadline = min(request.deadline_unix, time.time() + self.fed.deadline_seconds)
            table, stats = self._run_part(plan, key, deadline, None)
            self._audit_safe("done", query_id=request.query_id)
            self._log_query("done", request.query_id, request.issuer, "participant", plan, began,
                            rows=table.num_rows if table is not None else None)
            return pb.RunReply(ok=True, stats=stats)
        except Exception as exc:  # noqa: BLE001
            err = as_fedsql_error(exc, "while running its part")
            if key is not None and not isinstance(err, errors.QueryCancelled):  # the others stop too, now
                others = set(plan.participants) if plan is not None else set(self.fed.parties)
                self._abort_everywhere(key, f"party '{self.me}' failed", others)
            if started:
                self._audit_safe("failed", query_id=request.query_id, error={"kind": err.kind, "message": str(err)})
            else:
                self._audit_safe("refused", **query_fields(request.query_id, request.issuer, request.sql, plan,
                                                             self.me, "participant"),
                                 claimed_plan_hash=request.plan_hash, error={"kind": err.kind, "message": str(err)},
                                 **({"claimed_user": who.user, "claimed_roles": list(who.roles)}
                                    if who is not None and who.user else {}))
            self._log_query("failed" if started else "refused", request.query_id, request.issuer, "participant",
                            plan, began, error=err)
            err = for_remote(err, self.me, "running its part" if started else "planning")
            return pb.RunReply(ok=False, error=pb.Error(kind=err.kind, message=str(err)))
        finally:
            finished.set()
            if slot:
                self._slots.release()
            if key is not None:
                self._running.pop(key, None)
                self.mailbox.drop(key)

    def _watch_issuer(self, context, key: str, issuer: str, finished: threading.Event) -> None:
        """Cancel this party's run of `key` as soon as the issuer's Run call ends early (its node
        died, or it went away): the run fails within a second and frees its slot, instead of
        waiting for peers' messages until the deadline."""
        def gone() -> None:
            if not finished.is_set():
                self.mailbox.cancel(key, f"the issuer '{issuer}' went away")

        if not context.add_callback(gone):
            gone()  # the call had already ended

    def cancel_all(self, reason: str) -> None:
        """Cancel every query running here (shutdown): threads blocked on share traffic end
        at once, and each peer learns of it through the failed Run/Execute."""
        for query_id in list(self._running):
            self.mailbox.cancel(query_id, reason)

    def close(self) -> None:
        self._closing.set()
        self.gate.close()
        if self.webhook is not None:
            self.webhook.close()
        if self._ledger is not None:
            self._ledger.close()
        self.audit.close()
        self.links.close()
        for ch in [*self._channels.values(), *self._retired]:
            ch.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def _owners_webhook(fed: Federation, party: str) -> Webhook | None:
    from fedsql.state import state_dir

    url = webhook_url(state_dir(fed.path, party), party)
    if url is None:
        return None
    cfg = fed.party(party)
    console = f"{'https' if cfg.console_tls else 'http'}://{cfg.console}" if cfg.console else None
    return Webhook(url, party, fed.name, console)


_DP_PASSTHROUGH = (errors.QueryCancelled, errors.QueryTimeout, errors.PartyUnavailable)


def _dp_failure(me: str, exc: Exception) -> errors.Error:
    """A failure inside a DP query after its budget was reserved, as the issuer may see it: the
    charge stays, and no data-dependent text leaves (a DuckDB overflow names the values, a limit
    error says how many rows passed). Cancellations, timeouts, dead parties and other transport
    failures keep their text (it is about peers, not rows; their timing is docs/dp.md §7's timing
    channel). Issue #11, finding 3."""
    log.warning("DP query failed at %s (%s); details withheld from the other parties", me, type(exc).__name__)
    if isinstance(exc, TransportError):  # about peers and messages, not this party's rows
        return as_fedsql_error(exc)
    if isinstance(exc, _DP_PASSTHROUGH):
        return exc
    return errors.OperationalError(
        f"party '{me}' could not complete its part of this differential-privacy query; the cause is withheld "
        "because an error could reveal an un-noised fact about the protected rows, and the privacy budget stays "
        "charged. Simplify the query or ask the owner to check its node log")


def _root_cause(failures: list[tuple[str, errors.Error]]) -> errors.Error:
    """The failure that explains the others: a dead party first, then a real error,
    then timeouts, and cancellations (the echo of someone else's failure) last."""

    def rank(item: tuple[str, errors.Error]) -> int:
        err = item[1]
        if isinstance(err, errors.PartyUnavailable):
            return 0
        if isinstance(err, errors.QueryCancelled):
            return 3
        if isinstance(err, errors.QueryTimeout):
            return 2
        return 1

    return min(failures, key=rank)[1]


def _progress_events(worker: Future, events: queue.Queue, started: float) -> Iterator[pb.ExecuteEvent]:
    """Stream the worker's progress steps to the client until it is done."""
    while True:
        try:
            item = events.get(timeout=0.25)
            yield pb.ExecuteEvent(progress=pb.Progress(elapsed_seconds=time.monotonic() - started, step=item))
        except queue.Empty:
            if worker.done():
                return


def _split_intervals(table: pa.Table, plan) -> tuple[pa.Table, dict[int, list]]:
    """The result without the DP interval parts the final query appends (planner/passes/dp.py
    `interval_items`), and each AVG/VAR/STDDEV column's per-row 95% interval computed from them."""
    names = [n for n, _ in plan.output]
    if plan.dp is None or table.num_columns <= len(names):
        return table, {}
    from planner.passes.dp import row_intervals

    extras = {table.column_names[i]: table.column(i).to_pylist() for i in range(len(names), table.num_columns)}
    table = table.select(list(range(len(names)))).rename_columns(names)
    try:
        return table, row_intervals(plan.dp, extras)
    except Exception:  # noqa: BLE001 - an interval must never fail a finished query
        log.exception("DP intervals")
        return table, {}


def _dp_notes(plan) -> dict[str, str]:
    """Per result column: ε spent, noise std and 95% interval (planner/passes/dp.py)."""
    if plan.dp is None:
        return {}
    from planner.passes.dp import column_notes

    try:
        return column_notes(plan.dp)
    except Exception:  # noqa: BLE001 - a note must never fail a finished query
        log.exception("DP notes")
        return {}


def duckdb_types(table: pa.Table) -> list[str]:
    """DuckDB type names of an Arrow table's columns (for result metadata)."""
    from fedsql.locked_duckdb import open_locked

    con = open_locked()
    try:
        con.register("__t", table)
        return [r[1] for r in con.execute("DESCRIBE SELECT * FROM __t").fetchall()]
    finally:
        con.close()


def _cast_output(table: pa.Table, output) -> pa.Table:
    names = [n for n, _ in output]
    if table.column_names != names and table.num_columns == len(names):
        table = table.rename_columns(names)
    return table


def warm_up() -> None:
    """First-use costs paid when the node starts, not by its first query: pyarrow loads pandas
    (when installed) on its first conversion of a boolean column to numpy, and the keyed-tag and
    AES-CTR code initialise on first use (benchmarks/RESULTS.md, "Hidden lookup")."""
    pa.array([True, None]).is_null().to_numpy(zero_copy_only=False)
    codec.keyed_tags(os.urandom(16), [pa.array([1, None], pa.int64())], MATCH_TAG_BITS)
    PRG(os.urandom(16)).words(1 << 16)


def serve(fed: Federation, party: str, on_ready: Callable[[], None] | None = None) -> None:
    """Run this party's node until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {party} %(levelname)s %(name)s: %(message)s")
    try:
        net = netem.from_environment()  # checked before listening: a bad value must not fail each query
    except netem.NetProfileError as exc:
        raise errors.ConfigError(f"party '{party}': {exc}") from None
    if net is not None:
        logging.getLogger("fedsql.node").warning(
            "WAN emulation on (%s): every peer message is delayed; for benchmarks and tests only", netem.ENV)
    node = Node(fed, party)
    warm_up()
    # no SO_REUSEPORT: a second node for the same address must fail, not share the port silently
    server = grpc.server(ThreadPoolExecutor(max_workers=64, thread_name_prefix="grpc"),
                         options=GRPC_OPTIONS + [("grpc.so_reuseport", 0)])
    rpc.add_NodeServicer_to_server(node, server)
    add_peer_servicer(server, node.mailbox, set(fed.parties) - {party}, identify=node.identity.identify)
    address = node.party.address
    try:
        # TLS only, client certificate required: there is no plaintext port
        port = server.add_secure_port(address, node.identity.server_credentials())
    except RuntimeError:
        port = 0
    if port == 0:
        node.close()
        raise errors.OperationalError(
            f"party '{party}': cannot listen on {address} (port in use or address not local); "
            f"stop what uses it or change parties.{party}.address in {fed.path}"
        )
    server.start()
    flight = console = None
    from fedsql.users import LoginThrottle

    throttle = LoginThrottle()  # one count of failed logins for every password front end of this node
    try:
        if node.party.flight or node.party.flight_password:
            from connectors.flight_sql import start_party_flight

            flight = start_party_flight(fed, party, address, throttle=throttle)
        if node.party.console:
            from fedsql.console.server import start_console

            console = start_console(fed, party, schema_of=lambda table: node.schema_of(party, table),
                                    throttle=throttle)
    except errors.Error:
        if flight is not None:
            flight.shutdown()
        server.stop(0)
        node.close()
        raise
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, _stop)
        except ValueError:
            pass  # not the main thread (embedded use): the caller stops us
    if on_ready:
        on_ready()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        node.cancel_all(f"party '{party}' is shutting down")
        if console is not None:
            console.stop()
        if flight is not None:
            flight.shutdown()
        server.stop(grace=2).wait(5)
        node.close()
        _exit_within(SHUTDOWN_SECONDS)


SHUTDOWN_SECONDS = 8.0


def _exit_within(seconds: float) -> None:
    """Bound the exit: Python joins worker threads at exit, and a thread still inside a local
    DuckDB query or a peer call would hold the process for as long as that takes. Audit and
    ledger records are durable at each append, so nothing is lost by ending the process."""
    import os

    timer = threading.Timer(seconds, lambda: os._exit(0))
    timer.daemon = True
    timer.start()
