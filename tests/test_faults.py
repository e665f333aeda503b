"""Faults over real processes (issue #6, item 4): SIGKILL each party in turn during a
long query. The query must fail within its deadline with an error naming the dead
party and no partial result; the survivors keep serving; a restarted node rejoins
and the next query is correct.

Its own federation (not the session one), so nodes can be killed and restarted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import fedsql
from fedsql import errors

pytestmark = pytest.mark.e2e

ROWS = int(os.environ.get("FEDSQL_FAULT_ROWS", "100000"))
DEADLINE = 40.0
PARTIES = ("p1", "p2", "p3")

CONFIG = """\
[federation]
name = "faultfed"
compute = ["p1", "p2", "p3"]
deadline_seconds = {deadline}
{parties}
[federated.t]
union = ["p1.t", "p2.t", "p3.t"]
"""

PARTY = """
[parties.{p}]
address = "127.0.0.1:{port}"
[parties.{p}.tables.t]
source = "{p}_t.parquet"
columns = {{ k = "group_key", v = "aggregate", id = "private" }}
"""

# many groups, so the secure part (shuffle of all partials, opening keys, reducing) takes seconds
LONG = "SELECT k, COUNT(*) AS n, SUM(v) AS sv FROM t GROUP BY k ORDER BY k"


def _write(directory: Path) -> tuple[Path, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fedsql.launcher import free_ports

    rng = np.random.default_rng(11)
    tables = {}
    for i, p in enumerate(PARTIES):
        k = rng.integers(0, ROWS, ROWS)
        v = rng.integers(-1000, 1000, ROWS)
        tables[p] = pa.table({"id": np.arange(i * ROWS, (i + 1) * ROWS), "k": k, "v": v})
        pq.write_table(tables[p], directory / f"{p}_t.parquet")
    ports = free_ports(3)
    parties = "".join(PARTY.format(p=p, port=port) for p, port in zip(PARTIES, ports))
    config = directory / "federation.toml"
    config.write_text(CONFIG.format(deadline=DEADLINE, parties=parties), encoding="utf-8")
    return config, tables


def _reference(tables: dict[str, Any], sql: str) -> list[tuple]:
    import duckdb
    import pyarrow as pa

    db = duckdb.connect()
    db.register("t", pa.concat_tables(tables.values()))
    for p, table in tables.items():
        db.execute(f"CREATE SCHEMA {p}")
        db.register(f"_{p}", table)
        db.execute(f"CREATE TABLE {p}.t AS SELECT * FROM _{p}")
    return db.execute(sql).fetchall()


@pytest.fixture(scope="module")
def faultfed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any, Any, list]]:
    from fedsql.launcher import start_federation

    directory = tmp_path_factory.mktemp("faultfed")
    config, tables = _write(directory)
    with start_federation(config, log_dir=directory / "logs", timeout=120) as procs:
        yield config, tables, procs, _reference(tables, LONG)


def _rows(config: Path, party: str, sql: str, timeout: float | None = None) -> list[tuple]:
    with fedsql.connect(str(config), party=party, timeout=timeout) as conn:
        cur = conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]


def _restart(procs: Any, party: str) -> None:
    """`fedsql node CONFIG --party P` as a fresh process, tracked by the launcher for cleanup."""
    from fedsql.client import NodeClient

    node = procs.nodes[party]
    log = open(node.log_path, "ab")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "fedsql.cli", "node", str(procs.config_path), "--party", party],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()
    node.process = proc
    client = NodeClient(node.address, party=party, config_path=str(procs.config_path))
    deadline = time.monotonic() + 90
    try:
        while True:
            assert proc.poll() is None, node.describe_exit()
            try:
                client.health(timeout=1.0)
                return
            except errors.PartyUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        client.close()


def test_long_query_is_correct(faultfed) -> None:
    config, _, _, expected = faultfed
    start = time.monotonic()
    assert _rows(config, "p1", LONG) == expected
    print(f"long query: {time.monotonic() - start:.2f} s over {3 * ROWS} rows")


@pytest.mark.parametrize("victim,issuer", [("p2", "p1"), ("p3", "p1"), ("p1", "p2")])
def test_sigkill_mid_query(faultfed, victim: str, issuer: str) -> None:
    config, tables, procs, expected = faultfed
    for p in PARTIES:
        assert procs.nodes[p].process.poll() is None, procs.nodes[p].describe_exit()
    # time one run, then kill the victim at a random point of the next one
    start = time.monotonic()
    assert _rows(config, issuer, LONG) == expected
    duration = time.monotonic() - start
    rng = random.Random(f"{victim}{issuer}")
    try:
        for fraction in (rng.uniform(0.15, 0.75), 0.1):  # if the kill lands after the end, once more earlier
            outcome: dict[str, Any] = {}

            def run() -> None:
                t0 = time.monotonic()
                try:
                    outcome["rows"] = _rows(config, issuer, LONG)
                except BaseException as exc:  # noqa: BLE001 - examined below
                    outcome["error"] = exc
                outcome["elapsed"] = time.monotonic() - t0

            thread = threading.Thread(target=run)
            thread.start()
            time.sleep(fraction * duration)
            procs.nodes[victim].process.send_signal(signal.SIGKILL)
            procs.nodes[victim].process.wait(10)
            thread.join(DEADLINE + 30)
            assert not thread.is_alive(), "the query hung past its deadline"
            if "error" in outcome:
                break
            # finished before the kill: then its result must be right, and we try again
            assert outcome["rows"] == expected
            _restart(procs, victim)
        else:
            pytest.skip("both runs finished before the kill")
        exc = outcome["error"]
        assert isinstance(exc, (errors.PartyUnavailable, errors.QueryTimeout)), repr(exc)
        assert f"'{victim}'" in str(exc), str(exc)
        assert outcome["elapsed"] < DEADLINE + 5

        # survivors keep serving: a query that needs only them
        a, b = [p for p in PARTIES if p != victim]
        assert _rows(config, a, f"SELECT COUNT(*), SUM(v) FROM {b}.t", timeout=20) == \
            _reference(tables, f"SELECT COUNT(*), SUM(v) FROM {b}.t")
        assert _rows(config, b, f"SELECT k, COUNT(*) FROM {b}.t GROUP BY k ORDER BY k LIMIT 3") == \
            _reference(tables, f"SELECT k, COUNT(*) FROM {b}.t GROUP BY k ORDER BY k LIMIT 3")
        # a federated query now fails fast, naming the dead party
        with pytest.raises((errors.PartyUnavailable, errors.QueryTimeout), match=f"'{victim}'"):
            _rows(config, a, "SELECT COUNT(*) FROM t", timeout=20)
    finally:
        if procs.nodes[victim].process.poll() is not None:
            _restart(procs, victim)  # whatever happened, the next test gets a whole federation
    # the restarted node rejoins without restarting the others; the next query is correct
    assert _rows(config, issuer, LONG) == expected
    for p in PARTIES:
        assert procs.nodes[p].process.poll() is None, procs.nodes[p].describe_exit()


def test_client_deadline_stops_the_query_everywhere(faultfed) -> None:
    config, _, procs, expected = faultfed
    start = time.monotonic()
    with pytest.raises((errors.QueryTimeout, errors.QueryCancelled)):
        _rows(config, "p2", LONG, timeout=0.3)
    assert time.monotonic() - start < 0.3 + 6
    assert _rows(config, "p2", LONG) == expected  # nothing left behind that breaks the next query
    assert all(n.process.poll() is None for n in procs.nodes.values())
