"""The node's one catalog (fedsql/catalog.py, issue #18 item 3): a peer's changed schema is seen
at once after the peer refuses a plan built on the old one, not only when the cache expires.

p1 caches p2's schema of `t`; p2's file is rewritten with `x` as DOUBLE instead of BIGINT. p1's
next query is planned on the stale schema, so p2 (which describes its own table fresh) compiles
another plan and refuses: a PlanMismatch that says to run the query again. Both drop their
cached schemas of the query's parties, so the query run again is planned on the new schema and
equals DuckDB over the new file. Without the invalidation the retry fails the same way for the
rest of SCHEMA_TTL (60 s). SHOW/DESCRIBE read the same catalog.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedsql import errors
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e

SQL = "SELECT COUNT(*) AS n, SUM(x) AS sx, MIN(x) AS lo FROM p2.t"


def test_a_peer_schema_change_is_seen_after_its_refusal(tmp_path: Path) -> None:
    config, data = standard_federation(tmp_path)
    with running(config) as fed:
        with fed.connect("p1") as conn:
            cur = conn.cursor()
            cur.execute(SQL)
            assert cur.fetchall()[0][0] == data["p2.t"].num_rows
            assert ("x", "BIGINT", "aggregate") in conn.describe("p2.t")  # cached at p1 now

            changed = data["p2.t"].set_column(2, "x", data["p2.t"].column("x").cast(pa.float64()))
            changed = changed.set_column(2, "x", pa.compute.multiply(changed.column("x"), pa.scalar(0.5)))
            pq.write_table(changed, tmp_path / "p2_t.parquet")

            with pytest.raises(errors.PlanMismatch, match="run the query again"):
                cur.execute(SQL)
            cur.execute(SQL)  # planned on the new schema
            got = cur.fetchall()
            want = duckdb.sql("SELECT COUNT(*), SUM(x), MIN(x) FROM changed").fetchall()
            assert got[0][0] == want[0][0] and got[0][1] == pytest.approx(want[0][1], abs=1e-3)
            assert got[0][2] == pytest.approx(want[0][2], abs=1e-3)
            assert ("x", "DOUBLE", "aggregate") in conn.describe("p2.t")
