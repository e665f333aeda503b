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
    """About 400,000 rows (two chunks) through fetchmany and fetch_record_batch, equal to DuckDB."""
    sql = "SELECT x, s FROM scratch.stream_big WHERE x BETWEEN -200000 AND 200000 ORDER BY x, s"
    want = duckdb.sql(sql.replace("scratch.stream_big", f"({BIG})")).fetchall()
    cur = conn.cursor()
    cur.execute(sql)
    result = cur._result
    assert cur.rowcount == len(want) > 300_000 and result.rows_received == 0  # the header came first
    got = cur.fetchmany(1000)
    assert 0 < result.rows_received < len(want)  # only the batch it was fetched from arrived
    while rows := cur.fetchmany(100_000):
        got.extend(rows)
    assert got == want and result.done

    cur.execute(sql)
    reader = cur.fetch_record_batch()
    batches = list(reader)
    assert len(batches) > 1 and sum(b.num_rows for b in batches) == len(want)
    assert pa.Table.from_batches(batches, schema=reader.schema).to_pylist() == [{"x": x, "s": s} for x, s in want]

    cur.execute(ORDERED.format("scratch.stream_big"))
    assert len(cur.fetchmany(10)) == 10
    stopped = cur._result
    cur.execute("SELECT COUNT(*) AS n FROM scratch.stream_big")  # a new execute stops the big stream
    assert stopped.done and stopped.rows_received < ROWS and cur.fetchall() == [(ROWS,)]


def test_the_shell_pages_a_large_result_and_counts_rows_received(conn: Any, big: Any, monkeypatch) -> None:
    import io

    from fedsql import shell

    closed = []
    original = result_meta.ResultStream.close

    def recording(self):
        closed.append(self.rows_received)
        original(self)

    monkeypatch.setattr(result_meta.ResultStream, "close", recording)
    out, err = io.StringIO(), io.StringIO()
    assert shell.Shell(conn, out=out, err=err).run_script(ORDERED.format("scratch.stream_big")) == 0, err.getvalue()
    text = out.getvalue()
    lines = [line for line in text.splitlines() if "|" in line]
    assert len(lines) == 1 + shell.MAXROWS and lines[1].split("|")[0].strip() == "NULL"
    assert "… 1,499,960 more rows not shown (1,500,000 in all)" in text and "(1500000 rows" in text
    assert closed and closed[-1] < ROWS  # the rest was never read: the cursor's close stopped the stream

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(shell, "PROGRESS_DELAY", 0.0)
    out, err = io.StringIO(), Terminal()  # csv into a pipe, the progress line on a terminal
    sql = "SELECT x, s FROM scratch.stream_big WHERE x BETWEEN 0 AND 400000 ORDER BY x, s"
    assert shell.Shell(conn, out=out, err=err).run_script(f".mode csv\n{sql};") == 0, err.getvalue()
    want = duckdb.sql(sql.replace("scratch.stream_big", f"({BIG})")).fetchall()
    assert out.getvalue().splitlines() == ["x,s"] + [f"{x},{s}" for x, s in want]
    assert f"receiving rows: {len(want):,} of {len(want):,}" in err.getvalue()


def test_federated_results_still_match_duckdb(conn: Any, reference: Any) -> None:
    sql = "SELECT k, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k ORDER BY k NULLS LAST"
    got = conn.execute(sql).fetchall()
    assert got == [tuple(r.values()) for r in reference(sql).to_pylist()]
