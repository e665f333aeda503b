"""Issue #15, item 8: the DP tour step gives useful answers, and every noisy output, AVG and
STDDEV included, carries its own 95% interval (per row) in the result metadata and the shell's
notes, and that interval holds the un-noised value.

A 95% interval misses the truth in one draw out of twenty, so a test asserting that it holds the
truth on every row fails by design now and then (it did, in CI). The test asserts what is certain
(the noisy value lies inside its own interval) and that the truth lies within three half-widths of
the noisy value: an interval wrong by its own size fails that, a correct one fails it with
probability below 1e-3 per row."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from fedsql import render
from fedsql.client import NodeClient
from fedsql.config import load_config
from fedsql.demo import TOUR, write_demo
from fedsql.launcher import start_federation

pytestmark = pytest.mark.e2e

DP_QUERY = next(sql for _, sql, _ in TOUR if "telco.usage" in sql)


def _truth(directory: Path) -> dict[str, tuple[int, float, float]]:
    con = duckdb.connect()
    rows = con.execute(
        "SELECT region, COUNT(*), AVG(LEAST(GREATEST(minutes, 0), 2000)), STDDEV_POP(LEAST(GREATEST(minutes, 0), 2000)) "
        f"FROM '{directory / 'data' / 'telco_usage.parquet'}' GROUP BY region").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _near(truth: float, noisy: float, lo: float, hi: float) -> bool:
    half = (hi - lo) / 2
    return abs(truth - noisy) <= 3 * half


def test_dp_tour_answers_are_useful_and_every_output_has_an_interval(tmp_path: Path) -> None:
    config = write_demo(tmp_path / "demo")
    truth = _truth(tmp_path / "demo")
    fed = load_config(config)
    with start_federation(config, log_dir=tmp_path / "logs"):
        with NodeClient(fed.parties["h1"].address, party="h1", config_path=str(config), default_timeout=60) as c:
            settings = {"fedsql.epsilon": "1.0"}
            table, meta = c.execute(DP_QUERY, settings)
            spread, spread_meta = c.execute(
                "SELECT region, STDDEV_POP(minutes) AS sd FROM telco.usage GROUP BY region ORDER BY region", settings)
    rows = table.to_pylist()
    assert [r["region"] for r in rows] == sorted(truth)
    avg_col = meta["columns"][2]
    assert avg_col["name"] == "avg_minutes" and "own 95% interval is per row" in avg_col["note"]
    intervals = avg_col["confidence_interval_95"]
    assert len(intervals) == len(rows)
    for row, (lo, hi) in zip(rows, intervals):
        n, avg, _ = truth[row["region"]]
        assert abs(row["subscribers"] - n) / n < 0.05, (row, n)
        assert abs(row["avg_minutes"] - avg) / avg < 0.05, (row, avg)
        assert lo <= row["avg_minutes"] <= hi
        assert _near(avg, row["avg_minutes"], lo, hi), (avg, row["avg_minutes"], lo, hi)
        assert (hi - lo) / avg < 0.1, (lo, hi, avg)  # useful: a few percent
    sd_intervals = spread_meta["columns"][1]["confidence_interval_95"]
    for row, (lo, hi) in zip(spread.to_pylist(), sd_intervals):
        assert lo <= row["sd"] <= hi
        assert _near(truth[row["region"]][2], row["sd"], lo, hi), (row, lo, hi)
    notes = render.format_notes(meta["columns"])
    assert "note: avg_minutes: 95% interval per row: [" in notes
    assert "note: subscribers: DP noisy count" in notes
