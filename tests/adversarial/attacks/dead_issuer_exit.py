"""An issuer whose node dies mid-query: it sends its Run requests, waits params["delay"]
seconds (the participants have started), records the time and exits at once (os._exit:
no Abort, no goodbye; the kernel closes its sockets)."""

from __future__ import annotations

import os
import time
from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    from fedsql.node import Node
    from fedsql.proto import node_pb2 as pb

    def coordinate(self, plan, sql, settings, query_id, timeout, progress):
        deadline_unix = time.time() + timeout
        calls = []
        for party in (p for p in plan.participants if p != self.me):
            req = pb.RunRequest(query_id=query_id, issuer=self.me, sql=sql, settings=settings,
                                plan_hash=plan.hash, deadline_unix=deadline_unix)
            calls.append(self.stubs[party].Run.future(req, timeout=timeout))
        time.sleep(float(params.get("delay", 1.0)))
        record({"event": "exit", "time": time.time(), "query_id": query_id})
        os._exit(1)

    Node._coordinate = coordinate
