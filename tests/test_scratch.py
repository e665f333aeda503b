"""The issuer's scratch space (fedsql/scratch.py) and the catalog statements, end to end.

Results of federated queries are stored at the issuer only (`scratch.name`,
Parquet under `<config dir>/.fedsql/<party>/scratch/`), can be queried and
combined there, and no other party can read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import fedsql

pytestmark = pytest.mark.e2e


def _rows(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()


def test_create_table_as_federated_select_and_reuse(federation: tuple[Path, Any], conn: Any, reference: Any) -> None:
    config, _ = federation
    cur = conn.execute("CREATE OR REPLACE TABLE scratch.st_agg AS SELECT k, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k")
    assert cur.description is None and cur.rowcount == reference("SELECT COUNT(DISTINCT k) + 1 FROM t").column(0)[0].as_py()
    assert any("stores the result in scratch.st_agg" in item for item in cur.leakage)
    assert (config.parent / ".fedsql" / "p1" / "scratch" / "st_agg.parquet").is_file()
    got = _rows(conn, "SELECT k, n, sx FROM scratch.st_agg ORDER BY k NULLS LAST")
    want = reference("SELECT k, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k ORDER BY k NULLS LAST").to_pylist()
    assert [(r[0], r[1], int(r[2])) for r in got] == [(w["k"], w["n"], int(w["sx"])) for w in want]

    cur = conn.execute("INSERT INTO scratch.st_agg SELECT 'all', COUNT(*), SUM(x) FROM t WHERE g = ?", [2])
    assert cur.rowcount == 1
    conn.execute("CREATE OR REPLACE TABLE scratch.st_g AS SELECT g, COUNT(*) AS n FROM t GROUP BY g")
    # combine two stored results at the issuer, in its own DuckDB
    joined = _rows(conn, "SELECT a.k, a.n + b.n FROM scratch.st_agg a JOIN scratch.st_g b ON a.n > 0 AND b.g = 1 "
                         "WHERE a.k = 'all'")
    assert len(joined) == 1
    described = conn.describe("scratch.st_agg")
    assert [(c, lvl) for c, _, lvl in described] == [("k", "owner"), ("n", "owner"), ("sx", "owner")]
    assert ("scratch", "st_agg", "scratch") in conn.tables()


def test_plain_ddl_dml_and_constants(conn: Any) -> None:
    conn.execute("CREATE OR REPLACE TABLE scratch.st_notes (id INTEGER, note VARCHAR)")
    cur = conn.cursor()
    cur.executemany("INSERT INTO scratch.st_notes VALUES (?, ?)", [(1, "a"), (2, "it's"), (3, None)])
    assert cur.rowcount == 3
    assert conn.execute("UPDATE scratch.st_notes SET note = 'b' WHERE id = 1").rowcount == 1
    assert conn.execute("DELETE FROM scratch.st_notes WHERE note IS NULL").rowcount == 1
    assert _rows(conn, "SELECT * FROM scratch.st_notes ORDER BY id") == [(1, "b"), (2, "it's")]
    assert _rows(conn, "SELECT 1 + 1, lower('X')") == [(2, "x")]
    conn.execute("DROP TABLE scratch.st_notes")
    with pytest.raises(fedsql.UnknownObjectError, match="no scratch table 'st_notes'"):
        conn.execute("SELECT * FROM scratch.st_notes")


def test_refusals(conn: Any) -> None:
    with pytest.raises(fedsql.NotSupportedError, match="only to your own scratch space"):
        conn.execute("CREATE TABLE p2.x AS SELECT 1")
    with pytest.raises(fedsql.NotSupportedError, match="only to your own scratch space"):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(fedsql.NotSupportedError, match="not both"):
        conn.execute("SELECT * FROM scratch.st_agg a JOIN t ON a.k = t.k")
    with pytest.raises(fedsql.ProgrammingError, match="cannot access files"):
        conn.execute("SELECT * FROM read_csv('/etc/passwd')")
    # the federated part still obeys the owners' policies
    with pytest.raises(fedsql.PolicyViolation):
        conn.execute("CREATE TABLE scratch.st_ids AS SELECT id FROM t")


def test_scratch_is_the_issuers_own(federation: tuple[Path, Any], conn: Any) -> None:
    config, _ = federation
    conn.execute("CREATE OR REPLACE TABLE scratch.st_mine AS SELECT 42 AS v")
    with fedsql.connect(str(config), party="p2") as other:
        assert all(kind != "scratch" or name != "st_mine" for _, name, kind in other.tables())
        with pytest.raises(fedsql.UnknownObjectError):
            other.execute("SELECT * FROM scratch.st_mine")


def test_explain_and_catalog(conn: Any) -> None:
    cur = conn.execute("EXPLAIN CREATE TABLE scratch.st_x AS SELECT g, COUNT(*) FROM t GROUP BY g")
    lines = [r[0] for r in cur.fetchall()]
    assert any("secure" in ln for ln in lines) and "scratch.st_x" in lines[-1]
    cur = conn.execute("EXPLAIN SELECT 1")
    assert "no other party takes part" in " ".join(r[0] for r in cur.fetchall())
    tables = conn.tables()
    assert ("p2", "t", "table") in tables and ("federated", "t", "federated") in tables
    cols = conn.describe("p2.t")
    assert ("id", "BIGINT", "private") in cols and ("k", "VARCHAR", "group_key") in cols
    assert conn.describe("t") == cols  # the union: the other owners' levels
