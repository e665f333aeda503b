"""`fedsql shell` driven end to end in a pseudo-terminal (pexpect), plus its batch modes.

The Ctrl-C test needs a query that runs long enough to interrupt. The test
federation's queries finish in well under a second, so that test starts its
own generated federation (`big`: 200,000 rows per party, every key at every
party) and runs `SELECT k, MIN(x), MAX(x) FROM big GROUP BY k`: 200,000 groups
whose MIN/MAX need secure comparisons take several seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.e2e

BIG_ROWS = 200_000


def fedsql_cmd() -> list[str]:
    script = Path(sys.executable).parent / "fedsql"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fedsql.cli"]


def spawn_shell(config: Path, home: Path, party: str = "p1") -> Any:
    env = {**os.environ, "HOME": str(home), "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
    env.pop("FEDSQL_DEBUG", None)
    cmd = fedsql_cmd()
    return pexpect.spawn(cmd[0], [*cmd[1:], "shell", str(config), "--party", party],
                         env=env, encoding="utf-8", timeout=30, dimensions=(50, 200))


def quit_shell(child: Any) -> None:
    child.send(".quit\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus in (0, 1)


def test_interactive_session(federation: tuple[Path, Any], tmp_path: Path) -> None:
    config, _ = federation
    child = spawn_shell(config, tmp_path)
    try:
        child.expect_exact("fedsql p1>")
        # a multi-line statement, ended by ';'
        child.send("SELECT g, COUNT(*) AS n\r")
        child.expect_exact("...>")
        child.send("FROM t GROUP BY g ORDER BY g;\r")
        child.expect(r"g \| +n")
        child.expect_exact("3 rows")
        child.expect_exact("leakage")
        child.expect_exact("fedsql p1>")
        # Tab completes meta commands, tables and columns
        child.send(".sch\t")
        child.expect_exact("schema")  # (highlighting puts escape codes between "." and "schema")
        child.send(" p2.t\r")
        child.expect_exact("group_key")
        child.expect_exact("fedsql p1>")
        child.send("SELECT COUNT(DISTI")
        child.send("\t")
        child.expect_exact("DISTINCT")
        child.send("\x15")  # Ctrl-U: clear the line
        child.send(".mode csv\r")
        child.expect_exact("fedsql p1>")
        child.send("SELECT g, COUNT(*) AS n FROM t GROUP BY g ORDER BY g;\r")
        child.expect_exact("g,n")
        child.expect(r"1,\d+")
        child.expect_exact("fedsql p1>")
        child.send(".mode markdown\r")
        child.send(".timer on\r")
        child.send("SELECT COUNT(*) AS n FROM t;\r")
        child.expect_exact("|---:|")
        child.expect_exact("Run Time:")
        child.expect_exact("fedsql p1>")
        child.send(".explain\r")
        child.expect_exact("leakage report")
        child.expect_exact("fedsql p1>")
        child.send(".tables\r")
        child.expect_exact("UNION ALL of p1.t, p2.t, p3.t")
        child.expect_exact("fedsql p1>")
        child.send(".budget\r")
        child.expect(r"(?i)budget|no .*dp|not available|issuer")
        child.expect_exact("fedsql p1>")
        child.send(".mode table\r")
        child.send("CREATE OR REPLACE TABLE scratch.pty_kept AS SELECT g, COUNT(*) AS n FROM t GROUP BY g;\r")
        child.expect_exact("OK, 3 rows")
        child.expect_exact("fedsql p1>")
        child.send("SELECT SUM(n) AS total FROM scratch.pty_kept;\r")
        child.expect_exact("total")
        child.expect_exact("1 row")
        child.expect_exact("fedsql p1>")
        child.send("SELECT id FROM t;\r")
        child.expect_exact("error: ")
        child.expect_exact("fedsql p1>")
        child.send(".nonsense\r")
        child.expect_exact("unknown command")
        child.expect_exact("fedsql p1>")
        quit_shell(child)
    finally:
        child.close(force=True)
    history = (tmp_path / ".fedsql_history").read_text()
    assert "FROM t GROUP BY g ORDER BY g;" in history


@pytest.fixture(scope="module")
def big_federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from fedsql.launcher import free_ports, start_federation

    directory = tmp_path_factory.mktemp("bigfed")
    ports = free_ports(3)
    text = "[federation]\nname = 'big'\ncompute = ['p1', 'p2', 'p3']\n"
    for i in (1, 2, 3):
        pq.write_table(pa.table({"k": pa.array(range(BIG_ROWS), pa.int64()),
                                 "x": pa.array(range(i, BIG_ROWS + i), pa.int64())}), directory / f"p{i}.parquet")
        text += (f"[parties.p{i}]\naddress = '127.0.0.1:{ports[i - 1]}'\n[parties.p{i}.tables.big]\n"
                 f"source = 'p{i}.parquet'\ncolumns = {{ k = 'group_key', x = 'aggregate' }}\n")
    text += "[federated.big]\nunion = ['p1.big', 'p2.big', 'p3.big']\n"
    config = directory / "federation.toml"
    config.write_text(text)
    with start_federation(config, log_dir=directory / "logs", timeout=90):
        yield config


def test_ctrl_c_cancels_the_query_not_the_shell(big_federation: Path, tmp_path: Path) -> None:
    child = spawn_shell(big_federation, tmp_path)
    try:
        child.expect_exact("fedsql p1>")
        child.send("SELECT k, MIN(x), MAX(x) FROM big GROUP BY k;\r")
        child.expect(r"running +\d+\.\d s +step \d+/\d+: \w+")  # the progress line with the secure step
        child.sendintr()
        child.expect_exact("query cancelled (Ctrl-C)")
        child.expect_exact("fedsql p1>")
        # the session is intact and the federation answers the next query
        child.send("SELECT COUNT(*) AS n FROM big;\r")
        child.expect_exact(str(3 * BIG_ROWS))
        child.expect_exact("1 row")
        child.expect_exact("fedsql p1>")
        quit_shell(child)
    finally:
        child.close(force=True)


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FEDSQL_DEBUG"}
    return subprocess.run([*fedsql_cmd(), *args], capture_output=True, text=True, timeout=120, input=stdin, env=env)


def test_batch_modes_and_exit_codes(federation: tuple[Path, Any], tmp_path: Path) -> None:
    config, _ = federation
    ok = _run("shell", str(config), "-p", "p1", "-c", ".mode csv\nSELECT g, COUNT(*) AS n FROM t GROUP BY g ORDER BY g;")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == "g,n" and len(ok.stdout.splitlines()) == 4
    js = _run("shell", str(config), "-p", "p1", "-c", ".mode json\nSELECT COUNT(*) AS n FROM t")
    assert js.returncode == 0 and js.stdout.strip().startswith('[{"n": ')
    bad = _run("shell", str(config), "-p", "p1", "-c", "SELECT COUNT(*) FROM t; SELECT nope FROM t; SELECT 1;")
    assert bad.returncode == 1 and bad.stderr.startswith("error: ")
    assert "Traceback" not in bad.stderr
    script = tmp_path / "batch.sql"
    script.write_text("-- keep a result\nCREATE OR REPLACE TABLE scratch.batch_kept AS\n  SELECT g, SUM(x) AS s FROM t GROUP BY g;\n"
                      "SELECT COUNT(*) AS groups FROM scratch.batch_kept;\n")
    f = _run("shell", str(config), "-p", "p1", "-f", str(script))
    assert f.returncode == 0, f.stderr
    assert "OK, 3 rows" in f.stdout and "groups" in f.stdout
    piped = _run("shell", str(config), "-p", "p1", "-f", "-", stdin=".schema nope.t\n")
    assert piped.returncode == 1 and "unknown party" in piped.stderr
    missing = _run("shell", str(config), "-p", "p1", "-f", str(tmp_path / "missing.sql"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
