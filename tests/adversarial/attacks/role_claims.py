"""A modified issuer that lies about its users' roles (docs/security.md, "Users and roles across parties").

params:
- "claim": {"roles": [...]} — whatever its accounts file says, every user of this node has these
  roles (a node whose operator edits what it reports). Owners cannot see the issuer's accounts.
- "send": {party: {"user": ..., "roles": [...]}} — the RunRequest to `party` names this user and
  these roles instead of the plan's;
- "hash": "own" — send the issuer's own plan hash with them (the roles in the request and the
  grants the plan was checked under then differ); otherwise the hash of the receiver's compile
  under the sent roles (each participant's own check passes: only the plan agreement can see it).

Records what it sent and every peer message it received (sender, step tag).
"""

from __future__ import annotations

import time
from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    from executors.peer_channel import Mailbox, query_key
    from fedsql import errors
    from fedsql.node import Node, _cast_output
    from fedsql.permissions import Principal
    from fedsql.proto import node_pb2 as pb
    from fedsql.users import Accounts

    claim = params.get("claim")
    if claim is not None:
        def principal(self, party, user):
            return Principal(party, user or "", tuple(sorted(claim["roles"]))) if user else Principal(party)
        Accounts.principal = principal

    send = params.get("send")
    if send is None:
        return
    honest_put = Mailbox.put

    def put(self, query_id, sender, tag, payload):
        record({"event": "peer_message", "query": query_id, "sender": sender, "tag": tag.rsplit(":", 1)[-1]})
        return honest_put(self, query_id, sender, tag, payload)

    def coordinate(self, plan, sql, settings, query_id, timeout, progress):
        deadline_unix = time.time() + timeout
        futures = {}
        for party in (p for p in plan.participants if p != self.me):
            lie = send.get(party, {"user": plan.user, "roles": list(plan.roles)})
            roles = tuple(lie["roles"])
            if params.get("hash") == "own":
                plan_hash = plan.hash
            else:
                plan_hash = self.compile(sql, Principal(self.me, lie["user"], tuple(sorted(roles))), settings).plan.hash
            record({"event": "sent", "to": party, "user": lie["user"], "roles": list(roles), "plan_hash": plan_hash})
            req = pb.RunRequest(query_id=query_id, issuer=self.me, sql=sql, settings=settings, plan_hash=plan_hash,
                                deadline_unix=deadline_unix, user=lie["user"], roles=roles)
            futures[party] = self.pool.submit(self._call_run, party, req, timeout)
        key = query_key(self.me, query_id)
        own = self.pool.submit(self._run_part, plan, key, deadline_unix, progress)
        failure = None
        for party, fut in futures.items():
            try:
                fut.result()
                record({"event": "reply", "party": party, "ok": True})
            except errors.Error as exc:
                record({"event": "reply", "party": party, "ok": False, "kind": exc.kind, "message": str(exc)})
                failure = failure or exc
        if failure is not None:  # as the honest node does: stop its own part, report the refusal
            self.mailbox.cancel(key, "a participant refused")
            raise failure
        table, stats = own.result()
        return _cast_output(table, plan.output), stats

    Mailbox.put = put
    Node._coordinate = coordinate
