"""The `fedsql` command as users run it: help, clear one-line errors, exit codes, demo.

Tests that need real nodes are marked `e2e`; the full demo run is
`test_demo_no_shell_end_to_end` (also marked `demo`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from fedsql import render
from fedsql.launcher import free_ports, port_in_use
from fedsql.shell import split_statements

e2e = pytest.mark.e2e


def _require_node() -> None:
    import importlib.util

    if importlib.util.find_spec("fedsql.node") is None:
        pytest.skip("fedsql.node is not available yet")


def fedsql_cmd() -> list[str]:
    script = Path(sys.executable).parent / "fedsql"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fedsql.cli"]


def run(*args: str, cwd: Path | None = None, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FEDSQL_DEBUG"}
    return subprocess.run(
        [*fedsql_cmd(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, input=stdin, env=env
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


# -- help and usage ---------------------------------------------------------------------


def test_help() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for cmd in ("node", "up", "demo", "shell"):
        assert cmd in proc.stdout


@pytest.mark.parametrize("cmd", ["node", "up", "demo", "shell"])
def test_subcommand_help(cmd: str) -> None:
    proc = run(cmd, "--help")
    assert proc.returncode == 0
    assert "usage: fedsql " + cmd in proc.stdout


def test_no_command_is_usage_error() -> None:
    assert run().returncode == 2


# -- configuration errors ------------------------------------------------------------------


def test_missing_config(tmp_path: Path) -> None:
    proc = run("shell", str(tmp_path / "nope.toml"), "--party", "h1", "-c", "SELECT 1")
    assert proc.returncode == 2
    assert_one_line_error(proc, "nope.toml", "not found")


def test_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "federation.toml"
    cfg.write_text("[federation]\nname = 'x'\n[parties.a]\naddress = 'localhost'\n")
    for args in (("up", str(cfg)), ("node", str(cfg), "--party", "a"), ("shell", str(cfg), "--party", "a")):
        proc = run(*args)
        assert proc.returncode == 2, args
        assert_one_line_error(proc, "parties.a.address")


def test_shell_party_not_running(tmp_path: Path) -> None:
    ports = free_ports(3)
    cfg = tmp_path / "federation.toml"
    cfg.write_text("[federation]\nname = 'x'\n" + "".join(f"[parties.p{i}]\naddress = '127.0.0.1:{p}'\n" for i, p in enumerate(ports, 1)))
    # without keys the shell says which command creates them (test_security_tls.py); with them, who is down
    assert run("keys", str(cfg), "--party", "p1").returncode == 0
    proc = run("shell", str(cfg), "--party", "p1", "-c", "SELECT 1")
    assert proc.returncode == 1
    assert_one_line_error(proc, "p1", f"127.0.0.1:{ports[0]}", "fedsql up")


def test_up_refuses_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert port_in_use(f"127.0.0.1:{port}")
        free = free_ports(2)
        cfg = tmp_path / "federation.toml"
        cfg.write_text(
            "[federation]\nname = 'x'\n"
            f"[parties.a]\naddress = '127.0.0.1:{free[0]}'\n"
            f"[parties.b]\naddress = '127.0.0.1:{port}'\n"
            f"[parties.c]\naddress = '127.0.0.1:{free[1]}'\n"
        )
        proc = run("up", str(cfg))
    assert proc.returncode == 1
    assert_one_line_error(proc, "'b'", str(port), "already in use")


def test_node_prints_ready_and_a_second_node_on_its_port_is_refused(tmp_path: Path, write_federation) -> None:
    """issue #15: a second `fedsql node` for a running party started silently on the same port
    (SO_REUSEPORT); now it fails naming the address, and the first says once that it is ready."""
    from fedsql.config import load_config
    from fedsql.tls import ensure_local_keys

    _require_node()
    config, _ = write_federation(tmp_path)
    ensure_local_keys(load_config(config), ["p1", "p2", "p3"])
    first = subprocess.Popen([*fedsql_cmd(), "node", str(config), "--party", "p1"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        line = first.stdout.readline()  # type: ignore[union-attr]
        address = load_config(config).parties["p1"].address
        assert line.startswith("fedsql: node of party 'p1'") and f"ready at {address}" in line
        second = run("node", str(config), "--party", "p1", timeout=60)
        assert second.returncode == 1
        assert_one_line_error(second, "'p1'", address, "already in use")
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(timeout=30)


# -- rendering and statement splitting (no node needed) --------------------------------------


def test_render_table() -> None:
    import decimal

    table = pa.table({"k": ["a", None], "n": [1, 200], "c": [decimal.Decimal("1.50"), None]})
    text = render.format_table(table)
    lines = text.splitlines()
    assert lines[0].split("|")[0].strip() == "k"
    assert "NULL" in lines[3]
    assert lines[2].endswith(" 1.50")  # numbers right-aligned
    assert render.format_footer(2, 0.5) == "(2 rows, 0.50 s)"
    assert render.format_leakage([]) == "leakage: nothing beyond the result"


def test_render_long_table_elides_middle() -> None:
    text = render.format_table(pa.table({"n": list(range(100))}), max_rows=10)
    assert "…" in text
    assert len(text.splitlines()) == 2 + 11


def test_split_statements() -> None:
    done, rest = split_statements("SELECT ';' FROM t; -- x;\nSELECT 2;\nSELECT")
    assert done == ["SELECT ';' FROM t", "-- x;\nSELECT 2"]
    assert rest.strip() == "SELECT"


# -- end to end ------------------------------------------------------------------------------


@e2e
def test_shell_batch_modes(federation: tuple[Path, Any], tmp_path: Path) -> None:
    config, _ = federation
    proc = run("shell", str(config), "--party", "p1", "-c", "SELECT COUNT(*) AS n FROM t;")
    assert proc.returncode == 0, proc.stderr
    assert "n" in proc.stdout and "leakage" in proc.stdout and "1 row" in proc.stdout

    script = tmp_path / "q.sql"
    script.write_text("SELECT COUNT(*)\n  AS n FROM t;\nSELECT id FROM t;\nSELECT 1;\n")
    proc = run("shell", str(config), "--party", "p1", "-f", str(script))
    assert proc.returncode == 1  # the second statement is refused; the batch stops there
    assert_one_line_error(proc, "id", "statement 2 (from line 3)")

    script.write_text("SELECT 1;\n\nSELECT 1 FROM t\n  WHERE;\n")  # issue #15: name the token and the statement
    proc = run("shell", str(config), "--party", "p1", "-f", str(script))
    assert proc.returncode == 1
    assert_one_line_error(proc, "statement 2 (from line 3)", "line 2, column 7", "WHERE is missing its expression")

    proc = run("shell", str(config), "--party", "p1", "-c", "EXPLAIN SELECT COUNT(*) FROM t")
    assert proc.returncode == 0 and proc.stdout.count("leakage") == 1, proc.stdout  # not printed twice

    proc = run("shell", str(config), "--party", "p1", stdin=".parties\nSELECT COUNT(*)\nFROM t;\n")
    assert proc.returncode == 0, proc.stderr
    assert "compute" in proc.stdout and "1 row" in proc.stdout


@e2e
@pytest.mark.demo
def test_demo_no_shell_end_to_end(tmp_path: Path) -> None:
    """`fedsql demo --no-shell` writes data, starts 5 nodes, runs the tour, exits 0."""
    _require_node()
    proc = run("demo", "--dir", str(tmp_path / "demo"), "--no-shell", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "federation 'demo' ready" in out
    assert "SELECT COUNT(*) AS patients FROM patients" in out
    assert "leakage" in out
    assert "error: refused" in out and "patient_id is 'private'" in out  # one clear line
    assert "to bank only: the joined rows" in out  # PSI and enrichment, each with its leakage report
    assert "telco.subscribers.data_gb" in out and "lacks permission 'payload'" in out
    assert "that bank looked up 2 hidden key values" in out  # the hidden lookup's leakage report
    assert "Traceback" not in out + proc.stderr
    assert (tmp_path / "demo" / "federation.toml").is_file()
    assert (tmp_path / "demo" / "data" / "telco_subscribers.csv").is_file()


def _node_pids(config: Path) -> dict[str, int]:
    """party → pid of the `fedsql node` processes of `config` (Linux /proc)."""
    out = {}
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "node" in args and str(config) in args and "--party" in args:
            out[args[args.index("--party") + 1]] = int(proc_dir.name)
    return out


def _start_up(config: Path) -> tuple[subprocess.Popen[str], str]:
    import select

    proc = subprocess.Popen(
        [*fedsql_cmd(), "up", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
    return proc, line


@e2e
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to find node pids")
def test_up_ready_line_ctrl_c_and_dead_node(tmp_path: Path, write_federation: Any) -> None:
    """`fedsql up`: one ready line; SIGINT stops every node; a dying node stops the rest."""
    import signal

    _require_node()
    config, _ = write_federation(tmp_path, sizes=(5, 5, 5))
    config = config.resolve()

    proc, line = _start_up(config)
    try:
        assert line.startswith("fedsql: federation 'testfed' ready: p1=127.0.0.1:"), line + proc.stderr.read()  # type: ignore[union-attr]
        pids = _node_pids(config)
        assert sorted(pids) == ["p1", "p2", "p3"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert _node_pids(config) == {}
    finally:
        if proc.poll() is None:
            proc.kill()

    logs = config.parent / ".fedsql" / "logs"  # documented place, kept across runs (issue #15)
    assert f"logs in {logs}" in line and (logs / "p1.log").exists()
    proc, line = _start_up(config)
    try:
        assert "ready" in line and (logs / "p1.log.1").exists()
        os.kill(_node_pids(config)["p2"], signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
        err = proc.stderr.read()  # type: ignore[union-attr]
        assert "error: " in err and "'p2'" in err and "Traceback" not in err
        assert _node_pids(config) == {}
    finally:
        if proc.poll() is None:
            proc.kill()


@e2e
def test_interactive_shell_in_a_terminal(federation: tuple[Path, Any], tmp_path: Path) -> None:
    """Drive the prompt_toolkit shell in a pseudo-terminal: multi-line query, meta command, quit."""
    pexpect = pytest.importorskip("pexpect")
    config, _ = federation
    env = {**os.environ, "HOME": str(tmp_path), "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
    env.pop("FEDSQL_DEBUG", None)
    child = pexpect.spawn(fedsql_cmd()[0], [*fedsql_cmd()[1:], "shell", str(config), "--party", "p1"],
                          env=env, encoding="utf-8", timeout=60, dimensions=(40, 200))
    try:
        child.expect_exact("fedsql p1>")
        child.send("SELECT COUNT(*) AS n\r")
        child.expect_exact("...>")
        child.send("FROM t;\r")
        child.expect_exact("1 row")
        child.expect_exact("leakage")
        child.expect_exact("fedsql p1>")
        child.send(".parties\r")
        child.expect_exact("compute")
        child.expect_exact("fedsql p1>")
        child.send("SELECT id FROM t;\r")
        child.expect_exact("error: ")
        child.expect_exact("fedsql p1>")
        child.send(".quit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0 or child.exitstatus == 1
