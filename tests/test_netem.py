"""WAN emulation in the transport (executors/netem.py, issue #17 item 1).

The emulator must delay, never lose, reorder or corrupt: every check here is a lower bound
on time (a sleep cannot end early) or an exact check of content and order, so none can fail
because the machine is busy.
"""

from __future__ import annotations

import doctest
import threading
import time

import numpy as np
import pytest

from executors import netem
from executors.netem import DelayedLinks, NetProfile, NetProfileError
from executors.transport import exchange, run_in_process


def test_doctests() -> None:
    assert doctest.testmod(netem).failed == 0


@pytest.mark.parametrize("text, rtt, bw", [
    ("rtt=20ms,bw=100mbit", 0.02, 1e8),
    ("bw=1gbit, rtt=500us", 0.0005, 1e9),
    ("RTT=1s", 1.0, None),
    ("rtt=10ms,bw=12.5mbps", 0.01, 1e8),
])
def test_profiles_parse(text: str, rtt: float, bw: float | None) -> None:
    p = NetProfile.parse(text)
    assert p.rtt_s == pytest.approx(rtt) and (p.bits_per_s == pytest.approx(bw) if bw else p.bits_per_s is None)


@pytest.mark.parametrize("text, says", [
    ("rtt=20", "cannot read 'rtt=20'"),
    ("rtt=20ms,bw=100", "cannot read 'bw=100'"),
    ("bw=100mbit", "names no rtt"),
    ("rtt=1ms,rtt=2ms", "at most once"),
    ("rtt=-1ms", "cannot read"),
    ("rtt=1ms,bw=0mbit", "above zero"),
    ("latency=5ms", "cannot read"),
])
def test_bad_profiles_say_what_is_accepted(text: str, says: str) -> None:
    with pytest.raises(NetProfileError, match=says) as info:
        NetProfile.parse(text)
    assert "rtt=20ms,bw=100mbit" in str(info.value)  # the error shows a value that works


def test_off_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(netem.ENV, raising=False)
    assert netem.from_environment() is None
    monkeypatch.setenv(netem.ENV, "  ")
    assert netem.from_environment() is None


def _ping_pong(rounds: int, size: int):
    """Two parties exchange `size` bytes each way, `rounds` times, each round waiting for the last."""
    def party(me: str, other: str):
        def run(t):
            got = []
            for r in range(rounds):
                out = exchange(t, f"r{r}", {other: [np.full(size, r, dtype=np.uint8)]}, [other])
                got.append(int(out[other][0][0]))
            return got, t.net
        return run
    return {"a": party("a", "b"), "b": party("b", "a")}


def test_each_round_costs_at_least_one_one_way_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(netem.ENV, "rtt=100ms")
    start = time.monotonic()
    out = run_in_process(_ping_pong(4, 8))
    elapsed = time.monotonic() - start
    assert out["a"][0] == out["b"][0] == [0, 1, 2, 3]  # nothing lost, reordered or changed
    assert out["a"][1] == NetProfile(0.1)
    assert elapsed >= 4 * 0.05


def test_bandwidth_delays_by_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(netem.ENV, "rtt=1ms,bw=80mbit")  # 10 MB/s: 1 MB takes 0.1 s on the wire
    start = time.monotonic()
    run_in_process(_ping_pong(2, 1_000_000))
    assert time.monotonic() - start >= 2 * 0.1


def test_without_the_variable_nothing_is_delayed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(netem.ENV, raising=False)
    out = run_in_process(_ping_pong(2, 8))
    assert out["a"][1] is None


def test_links_to_different_peers_carry_in_parallel_and_keep_order() -> None:
    got: list[tuple[str, str, bytes]] = []
    done = threading.Event()

    def deliver(to: str, tag: str, payload: bytes, deadline: float) -> None:
        got.append((to, tag, payload))
        if len(got) == 6:
            done.set()

    links = DelayedLinks(NetProfile(0.002, 8e6), deliver)  # 1 MB/s
    for i in range(3):
        for to in ("b", "c"):
            links(to, f"t{i}", bytes([i]) * 10_000, time.monotonic() + 10)  # 10 ms each on the wire
    # each link's queue is its own: both are busy for 3 x 10 ms, not one after the other
    assert abs(links._free_at["b"] - links._free_at["c"]) < 0.015
    assert done.wait(5)
    for to in ("b", "c"):
        assert [(tag, p[:1]) for t, tag, p in got if t == to] == [("t0", b"\0"), ("t1", b"\1"), ("t2", b"\2")]


def test_a_failed_delivery_is_raised_at_the_next_send() -> None:
    failed = threading.Event()

    def deliver(to: str, tag: str, payload: bytes, deadline: float) -> None:
        failed.set()
        raise ConnectionError(f"party '{to}' is gone")

    links = DelayedLinks(NetProfile(0.001), deliver)
    links("b", "t0", b"x", time.monotonic() + 10)
    assert failed.wait(5)
    time.sleep(0.05)  # the worker records the error after deliver returns
    with pytest.raises(ConnectionError, match="gone"):
        links("b", "t1", b"y", time.monotonic() + 10)


def test_lower_bound() -> None:
    p = NetProfile(0.02, 1e8)
    assert p.lower_bound_s(10, 1_250_000, links=1) == pytest.approx(10 * 0.01 + 0.1)
    assert p.lower_bound_s(10, 1_250_000) == pytest.approx(10 * 0.01 + 0.05)  # two links in parallel
    assert NetProfile(0.02).lower_bound_s(3, 10**9) == pytest.approx(0.03)


@pytest.mark.e2e
def test_a_federation_under_emulation_answers_exactly(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                      write_federation) -> None:
    """Real nodes with FEDSQL_NET set: the same answer as DuckDB, and each node says it is emulating."""
    import duckdb

    import fedsql
    from fedsql.launcher import start_federation

    config, data = write_federation(tmp_path, sizes=(40, 30, 5))
    monkeypatch.setenv(netem.ENV, "rtt=20ms,bw=1gbit")
    sql = "SELECT k, COUNT(*) AS n, SUM(x) AS s FROM t GROUP BY k ORDER BY k"
    with start_federation(config, log_dir=tmp_path / "logs"):
        with fedsql.connect(str(config), party="p1") as conn:
            got = conn.execute(sql).fetchall()
    pooled = data["t"]  # noqa: F841 - read by DuckDB's replacement scan below
    want = duckdb.sql(sql.replace("FROM t", "FROM pooled")).fetchall()
    assert got == want
    for p in ("p1", "p2", "p3"):
        assert "WAN emulation on" in (tmp_path / "logs" / f"{p}.log").read_text()


@pytest.mark.e2e
def test_a_node_with_a_bad_profile_refuses_to_start(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                    write_federation) -> None:
    from fedsql.errors import Error
    from fedsql.launcher import start_federation

    config, _ = write_federation(tmp_path, sizes=(3, 3, 0))
    monkeypatch.setenv(netem.ENV, "rtt=fast")
    with pytest.raises(Error) as info:
        with start_federation(config, log_dir=tmp_path / "logs", timeout=30):
            pass
    logs = " ".join((tmp_path / "logs" / f"{p}.log").read_text() for p in ("p1", "p2", "p3")
                    if (tmp_path / "logs" / f"{p}.log").exists())
    assert "FEDSQL_NET" in str(info.value) + logs and "rtt=20ms,bw=100mbit" in str(info.value) + logs
    assert "Traceback" not in logs

