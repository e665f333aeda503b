"""DP over a cross-party join, end to end over real `fedsql node` processes (docs/dp.md §5.5).

The bank (issuer) holds `customers` (cid unique, segment, balance); the telco holds `usage`
with a DP policy (unit uid, at most 2 rows per unit, minutes in [0, 500], δ > 0); the helper
holds nothing used here. usage joins customers N:1 on cid, so a unit reaches at most 2 joined
rows. Checks: noisy values in their stated 95% intervals at about the stated rate (and always
within 6 std), partition selection over the bank's segments, the ledger charge at the telco
only, and the refusals (1:N, a SUM over the bank's column without bounds).
"""

from __future__ import annotations

import decimal
from pathlib import Path
from typing import Any

import pytest

from fedsql import errors

pytestmark = pytest.mark.e2e

CONFIG = """\
[federation]
name = "dpjoin"
compute = ["bank", "telco", "helper"]
deadline_seconds = 120

[parties.bank]
address = "127.0.0.1:PORT1"
[parties.bank.tables.customers]
source = "customers.parquet"
unique = ["cid"]
columns = { cid = "join_key", segment = "group_key", balance = "aggregate" }

[parties.telco]
address = "127.0.0.1:PORT2"
[parties.telco.tables.usage]
source = "usage.parquet"
columns = { uid = "private", cid = "private", minutes = "private", plan = "private" }
[parties.telco.tables.usage.dp]
unit = "uid"
max_rows = 2
bounds = { minutes = [0, 500] }
epsilon = 1000.0
max_epsilon_per_query = 4.0
delta = 1e-3
max_delta_per_query = 1e-6

[parties.bank.tables.payments]
source = "payments.parquet"
columns = { cid = "join_key", amount = "aggregate" }

[parties.telco.tables.subscribers]
source = "subscribers.parquet"
unique = ["cid"]
columns = { uid = "private", cid = "private", tier = "private" }
[parties.telco.tables.subscribers.dp]
unit = "uid"
max_rows = 1
max_joined_rows = 3
epsilon = 1000.0
max_epsilon_per_query = 4.0
delta = 1e-3
max_delta_per_query = 1e-6

[parties.helper]
address = "127.0.0.1:PORT3"
[parties.helper.tables.notes]
source = "notes.parquet"
columns = { cid = "join_key" }
"""

SEGMENTS = {"gold": 150, "silver": 120, "bronze": 100, "tiny": 2}  # customers per segment


