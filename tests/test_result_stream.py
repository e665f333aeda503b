"""Results stream as Arrow record batches in the Execute stream (issue #18 item 4), end to end.

A result of several chunks (a scratch table of 1.5 million rows, about 24 MB: six chunks of about
4 MiB) reaches the DB-API through a real node intact, NULLs and negatives included, equal to
plain DuckDB; a federated result still equals DuckDB over the pooled data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from fedsql import result_meta
from fedsql.client import NodeClient
from fedsql.config import load_config

pytestmark = pytest.mark.e2e

BIG = ("SELECT CASE WHEN range % 101 = 0 THEN NULL ELSE 750000 - range END AS x, "
       "(range % 7)::VARCHAR AS s FROM range(1500000)")


def test_a_result_of_many_chunks_arrives_whole(federation: tuple[Path, Any], conn: Any, monkeypatch) -> None:
    config, _ = federation
    conn.execute(f"CREATE OR REPLACE TABLE scratch.stream_big AS {BIG}")
    fed = load_config(config)
    chunks = []
    with NodeClient(fed.parties["p1"].address, party="p1", config_path=str(config)) as client:
        original = result_meta.ResultAssembler.add

        def counting(self, chunk):  # count what really crossed the socket
            chunks.append(len(chunk.arrow_ipc))
            original(self, chunk)

        monkeypatch.setattr(result_meta.ResultAssembler, "add", counting)
        table, meta = client.execute("SELECT x, s FROM scratch.stream_big ORDER BY x NULLS FIRST, s")
    assert len(chunks) >= 4 and max(chunks) < 3 * result_meta.CHUNK_BYTES, chunks
    expected = duckdb.sql(f"SELECT x, s FROM ({BIG}) ORDER BY x NULLS FIRST, s").arrow()
    expected = expected if hasattr(expected, "num_rows") else expected.read_all()
    assert meta["kind"] == "rows" and [c["name"] for c in meta["columns"]] == ["x", "s"]
    assert table.num_rows == 1_500_000 and table.column("x").null_count == expected.column("x").null_count
    assert table.equals(expected.cast(table.schema))
    conn.execute("DROP TABLE scratch.stream_big")


def test_federated_results_still_match_duckdb(conn: Any, reference: Any) -> None:
    sql = "SELECT k, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k ORDER BY k NULLS LAST"
    got = conn.execute(sql).fetchall()
    assert got == [tuple(r.values()) for r in reference(sql).to_pylist()]
