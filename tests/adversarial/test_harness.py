"""The harness itself: a modified node is a real node that serves, and its attack runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e


def test_a_modified_node_serves_and_records(tmp_path: Path) -> None:
    config, data = standard_federation(tmp_path)
    with running(config, attacks={"p2": "observe"}) as fed:
        with fed.connect("p1") as conn:
            cur = conn.cursor()
            cur.execute("SELECT COUNT(*) FROM t")
            assert cur.fetchall() == [(data["t"].num_rows,)]
        seen = [r for r in fed.attack_log("p2") if r["rpc"] == "Run"]
        assert seen and seen[0]["issuer"] == "p1" and "COUNT(*)" in seen[0]["sql"]
        assert "p1" in fed.audit_text("p2")
