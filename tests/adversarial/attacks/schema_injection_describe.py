"""A node whose Describe replies carry a crafted column type (issue #11, Critical 1).

params: {"payload_file": path}. On every Describe the node reads that file: if it holds
text, the last column of each described table gets that text as its type (the injection);
if it is empty or missing, the node answers honestly. Each reply is recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    from fedsql.catalog import encode_described
    from fedsql.node import Node
    from fedsql.proto import node_pb2 as pb

    payload_file = Path(params["payload_file"])

    def describe(self, request, context):
        payload = payload_file.read_text(encoding="utf-8") if payload_file.exists() else ""
        out = {}
        for table in request.tables:
            cols = [list(c) for c in self.executor.schema(table)]
            if payload:
                cols[-1][1] = payload
            out[table] = [tuple(c) for c in cols]
        record({"rpc": "Describe", "tables": list(request.tables), "poisoned": bool(payload)})
        return pb.DescribeReply(tables=encode_described(out))

    Node.Describe = describe
