"""Results stream as Arrow record batches from the node to the DB-API (issue #13 item 4), end to end.

A result of several chunks (a scratch table of 1.5 million rows, about 24 MB: six chunks of about
4 MiB) reaches the DB-API through a real node intact, NULLs and negatives included, equal to plain
DuckDB: whole (`NodeClient.execute`), with `fetchmany` read batch by batch off the live stream (the
rowcount known before any row arrived), and as a RecordBatchReader of several batches; a cursor
that stops early stops the stream; a federated result still equals DuckDB over the pooled data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from fedsql import result_meta
from fedsql.client import NodeClient
from fedsql.config import load_config

pytestmark = pytest.mark.e2e

BIG = ("SELECT CASE WHEN range % 101 = 0 THEN NULL ELSE 750000 - range END AS x, "
       "(range % 7)::VARCHAR AS s FROM range(1500000)")
ORDERED = "SELECT x, s FROM {} ORDER BY x NULLS FIRST, s"
ROWS = 1_500_000


@pytest.fixture(scope="module")
def big(federation: tuple[Path, Any]) -> Any:
    """scratch.stream_big at p1 and DuckDB's answer to the ordered query over the same rows."""
    import fedsql

    config, _ = federation
    with fedsql.connect(str(config), party="p1") as conn:
        conn.execute(f"CREATE OR REPLACE TABLE scratch.stream_big AS {BIG}")
        expected = duckdb.sql(ORDERED.format(f"({BIG})")).arrow()
        yield expected if hasattr(expected, "num_rows") else expected.read_all()
        conn.execute("DROP TABLE scratch.stream_big")


def test_a_result_of_many_chunks_arrives_whole(federation: tuple[Path, Any], big: Any, monkeypatch) -> None:
    config, _ = federation
    fed = load_config(config)
    chunks = []
    original = result_meta.ResultStream._pull

    def counting(self):  # count what really crossed the socket
        data = original(self)
        if data:
            chunks.append(len(data))
        return data

    monkeypatch.setattr(result_meta.ResultStream, "_pull", counting)
    with NodeClient(fed.parties["p1"].address, party="p1", config_path=str(config)) as client:
        table, meta = client.execute(ORDERED.format("scratch.stream_big"))
    assert len(chunks) >= 4 and max(chunks) < 3 * result_meta.CHUNK_BYTES, chunks
    assert meta["kind"] == "rows" and [c["name"] for c in meta["columns"]] == ["x", "s"]
    assert meta["total_rows"] == ROWS
    assert table.num_rows == ROWS and table.column("x").null_count == big.column("x").null_count
    assert table.equals(big.cast(table.schema))


def test_the_dbapi_fetches_batch_by_batch_off_the_live_stream(conn: Any, big: Any) -> None:
    cur = conn.cursor()
    cur.execute(ORDERED.format("scratch.stream_big"))
    result = cur._result
    assert cur.rowcount == ROWS and result.rows_received == 0  # the header came first
    want = big.to_batches(max_chunksize=100_000)
    got_first = cur.fetchmany(100_000)
    assert 0 < result.rows_received < ROWS  # only what was fetched (and its batch) arrived
    assert got_first == list(zip(*(c.to_pylist() for c in want[0].columns)))
    rows = len(got_first)
    while batch := cur.fetchmany(250_000):
        expected = big.slice(rows, len(batch))
        assert batch == list(zip(*(c.to_pylist() for c in expected.columns)))
        rows += len(batch)
    assert rows == ROWS and result.done

    cur.execute(ORDERED.format("scratch.stream_big"))
    reader = cur.fetch_record_batch()
    batches = list(reader)
    sizes = [b.num_rows for b in batches]
    assert pa.Table.from_batches(batches).equals(big.cast(reader.schema))
    assert len(sizes) > 1 and sum(sizes) == ROWS, sizes

    cur.execute(ORDERED.format("scratch.stream_big"))
    assert len(cur.fetchmany(10)) == 10
    stopped = cur._result
    cur.execute("SELECT COUNT(*) AS n FROM scratch.stream_big")  # a new execute stops the big stream
    assert stopped.done and stopped.rows_received < ROWS and cur.fetchall() == [(ROWS,)]


def test_federated_results_still_match_duckdb(conn: Any, reference: Any) -> None:
    sql = "SELECT k, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k ORDER BY k NULLS LAST"
    got = conn.execute(sql).fetchall()
    assert got == [tuple(r.values()) for r in reference(sql).to_pylist()]
