"""Issue #15, item 10 and the set-operation audit gap: a UNION/INTERSECT/EXCEPT branch is an
issuer query like any other (its `query` and `done` audit records, naming the user), and the
progress line says which branch runs instead of "planning" for the whole statement. Scalar
subqueries, also queries of their own, get the same records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsql.client import NodeClient
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e

SCALAR = "SELECT COUNT(*) AS n FROM t WHERE x > (SELECT AVG(x) FROM t)"
SQL = "SELECT k, SUM(x) AS v FROM t GROUP BY k UNION ALL SELECT k, COUNT(*) AS v FROM t GROUP BY k"


def test_set_operation_branches_are_audited_with_user_and_progress(tmp_path: Path) -> None:
    config, _ = standard_federation(tmp_path)
    steps: list[str] = []
    with running(config) as fed:
        with NodeClient(fed.fed.parties["p1"].address, party="p1", config_path=str(fed.config),
                        default_timeout=30) as client:
            table, _ = client.execute(SQL, query_id="setop", user="alice",
                                      on_progress=lambda _t, step: steps.append(step))
            client.execute(SCALAR, query_id="scal", user="alice")
        records = [json.loads(line) for line in fed.audit_text("p1").splitlines() if line.strip()]
    assert table.num_rows > 0
    queries = [r for r in records if r.get("event") == "query" and str(r.get("query_id", "")).startswith("setop.")]
    assert len(queries) == 2, records
    assert all(r["user"] == "alice" and r["role"] == "issuer" and r.get("plan_hash") for r in queries)
    done = {r["query_id"] for r in records if r.get("event") == "done"}
    assert {r["query_id"] for r in queries} <= done
    assert any(s.startswith("branch 1/2: step") for s in steps), steps
    assert any(s.startswith("branch 2/2: step") for s in steps), steps
    scalar = [r for r in records if r.get("event") == "query" and str(r.get("query_id", "")).startswith("scal.")]
    assert len(scalar) == 1 and scalar[0]["user"] == "alice" and scalar[0]["query_id"] in done
