"""Issue #11, Low: query ids are chosen by the issuer's client, so they must be bound to the
issuer. Another party must not be able to pick an issuer's query id to cancel its query in
advance, nor collide with it (a finished query of the same id made the victim's messages
be dropped at the shared participant: the victim hung until its deadline).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from fedsql.client import NodeClient
from fedsql.proto import node_pb2 as pb
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e

SQL = "SELECT k, SUM(x) FROM t GROUP BY k"


def _client(fed, party: str) -> NodeClient:
    return NodeClient(fed.fed.parties[party].address, party=party, config_path=str(fed.config), default_timeout=20)


def test_query_ids_are_bound_to_their_issuer(tmp_path: Path) -> None:
    config, _ = standard_federation(tmp_path)
    with running(config) as fed:
        # p3's node cancels p1's next query id at p2 before p1 even runs it: refused
        stub = fed.stub("p3", "p2")
        for qid in ("victim-q", "p1/victim-q"):
            with pytest.raises(grpc.RpcError) as err:
                stub.Abort(pb.CancelRequest(query_id=qid, reason="sabotage"), timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with _client(fed, "p1") as c:
            table, _ = c.execute(SQL, query_id="victim-q")
        assert table.num_rows > 0

        # p3's user runs a query under the id p1's user is going to use: no collision
        with _client(fed, "p3") as c:
            c.execute(SQL, query_id="shared-id")
        with _client(fed, "p1") as c:
            table, _ = c.execute(SQL, query_id="shared-id")
        assert table.num_rows > 0
