"""Shared fixtures: a real three-party federation of `fedsql node` processes.

`federation` (session scope) writes a small test federation with awkward data
(negatives, zeros, NULLs, duplicate keys, one party with an empty table) to a
temp dir, starts it with the same launcher `fedsql up` uses, and yields
`(config_path, data)`. `data` maps "p1.t", "p2.t", "p3.t" and the federated
name "t" (the pooled rows) to pyarrow tables; `reference(sql)` runs the same
SQL in DuckDB over that pooled data, which is what every end-to-end result is
compared with.
"""

from __future__ import annotations

import os

# The test process holds live gRPC channels while it starts node processes; grpcio's fork
# handlers then crash children between fork and exec (grpc/grpc#43055). Set before grpc loads.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import decimal
import importlib.util
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

TEST_SEED = 7

TEST_CONFIG = """\
[federation]
name = "testfed"
compute = ["p1", "p2", "p3"]
deadline_seconds = 120

[parties.p1]
address = "127.0.0.1:{port1}"
[parties.p1.tables.t]
source = "p1_t.parquet"
columns = {{ id = "private", k = "group_key", x = "aggregate", d = "aggregate", f = "aggregate", b = "aggregate", g = "public" }}

[parties.p2]
address = "127.0.0.1:{port2}"
[parties.p2.tables.t]
source = "p2_t.parquet"
columns = {{ id = "private", k = "group_key", x = "aggregate", d = "aggregate", f = "aggregate", b = "aggregate", g = "public" }}

[parties.p3]
address = "127.0.0.1:{port3}"
[parties.p3.tables.t]
source = "p3_t.parquet"
columns = {{ id = "private", k = "group_key", x = "aggregate", d = "aggregate", f = "aggregate", b = "aggregate", g = "public" }}

[federated.t]
union = ["p1.t", "p2.t", "p3.t"]
"""


def _make_table(rng: Any, n: int, first_id: int) -> Any:
    import pyarrow as pa

    schema = pa.schema([
        ("id", pa.int64()),
        ("k", pa.string()),
        ("x", pa.int64()),
        ("d", pa.decimal128(10, 2)),
        ("f", pa.float64()),
        ("b", pa.bool_()),
        ("g", pa.int32()),
    ])
    if n == 0:
        return schema.empty_table()
    x = rng.integers(-1000, 1000, n)
    x[: max(n // 10, 1)] = 0  # zeros
    x_null = rng.random(n) < 0.1
    d_cents = rng.integers(-500_00, 500_00, n)
    d_null = rng.random(n) < 0.1
    f = rng.normal(0.0, 100.0, n)
    f_null = rng.random(n) < 0.1
    return pa.table(
        {
            "id": pa.array(range(first_id, first_id + n), pa.int64()),
            # duplicates by construction: few distinct keys, and one NULL key sometimes
            "k": pa.array([None if r < 0.05 else f"k{int(v)}" for v, r in zip(rng.integers(0, 4, n), rng.random(n))]),
            "x": pa.array([None if m else int(v) for v, m in zip(x, x_null)], pa.int64()),
            "d": pa.array([None if m else decimal.Decimal(int(c)).scaleb(-2) for c, m in zip(d_cents, d_null)],
                          pa.decimal128(10, 2)),
            "f": pa.array([None if m else float(v) for v, m in zip(f, f_null)], pa.float64()),
            "b": pa.array([bool(v) for v in rng.random(n) < 0.5], pa.bool_()),
            "g": pa.array(rng.integers(1, 4, n), pa.int32()),
        },
        schema=schema,
    )


def write_test_federation(directory: Path, sizes: tuple[int, int, int] = (120, 80, 0)) -> tuple[Path, dict[str, Any]]:
    """Write the test federation into `directory`; returns (config path, data)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fedsql.launcher import free_ports

    rng = np.random.default_rng(TEST_SEED)
    data: dict[str, Any] = {}
    first = 1
    for i, n in enumerate(sizes, 1):
        table = _make_table(rng, n, first)
        first += n
        pq.write_table(table, directory / f"p{i}_t.parquet")
        data[f"p{i}.t"] = table
    data["t"] = pa.concat_tables([data["p1.t"], data["p2.t"], data["p3.t"]])
    ports = free_ports(3)
    config = directory / "federation.toml"
    config.write_text(TEST_CONFIG.format(port1=ports[0], port2=ports[1], port3=ports[2]), encoding="utf-8")
    return config, data


def node_available() -> bool:
    return importlib.util.find_spec("fedsql.node") is not None


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A running 3-party federation of real node processes: (config_path, data)."""
    if not node_available():
        pytest.skip("fedsql.node is not available yet")
    from fedsql.launcher import start_federation

    directory = tmp_path_factory.mktemp("testfed")
    config, data = write_test_federation(directory)
    timeout = float(os.environ.get("FEDSQL_TEST_START_TIMEOUT", "90"))
    with start_federation(config, log_dir=directory / "logs", timeout=timeout):
        yield config, data


@pytest.fixture(scope="session")
def reference(federation: tuple[Path, dict[str, Any]]) -> Callable[[str], Any]:
    """`reference(sql)` → pyarrow.Table from DuckDB over the pooled test data
    (`t` is the union; `p1.t` etc. the party tables)."""
    import duckdb

    _, data = federation
    db = duckdb.connect()
    for name, table in data.items():
        if "." in name:
            schema, tname = name.split(".")
            db.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            db.register(f"__{schema}_{tname}", table)
            db.execute(f'CREATE TABLE "{schema}"."{tname}" AS SELECT * FROM "__{schema}_{tname}"')
        else:
            db.register(f"__{name}", table)
            db.execute(f'CREATE TABLE "{name}" AS SELECT * FROM "__{name}"')

    def run(sql: str) -> Any:
        result = db.sql(sql).arrow()
        return result if hasattr(result, "num_rows") else result.read_all()

    return run


@pytest.fixture()
def conn(federation: tuple[Path, dict[str, Any]]) -> Iterator[Any]:
    """A DB-API connection to party p1 of the test federation."""
    import fedsql

    config, _ = federation
    connection = fedsql.connect(str(config), party="p1")
    try:
        yield connection
    finally:
        connection.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test over real `fedsql node` processes")
    config.addinivalue_line("markers", "demo: runs the whole `fedsql demo --no-shell`")
    config.addinivalue_line("markers", "browser: drives headless Chromium (skipped when no chromium binary exists)")


@pytest.fixture()
def write_federation() -> Callable[..., tuple[Path, dict[str, Any]]]:
    """`write_federation(directory, sizes=(n1, n2, n3))` writes (not starts) a fresh test federation."""
    return write_test_federation
