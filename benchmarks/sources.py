"""Rows/s an owner's node reads per source kind, with and without pushdown (issue #14).

    python -m benchmarks.sources [--rows 1000000]

One table of `--rows` rows (id, k with 10 values, x, d DECIMAL(12,2)) in a throw-away
PostgreSQL 15 (tests/pg_server.py), a throw-away MariaDB
(tests/mysql_server.py), a SQLite file, a DuckDB file, a Parquet file, and behind another
fedsql node's Flight SQL endpoint (`grpc+tls://`, started as tests/adversarial/test_flight_source.py
starts it: the test federation's node processes, p1's password listener over TLS with its
certificate pinned; that node reads the rows from Parquet). The
fragment is the planner's shape for `SELECT k, SUM(x), COUNT(*) ... WHERE x > 0 GROUP BY k`,
run through `LocalExecutor.query` as a node runs it: "pushdown" runs the filter and the
grouping in the source and reads 10 rows back; "no pushdown" reads the two columns of every
row and runs the fragment in the node's DuckDB. Rows/s = table rows / wall time, best of 3.
"""

from __future__ import annotations

import os

# grpcio (loaded for the Flight SQL endpoint) crashes children forked while its channels live
# (grpc/grpc#43055), as in tests/conftest.py; set before grpc loads
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import importlib.util
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import executors.local_duckdb as local  # noqa: E402
from fedsql.config import parse_config  # noqa: E402
from tests import mysql_server, pg_server  # noqa: E402

FRAGMENT = ('SELECT COALESCE((k), \'\') AS __g0, COALESCE(CAST(SUM(x) AS BIGINT), 0) AS __a0_sum, COUNT(*) AS __a1 '
            'FROM "t" AS "t" WHERE x > 0 GROUP BY k')
FLIGHT_PASSWORD = "bench-flight-pw"
HEAD = '[federation]\nname = "b"\ncompute = ["a", "b", "c"]\n[parties.b]\naddress = "127.0.0.1:2"\n[parties.c]\naddress = "127.0.0.1:3"\n'


def _executor(directory: Path, table: str, password: str | None = None) -> local.LocalExecutor:
    fed = parse_config(HEAD + '[parties.a]\naddress = "127.0.0.1:1"\n[parties.a.tables.t]\n' + table, directory / "f.toml")
    ex = local.LocalExecutor(fed.party("a"))
    if password is not None:
        ex.sources["t"]._password = password
    return ex


def _best(ex: local.LocalExecutor, pushdown: bool) -> float:
    real = local.split
    if not pushdown:
        local.split = lambda *a, **k: None
    try:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            ex.query(FRAGMENT)
            times.append(time.perf_counter() - started)
        return min(times)
    finally:
        local.split = real


