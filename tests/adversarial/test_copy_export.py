"""Issue #14 item 4: `COPY (query) TO 'file'` writes the issuer's result into its own export directory only.

A real federation; the test process is a user of p1 (the issuer) who writes results and then
tries to make p1's node write elsewhere: an absolute path, `..` out of the directory into
p2's state, a symbolic link (to a directory and to a file) planted inside the export
directory, and an existing file without OVERWRITE. Nothing outside the export directory may
be created or changed. On the code before this change COPY was not a statement fedsql ran
at all (the planner refused it), so every test here fails there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pyarrow.parquet as pq
import pytest

import fedsql
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e

QUERY = "SELECT k, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Any], Path]]:
    directory = tmp_path_factory.mktemp("copyfed")
    config, data = standard_federation(directory)
    with running(config) as fed:
        yield fed, data, config.parent / ".fedsql" / "p1" / "exports"


def _reference(data: dict[str, Any], sql: str) -> list[tuple]:
    db = duckdb.connect()
    db.register("t", data["t"])
    return sorted(db.execute(sql).fetchall(), key=repr)


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, float]]:
    """Every file below `root` except those below `skip` and logs (size, mtime), to see nothing else changed."""
    out = {}
    for dirpath, _, files in os.walk(root):
        if Path(dirpath).is_relative_to(skip):
            continue
        for f in files:
            if f.endswith(".log"):
                continue
            p = Path(dirpath) / f
            st = p.lstat()
            out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def test_copy_federated_result_to_parquet_and_csv(fed: tuple[Any, dict[str, Any], Path]) -> None:
    running_fed, data, exports = fed
    want = _reference(data, QUERY)
    with running_fed.connect("p1") as conn:
        cur = conn.execute(f"COPY ({QUERY}) TO 'agg.parquet'")
        assert cur.rowcount == len(want)
        assert any("writes the result to agg.parquet in its export directory" in item for item in cur.leakage)
        cur = conn.execute(f"COPY ({QUERY}) TO 'q1/agg.csv' (HEADER)")
        assert cur.rowcount == len(want)
        with pytest.raises(fedsql.PolicyViolation):  # the federated part obeys the owners' policies
            conn.execute("COPY (SELECT id FROM t) TO 'ids.parquet'")
        conn.execute("CREATE OR REPLACE TABLE scratch.small AS SELECT k, COUNT(*) AS n FROM t GROUP BY k")
        assert conn.execute("COPY scratch.small TO 'small.parquet'").rowcount == len(want)
        plan = conn.execute(f"EXPLAIN COPY ({QUERY}) TO 'never.parquet'").fetchall()
        assert any("export directory" in row[0] for row in plan)
    assert not (exports / "never.parquet").exists()
    got_parquet = sorted(duckdb.execute(f"SELECT * FROM read_parquet('{exports / 'agg.parquet'}')").fetchall(), key=repr)
    got_csv = sorted(duckdb.execute(f"SELECT * FROM read_csv('{exports / 'q1' / 'agg.csv'}')").fetchall(), key=repr)
    assert [(k, n, int(s)) for k, n, s in got_parquet] == [(k, n, int(s)) for k, n, s in want]
    assert [(k, n, int(s)) for k, n, s in got_csv] == [(k, n, int(s)) for k, n, s in want]
    assert pq.read_table(exports / "small.parquet").num_rows == len(want)
    assert not (exports.parent.parent / "p2" / "exports").exists()  # only the issuer writes


def test_existing_file_needs_overwrite(fed: tuple[Any, dict[str, Any], Path]) -> None:
    running_fed, _, exports = fed
    with running_fed.connect("p1") as conn:
        conn.execute("COPY (SELECT 1 AS a) TO 'once.parquet'")
        with pytest.raises(fedsql.ProgrammingError, match="already exists; add \\(OVERWRITE\\)"):
            conn.execute("COPY (SELECT 2 AS a) TO 'once.parquet'")
        assert pq.read_table(exports / "once.parquet").column("a").to_pylist() == [1]
        conn.execute("COPY (SELECT 3 AS a) TO 'once.parquet' (OVERWRITE)")
        assert pq.read_table(exports / "once.parquet").column("a").to_pylist() == [3]
        conn.execute("COPY (SELECT 4 AS a) TO 'once.parquet' (FORMAT PARQUET, OVERWRITE_OR_IGNORE)")
        assert pq.read_table(exports / "once.parquet").column("a").to_pylist() == [4]
        with pytest.raises(fedsql.ProgrammingError, match="option COMPRESSION is not supported"):
            conn.execute("COPY (SELECT 1) TO 'c.parquet' (COMPRESSION zstd)")
        with pytest.raises(fedsql.ProgrammingError, match="cannot tell the format"):
            conn.execute("COPY (SELECT 1) TO 'result.json'")
        with pytest.raises(fedsql.NotSupportedError, match="COPY … FROM is not supported"):
            conn.execute("COPY scratch.x FROM 'agg.parquet'")


def test_paths_outside_the_export_directory_are_refused(fed: tuple[Any, dict[str, Any], Path], tmp_path: Path) -> None:
    running_fed, _, exports = fed
    state = exports.parent.parent  # <config dir>/.fedsql
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.parquet"
    victim.write_bytes(b"do not touch")
    with running_fed.connect("p1") as conn:
        conn.execute("COPY (SELECT 1 AS a) TO 'seed.parquet' (OVERWRITE)")  # the directory exists
        (exports / "linkdir").symlink_to(outside, target_is_directory=True)
        (exports / "linkfile.parquet").symlink_to(victim)
        (exports / "p2state").symlink_to(state / "p2", target_is_directory=True)
        before = _snapshot(state.parent, exports) | _snapshot(outside, exports)
        attempts = {
            f"{outside}/evil.parquet": "outside your export directory",
            str(victim): "outside your export directory",
            "/etc/fedsql_evil.csv": "outside your export directory",
            "../../p2/exports/evil.parquet": "'..' component",
            "../scratch/evil.parquet": "'..' component",
            "q1/../../evil.parquet": "'..' component",
            "./evil.parquet": "'.' or '..' component",
            "~/evil.parquet": "outside your export directory",
            "linkdir/evil.parquet": "symbolic link or not a directory",
            "p2state/scratch/evil.parquet": "symbolic link or not a directory",
            "linkfile.parquet": "is a symbolic link",
            "a\\..\\b.parquet": "backslash",
            "": "'.' or '..' component",
        }
        for name, message in attempts.items():
            for options in ("", " (OVERWRITE)"):
                with pytest.raises(fedsql.ProgrammingError, match=message.replace("(", "\\(")):
                    conn.execute(f"COPY ({QUERY}) TO '{name}'{options}")
        # the right absolute name of a file inside the directory is fine
        assert conn.execute(f"COPY (SELECT 1 AS a) TO '{exports.resolve() / 'abs.parquet'}'").rowcount == 1
    assert victim.read_bytes() == b"do not touch"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.parquet"]
    assert not Path("/etc/fedsql_evil.csv").exists()
    after = _snapshot(state.parent, exports) | _snapshot(outside, exports)
    assert after == before
    assert not list(exports.glob(".*.tmp"))
    assert "Traceback" not in running_fed.node_log("p1")
