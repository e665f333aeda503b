"""Budget ledger: exhaustion, idempotency, concurrency and kill -9 durability."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from fedsql import errors
from fedsql.ledger import BudgetExhausted, Ledger, Reservation

ROOT = Path(__file__).resolve().parents[1]


def reserve(ledger, qid, eps=0.1, *, issuer="bank", table="h1.patients", delta=0.0, limit=1.0, limit_delta=0.0,
            cap=0.5):
    ledger.reserve(qid, issuer, table, eps, delta, limit, limit_delta, cap)


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "owner" / "ledger.sqlite") as led:
        yield led


def test_durable_settings(ledger):
    c = ledger._conn
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_exhaustion_is_exact_and_refused_with_a_clear_error(ledger):
    for i in range(10):
        reserve(ledger, f"q{i}")  # 10 × 0.1 = exactly 1.0 (decimal sums, no float drift)
    assert ledger.spent("bank", "h1.patients") == (1.0, 0.0, 10)
    with pytest.raises(BudgetExhausted) as exc:
        reserve(ledger, "q10", 0.01)
    msg = str(exc.value)
    assert "h1.patients" in msg and "bank" in msg and "exhausted" in msg and "q10" in msg
    assert isinstance(exc.value, errors.PolicyViolation) and exc.value.kind == "BudgetExhausted"
    assert len(ledger.entries()) == 10  # nothing recorded for the refused query


def test_decimal_sums_do_not_refuse_a_fitting_query(ledger):
    reserve(ledger, "a", 0.1, limit=0.3)
    reserve(ledger, "b", 0.2, limit=0.3)  # 0.1 + 0.2 > 0.3 in floats; exactly 0.3 in decimals
    with pytest.raises(BudgetExhausted):
        reserve(ledger, "c", 1e-12, limit=0.3)


def test_budgets_are_per_issuer_and_per_table(ledger):
    reserve(ledger, "q1", 0.5, limit=0.5)
    reserve(ledger, "q2", 0.5, limit=0.5, issuer="telco")
    reserve(ledger, "q3", 0.5, limit=0.5, table="h1.visits")
    with pytest.raises(BudgetExhausted):
        reserve(ledger, "q4", 0.1, limit=0.5)
    assert ledger.totals() == {("bank", "h1.patients"): (0.5, 0.0, 1), ("telco", "h1.patients"): (0.5, 0.0, 1),
                               ("bank", "h1.visits"): (0.5, 0.0, 1)}


def test_idempotent_per_query_and_table(ledger):
    assert ledger.reserve("q1", "bank", "h1.patients", 0.4, 0.0, 1.0, 0.0, 0.5) is True
    assert ledger.reserve("q1", "bank", "h1.patients", 0.4, 0.0, 1.0, 0.0, 0.5) is False  # retry: no double count
    reserve(ledger, "q1", 0.4, table="h1.visits")  # same query, another table: its own spend
    assert ledger.spent("bank", "h1.patients") == (0.4, 0.0, 1)
    assert ledger.has("q1", "h1.patients") and not ledger.has("q2", "h1.patients")
    # a replay of a recorded query is not refused even when the budget is now exhausted
    reserve(ledger, "q2", 0.5)
    reserve(ledger, "q1", 0.4)
    with pytest.raises(errors.PolicyViolation, match="different parameters"):
        reserve(ledger, "q1", 0.3)
    with pytest.raises(errors.PolicyViolation, match="different parameters"):
        reserve(ledger, "q1", 0.4, issuer="telco")


def test_per_query_cap_and_delta(ledger):
    with pytest.raises(errors.PolicyViolation, match="max_epsilon_per_query") as exc:
        reserve(ledger, "q1", 0.6, cap=0.5)
    assert not isinstance(exc.value, BudgetExhausted)
    reserve(ledger, "q2", 0.1, delta=4e-7, limit_delta=1e-6)
    reserve(ledger, "q3", 0.1, delta=6e-7, limit_delta=1e-6)
    with pytest.raises(BudgetExhausted, match="delta"):
        reserve(ledger, "q4", 0.1, delta=1e-9, limit_delta=1e-6)
    assert ledger.spent("bank", "h1.patients").delta == pytest.approx(1e-6)


@pytest.mark.parametrize("bad", [dict(eps=0.0), dict(eps=float("nan")), dict(eps=True), dict(delta=-1e-9),
                                 dict(limit=float("inf"))])
def test_bad_numbers_are_refused(ledger, bad):
    with pytest.raises(errors.PolicyViolation):
        reserve(ledger, "q", **bad)
    assert ledger.entries() == []


def test_reserve_many_is_all_or_nothing(ledger):
    reserve(ledger, "q0", 0.5, table="h1.visits", limit=0.5)
    items = [Reservation("h1.patients", 0.2, 0.0, 1.0, 0.0, 0.5), Reservation("h1.visits", 0.2, 0.0, 0.5, 0.0, 0.5)]
    with pytest.raises(BudgetExhausted, match="h1.visits"):
        ledger.reserve_many("q1", "bank", items)
    assert ledger.spent("bank", "h1.patients").queries == 0
    ledger.reserve_many("q2", "bank", items[:1])
    assert ledger.spent("bank", "h1.patients") == (0.2, 0.0, 1)


def test_survives_reopen_and_lists_entries(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path) as a:
        reserve(a, "q1", 0.25)
    with Ledger(path) as b:
        reserve(b, "q1", 0.25)
        reserve(b, "q2", 0.25, issuer="telco")
        e = b.entries()
    assert [(x.query_id, x.issuer, x.table, x.epsilon) for x in e] == [
        ("q1", "bank", "h1.patients", 0.25), ("q2", "telco", "h1.patients", 0.25)]
    assert e[0].time <= e[1].time <= time.time()


def test_unwritable_location_is_an_operational_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(errors.OperationalError, match="ledger"):
        Ledger(blocker / "sub" / "l.sqlite")


def test_threads_never_overspend(tmp_path):
    path = tmp_path / "l.sqlite"
    shared = Ledger(path)
    own = [Ledger(path) for _ in range(4)]  # separate connections contend through SQLite's lock
    outcomes: list[str] = []
    lock = threading.Lock()

    def work(led, tid):
        for i in range(15):
            try:
                led.reserve(f"t{tid}-q{i}", "bank", "h1.patients", 0.1, 0.0, 3.0, 0.0, 1.0)
                r = "ok"
            except BudgetExhausted:
                r = "refused"
            # everyone also replays one common query id: it must count once
            led.reserve("common", "bank", "h1.visits", 0.5, 0.0, 1.0, 0.0, 1.0)
            with lock:
                outcomes.append(r)

    threads = [threading.Thread(target=work, args=(shared if t < 4 else own[t - 4], t)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 30 and outcomes.count("refused") == 8 * 15 - 30
    assert shared.spent("bank", "h1.patients") == (3.0, 0.0, 30)
    assert shared.spent("bank", "h1.visits") == (0.5, 0.0, 1)
    for led in [shared, *own]:
        led.close()


CHILD = r"""
import sys
from fedsql.ledger import Ledger, BudgetExhausted
path, limit = sys.argv[1], float(sys.argv[2])
led = Ledger(path)
i = 0
while True:
    qid = f"q{i}"
    try:
        led.reserve(qid, "bank", "h1.patients", 0.001, 0.0, limit, 0.0, 1.0)
        print("OK", qid, flush=True)
        i += 1  # a restarted child replays q0, q1, ... from the start: must be no-ops
    except BudgetExhausted:
        print("EXHAUSTED", qid, flush=True)