def _flight_sql(d: Path, gen: duckdb.DuckDBPyConnection) -> tuple[float, float]:
    """(no pushdown, pushdown) best-of-3 seconds for the table read from another fedsql node's
    Flight SQL endpoint, set up as tests/adversarial/test_flight_source.py does: the test
    federation's nodes (real processes) with `t` as its p1's table, and p1's password endpoint
    (TLS with p1's node certificate, pinned in the URL) with an account, serving in this process."""
    from connectors import flight_sql as fs
    from fedsql import tls
    from fedsql.config import load_config
    from fedsql.users import Accounts, Authenticator
    from tests.adversarial.harness import running, standard_federation

    remote = d / "remote"
    remote.mkdir()
    config, _ = standard_federation(remote, (0, 0, 0))
    gen.execute(f"COPY (SELECT id, k, x, CAST(d AS DECIMAL(10,2)) AS d, NULL::DOUBLE AS f, NULL::BOOLEAN AS b, "
                f"NULL::INTEGER AS g FROM t) TO '{remote}/p1_t.parquet' (FORMAT parquet)")  # its p1.t: the same rows
    with running(config):
        fed = load_config(config)
        Accounts.of(fed, "p1").add("bench", FLIGHT_PASSWORD)
        server = fs.start_flight_server(fed, "p1", fed.parties["p1"].address, "127.0.0.1:0",
                                        tls_certificates=fs.party_flight_tls(fed, "p1")["tls_certificates"],
                                        auth=Authenticator(Accounts.of(fed, "p1")))
        try:
            url = (f"grpc+tls://bench@127.0.0.1:{server.port}?tls_root_certificate={tls.paths(fed, 'p1').certificate}"
                   f"&tls_server_name={tls.server_name('p1')}")
            ex = _executor(d, f'source = "{url}"\ntable = "p1.t"\n', FLIGHT_PASSWORD)
            return _best(ex, False), _best(ex, True)
        finally:
            server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    n = parser.parse_args().rows
    d = Path(tempfile.mkdtemp(prefix="fedsql-bench-sources-"))
    gen = duckdb.connect()
    gen.execute(f"CREATE TABLE t AS SELECT i AS id, 'k' || (i % 10) AS k, (i * 7919) % 2001 - 1000 AS x, "
                f"CAST(((i * 31) % 100000) / 100.0 AS DECIMAL(12,2)) AS d FROM range({n}) r(i)")
    gen.execute(f"COPY t TO '{d}/t.parquet' (FORMAT parquet)")
    gen.execute(f"COPY t TO '{d}/t.csv' (HEADER false)")
    gen.execute(f"ATTACH '{d}/t.duckdb' AS f")
    gen.execute("CREATE TABLE f.t AS SELECT * FROM t")
    gen.execute("DETACH f")
    lite = sqlite3.connect(d / "t.db")
    lite.execute("CREATE TABLE t (id INTEGER, k TEXT, x INTEGER, d DECIMAL(12,2))")
    lite.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", gen.execute("SELECT id, k, x, CAST(d AS DOUBLE) FROM t").fetchall())
    lite.commit()
    lite.close()
    results = []
    results.append(("parquet (DuckDB view)", None, _best(_executor(d, f'source = "{d}/t.parquet"\n'), True)))
    for kind, source in (("duckdb", f"duckdb://{d}/t.duckdb"), ("sqlite", f"sqlite://{d}/t.db")):
        ex = _executor(d, f'source = "{source}"\ntable = "t"\n')
        results.append((kind, _best(ex, False), _best(ex, True)))
    if pg_server.available() is None:
        with pg_server.postgres_server() as pg:
            pg.psql("CREATE DATABASE bench")
            pg.psql("CREATE TABLE t (id bigint, k text, x bigint, d numeric(12,2)); GRANT SELECT ON t TO fedsql_reader", "bench")
            with open(d / "t.csv", "rb") as f:
                subprocess.run([*pg.runas, str(pg_server.BIN / "psql"), "-X", "-q", "-h", str(pg.root), "-p", str(pg.port),
                                "-U", "postgres", "-d", "bench", "-c", "COPY t FROM STDIN (FORMAT csv)"], stdin=f, check=True)
            pg.psql("ANALYZE t", "bench")
            ex = _executor(d, f'source = "{pg.url("bench")}"\ntable = "public.t"\n', pg_server.READER_PASSWORD)
            results.append(("postgresql", _best(ex, False), _best(ex, True)))
    if mysql_server.available() is None:
        with mysql_server.mysql_server() as my:
            my.sql("CREATE DATABASE bench; CREATE TABLE bench.t (id BIGINT, k VARCHAR(10) COLLATE utf8mb4_nopad_bin, "
                   "x BIGINT, d DECIMAL(12,2)); GRANT SELECT ON bench.* TO fedsql_reader")
            my.sql(f"INSERT INTO t SELECT seq, CONCAT('k', seq % 10), CAST((seq * 7919) % 2001 AS SIGNED) - 1000, "
                   f"((seq * 31) % 100000) / 100.0 FROM seq_0_to_{n - 1}", "bench")
            ex = _executor(d, f'source = "{my.url("bench")}"\ntable = "bench.t"\n', mysql_server.READER_PASSWORD)
            results.append(("mysql (MariaDB)", _best(ex, False), _best(ex, True)))
    if importlib.util.find_spec("adbc_driver_flightsql") is not None:
        results.append(("flight sql (a fedsql node's endpoint)", *_flight_sql(d, gen)))
    print(f"rows = {n}; fragment: WHERE x > 0 GROUP BY k (10 groups); rows/s = rows / best-of-3 wall time")
    print("| source | no pushdown (rows/s) | pushdown (rows/s) |")
    print("|---|---|---|")
    for kind, without, with_ in results:
        fmt = lambda t: "n/a" if t is None else f"{n / t:,.0f} ({t:.3f} s)"  # noqa: E731
        print(f"| {kind} | {fmt(without)} | {fmt(with_)} |")


if __name__ == "__main__":
    main()
