"""Shell output of streamed results (issue #13 item 4), over the DB-API stub of test_dbapi_unit.py:
table and markdown show the first `.maxrows` rows and say how many more there are, `.maxrows 0`
renders every row a page at a time, csv and json print every row batch by batch with exactly
the text the whole-table renderers give. (The same against a real node: tests/test_result_stream.py.)
"""

from __future__ import annotations

import io
import json

import pytest

from connectors.dbapi import Connection
from fedsql import render, shell
from tests.test_dbapi_unit import StubClient


def _run(*lines: str, monkeypatch: pytest.MonkeyPatch | None = None) -> str:
    out, err = io.StringIO(), io.StringIO()
    sh = shell.Shell(Connection(StubClient(), "p1"), out=out, err=err)
    assert sh.run_script("\n".join(lines)) == 0, err.getvalue()
    return out.getvalue()


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "|" in line and not line.startswith("-")]


def test_table_mode_shows_maxrows_and_says_how_many_more() -> None:
    text = _run(".maxrows 3", "SELECT k, n, c FROM t;")
    assert [line.split("|")[1].strip() for line in _table_lines(text)] == ["n", "1", "2", "3"]
    assert "… 2 more rows not shown (5 in all): .maxrows N shows more, .maxrows 0 all" in text
    assert "(5 rows" in text and "leakage:" in text
    full = _run("SELECT k, n, c FROM t;")  # 5 rows: under the default, no note
    assert len(_table_lines(full)) == 6 and "more row" not in full


def test_maxrows_zero_renders_every_row_in_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell, "PAGE_ROWS", 2)
    text = _run(".maxrows 0", "SELECT k, n, c FROM t;")
    rows = [line for line in _table_lines(text) if not line.strip().startswith("k ")]
    assert [r.split("|")[1].strip() for r in rows] == ["1", "2", "3", "4", "5"] and "more row" not in text
    md = _run(".maxrows 0", ".mode markdown", "SELECT k, n, c FROM t;")
    assert md.count("| k | n | c |") == 1 and md.count("\n| ") == 5  # one header for every page


def test_csv_and_json_print_every_row_batch_by_batch() -> None:
    import pyarrow as pa

    whole = pa.table({"k": ["a", "b", None, "d", "e"], "n": pa.array([1, 2, 3, 4, 5], pa.int64())})
    csv = _run(".mode csv", "SELECT k, n FROM t;")  # the stub streams batches of two rows
    assert csv.startswith("k,n,c\na,1,1.50\nb,2,1.50\n,3,1.50\nd,4,1.50\ne,5,1.50\n"), csv
    out = _run(".mode json", "SELECT k, n FROM t;")
    assert json.loads(out) == [dict(r, c=1.5) for r in whole.to_pylist()]
    assert out.strip().startswith("[{") and render.format_json(whole)[:2] == out[:2]


def test_bad_maxrows_is_a_usage_error() -> None:
    out, err = io.StringIO(), io.StringIO()
    sh = shell.Shell(Connection(StubClient(), "p1"), out=out, err=err)
    assert sh.run_script(".maxrows lots") == 1 and "usage: .maxrows N" in err.getvalue()
