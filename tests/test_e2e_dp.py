"""Differential privacy end to end, over real `fedsql node` processes (docs/dp.md).

A DP federation of its own: three parties each hold `v` (privacy unit `uid`, at
most 2 rows per unit, bounds on x and d, public groups for region), federated as
the union `v`; p2 also holds a small-budget table `b`. Checks: noisy values fall
in the stated 95% interval at about the stated rate; every declared group and
nothing else is output; refusals say why; budgets are enforced by each owner's
ledger, which survives `kill -9` of the owner's node mid-query and a restart.
"""

from __future__ import annotations

import decimal
import io
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fedsql import errors

pytestmark = pytest.mark.e2e

DP_POLICY = """
[parties.P.tables.v.dp]
unit = "uid"
max_rows = 2
bounds = { x = [0, 100], d = [0, 50] }
epsilon = 1000.0
max_epsilon_per_query = 2.0
public_groups = { region = ["north", "south", "east", "west"] }
"""

PARTY = """
[parties.P]
address = "127.0.0.1:PORT"
[parties.P.tables.v]
source = "P_v.parquet"
columns = { uid = "private", region = "private", x = "aggregate", d = "aggregate", secret = "private" }
"""

CONFIG_HEAD = """\
[federation]
name = "dpfed"
compute = ["p1", "p2", "p3"]
deadline_seconds = 60
"""

CONFIG_TAIL = """
[parties.p2.tables.b]
source = "p2_v.parquet"
columns = { x = "aggregate" }
[parties.p2.tables.b.dp]
unit = "row"
bounds = { x = [0, 100] }
epsilon = 1.0
max_epsilon_per_query = 0.5

[federated.v]
union = ["p1.v", "p2.v", "p3.v"]
"""


def _config_text(ports: list[int]) -> str:
    parties = "".join((PARTY + DP_POLICY).replace("PORT", str(port)).replace("P", p).replace("P_v", f"{p}_v")
                      for p, port in zip(("p1", "p2", "p3"), ports))
    return CONFIG_HEAD + parties + CONFIG_TAIL


SIZES = {"p1": 60, "p2": 150, "p3": 100}
REGIONS = ["north", "south", "east", "other", None]


