"""Issue #11, Low: planning and owner DuckDBs, and SQL that sqlglot and DuckDB read differently.

The test process acts as p2's node and asks p1 to run statements; a user of p1 asks p2 to
run a fragment that reads p2's node state. Before the fix p1 sent DuckDB's raw error text
back to the remote issuer, and p2's owner DuckDB answered current_setting(); now both are
refused by the planner with fedsql's own message, at every party.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

import fedsql
from fedsql.proto import node_pb2 as pb
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e

DUCKDB_WORDS = ("Parser Error", "Binder Error", "Invalid Input Error", "Catalog Error", "LINE 1")


def test_smuggling_and_node_state_are_refused_with_fedsqls_own_words(tmp_path: Path) -> None:
    config, _ = standard_federation(tmp_path)
    with running(config) as fed:
        stub = fed.stub("p2", "p1")  # the test process acting as p2's node
        for sql in ("SELECT COUNT(*) FROM p1.t WHERE k = $1a$ , (SELECT 1) , $1a$",
                    "SELECT COUNT(*) FROM p1.t WHERE k = $q$x$q$ OR k = $1a$x$1a$"):
            reply = stub.Run(pb.RunRequest(query_id=uuid.uuid4().hex, issuer="p2", sql=sql, plan_hash="x",
                                           deadline_unix=time.time() + 30), timeout=30)
            assert not reply.ok
            assert not any(w in reply.error.message for w in DUCKDB_WORDS), reply.error.message
            assert reply.error.kind == "SqlSyntaxError" and "dollar-quoted" in reply.error.message
        with fed.connect("p1") as conn:
            cur = conn.cursor()
            with pytest.raises(fedsql.NotSupportedError, match="node's own state"):
                cur.execute("SELECT COUNT(*) FROM p2.t WHERE current_setting('temp_directory') LIKE '/%'")
            with pytest.raises(fedsql.NotSupportedError, match="table functions"):
                cur.execute("SELECT COUNT(*) FROM p2.t WHERE k IN (SELECT * FROM query('SELECT k FROM t'))")
            cur.execute("SELECT COUNT(*) FROM p2.t WHERE k = 'k1' /* a comment */")  # ordinary SQL still runs
            assert cur.fetchall()[0][0] >= 0
