"""The README's examples run as written, twice (issue #15: the DB-API example failed on a second
run, the scratch example read a table it never made), against the demo federation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def _blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from fedsql.demo import write_demo
    from fedsql.launcher import start_federation

    cwd = tmp_path_factory.mktemp("readme")
    config = write_demo(cwd / "fedsql-demo")
    with start_federation(config, log_dir=cwd / "logs"):
        yield cwd


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_example_runs_twice(demo: Path, index: int) -> None:
    code = _blocks("python")[index]
    for attempt in (1, 2):
        proc = subprocess.run([sys.executable, "-c", code], cwd=demo, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, f"README python example {index + 1}, run {attempt}:\n{proc.stderr[-3000:]}"


def test_sql_examples_run_in_order(demo: Path) -> None:
    """The README's SQL blocks, statement by statement, as the demo's party h1."""
    import fedsql
    from fedsql.shell import split_statements

    statements = [s for block in _blocks("sql") for s in split_statements(block)[0]]
    assert statements
    with fedsql.connect(str(demo / "fedsql-demo" / "federation.toml"), party="h1") as conn:
        cur = conn.cursor()
        for _ in (1, 2):
            for sql in statements:
                cur.execute(sql)
