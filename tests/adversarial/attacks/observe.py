"""A node that behaves honestly but records every Run request it receives (a curious party).

Used to check what another party's node learns: the SQL text, settings and plan hash
a participant is sent (e.g. that no secret value is inlined into it).
"""

from __future__ import annotations

from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    from fedsql.node import Node

    honest_run = Node.Run

    def run(self, request, context):
        record({"rpc": "Run", "issuer": request.issuer, "query_id": request.query_id, "sql": request.sql,
                "settings": dict(request.settings), "plan_hash": request.plan_hash})
        reply = honest_run(self, request, context)
        record({"rpc": "RunReply", "query_id": request.query_id, "ok": reply.ok,
                "error": reply.error.message if not reply.ok else ""})
        return reply

    Node.Run = run
