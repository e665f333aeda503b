"""Resource limits and concurrency (issue #6, item 5)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

import fedsql
from fedsql import errors

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The test federation with max_rows_per_query = 10 (p3 overrides it to 1000)."""
    from fedsql.launcher import start_federation
    from tests.conftest import write_test_federation

    directory = tmp_path_factory.mktemp("limited")
    config, _ = write_test_federation(directory)
    text = config.read_text().replace("deadline_seconds = 120\n", "deadline_seconds = 60\nmax_rows_per_query = 10\n")
    text = text.replace('name = "testfed"', 'name = "limitfed"')
    config.write_text(text.replace("[parties.p3]\n", "[parties.p3]\nmax_rows_per_query = 1000\n"))
    with start_federation(config, log_dir=directory / "logs", timeout=90):
        yield config


def _run(config: Path, party: str, sql: str) -> list[tuple]:
    with fedsql.connect(str(config), party=party) as conn:
        cur = conn.cursor()
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]


def test_small_query_within_limits(limited: Path) -> None:
    assert _run(limited, "p1", "SELECT COUNT(*) FROM t") == [(200,)]


def test_too_many_rows_refused_naming_party_and_limit(limited: Path) -> None:
    with pytest.raises(errors.ResourceLimitExceeded) as info:
        _run(limited, "p2", "SELECT k, g, COUNT(*) FROM t GROUP BY k, g")
    msg = str(info.value)
    assert "max_rows_per_query" in msg and "10 rows" in msg and ("'p1'" in msg or "'p2'" in msg)
    # the owner's own node is limited too (it protects the node, not a policy)
    with pytest.raises(errors.ResourceLimitExceeded):
        _run(limited, "p1", "SELECT * FROM p1.t")
    # and every node keeps serving
    assert _run(limited, "p2", "SELECT COUNT(*) FROM t") == [(200,)]


def test_per_party_override(limited: Path) -> None:
    assert len(_run(limited, "p3", "SELECT * FROM p3.t")) == 0  # p3's table is empty, its limit is 1000
    from fedsql.config import load_config

    fed = load_config(limited)
    assert fed.rows_limit("p1") == 10 and fed.rows_limit("p3") == 1000


def test_bad_limit_is_a_config_error(tmp_path: Path) -> None:
    from fedsql.config import parse_config

    base = "[federation]\nname='x'\n{extra}\n" + "".join(f"[parties.{p}]\naddress='127.0.0.1:{i}'\n"
                                                         for i, p in enumerate("abc", 1))
    for bad in ("max_rows_per_query = 0", "max_rows_per_query = 'many'", "max_concurrent_queries = -1",
                "max_rows_per_query = true"):
        with pytest.raises(errors.ConfigError, match="positive integer"):
            parse_config(base.format(extra=bad), tmp_path / "f.toml")


# -- concurrency --------------------------------------------------------------------------------

QUERIES = [
    "SELECT COUNT(*) AS n FROM t",
    "SELECT g, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY g ORDER BY g",
    "SELECT k, MIN(x) AS lo, MAX(x) AS hi FROM t WHERE x > -500 GROUP BY k ORDER BY k NULLS FIRST",
    "SELECT SUM(d) AS sd, AVG(x) AS ax FROM t WHERE b",
]


def test_concurrent_clients_get_correct_results(federation: tuple[Path, Any], reference: Callable[[str], Any]) -> None:
    config, _ = federation
    expected = {sql: [tuple(r.values()) for r in reference(sql).to_pylist()] for sql in QUERIES}
    failures: list[str] = []
    issuers = ["p1", "p2", "p3"]

    def client(i: int) -> None:
        try:
            with fedsql.connect(str(config), party=issuers[i % 3]) as conn:
                cur = conn.cursor()
                for j in range(3):
                    sql = QUERIES[(i + j) % len(QUERIES)]
                    cur.execute(sql)
                    got = [tuple(r) for r in cur.fetchall()]
                    if got != expected[sql]:
                        failures.append(f"client {i}: {sql}: {got} != {expected[sql]}")
        except Exception as exc:  # noqa: BLE001
            failures.append(f"client {i}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not failures, "\n".join(failures)


def test_secret_tables_beyond_max_memory_are_refused_before_allocating() -> None:
    from types import SimpleNamespace

    from executors.runtime import PartyRun
    from fedsql import errors as e

    from executors.mpc import AShare
    from executors.secure_table import SecretTable

    run = PartyRun.__new__(PartyRun)
    run.me, run.executor, run.secret = "p2", SimpleNamespace(max_memory_mb=1), {}
    run._check_memory(1000, 4, "a small table")  # 256 KB with working copies: fine
    with pytest.raises(e.ResourceLimitExceeded, match="max_memory_mb = 1") as info:
        run._check_memory(10**6, 8, "sharing p1's 1000000 rows")
    assert "'p2'" in str(info.value)
    # the tables the query still holds count too: 60,000 rows × 1 column held + a small step > 1 MB
    held = AShare(np.zeros(60_000, np.uint64), np.zeros(60_000, np.uint64))
    run.secret["s_p1"] = SecretTable(n=60_000, secret={"x": held})
    with pytest.raises(e.ResourceLimitExceeded, match="already holds"):
        run._check_memory(1000, 4, "a small table")


def test_secret_tables_are_freed_after_their_last_reader() -> None:
    from executors.runtime import secret_last_use
    from plan.physical import SecureEval, SecureUnion

    steps = (SecureUnion("u", ("s_a", "s_b")), SecureEval("e", "u", ()), SecureEval("e2", "e", ()),
             SecureEval("e3", "e", ()))
    assert secret_last_use(steps) == {"u": ["s_a", "s_b"], "e": ["u"], "e3": ["e"]}


def test_max_memory_must_be_positive(tmp_path: Path) -> None:
    from fedsql.config import parse_config
    from fedsql.errors import ConfigError

    text = "[federation]\nname='x'\nmax_memory_mb = 0\n" + "".join(
        f"[parties.{p}]\naddress='127.0.0.1:{i}'\n" for i, p in enumerate(("a", "b", "c"), 7000))
    with pytest.raises(ConfigError, match="max_memory_mb"):
        parse_config(text, tmp_path / "f.toml")
