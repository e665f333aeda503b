"""DP over secret GROUP BY keys (private partition selection) and DP VAR/STDDEV, end to end over
real `fedsql node` processes (docs/dp.md §5.4).

Each of p1, p2, p3 holds `t(uid, city, x)` with a DP policy (unit uid, one row per unit, x in
[0, 100], δ > 0) and no public_groups, so GROUP BY city is a secret GROUP BY whose groups are
released only when their noisy count reaches τ. Cities: three large ones (hundreds of units), ten
tiny ones (2 units each), a "whale" (one unit with 60 rows: contribution bounding leaves it 1 row),
and a large one whose name is longer than the fixed key width (dropped by its owner). p2 also
holds `nodelta`, a DP table with δ = 0, where secret keys must be refused.

Release probabilities are checked on the sampler side (tests/test_dp_noise.py); here one run
suffices: with the counts below, a large group misses τ with probability < 1e-9 and some tiny
group passes it with probability < 1e-4; without the threshold all ten tiny groups would be
missing with probability < 1e-6.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedsql import errors

pytestmark = pytest.mark.e2e

LONG = "a-city-name-far-longer-than-35-bytes-of-key-width"

CONFIG = """\
[federation]
name = "dpsel"
compute = ["p1", "p2", "p3"]
deadline_seconds = 90
""" + "".join(f"""
[parties.{p}]
address = "127.0.0.1:PORT{i}"
[parties.{p}.tables.t]
source = "{p}_t.parquet"
columns = {{ uid = "private", city = "private", x = "private" }}
[parties.{p}.tables.t.dp]
unit = "uid"
max_rows = 1
bounds = {{ x = [0, 100] }}
epsilon = 1000.0
max_epsilon_per_query = 2.0
delta = 1e-3
max_delta_per_query = 1e-6
""" for i, p in enumerate(("p1", "p2", "p3"), 1)) + """
[parties.p2.tables.nodelta]
source = "p2_t.parquet"
columns = { uid = "private", city = "private", x = "private" }
[parties.p2.tables.nodelta.dp]
unit = "uid"
max_rows = 1
bounds = { x = [0, 100] }
epsilon = 10.0

