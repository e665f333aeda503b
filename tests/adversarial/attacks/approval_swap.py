"""A malicious issuer that swaps an approved query for another one under the same query id.

Its own node asks the owner to approve the query its user sent (honestly: the approval round is
unmodified), and once the owner approved it — by hand or by a template — it sends every
participant `params["swap"][sql]` instead, with the hash of that query's own plan, under the
approved query id, and runs its own part of the swapped plan. Without the binding of approvals to
the plan hash, the owner would run a query it never approved.
"""

from __future__ import annotations

import time
from concurrent.futures import as_completed
from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    from executors.peer_channel import query_key
    from fedsql import errors
    from fedsql.node import Node, _cast_output
    from fedsql.proto import node_pb2 as pb

    honest = Node._coordinate

    def coordinate(self, plan, sql, settings, query_id, timeout, progress):
        swap = params["swap"].get(sql)
        if swap is None:
            return honest(self, plan, sql, settings, query_id, timeout, progress)
        other = self.compile(swap, self.me, settings).plan
        record({"event": "swapped", "query_id": query_id, "approved_hash": plan.hash, "sent_hash": other.hash})
        deadline_unix = time.time() + timeout
        futures = {}
        for party in (p for p in other.participants if p != self.me):
            req = pb.RunRequest(query_id=query_id, issuer=self.me, sql=swap, settings=settings,
                                plan_hash=other.hash, deadline_unix=deadline_unix)
            futures[party] = self.pool.submit(self._call_run, party, req, timeout)
        key = query_key(self.me, query_id)
        self._running[key] = frozenset(other.participants)  # so the others' aborts reach this run
        own = self.pool.submit(self._run_part, other, key, deadline_unix, progress)
        failures = []
        for fut in as_completed(futures.values()):
            party = next(p for p, f in futures.items() if f is fut)
            try:
                fut.result()
                record({"event": "reply", "query_id": query_id, "party": party, "ok": True})
            except errors.Error as exc:
                record({"event": "reply", "query_id": query_id, "party": party, "ok": False, "kind": exc.kind,
                        "message": str(exc)})
                failures.append(exc)
                self._abort_everywhere(key, f"party '{party}' failed", set(other.participants))
        try:
            table, stats = own.result()
        except Exception as exc:  # noqa: BLE001
            record({"event": "own_part", "ok": False, "error": f"{type(exc).__name__}: {exc}"})
            raise (failures[0] if failures else exc) from None
        finally:
            self._running.pop(key, None)
            self.mailbox.drop(key)
        if failures:
            raise failures[0]
        record({"event": "swap_ran", "rows": table.num_rows})
        return _cast_output(table, other.output), stats

    Node._coordinate = coordinate