"""


def _check_invariants(path: Path, acked: set[str], limit: Decimal) -> int:
    # read the file as a fresh process would after the crash (WAL recovery on open)
    conn = sqlite3.connect(str(path))
    rows = conn.execute("SELECT query_id, epsilon FROM spends ORDER BY seq").fetchall()
    conn.close()
    ids = [q for q, _ in rows]
    assert len(ids) == len(set(ids)), "a spend was counted twice"
    assert acked <= set(ids), f"acknowledged spends lost: {sorted(acked - set(ids))[:5]}"
    # spends are issued in order: the ledger holds q0..q{n-1}, at most one beyond the acknowledged ones
    assert ids == [f"q{i}" for i in range(len(ids))]
    assert len(ids) <= len(acked) + 1
    total = sum((Decimal(e) for _, e in rows), Decimal(0))
    assert total <= limit
    return len(ids)


def test_kill_9_at_random_moments_never_loses_or_double_counts(tmp_path):
    path = tmp_path / "owner" / "ledger.sqlite"
    limit = Decimal("2")  # 2000 spends of 0.001 (~1 ms each): exhaustion comes part-way through the loop
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    acked: set[str] = set()
    rng = random.Random()
    exhausted_seen = False
    deadline = time.monotonic() + 25
    cycles = 0
    while cycles < 14 and time.monotonic() < deadline:
        cycles += 1
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(limit)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, text=True)
        time.sleep(rng.uniform(0.05, 0.5))
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err
        for line in out.split("\n")[:-1]:  # the text after the last newline is a torn, unacknowledged line
            kind, qid = line.split()
            if kind == "OK":
                acked.add(qid)
            else:
                exhausted_seen = True
        if path.exists():
            _check_invariants(path, acked, limit)
        if os.environ.get("FEDSQL_TEST_VERBOSE"):
            print(f"cycle {cycles}: {len(acked)} acknowledged, exhausted={exhausted_seen}")
    n = _check_invariants(path, acked, limit)
    assert cycles >= 5
    assert n > 0
    if exhausted_seen:
        assert n == 2000  # exhausted exactly at the limit, never beyond


def test_concurrent_processes_never_overspend(tmp_path):
    path = tmp_path / "l.sqlite"
    Ledger(path).close()
    script = r"""
