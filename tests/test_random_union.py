"""Random aggregate queries over a three-party union table vs DuckDB (differential testing).

Seeded combinations of filters (NULLs, OR, LIKE, dates), group keys (expressions too),
aggregates (COUNT(DISTINCT) and VAR included), HAVING and ORDER BY … LIMIT over the
group keys, in `sizes`, `reveal` and `oblivious` mode; every accepted query must equal
DuckDB over the pooled rows, and most must be accepted.
FEDSQL_RANDOM_QUERIES / FEDSQL_RANDOM_SEED_BASE make a longer hunt.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.result_compare import assert_cases_match
from tests.test_corpus import corpus  # noqa: F401  (the shared three-party union fixture)

pytestmark = pytest.mark.e2e

N_QUERIES = int(os.environ.get("FEDSQL_RANDOM_QUERIES", "30"))
SEED_BASE = int(os.environ.get("FEDSQL_RANDOM_SEED_BASE", "0"))

KEYS = ["grp", "cat", "day", "year(day)", "upper(grp)", "cat + 1"]
AGGS = ["COUNT(*)", "COUNT(n)", "SUM(n)", "AVG(amt)", "MIN(day)", "MAX(score)", "SUM(big)", "COUNT(DISTINCT cat)",
        "STDDEV_SAMP(n)", "MIN(ts)", "SUM(CASE WHEN flag THEN n ELSE 0 END)"]
FILTERS = ["n > {k}", "amt < {k}", "flag", "NOT flag", "note LIKE 'n1%'", "day > DATE '2021-01-01'", "n IS NULL",
           "(n > {k} OR flag)", "COALESCE(n, 0) < {k}", "cat IN (1, 2)"]


def generate(rng: random.Random) -> tuple[str, str]:
    keys = rng.sample(KEYS, rng.choice([0, 1, 1, 2]))
    aggs = rng.sample(AGGS, rng.randint(1, 3))
    where = " AND ".join(f.format(k=rng.choice([0, 5, 50, 500])) for f in rng.sample(FILTERS, rng.randint(0, 2)))
    sql = f"SELECT {', '.join(keys + aggs)} FROM u"
    if where:
        sql += f" WHERE {where}"
    if keys:
        sql += f" GROUP BY {', '.join(keys)}"
        if rng.random() < 0.3:
            sql += rng.choice([" HAVING COUNT(*) > 2", " HAVING SUM(n) > 10"])
        if rng.random() < 0.4:  # the keys are unique per group: a deterministic order
            sql += " ORDER BY " + ", ".join(f"{i + 1} NULLS FIRST" for i in range(len(keys))) + " LIMIT 3"
    return sql, rng.choice(["sizes", "reveal", "oblivious"])


CASES = [generate(random.Random(SEED_BASE + seed)) for seed in range(N_QUERIES)]


def test_most_random_union_queries_run_and_all_match_duckdb(corpus):  # noqa: F811
    conn, ref = corpus
    assert_cases_match(conn, ref, CASES)
