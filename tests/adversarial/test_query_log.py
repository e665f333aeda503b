"""Issue #15, item 11: every node logs one structured line per query (id, issuer, user, role,
plan hash, duration, outcome, rows), and never a value or a literal of the query's SQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedsql.client import NodeClient
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e

SECRET = "987654321"


def _query_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        start = line.find('{"')
        if start >= 0 and '"event": "query"' in line:
            out.append(json.loads(line[start:]))
    return out


def test_every_participant_logs_the_query_without_its_literals(tmp_path: Path) -> None:
    config, _ = standard_federation(tmp_path)
    with running(config) as fed:
        with NodeClient(fed.fed.parties["p1"].address, party="p1", config_path=str(fed.config),
                        default_timeout=30) as client:
            _, meta = client.execute(f"SELECT k, SUM(x) AS s FROM t WHERE x <> {SECRET} GROUP BY k",
                                     query_id="logged-q", user="alice")
            with pytest.raises(Exception):  # a refusal is logged too (x is not a group key)
                client.execute(f"SELECT x FROM t WHERE x = {SECRET}", query_id="refused-q", user="alice")
        logs = {p: fed.node_log(p) for p in ("p1", "p2", "p3")}
    for party, text in logs.items():
        assert SECRET not in text, f"{party}'s node log holds a literal of the query"
        lines = [ln for ln in _query_lines(text) if ln["query_id"] == "logged-q"]
        assert len(lines) == 1, (party, text[-2000:])
        line = lines[0]
        assert line["outcome"] == "done" and line["issuer"] == "p1" and line["plan_hash"] == meta["plan_hash"]
        assert line["role"] == ("issuer" if party == "p1" else "participant")
        assert isinstance(line["duration_seconds"], float)
    issuer = [ln for ln in _query_lines(logs["p1"]) if ln["query_id"] == "logged-q"][0]
    assert issuer["user"] == "alice" and issuer["rows"] > 0
    refused = [ln for ln in _query_lines(logs["p1"]) if ln["query_id"] == "refused-q"]
    assert refused and refused[0]["outcome"] == "refused" and refused[0]["user"] == "alice"
