"""The owner's webhook (fedsql/webhook.py, issue #16 item 3): a real HTTP endpoint on loopback
receives the notifications of a real node; bodies carry identifiers, never SQL text or values."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from fedsql.errors import ConfigError
from fedsql.webhook import Webhook, check_url, env_name, webhook_url

MARKER = 31337424242  # a literal in the held query's SQL: it must not reach the webhook


class Endpoint:
    """A loopback HTTP server that records JSON bodies; answers `fail_first` requests with 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.fail_left = fail_first
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                data = self.rfile.read(int(self.headers["Content-Length"]))
                outer.raw.append(data)
                if outer.fail_left > 0:
                    outer.fail_left -= 1
                    self.send_response(500)
                else:
                    outer.bodies.append(json.loads(data))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, event: str, timeout: float = 30) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for b in self.bodies:
                if b["event"] == event:
                    return b
            time.sleep(0.1)
        raise AssertionError(f"no {event} notification; got {[b['event'] for b in self.bodies]}")

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize("url, says", [
    ("http://hooks.example.org/x", "clear text"),
    ("ftp://127.0.0.1/x", "https://"),
    ("https://", "https://"),
    ("not a url", "https://"),
])
def test_bad_urls_are_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        check_url(url, "FEDSQL_WEBHOOK_P1")


def test_the_url_comes_from_the_environment_or_the_private_secrets_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(env_name("bank"), raising=False)
    assert webhook_url(tmp_path, "bank") is None
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[webhook]\nurl = "https://chat.example.org/hooks/t0ken"\n')
    secrets.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):  # a token in the URL: only the owner may read it
        webhook_url(tmp_path, "bank")
    secrets.chmod(0o600)
    assert webhook_url(tmp_path, "bank") == "https://chat.example.org/hooks/t0ken"
    secrets.write_text('[webhook]\nurl = "https://a.example"\nextra = 1\n')
    with pytest.raises(ConfigError, match="exactly url"):
        webhook_url(tmp_path, "bank")
    monkeypatch.setenv(env_name("bank"), "https://env.example/h")
    assert webhook_url(tmp_path, "bank") == "https://env.example/h"


def test_only_owner_events_are_sent_and_they_carry_no_text() -> None:
    ep = Endpoint(fail_first=1)  # the first attempt fails: delivered on the retry
    hook = Webhook(ep.url, "p1", "fed", "http://127.0.0.1:8088")
    try:
        hook.notify("done", {"query_id": "q0"})
        hook.notify("approval", {"query_id": "q1", "decision": "approved"})
        hook.notify("refused", {"seq": 5, "time": 1.0, "query_id": "q2", "issuer": "p2", "plan_hash": "ab" * 32,
                                "sql": f"SELECT {MARKER}", "error": {"kind": "PolicyViolation",
                                                                     "message": f"value {MARKER}"}})
        hook.notify("approval", {"query_id": "q3", "decision": "rejected", "reason": f"no: {MARKER}",
                                 "decided_by": "owner"})
        body = ep.wait_for("approval_rejected")
        refused = ep.wait_for("query_refused")
    finally:
        hook.close()
        ep.close()
    assert [b["event"] for b in ep.bodies] == ["query_refused", "approval_rejected"]
    assert refused == {"event": "query_refused", "party": "p1", "federation": "fed", "time": 1.0, "query_id": "q2",
                       "issuer": "p2", "plan_hash": "ab" * 32, "reason": "PolicyViolation",
                       "console": "http://127.0.0.1:8088"}
    assert body["decided_by"] == "owner" and "reason" not in body
    assert not any(str(MARKER).encode() in raw for raw in ep.raw)


def test_a_dead_endpoint_never_blocks_the_caller() -> None:
    hook = Webhook("http://127.0.0.1:9/unreachable", "p1", "fed")
    start = time.monotonic()
    for i in range(50):
        hook.notify("refused", {"query_id": f"q{i}", "reason": "authentication"})
    assert time.monotonic() - start < 1.0  # notify only queues


@pytest.fixture()
def held_federation(tmp_path: Path, monkeypatch) -> Iterator[dict[str, Any]]:
    from fedsql.launcher import start_federation
    from tests.conftest import write_test_federation

    config, _ = write_test_federation(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[parties.p1.tables.t]\n", '[parties.p1.tables.t]\napproval = "manual"\n', 1))
    ep = Endpoint()
    monkeypatch.setenv(env_name("p1"), ep.url)
    try:
        with start_federation(config, log_dir=tmp_path / "logs", timeout=90):
            yield {"config": config, "endpoint": ep}
    finally:
        ep.close()


@pytest.mark.e2e
def test_a_held_query_and_its_rejection_reach_the_owners_webhook(held_federation: dict[str, Any]) -> None:
    import fedsql

    config, ep = held_federation["config"], held_federation["endpoint"]
    errors: list[Exception] = []

    def issue() -> None:
        with fedsql.connect(str(config), party="p2") as conn:
            try:
                conn.cursor().execute(f"SELECT COUNT(*) FROM p1.t WHERE x <> {MARKER}")
            except fedsql.Error as exc:
                errors.append(exc)

    t = threading.Thread(target=issue, daemon=True)
    t.start()
    pending = ep.wait_for("approval_pending")
    assert pending["issuer"] == "p2" and pending["tables"] == ["t"] and re.fullmatch(r"[0-9a-f]{64}",
                                                                                      pending["plan_hash"])
    subprocess.run([sys.executable, "-m", "fedsql.cli", "reject", str(config), "--party", "p1",
                    pending["query_id"], "--reason", f"not {MARKER}"], check=True, capture_output=True,
                   env=dict(os.environ))
    rejected = ep.wait_for("approval_rejected")
    assert rejected["query_id"] == pending["query_id"] and rejected["decision"] == "rejected"
    t.join(60)
    assert errors and "p1" in str(errors[0])
    assert not any(str(MARKER).encode() in raw for raw in ep.raw)  # neither the SQL nor the owner's reason
    # a query p1 refuses (here: p2 runs a query over p1.t without asking for the approval first)
    from fedsql import tls
    from fedsql.config import load_config
    from fedsql.proto import node_pb2 as pb
    from fedsql.proto import node_pb2_grpc as rpc

    plan_hash = pending["plan_hash"]
    with tls.Identity(load_config(config), "p2").secure_channel("p1") as channel:
        reply = rpc.NodeStub(channel).Run(pb.RunRequest(
            query_id="never-asked", issuer="p2", sql=f"SELECT COUNT(*) FROM p1.t WHERE x <> {MARKER}",
            plan_hash=plan_hash, deadline_unix=time.time() + 20), timeout=30)
    assert not reply.ok and reply.error.kind == "ApprovalRefused", reply
    refused = ep.wait_for("query_refused")
    assert (refused["query_id"], refused["issuer"], refused["reason"]) == ("never-asked", "p2", "ApprovalRefused")
    assert not any(str(MARKER).encode() in raw for raw in ep.raw)
