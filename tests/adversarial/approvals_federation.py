"""A federation whose telco holds queries for its approval (fedsql/approvals.py), for the approval
tests: bank issues, telco owns `subscribers` (approval = "manual") and the DP table `usage`
(approval = "template"), third computes. Helpers start a query in the background, wait until
telco holds it, and decide with the real `fedsql approve|reject` command.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tests.adversarial.harness import REPO, write_config

APPROVAL_TIMEOUT = 12

CONFIG = """
[federation]
name = "approvals"
compute = ["bank", "telco", "third"]
deadline_seconds = 60

[parties.bank]
address = "127.0.0.1:{port1}"
[parties.bank.tables.customers]
source = "customers.parquet"
columns = {{ customer_id = "join_key", income = "aggregate" }}

[parties.telco]
address = "127.0.0.1:{port2}"
approval_timeout_seconds = {timeout}
[parties.telco.tables.subscribers]
source = "subscribers.parquet"
approval = "manual"
columns = {{ customer_id = "join_key", tenure_months = "aggregate" }}
[parties.telco.tables.usage]
source = "usage.parquet"
approval = "template"
columns = {{ customer_id = "aggregate", region = "group_key", minutes = "aggregate" }}
[parties.telco.tables.usage.dp]
unit = "customer_id"
max_rows = 1
bounds = {{ minutes = [0, 3000] }}
epsilon = 100.0
max_epsilon_per_query = 2.0
public_groups = {{ region = ["north", "south"] }}

[parties.third]
address = "127.0.0.1:{port3}"
[parties.third.tables.x]
source = "x.parquet"
columns = {{ k = "aggregate" }}
"""


def tables() -> dict[str, Any]:
    """The data: NULL keys, duplicates, negatives and zeros on both sides of the join."""
    import pyarrow as pa

    ids = list(range(1, 31))
    return {
        "customers.parquet": pa.table({
            "customer_id": pa.array(ids + [None, 5], pa.int64()),
            "income": pa.array([1000 * i - 7000 for i in ids] + [10, 0], pa.int64())}),
        "subscribers.parquet": pa.table({
            "customer_id": pa.array([i for i in ids if i % 3] + [None, 5, 40], pa.int64()),
            "tenure_months": pa.array([(i % 7) - 2 for i in ids if i % 3] + [9, 0, 11], pa.int64())}),
        "usage.parquet": pa.table({
            "customer_id": pa.array(ids, pa.int64()),
            "region": pa.array(["north" if i % 2 else "south" for i in ids]),
            "minutes": pa.array([100 + 10 * i for i in ids], pa.int32())}),
        "x.parquet": pa.table({"k": pa.array([1, 2, 3], pa.int64())}),
    }


def approvals_federation(directory: Path, timeout: float = APPROVAL_TIMEOUT) -> Path:
    """Write the federation (data + config); returns the config path. `timeout`: telco's
    approval_timeout_seconds."""
    return write_config(directory, CONFIG.replace("{timeout}", f"{timeout:g}"), tables())


def reference(config: Path, sql: str) -> Any:
    """`sql` in plain DuckDB over the pooled data (schemas bank, telco as in the federation)."""
    import duckdb

    con = duckdb.connect()
    for schema, table, file in (("bank", "customers", "customers.parquet"),
                                ("telco", "subscribers", "subscribers.parquet"), ("telco", "usage", "usage.parquet")):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.execute(f"CREATE TABLE {schema}.{table} AS SELECT * FROM read_parquet('{config.parent / file}')")
    result = con.sql(sql).arrow()
    return result.read_all() if hasattr(result, "read_all") else result


def client(fed: Any, config: Path, party: str = "bank") -> Any:
    from fedsql.client import NodeClient

    return NodeClient(fed.parties[party].address, party, str(config))


class Background:
    """A query run by a thread of the test: its result or error, and every progress line."""

    def __init__(self, fed: Any, config: Path, sql: str, settings: dict[str, str] | None = None,
                 timeout: float | None = None, user: str | None = None, query_id: str | None = None):
        self.query_id = query_id or uuid.uuid4().hex[:12]
        self.progress: list[str] = []
        self.result: Any = None
        self.error: BaseException | None = None
        self.client = client(fed, config)

        def run() -> None:
            try:
                self.result = self.client.execute(sql, settings or {}, timeout=timeout, query_id=self.query_id,
                                                  user=user, on_progress=lambda _t, step: self.progress.append(step))
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 90.0) -> "Background":
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"query {self.query_id} still running after {timeout} s"
        return self


def wait_pending(config: Path, query_id: str, owner: str = "telco", timeout: float = 45.0) -> Any:
    """The owner's pending request for `query_id`, once the owner holds it."""
    from fedsql.approvals import ApprovalStore, store_path

    end = time.monotonic() + timeout
    path = store_path(config, owner)
    while time.monotonic() < end:
        if path.exists():
            with ApprovalStore(path) as store:
                found = store.find(query_id)
            if found:
                return found[0]
        time.sleep(0.2)
    raise AssertionError(f"{owner} never held query {query_id}")


def fedsql_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the real `fedsql` command."""
    return subprocess.run([sys.executable, "-m", "fedsql.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
