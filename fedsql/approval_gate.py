"""The node's side of owners' approvals (fedsql/approvals.py): both ends of `Authorize`.

Issuer: before any participant is asked to run a query, `await_approvals` asks each owner whose
tables need approval (`Authorize`, long-polled a few seconds at a time), reports "waiting for
approval by OWNER" as progress, and stops on a rejection, an expiry, its own timeout or a cancel.

Owner (`OwnerGate`): `authorize` compiles the query itself (as for `Run`), records the request
for the plan hash *it* derived, approves it at once when an approved template matches, and holds
the call while the decision is pending. `check_run` is the binding: `Run` proceeds only when this
owner approved this (issuer, query id) for exactly the plan it compiled now — the plan every
participant then agrees on (executors/runtime.py) — and each approval is consumed by one run.
`sweep` expires old requests and writes every decision (made by the owner's CLI in the store) into
the audit chain, so only the node ever appends to the chain.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from fedsql import errors
from fedsql.approvals import (ApprovalStore, Request, owner_epsilon, owners_to_ask, query_shape, required,
                              store_path, USE_WINDOW_SECONDS)

log = logging.getLogger("fedsql.approvals")

POLL_SECONDS = 0.2
"""How often a held Authorize call looks for the owner's decision in the store."""
MAX_HOLD_SECONDS = 5.0
"""Longest one Authorize call is held (the issuer asks again): a dropped call costs little."""
MAX_PENDING_PER_ISSUER = 100
"""Held requests one issuer may have at an owner: more is refused, so a party cannot flood the
owner's list (and its disk) with requests."""
PROGRESS_EVERY = 10.0
"""Seconds between repeated "waiting for approval" progress lines."""


