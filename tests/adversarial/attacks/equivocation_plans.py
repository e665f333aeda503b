"""A malicious issuer that equivocates: under one query id it sends each participant a
different query (params["sql"][party]), each with the hash of that party's own compile, so
every participant's "my compile matches the issuer's hash" check passes. Its own part runs
the plan its user asked for. It records every peer message it receives (sender, step tag):
before the plan agreement existed, the honest parties went on to deal and open shares.
"""

from __future__ import annotations

import time
from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    from executors.peer_channel import Mailbox
    from fedsql import errors
    from fedsql.node import Node, _cast_output
    from fedsql.proto import node_pb2 as pb

    honest_put = Mailbox.put

    def put(self, query_id, sender, tag, payload):
        record({"event": "peer_message", "query": query_id, "sender": sender, "tag": tag.rsplit(":", 1)[-1]})
        return honest_put(self, query_id, sender, tag, payload)

    def coordinate(self, plan, sql, settings, query_id, timeout, progress):
        deadline_unix = time.time() + timeout
        futures = {}
        for party in (p for p in plan.participants if p != self.me):
            lie = params["sql"].get(party, sql)
            their = self.compile(lie, self.me, settings).plan
            record({"event": "sent", "to": party, "sql": lie, "plan_hash": their.hash})
            req = pb.RunRequest(query_id=query_id, issuer=self.me, sql=lie, settings=settings,
                                plan_hash=their.hash, deadline_unix=deadline_unix)
            futures[party] = self.pool.submit(self._call_run, party, req, timeout)
        try:  # the run's internal name (issuer/query id since issue #11; the bare id before)
            from executors.peer_channel import query_key
            key = query_key(self.me, query_id)
        except ImportError:
            key = query_id
        own = self.pool.submit(self._run_part, plan, key, deadline_unix, progress)
        for party, fut in futures.items():
            try:
                fut.result()
                record({"event": "reply", "party": party, "ok": True})
            except errors.Error as exc:
                record({"event": "reply", "party": party, "ok": False, "kind": exc.kind, "message": str(exc)})
        try:
            table, stats = own.result()
        except Exception as exc:  # noqa: BLE001
            record({"event": "own_part", "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            raise
        return _cast_output(table, plan.output), stats

    Mailbox.put = put
    Node._coordinate = coordinate