[federated.t]
union = ["p1.t", "p2.t", "p3.t"]
"""

BIG = {"north": 300, "south": 200, "east": 150}


def _table(party_index: int) -> Any:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(100 + party_index)
    uid, city, x = [], [], []
    next_uid = party_index * 100_000

    def add(name: str, units: int, rows_each: int = 1) -> None:
        nonlocal next_uid
        for _ in range(units):
            for _ in range(rows_each):
                uid.append(next_uid)
                city.append(name)
                x.append(int(rng.integers(-20, 130)))  # some values outside the bounds: clamped
            next_uid += 1

    for name, units in BIG.items():
        add(name, units)
    for i in range(10):
        add(f"tiny{i}", 2)
    if party_index != 1:  # p1 issues the union query: its own rows are not bounded
        add("whale", 1, rows_each=60)
    add(LONG, 200)
    return pa.table({"uid": pa.array(uid, pa.int64()), "city": pa.array(city, pa.string()),
                     "x": pa.array(x, pa.int64())})


@pytest.fixture(scope="module")
def dpsel(tmp_path_factory: pytest.TempPathFactory):
    import pyarrow.parquet as pq

    from fedsql.launcher import free_ports, start_federation

    directory = tmp_path_factory.mktemp("dpsel")
    data = {}
    for i, p in enumerate(("p1", "p2", "p3"), 1):
        data[p] = _table(i)
        pq.write_table(data[p], directory / f"{p}_t.parquet")
    ports = free_ports(3)
    config = directory / "dpsel.toml"
    text = CONFIG
    for i, port in enumerate(ports, 1):
        text = text.replace(f"PORT{i}", str(port))
    config.write_text(text, encoding="utf-8")
    with start_federation(config, log_dir=directory / "logs", timeout=90):
        yield config, data


def _client(config: Path, party: str = "p1"):
    from fedsql.client import NodeClient
    from fedsql.config import load_config

    fed = load_config(config)
    return NodeClient(fed.parties[party].address, party=party, config_path=str(config), default_timeout=90)


def _exact(data: dict[str, Any], parties: list[str], sql: str, issuer: str = "p1") -> list[tuple]:
    """`sql` over `r`: the issuer's rows as they are, the others' bounded to one row per uid
    (every uid has one row except the whale, whose rows only differ in x) and clamped."""
    import duckdb

    db = duckdb.connect()
    parts = []
    for p in parties:
        db.register(f"raw_{p}", data[p])
        if p == issuer:
            parts.append(f"SELECT uid, city, x FROM raw_{p}")
        else:
            parts.append(f"SELECT uid, any_value(city) AS city, LEAST(GREATEST(any_value(x), 0), 100) AS x "
                         f"FROM raw_{p} GROUP BY uid")
    db.execute("CREATE TABLE r AS " + " UNION ALL ".join(parts))
    return db.execute(sql).fetchall()


def _tau(epsilon: float, delta: float = 1e-6) -> int:
    from executors.dp import partition_threshold

    return partition_threshold("laplace", epsilon, 1, delta)


def test_selection_keeps_large_groups_and_drops_small_ones(dpsel):
    from executors.dp import noise_scale

    config, data = dpsel
    with _client(config) as c:
        table, meta = c.execute("SELECT city, COUNT(*) AS n FROM p2.t GROUP BY city ORDER BY city",
                                {"fedsql.epsilon": "1.0"})
    rows = {r["city"]: r["n"] for r in table.to_pylist()}
    # the tiny groups (2 units) and the whale (one unit: 60 rows bounded to 1) are below τ; the long name is dropped
    assert sorted(rows) == sorted(BIG), rows
    std = noise_scale("laplace", 1.0, 1, 2)
    for city, n in rows.items():
        assert abs(n - BIG[city]) <= 8 * std
    notes = {col["name"]: col["note"] for col in meta["columns"]}
    assert f"noisy count reached {_tau(1.0)}" in notes["city"]
    assert "DP noisy count" in notes["n"]
    leakage = "\n".join(meta["leakage"])
    assert "number of groups released by private partition selection" in leakage
    assert "un-noised" in leakage


def test_union_with_hidden_selection_count_sum_and_variance(dpsel):
    from executors.dp import noise_scale

    config, data = dpsel
    sql = ("SELECT city, SUM(x) AS s, VAR_POP(x) AS v, STDDEV_SAMP(x) AS sd FROM t WHERE x >= 10 "
           "GROUP BY city ORDER BY city")
    with _client(config) as c:
        table, meta = c.execute(sql, {"fedsql.epsilon": "2.0"})
    got = {r["city"]: r for r in table.to_pylist()}
    assert sorted(got) == sorted(BIG), got
    truth = {r[0]: r[1:] for r in _exact(
        data, ["p1", "p2", "p3"],
        "SELECT city, SUM(x), VAR_POP(x), STDDEV_SAMP(x) FROM r WHERE x >= 10 GROUP BY city")}
    eps_each = 2.0 / 8  # SUM; VAR_POP: sum, squares, count; STDDEV_SAMP: same; hidden selection count
    for city, r in got.items():
        s_true, v_true, sd_true = truth[city]
        assert abs(float(r["s"]) - s_true) <= 8 * noise_scale("laplace", eps_each, 100, 2)
        assert 0 <= r["v"] <= 50.0 ** 2 and abs(r["v"] - v_true) <= 0.35 * v_true
        assert 0 <= r["sd"] and abs(r["sd"] - sd_true) <= 0.2 * sd_true
    notes = {col["name"]: col["note"] for col in meta["columns"]}
    assert "variance from a noisy centred sum, sum of squares and count" in notes["v"]
    assert "95% interval" in notes["v"] and "sum of squares epsilon 0.25" in notes["v"]
    assert "standard deviation" in notes["sd"]


def test_variance_without_groups(dpsel):
    config, data = dpsel
    with _client(config) as c:
        table, _ = c.execute("SELECT VAR_SAMP(x) AS v, COUNT(*) AS n FROM p2.t", {"fedsql.epsilon": "2.0"})
    (v_true,) = _exact(data, ["p2"], "SELECT VAR_SAMP(x) FROM r")[0]
    row = table.to_pylist()[0]
    assert abs(row["v"] - v_true) <= 0.1 * v_true


def test_secret_keys_without_delta_are_refused(dpsel):
    config, _ = dpsel
    with _client(config) as c:
        with pytest.raises(errors.PolicyViolation, match=r"needs delta > 0.*dp.delta"):
            c.execute("SELECT city, COUNT(*) FROM p2.nodelta GROUP BY city")
        with pytest.raises(errors.PolicyViolation, match="privacy unit"):
            c.execute("SELECT uid, COUNT(*) FROM p2.t GROUP BY uid")


def test_ledger_charges_epsilon_and_delta(dpsel):
    from fedsql.budget_cli import default_ledger_path
    from fedsql.ledger import Ledger

    config, _ = dpsel
    with _client(config) as c:
        c.execute("SELECT city, COUNT(*) FROM t GROUP BY city", {"fedsql.epsilon": "0.5"}, query_id="sel-ledger")
    for owner in ("p2", "p3"):
        with Ledger(default_ledger_path(config, owner)) as led:
            entries = [e for e in led.entries() if e.query_id == "p1/sel-ledger"]  # issuer/query id
        assert [(e.table, e.epsilon, e.delta) for e in entries] == [(f"{owner}.t", 0.5, 1e-6)]
    with Ledger(default_ledger_path(config, "p1")) as led:  # the issuer's own table is not charged
        assert not [e for e in led.entries() if e.query_id == "p1/sel-ledger"]


def test_explain_shows_tau_and_what_is_revealed(dpsel):
    config, _ = dpsel
    with _client(config) as c:
        table, _ = c.execute("EXPLAIN SELECT city, COUNT(*) FROM p2.t GROUP BY city", {"fedsql.epsilon": "1.0"})
    text = "\n".join(table.column("plan").to_pylist())
    assert f"tau = {_tau(1.0)}" in text and "partition_select" in text
    assert "only the number of released groups" in text
    assert "delta 1e-06" in text and "p2.t epsilon 1" in text