class OwnerGate:
    """This node's approvals as a data owner, and the issuer's waits it can wake (cancel)."""

    def __init__(self, node: Any):
        self.node = node
        self.me: str = node.me
        self.active = any(t.approval != "auto" for t in node.party.tables.values())
        self._store: ApprovalStore | None = None
        self._lock = threading.Lock()
        self._sweep_lock = threading.Lock()
        self._waits: dict[str, tuple[threading.Event, list[str]]] = {}

    @property
    def store(self) -> ApprovalStore:
        with self._lock:
            if self._store is None:
                self._store = ApprovalStore(store_path(self.node.fed.path, self.me))
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()

    # -- owner ---------------------------------------------------------------------------------

    def authorize(self, request: Any) -> Any:
        """Answer one Authorize call: approved, pending (after holding it up to its wait), or the
        final refusal; a bad request is an error reply."""
        from executors.peer_channel import query_key
        from fedsql.audit import user_field
        from fedsql.proto import node_pb2 as pb
        from fedsql.settings import check_settings

        try:
            if not request.query_id or len(request.query_id) > 128:
                raise errors.ProgrammingError("a query id of 1 to 128 characters is required")
            user = user_field(request.user).get("user", "")
            key = query_key(request.issuer, request.query_id)
            req = self.store.get(key) if self.active else None
            fresh = req is None
            if req is not None and req.plan_hash != request.plan_hash:
                raise errors.ApprovalRefused(
                    f"query id {request.query_id} of '{request.issuer}' was submitted to '{self.me}' for another "
                    f"plan ({req.plan_hash[:16]}…); an approval binds to one plan: send this query with a new id")
            if fresh:  # (a request on record is only looked up: this call runs nothing, Run compiles again)
                try:
                    settings = check_settings(dict(request.settings))
                except errors.Error as exc:
                    raise type(exc)(f"the settings sent by '{request.issuer}' are invalid: {exc}") from None
                from fedsql.users import claimed_principal  # the issuer's user and roles, as for Run

                who = claimed_principal(request.issuer, user, tuple(request.roles))
                plan = self.node.compile(request.sql, who, settings).plan
                if plan is None or plan.hash != request.plan_hash:
                    raise errors.PlanMismatch(f"the plan sent by '{request.issuer}' for approval differs from the "
                                              f"plan '{self.me}' compiled itself; refused")
                mode, tables = required(plan, self.node.fed, self.me)
                if mode == "auto":
                    return pb.AuthorizeReply(status="approved", message=f"no table of '{self.me}' needs approval")
                if self.node.mailbox.finished(key):
                    raise errors.ProgrammingError(f"query id {request.query_id} of '{request.issuer}' has already "
                                                  f"run at '{self.me}' (a query id runs once); send it with a new id")
                req = self._submit(key, request, user, settings, plan, mode, tables)
            hold = 0.0 if fresh else min(max(request.wait_seconds, 0.0), MAX_HOLD_SECONDS)
            hold_until = time.monotonic() + hold
            while req.status == "pending" and time.monotonic() < hold_until:
                time.sleep(POLL_SECONDS)
                self.store.expire()
                req = self.store.get(key) or req
            self.sweep()
            status = "approved" if req.status in ("approved", "used") else req.status
            return pb.AuthorizeReply(status=status, message=self.describe(req))
        except Exception as exc:  # noqa: BLE001 - every failure is a reply the issuer can show
            if isinstance(exc, errors.Error):
                err = exc
            else:
                log.exception("internal error while checking approvals")
                err = errors.InternalError(f"internal error at '{self.me}' while checking approvals "
                                           f"({type(exc).__name__}); the node logged the details")
            return pb.AuthorizeReply(error=pb.Error(kind=err.kind, message=str(err)))

    def _submit(self, key: str, request: Any, user: str, settings: dict[str, str], plan: Any, mode: str,
                tables: list[str]) -> Request:
        from fedsql.audit import query_fields

        if self.store.pending_count(request.issuer) >= MAX_PENDING_PER_ISSUER:
            raise errors.ResourceLimitExceeded(
                f"'{request.issuer}' already has {MAX_PENDING_PER_ISSUER} queries waiting for approval by "
                f"'{self.me}'; wait for decisions or cancel some, then send this one again")
        shape = query_shape(request.sql, request.issuer, settings)
        epsilon = owner_epsilon(plan, self.me)
        status, by, reason, tid, note = "pending", None, None, None, ""
        if mode == "template":
            template, note = self.store.match(request.issuer, shape.hash, epsilon)
            if template is not None:
                status, by, tid = "approved", f"template {template.id}", template.id
                reason = f"matches template {template.id} approved by {template.created_by}" + (
                    f": {template.reason}" if template.reason else "")
        else:
            manual = [t for t in tables if self.node.fed.table(self.me, t).approval == "manual"]
            note = f"{', '.join(manual)}: approval = \"manual\", every query is decided on its own"
        timeout = self.node.party.approval_timeout_seconds
        req, recorded = self.store.submit(key=key, query_id=request.query_id, issuer=request.issuer, user=user,
                                sql=request.sql, settings=settings, plan_hash=plan.hash, shape=shape, tables=tables,
                                leakage=list(plan.leakage), epsilon=epsilon, mode=mode, note=note,
                                expires_at=time.time() + timeout, status=status, decided_by=by, reason=reason,
                                template_id=tid)
        if recorded and req.status == "pending":
            self.node._audit_safe("approval_requested", **query_fields(request.query_id, request.issuer, request.sql,
                                                                        plan, self.me, "owner", user or None),
                                  tables=tables, approval=mode, note=note, expires_at=round(req.expires_at, 3))
            log.info("query %s of %s waits for approval (fedsql approvals)", request.query_id, request.issuer)
        return req

    def describe(self, req: Request) -> str:
        """What the issuer's user is told about a request (never a value: SQL, ids, names)."""
        tables = ", ".join(f"{self.me}.{t}" for t in req.tables)
        if req.status in ("approved", "used"):
            return f"approved by '{self.me}'" + (f" (template {req.template_id})" if req.template_id else "")
        if req.status == "pending":
            return (f"waiting for approval by {self.me} (query {req.query_id} reads {tables}; the owner decides with "
                    f"`fedsql approve` or `fedsql reject`)")
        if req.status == "rejected":
            return f"party '{self.me}' rejected query {req.query_id}: {req.reason or 'no reason given'}"
        if req.status == "expired":
            timeout = self.node.party.approval_timeout_seconds
            return (f"the approval request for query {req.query_id} at party '{self.me}' expired: no decision within "
                    f"{timeout:g} s (approval_timeout_seconds of '{self.me}'); ask the owner, then send it again")
        return f"query {req.query_id} was cancelled while waiting for approval by {self.me}: {req.reason}"

    def check_run(self, plan: Any, issuer: str, query_id: str) -> None:
        """Refuse `Run` unless this owner approved (issuer, query id) for exactly this plan; consume
        the approval (one run per approval)."""
        from executors.peer_channel import query_key

        if not self.active:
            return
        mode, tables = required(plan, self.node.fed, self.me)
        if mode == "auto":
            return
        key = query_key(issuer, query_id)
        if self.store.use(key, plan.hash):
            return
        req = self.store.get(key)
        names = ", ".join(f"{self.me}.{t}" for t in tables)
        if req is None:
            raise errors.ApprovalRefused(
                f"query {query_id} of '{issuer}' reads {names}, which need the approval of '{self.me}' "
                f"(approval = \"{mode}\"), and was never submitted for it; the issuer must ask first "
                "(is its copy of the federation configuration current?)")
        if req.plan_hash != plan.hash:
            raise errors.ApprovalRefused(
                f"query {query_id} of '{issuer}' was submitted to '{self.me}' for plan {req.plan_hash[:16]}…, not "
                f"for this plan ({plan.hash[:16]}…); an approval binds to the plan every party agrees on")
        if req.status == "approved":
            raise errors.ApprovalRefused(
                f"the approval of query {query_id} of '{issuer}' at '{self.me}' was not used within "
                f"{USE_WINDOW_SECONDS:g} s of the decision; an approval is for a run now — send the query again "
                "and ask the owner")
        if req.status == "used":
            raise errors.ApprovalRefused(f"the approval of query {query_id} of '{issuer}' at '{self.me}' was used "
                                         "by its run already; a query id runs once")
        raise errors.ApprovalRefused(self.describe(req))

    def cancel(self, key: str, reason: str) -> None:
        """The issuer gave up (cancel, timeout, gone): a pending request ends as cancelled."""
        if not self.active:
            return
        if self.store.decide(key, "cancelled", "issuer", reason):
            self.sweep()

    def sweep(self) -> None:
        """Expire overdue requests and audit every decision and template not audited yet."""
        if not self.active:
            return
        with self._sweep_lock:
            store = self.store
            store.expire()
            for req in store.unaudited():
                decision = "approved" if req.status in ("approved", "used") else req.status
                self.node._audit_safe("approval", query_id=req.query_id, issuer=req.issuer, decision=decision,
                                      decided_by=req.decided_by, reason=req.reason, plan_hash=req.plan_hash,
                                      tables=req.tables, template=req.template_id,
                                      decided_at=round(req.decided_at or time.time(), 3))
                store.mark_audited(req.key)
            for t in store.unaudited_templates():
                self.node._audit_safe("approval_template", template=t.id, issuer=t.issuer, shape=t.shape,
                                      shape_hash=t.shape_hash, tables=t.tables, max_epsilon=t.max_epsilon,
                                      expires_at=t.expires_at, created_by=t.created_by, reason=t.reason,
                                      approved_from=t.source_key, revoked=t.revoked)
                store.mark_template_audited(t.id)

    # -- issuer ----------------------------------------------------------------------------------

    def wake(self, key: str, reason: str) -> None:
        """Cancel the issuer's wait for approvals of query `key` (called with every abort)."""
        with self._lock:
            wait = self._waits.get(key)
        if wait is not None:
            wait[1].append(reason)
            wait[0].set()

    def await_approvals(self, plan: Any, sql: str, settings: dict[str, str], query_id: str, user: str | None,
                        progress: Callable[[str], None], wait_until: float | None) -> None:
        """Block until every owner whose tables `plan` reads with approval ≠ auto approved this
        query; raise ApprovalRefused (rejected, expired), QueryCancelled or QueryTimeout."""
        from executors.peer_channel import call_with_reconnect, query_key
        from fedsql.proto import node_pb2 as pb

        owners = owners_to_ask(plan, self.node.fed)
        if not owners:
            return
        key = query_key(self.me, query_id)
        event: tuple[threading.Event, list[str]] = (threading.Event(), [])
        with self._lock:
            self._waits[key] = event
        pending, told = list(owners), {}
        started = time.monotonic()
        try:
            while pending:
                for owner in list(pending):
                    if event[0].is_set():
                        raise errors.QueryCancelled(
                            f"query {query_id} was cancelled while waiting for approval by {', '.join(pending)}: "
                            f"{event[1][-1] if event[1] else 'cancelled'}")
                    left = None if wait_until is None else wait_until - time.time()
                    if left is not None and left <= 0:
                        self.node._abort_everywhere(key, "the issuer's timeout passed while waiting for approval",
                                                    set(pending))
                        raise errors.QueryTimeout(
                            f"query {query_id} waited {time.monotonic() - started:.0f} s for approval by "
                            f"{', '.join(pending)} until its timeout; nothing ran. Ask the owner to decide, or send "
                            "the query with a longer timeout")
                    hold = min(2.0 / len(pending), left if left is not None else MAX_HOLD_SECONDS)
                    req = pb.AuthorizeRequest(query_id=query_id, issuer=self.me, sql=sql, settings=settings,
                                              plan_hash=plan.hash, user=user or "", roles=plan.roles,
                                              wait_seconds=max(hold, 0.0))
                    stub = self.node.stubs[owner]
                    try:
                        reply = call_with_reconnect(stub.Authorize, req, time.monotonic() + hold + 15,
                                                    lambda: self.node._reconnect(owner, stub).Authorize)
                    except Exception as exc:  # noqa: BLE001 - grpc errors name the owner
                        import grpc

                        if isinstance(exc, grpc.RpcError):
                            raise self.node._unreachable(owner, exc) from None
                        raise
                    if reply.error.kind:
                        raise errors.error_from_kind(reply.error.kind, f"party '{owner}': {reply.error.message}")
                    if reply.status == "approved":
                        pending.remove(owner)
                        if owner in told:
                            progress(f"approved by {owner}")
                    elif reply.status == "pending":
                        now = time.monotonic()
                        if owner not in told or now - told[owner] >= PROGRESS_EVERY:
                            told[owner] = now
                            progress(f"{reply.message}; waited {now - started:.0f} s")
                    elif reply.status == "cancelled":  # our own cancel reached the owner first
                        raise errors.QueryCancelled(reply.message)
                    else:
                        raise errors.ApprovalRefused(
                            reply.message or f"party '{owner}' did not approve query {query_id}")
        finally:
            with self._lock:
                self._waits.pop(key, None)