import sys
from fedsql.ledger import Ledger, BudgetExhausted
led = Ledger(sys.argv[1]); ok = 0
for i in range(40):
    try:
        led.reserve(f"{sys.argv[2]}-{i}", "bank", "h1.patients", 0.05, 0.0, 2.0, 0.0, 1.0); ok += 1
    except BudgetExhausted:
        pass
print(ok)
"""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), f"p{k}"], stdout=subprocess.PIPE,
                              text=True, env=env) for k in range(3)]
    oks = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert sum(oks) == 40  # 2.0 / 0.05
    with Ledger(path) as led:
        assert led.spent("bank", "h1.patients") == (2.0, 0.0, 40)


# ---------------------------------------------------------------- fedsql budget


BUDGET_CONFIG = """\
[federation]
name = "budgets"
compute = ["h1", "bank", "telco"]

[parties.h1]
address = "127.0.0.1:7101"
[parties.h1.tables.patients]
source = "p.parquet"
[parties.h1.tables.patients.dp]
unit = "patient_id"
max_rows = 2
bounds = { age = [0, 120] }
epsilon = 2.0
max_epsilon_per_query = 0.5
delta = 1e-6
[parties.h1.tables.visits]
source = "v.parquet"

[parties.bank]
address = "127.0.0.1:7102"
[parties.telco]
address = "127.0.0.1:7103"
"""


def test_budget_command_prints_spent_and_left(tmp_path):
    import io

    from fedsql.budget_cli import default_ledger_path, run_budget

    cfg = tmp_path / "fed.toml"
    cfg.write_text(BUDGET_CONFIG)
    path = default_ledger_path(cfg, "h1")
    assert path == tmp_path / ".fedsql" / "h1" / "ledger.sqlite"

    out = io.StringIO()
    assert run_budget(str(cfg), "h1", out=out) == 0
    text = out.getvalue()
    assert "not created yet" in text and not path.exists()  # inspecting does not create the ledger
    assert "bank" in text and "telco" in text and "h1.patients" in text and "h1.visits" not in text

    with Ledger(path) as led:
        led.reserve("q1", "bank", "h1.patients", 0.5, 1e-7, 2.0, 1e-6, 0.5)
        led.reserve("q2", "bank", "h1.patients", 0.25, 0.0, 2.0, 1e-6, 0.5)
        led.reserve("q3", "telco", "h1.old", 0.1, 0.0, 1.0, 0.0, 0.5)  # table whose policy is gone
    out = io.StringIO()
    assert run_budget(str(cfg), "h1", out=out) == 0
    lines = out.getvalue().splitlines()
    bank = next(line for line in lines if line.strip().startswith("bank") and "h1.patients" in line)
    cells = [c.strip() for c in bank.split("|")]
    assert cells == ["bank", "h1.patients", "0.75", "2", "1.25", "1e-07", "1e-06", "2"]
    telco = next(line for line in lines if line.strip().startswith("telco") and "h1.patients" in line)
    assert [c.strip() for c in telco.split("|")][2:5] == ["0", "2", "2"]
    assert any("h1.old" in line and "NULL" in line for line in lines)
    assert "per-query epsilon caps: h1.patients 0.5" in out.getvalue()

    # explicit ledger path, and errors for an unknown party
    out = io.StringIO()
    assert run_budget(str(cfg), "h1", str(tmp_path / "elsewhere.sqlite"), out=out) == 0
    with pytest.raises(errors.ConfigError, match="nobody"):
        run_budget(str(cfg), "nobody", out=io.StringIO())


def test_budget_command_reports_bad_dp_policy(tmp_path):
    import io

    from fedsql.budget_cli import run_budget

    cfg = tmp_path / "fed.toml"
    cfg.write_text(BUDGET_CONFIG.replace("max_epsilon_per_query = 0.5", "max_epsilon_per_query = 5.0"))
    with pytest.raises(errors.ConfigError, match=r"parties\.h1\.tables\.patients\.dp\.max_epsilon_per_query"):
        run_budget(str(cfg), "h1", out=io.StringIO())