def _tables() -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(5)
    segment = [s for s, n in SEGMENTS.items() for _ in range(n)]
    n_cust = len(segment)
    customers = pa.table({
        "cid": pa.array(np.arange(n_cust), pa.int64()),
        "segment": pa.array(segment, pa.string()),
        "balance": pa.array([decimal.Decimal(int(c)).scaleb(-2) for c in rng.integers(-10_000, 200_000, n_cust)],
                            pa.decimal128(10, 2)),
    })
    uid, cid, minutes, plan = [], [], [], []
    for u in range(400):
        home = int(rng.integers(0, n_cust + 40))  # some customers the bank does not have
        if segment[home % n_cust] == "tiny":
            home = 0
        for _ in range(int(rng.integers(1, 5))):  # up to 4 rows per unit: bounded to 2
            uid.append(u)
            cid.append(home)
            minutes.append(int(rng.integers(-20, 700)))  # outside the bounds too: clamped
            plan.append(["basic", "pro"][int(rng.integers(0, 2))])
    usage = pa.table({"uid": pa.array(uid, pa.int64()), "cid": pa.array(cid, pa.int64()),
                      "minutes": pa.array(minutes, pa.int32()), "plan": pa.array(plan, pa.string())})
    notes = pa.table({"cid": pa.array([1, 2, 3], pa.int64())})
    # subscribers (unique cid; unit uid, a few units with two SIMs) and the bank's payments, many per cid:
    # the DP table is the "one" side of the join. cid 100 (unit 100, tier pro) has HEAVY payments.
    s_uid = [i // 2 if i < 40 else i for i in range(200)]
    tiers = ["pro" if i % 3 else "basic" for i in range(200)]
    tiers[0] = "pro"
    subscribers = pa.table({"uid": pa.array(s_uid, pa.int64()), "cid": pa.array(np.arange(200), pa.int64()),
                            "tier": pa.array(tiers, pa.string())})
    p_cid = [100] * HEAVY  # uid 100: one SIM, tier pro
    for c in range(1, 230):  # cids 200..229: payments of people the telco does not have
        p_cid += [c] * int(rng.integers(0, 7))
    payments = pa.table({"cid": pa.array(p_cid, pa.int64()),
                         "amount": pa.array([(c * 37 + 100) % 150 - 10 for c in p_cid], pa.int64())})  # one per cid
    return {"customers": customers, "usage": usage, "notes": notes, "subscribers": subscribers,
            "payments": payments}


HEAVY = 1000  # payments of one subscriber: clipped to max_joined_rows = 3 after the join


@pytest.fixture(scope="module")
def dpjoin(tmp_path_factory: pytest.TempPathFactory):
    import pyarrow.parquet as pq

    from fedsql.launcher import free_ports, start_federation

    directory = tmp_path_factory.mktemp("dpjoin")
    data = _tables()
    for name, table in data.items():
        pq.write_table(table, directory / f"{name}.parquet")
    text = CONFIG
    for i, port in enumerate(free_ports(3), 1):
        text = text.replace(f"PORT{i}", str(port))
    config = directory / "dpjoin.toml"
    config.write_text(text, encoding="utf-8")
    with start_federation(config, log_dir=directory / "logs", timeout=90):
        yield config, data


def _client(config: Path, party: str = "bank"):
    from fedsql.client import NodeClient
    from fedsql.config import load_config

    fed = load_config(config)
    return NodeClient(fed.parties[party].address, party=party, config_path=str(config), default_timeout=120)


def _exact(data: dict[str, Any], sql: str, usage_where: str = "TRUE") -> list[tuple]:
    """`sql` over `j`: usage bounded as the planner does (2 rows per uid among those passing the
    telco's own conditions, in hash order), minutes clamped, joined with customers."""
    import duckdb

    db = duckdb.connect()
    db.register("raw_usage", data["usage"])
    db.register("customers", data["customers"])
    db.execute(f"""CREATE TABLE u AS SELECT uid, cid, LEAST(GREATEST(minutes, 0), 500) AS minutes, plan FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY uid ORDER BY hash(uid, cid, minutes, plan)) AS rn
        FROM raw_usage WHERE {usage_where}) WHERE rn <= 2""")
    db.execute("CREATE TABLE j AS SELECT u.*, c.segment, c.balance FROM u JOIN customers c ON u.cid = c.cid")
    return db.execute(sql).fetchall()


def _interval(note: str, part: str) -> float:
    """The stated 95% half-width of one noisy part in a column note."""
    import re

    m = re.search(part + r" epsilon [0-9.e+-]+, noise std [0-9.e+-]+, 95% interval ±([0-9.e+-]+)", note)
    assert m, note
    return float(m.group(1))


def test_global_aggregates_within_stated_intervals(dpjoin):
    from executors.dp import noise_scale

    config, data = dpjoin
    sql = ("SELECT COUNT(*) AS n, SUM(u.minutes) AS m, SUM(LEAST(GREATEST(c.balance, 0), 1000)) AS b "
           "FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid WHERE u.plan = 'pro' AND c.segment <> 'gold'")
    (n_true, m_true, b_true), = _exact(
        data, "SELECT COUNT(*), SUM(minutes), SUM(LEAST(GREATEST(balance, 0), 1000)) FROM j "
              "WHERE segment <> 'gold'", usage_where="plan = 'pro'")
    eps_each = 3.0 / 3
    stds = [noise_scale("laplace", eps_each, s, 2) for s in (2, 2 * 500, 2 * 1000 * 100)]
    inside, runs = 0, 8
    with _client(config) as c:
        for i in range(runs):
            table, meta = c.execute(sql, {"fedsql.epsilon": "3.0", "fedsql.mode": "sizes"})
            row = table.to_pylist()[0]
            notes = {col["name"]: col["note"] for col in meta["columns"]}
            errs = [row["n"] - n_true, float(row["m"]) - m_true, float(row["b"]) - float(b_true)]
            half = [_interval(notes["n"], "count"), _interval(notes["m"], "sum"), _interval(notes["b"], "sum")]
            for err, std, scale in zip(errs, stds, (1, 1, 100)):  # the balance's sensitivity is in cents
                assert abs(err) <= 6 * std / scale, (row, n_true, m_true, b_true)
            inside += sum(abs(e) <= h for e, h in zip(errs, half))
    # 24 draws, each inside its 95% interval with probability >= 0.95: fewer than 19 has probability < 1e-3
    assert inside >= 19, inside
    assert "oblivious mode" in "\n".join(meta["leakage"])
    assert "clamped to [0, 1000]" in notes["b"] and "clamped to [0, 500]" in notes["m"]


def test_group_by_issuer_segment_with_partition_selection(dpjoin):
    from executors.dp import noise_scale

    config, data = dpjoin
    sql = ("SELECT c.segment, COUNT(*) AS n, AVG(u.minutes) AS a FROM telco.usage u JOIN bank.customers c "
           "ON u.cid = c.cid GROUP BY c.segment ORDER BY c.segment")
    truth = {r[0]: r[1:] for r in _exact(data, "SELECT segment, COUNT(*), AVG(minutes) FROM j GROUP BY segment")}
    with _client(config) as c:
        table, meta = c.execute(sql, {"fedsql.epsilon": "3.0"})
    got = {r["segment"]: r for r in table.to_pylist()}
    assert set(got) == {"gold", "silver", "bronze"}, got  # "tiny" (no joined rows) is never a group
    std = noise_scale("laplace", 1.0, 2, 2)
    for seg, r in got.items():
        assert abs(r["n"] - truth[seg][0]) <= 6 * std
        assert 0 <= r["a"] <= 500 and abs(r["a"] - truth[seg][1]) <= 60
    notes = {col["name"]: col["note"] for col in meta["columns"]}
    assert "partition selection" in notes["segment"]


def test_ledger_charges_the_dp_owner_only(dpjoin):
    from fedsql.budget_cli import default_ledger_path
    from fedsql.ledger import Ledger

    config, _ = dpjoin
    with _client(config) as c:
        c.execute("SELECT COUNT(*) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid",
                  {"fedsql.epsilon": "0.5"}, query_id="dpjoin-ledger")
    with Ledger(default_ledger_path(config, "telco")) as led:
        entries = [e for e in led.entries() if e.query_id == "bank/dpjoin-ledger"]  # issuer/query id
    assert [(e.table, e.epsilon) for e in entries] == [("telco.usage", 0.5)]
    for party in ("bank", "helper"):
        with Ledger(default_ledger_path(config, party)) as led:
            assert not [e for e in led.entries() if e.query_id == "bank/dpjoin-ledger"]


def test_refusals(dpjoin):
    config, _ = dpjoin
    with _client(config) as c:
        with pytest.raises(errors.UnsupportedSql, match="can meet many rows"):  # notes.cid is not unique
            c.execute("SELECT COUNT(*) FROM telco.usage u JOIN helper.notes n ON u.cid = n.cid")
        with pytest.raises(errors.PolicyViolation, match="needs a known range"):
            c.execute("SELECT SUM(c.balance) FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid")
        with pytest.raises(errors.PolicyViolation, match="would reveal rows"):
            c.execute("SELECT u.minutes FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid")


def test_group_by_the_dp_tables_own_key(dpjoin):
    from executors.dp import noise_scale

    config, data = dpjoin
    sql = ("SELECT u.plan, SUM(u.minutes) AS m FROM telco.usage u JOIN bank.customers c ON u.cid = c.cid "
           "WHERE c.segment = 'gold' GROUP BY u.plan")
    truth = dict(_exact(data, "SELECT plan, SUM(minutes) FROM j WHERE segment = 'gold' GROUP BY plan"))
    with _client(config) as c:
        table, meta = c.execute(sql, {"fedsql.epsilon": "2.0"})
    got = {r["plan"]: float(r["m"]) for r in table.to_pylist()}
    assert set(got) == {"basic", "pro"}, got
    for plan, m in got.items():  # SUM and the hidden selection count share ε
        assert abs(m - truth[plan]) <= 6 * noise_scale("laplace", 1.0, 2 * 500, 2)
    assert "hidden noisy COUNT" not in "\n".join(meta["leakage"])


def test_dp_table_on_the_unique_side_is_bounded_after_the_join(dpjoin):
    """subscribers (DP, unique cid) JOIN payments (many per cid): 1:N from the DP table. Each unit keeps
    at most max_rows = 1 subscriber row (owner) and max_joined_rows = 3 joined rows (BoundPerUnit)."""
    import duckdb

    from executors.dp import noise_scale

    config, data = dpjoin
    sql = ("SELECT COUNT(*) AS n, SUM(LEAST(GREATEST(p.amount, 0), 100)) AS m "
           "FROM telco.subscribers s JOIN bank.payments p ON s.cid = p.cid WHERE s.tier = 'pro'")
    db = duckdb.connect()
    db.register("subscribers", data["subscribers"])
    db.register("payments", data["payments"])
    # the same bounding rule: 1 subscriber row per uid (hash order, among those passing WHERE), then
    # 3 joined rows per uid (amounts are a function of cid, so which 3 does not change the sums)
    db.execute("""CREATE TABLE j AS SELECT s.uid, LEAST(GREATEST(p.amount, 0), 100) AS m FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY uid ORDER BY hash(uid, cid, tier)) AS rn
        FROM subscribers WHERE tier = 'pro') s JOIN payments p ON s.cid = p.cid WHERE s.rn <= 1""")
    (n_true, m_true), = db.execute("""SELECT COUNT(*), SUM(m) FROM (SELECT *, ROW_NUMBER() OVER
        (PARTITION BY uid ORDER BY m) AS k FROM j) WHERE k <= 3""").fetchall()
    (n_raw, m_raw), = db.execute("SELECT COUNT(*), SUM(m) FROM j").fetchall()
    stds = [noise_scale("laplace", 1.5, s, 2) for s in (3, 3 * 100)]  # sensitivity: max_joined_rows
    # without the bounding the answer would be far outside any accepted range (the heavy unit alone)
    assert n_raw - n_true >= HEAVY - 3 > 60 * stds[0] and m_raw - m_true > 60 * stds[1]
    inside, runs = 0, 4
    with _client(config) as c:
        for _ in range(runs):
            table, meta = c.execute(sql, {"fedsql.epsilon": "3.0", "fedsql.mode": "sizes"})
            row = table.to_pylist()[0]
            notes = {col["name"]: col["note"] for col in meta["columns"]}
            errs = [row["n"] - n_true, float(row["m"]) - float(m_true)]
            for err, std in zip(errs, stds):
                assert abs(err) <= 6 * std, (row, n_true, m_true, n_raw, m_raw)
            half = [_interval(notes["n"], "count"), _interval(notes["m"], "sum")]
            inside += sum(abs(e) <= h for e, h in zip(errs, half))
    assert inside >= 5, inside  # 8 draws inside their 95% intervals: fewer than 5 has probability < 1e-3
    assert "at most 3 joined rows per privacy unit" in "\n".join(meta["leakage"])


def test_unique_side_group_by_with_a_chain_and_partition_selection(dpjoin):
    """The same 1:N join, then N:1 onto the bank's customers (a local join at the bank), GROUP BY the
    bank's segment: partition selection after the bounding, τ calibrated to max_joined_rows."""
    import duckdb

    from executors.dp import noise_scale

    config, data = dpjoin
    sql = ("SELECT c.segment, COUNT(*) AS n FROM telco.subscribers s JOIN bank.payments p ON s.cid = p.cid "
           "JOIN bank.customers c ON p.cid = c.cid GROUP BY c.segment")
    db = duckdb.connect()
    for name in ("subscribers", "payments", "customers"):
        db.register(name, data[name])
    truth = dict(db.execute("""SELECT segment, SUM(LEAST(k, 3)) FROM (
        SELECT s.uid, c.segment, COUNT(*) AS k FROM subscribers s JOIN payments p ON s.cid = p.cid
        JOIN customers c ON p.cid = c.cid WHERE (s.uid, s.cid) IN (  -- 1 subscriber row per uid, hash order
            SELECT uid, cid FROM (SELECT uid, cid,
            ROW_NUMBER() OVER (PARTITION BY uid ORDER BY hash(uid, cid, tier)) AS rn FROM subscribers) WHERE rn = 1)
        GROUP BY s.uid, c.segment) GROUP BY segment""").fetchall())
    assert truth["gold"] > 200 and truth["silver"] > 60  # every kept unit has one cid, so one segment
    with _client(config) as c:
        table, meta = c.execute(sql, {"fedsql.epsilon": "2.0"})
    got = {r["segment"]: r["n"] for r in table.to_pylist()}
    assert set(got) == {"gold", "silver"}, got
    std = noise_scale("laplace", 2.0, 3, 2)
    for seg, n in got.items():
        assert abs(n - truth[seg]) <= 6 * std, (seg, n, truth)
    notes = {col["name"]: col["note"] for col in meta["columns"]}
    assert "partition selection" in notes["segment"]
    assert "at most 3 joined rows per privacy unit" in "\n".join(meta["leakage"])