def _write(directory: Path) -> tuple[Path, dict[str, Any]]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fedsql.launcher import free_ports

    rng = np.random.default_rng(11)
    data = {}
    for p, n in SIZES.items():
        d_cents = rng.integers(-1000, 6000, n)
        table = pa.table({
            "uid": pa.array(rng.integers(0, n // 2, n), pa.int64()),  # units with up to ~5 rows
            "region": pa.array([REGIONS[i] for i in rng.integers(0, len(REGIONS), n)], pa.string()),
            "x": pa.array(rng.integers(-50, 150, n), pa.int64()),
            "d": pa.array([None if r < 0.1 else decimal.Decimal(int(c)).scaleb(-2)
                           for c, r in zip(d_cents, rng.random(n))], pa.decimal128(10, 2)),
            "secret": pa.array(rng.integers(0, 10**6, n), pa.int64()),
        })
        pq.write_table(table, directory / f"{p}_v.parquet")
        data[p] = table
    ports = free_ports(3)
    config = directory / "dpfed.toml"
    config.write_text(_config_text(ports), encoding="utf-8")
    return config, data


@pytest.fixture(scope="module")
def dpfed(tmp_path_factory: pytest.TempPathFactory):
    from fedsql.launcher import start_federation

    directory = tmp_path_factory.mktemp("dpfed")
    config, data = _write(directory)
    with start_federation(config, log_dir=directory / "logs", timeout=90) as procs:
        yield config, data, procs


def _client(config: Path, party: str = "p1"):
    from fedsql.client import NodeClient
    from fedsql.config import load_config

    fed = load_config(config)
    return NodeClient(fed.parties[party].address, party=party, config_path=str(config), default_timeout=60)


def _truth(data: dict[str, Any], sql_over_r: str, issuer: str = "p1") -> list[tuple]:
    """Exact value of the bounded, clamped query: `r` = issuer's rows as they are plus every
    other owner's rows bounded to 2 per uid (the planner's deterministic hash order), x and d clamped."""
    import duckdb

    db = duckdb.connect()
    parts = []
    for p, table in data.items():
        db.register(f"raw_{p}", table)
        if p == issuer:
            parts.append(f"SELECT region, x, d FROM raw_{p}")
        else:
            parts.append(
                "SELECT region, LEAST(GREATEST(x, 0), 100) AS x, LEAST(GREATEST(d, 0), 50) AS d FROM "
                f"(SELECT *, ROW_NUMBER() OVER (PARTITION BY uid ORDER BY hash(uid, region, x, d, secret)) AS rn "
                f"FROM raw_{p}) WHERE rn <= 2"
            )
    db.execute("CREATE TABLE r AS " + " UNION ALL ".join(parts))
    return db.execute(sql_over_r).fetchall()


def _interval(epsilon: float, sensitivity: int) -> int:
    from executors.dp import confidence_interval_95

    return confidence_interval_95("laplace", epsilon, sensitivity, 2)[1]


def _std(epsilon: float, sensitivity: int) -> float:
    from executors.dp import noise_scale

    return noise_scale("laplace", epsilon, sensitivity, 2)


def test_noisy_count_and_sum_within_stated_interval_at_stated_rate(dpfed):
    config, data, _ = dpfed
    true_count, true_sum = _truth(data, "SELECT COUNT(*), SUM(x) FROM r")[0]
    eps_each = 0.5  # SET fedsql.epsilon = 1, two noisy outputs
    k_count, k_sum = _interval(eps_each, 2), _interval(eps_each, 200)
    s_count, s_sum = _std(eps_each, 2), _std(eps_each, 200)
    misses, z2 = 0, []
    runs = 40
    with _client(config) as c:
        settings = {"fedsql.epsilon": "1.0"}
        for _ in range(runs):
            table, meta = c.execute("SELECT COUNT(*) AS n, SUM(x) AS s FROM v", settings)
            n, s = table.column("n")[0].as_py(), float(table.column("s")[0].as_py())
            misses += abs(n - true_count) > k_count
            misses += abs(s - true_sum) > k_sum
            z2 += [((n - true_count) / s_count) ** 2, ((s - true_sum) / s_sum) ** 2]
    notes = {col["name"]: col["note"] for col in meta["columns"]}
    assert f"95% interval ±{k_count}" in notes["n"] and "epsilon 0.5" in notes["n"]
    assert f"95% interval ±{k_sum}" in notes["s"] and "clamped to [0, 100]" in notes["s"]
    # coverage >= 95%: P(Bin(80, 0.05) >= 13) < 0.001
    assert misses <= 12, f"{misses} of {2 * runs} outside the stated 95% interval"
    # the noise really has the stated scale (neither absent nor far larger)
    mean_z2 = sum(z2) / len(z2)
    assert 0.4 < mean_z2 < 2.0, mean_z2


def test_group_by_public_groups_outputs_exactly_the_declared_groups(dpfed):
    config, data, _ = dpfed
    truth = {r[0]: r[1:] for r in _truth(
        data, "SELECT region, COUNT(*), SUM(d), AVG(x) FROM r WHERE region IN ('north','south','east','west') "
              "GROUP BY region")}
    with _client(config) as c:
        sql = "SELECT region, COUNT(*) AS n, SUM(d) AS sd, AVG(x) AS ax FROM v GROUP BY region ORDER BY region"
        table, meta = c.execute(sql, {"fedsql.epsilon": "2.0"})
    rows = table.to_pylist()
    assert [r["region"] for r in rows] == ["east", "north", "south", "west"]  # 'west' is empty, 'other' undeclared
    eps_each = 2.0 / 4  # COUNT, SUM, AVG (sum + count)
    for r in rows:
        n_true, sd_true, _ = truth.get(r["region"], (0, None, None))
        assert abs(r["n"] - n_true) <= 8 * _std(eps_each, 2)
        assert abs(float(r["sd"]) - float(sd_true or 0)) <= 8 * _std(eps_each, 2 * 5000) / 100
        assert r["ax"] is None or 0 <= r["ax"] <= 100
    notes = {col["name"]: col["note"] for col in meta["columns"]}
    assert "declared public groups" in notes["region"]
    assert "noisy sum / noisy count" in notes["ax"]
    leakage = "\n".join(meta["leakage"])
    assert "un-noised" in leakage and "whether any input value was non-NULL" not in leakage


@pytest.mark.parametrize("sql, needle", [
    ("SELECT MIN(x) FROM v", "MIN and MAX"),
    ("SELECT * FROM v", "only noisy aggregates"),
    ("SELECT x FROM p2.v", "only noisy aggregates"),
    ("SELECT SUM(secret) FROM v", "has no bounds"),
    ("SELECT SUM(x * 2) FROM v", "bounds columns, not expressions"),
    ("SELECT uid, COUNT(*) FROM v GROUP BY uid", "privacy unit"),
    ("SELECT secret, COUNT(*) FROM p3.v GROUP BY secret", "needs delta > 0"),
    ("SELECT VAR_POP(secret) FROM v", "has no bounds"),
])
def test_refusals_say_why(dpfed, sql, needle):
    config, _, _ = dpfed
    with _client(config) as c:
        with pytest.raises(errors.PolicyViolation, match=needle):
            c.execute(sql)


def test_epsilon_setting_and_cap(dpfed):
    config, _, _ = dpfed
    with _client(config) as c:
        with pytest.raises(errors.PolicyViolation, match="max_epsilon_per_query"):
            c.execute("SELECT COUNT(*) FROM v", {"fedsql.epsilon": "5.0"})
        with pytest.raises(errors.SqlSyntaxError, match="number > 0"):
            c.execute("SET fedsql.epsilon = 'lots'")
        _, meta = c.execute("SET fedsql.epsilon = 0.25")
        assert meta["settings"]["fedsql.epsilon"] == "0.25"


def test_explain_lists_epsilon_and_noise(dpfed):
    config, _, _ = dpfed
    with _client(config) as c:
        table, _ = c.execute("EXPLAIN SELECT COUNT(*), AVG(d) FROM v", {"fedsql.epsilon": "0.75"})
    text = "\n".join(table.column("plan").to_pylist())
    assert "add_noise" in text
    assert "differential privacy: epsilon 0.75" in text
    assert "p2.v epsilon 0.75" in text and "p3.v epsilon 0.75" in text and "p1.v epsilon" not in text
    assert "noise std" in text and "95% interval" in text


def test_owner_is_unrestricted_on_its_own_table(dpfed):
    config, data, _ = dpfed
    with _client(config, "p2") as c:
        table, meta = c.execute("SELECT MIN(x) AS m, COUNT(*) AS n FROM p2.v")
    assert table.to_pylist() == [{"m": min(data["p2"].column("x").to_pylist()), "n": SIZES["p2"]}]
    assert all(col["note"] is None for col in meta["columns"])


def test_budget_exhaustion_and_at_most_once(dpfed):
    from fedsql.budget_cli import run_budget

    config, _, _ = dpfed
    with _client(config) as c:
        settings = {"fedsql.epsilon": "0.5"}
        c.execute("SELECT COUNT(*) FROM p2.b", settings, query_id="budget-q1")
        with pytest.raises(errors.PolicyViolation, match="already run"):
            c.execute("SELECT COUNT(*) FROM p2.b", settings, query_id="budget-q1")
        c.execute("SELECT SUM(x) FROM p2.b", settings)
        with pytest.raises(errors.BudgetExhausted) as info:
            c.execute("SELECT COUNT(*) FROM p2.b", settings)
    msg = str(info.value)
    assert "p2.b" in msg and "issuer p1" in msg and "0 left" in msg
    out = io.StringIO()
    assert run_budget(str(config), "p2", out=out) == 0
    line = next(ln for ln in out.getvalue().splitlines() if "p2.b" in ln and ln.lstrip().startswith("p1"))
    assert " 2" in line  # two queries recorded: the refused ones cost nothing


def _ledger_rows(path: Path, query_id: str) -> int:
    if not path.exists():
        return 0
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute("SELECT COUNT(*) FROM spends WHERE query_id = ?", (query_id,)).fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def test_ledger_survives_kill_9_mid_query_and_restart(tmp_path):
    from fedsql.budget_cli import default_ledger_path
    from fedsql.launcher import start_federation
    from fedsql.ledger import Ledger

    config, _ = _write(tmp_path)
    ledger = default_ledger_path(config, "p2")
    sql = "SELECT region, COUNT(*), SUM(x), AVG(d) FROM v GROUP BY region"
    with start_federation(config, log_dir=tmp_path / "logs", timeout=90) as procs:
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                with _client(config) as c:
                    outcome["result"] = c.execute(sql, {"fedsql.epsilon": "1.0"}, query_id="killed-q")
            except errors.Error as exc:
                outcome["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 60
        while _ledger_rows(ledger, "p1/killed-q") == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        os.kill(procs.nodes["p2"].process.pid, signal.SIGKILL)  # right after its spend was recorded
        t.join(90)
        assert not t.is_alive()
        if "error" in outcome:  # killed mid-query: a clear error naming the party, no partial result
            assert "p2" in str(outcome["error"])
        with start_federation(config, log_dir=tmp_path / "logs2", timeout=90, parties=["p2"]):
            with Ledger(ledger) as led:
                entries = [e for e in led.entries() if e.query_id == "p1/killed-q"]  # issuer/query id
            assert len(entries) == 1 and entries[0].table == "p2.v" and entries[0].epsilon == 1.0
            with _client(config) as c:
                with pytest.raises(errors.PolicyViolation, match="already run"):
                    c.execute(sql, {"fedsql.epsilon": "1.0"}, query_id="killed-q")
                table, _ = c.execute(sql, {"fedsql.epsilon": "1.0"}, query_id="after-restart")
            assert table.num_rows == 4
            with Ledger(ledger) as led:
                spent = led.spent("p1", "p2.v")
            assert spent.queries == 2 and spent.epsilon == 2.0
