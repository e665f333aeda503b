"""A node stopped with SIGTERM during a query exits within seconds (issue #15: it lingered
2.5-4 minutes, joining threads that waited for the query's deadline), and the issuer's user
gets an error naming the stopped party, not a hang."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from fedsql import errors
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e


def test_sigterm_during_a_query_exits_promptly(tmp_path: Path) -> None:
    config, _ = standard_federation(tmp_path)
    with running(config, attacks={"p3": "stall"}, params={"p3": {"seconds": 300}}) as fed:
        outcome: dict = {}

        def query() -> None:
            try:
                with fed.connect("p1") as conn:
                    conn.cursor().execute("SELECT k, SUM(x) FROM t GROUP BY k")
                outcome["ok"] = True
            except errors.Error as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=query, daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        while not fed.attack_log("p3") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fed.attack_log("p3"), "the query never reached p3"
        time.sleep(1.0)  # p2 now waits on p3's share traffic
        proc = fed.procs.nodes["p2"].process
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert time.monotonic() - started < 15, "the node took too long to stop"
        worker.join(timeout=30)
        assert not worker.is_alive(), "the issuer's user was left hanging"
        assert "error" in outcome and "p2" in str(outcome["error"])
