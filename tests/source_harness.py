"""What the database-source suites share (PostgreSQL/SQLite in tests/adversarial/test_sources.py,
MySQL/MariaDB in tests/test_sources_mysql.py, Spark in tests/test_sources_spark.py): the test
federation's column levels, its table entries, the DuckDB reference over the pooled rows, and
queries and errors through a party's DB-API connection, and one party's executor over one source
table (`one_table_executor`)."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa
import pytest

from fedsql import errors

COLS = '{ id = "join_key", k = "group_key", x = "aggregate", d = "aggregate", f = "aggregate", b = "aggregate", g = "public" }'

UNION = ("SELECT k, COUNT(*), SUM(x), SUM(d), COUNT(f), MIN(g) FROM t WHERE x > -777 AND g >= 2 "
         "GROUP BY k ORDER BY k NULLS FIRST")
"""A union aggregate with a filter and GROUP BY every source kind must push down and get right."""


def table_entry(source: str, relation: str, columns: str = COLS) -> str:
    """The TOML body of a table read from a database `source`, relation `relation`."""
    return f'source = "{source}"\ntable = "{relation}"\ncolumns = {columns}\n'


def reference_db(data: dict[str, pa.Table], **extra: pa.Table) -> Any:
    """DuckDB over the pooled test rows: `t` is the union of p1.t, p2.t, p3.t; `extra` by name."""
    db = duckdb.connect()
    for name in ("p1.t", "p2.t", "p3.t"):
        db.register(name.replace(".", "_"), data[name])
    for name, table in extra.items():
        db.register(name, table)
    db.execute("CREATE VIEW t AS SELECT * FROM p1_t UNION ALL SELECT * FROM p2_t UNION ALL SELECT * FROM p3_t")
    return db


def query(fed: Any, party: str, sql: str, settings: tuple[str, ...] = ()) -> list[tuple]:
    """`sql` issued by `party` (after the SET statements in `settings`), as rows."""
    with fed.connect(party) as conn:
        cur = conn.cursor()
        for s in settings:
            cur.execute(s)
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]


def error(fed: Any, party: str, sql: str, secret: str) -> errors.Error:
    """The error `sql` raises, checked not to quote `secret` (the source's password or token)."""
    with pytest.raises(errors.Error) as info:
        query(fed, party, sql)
    assert secret not in str(info.value)
    return info.value


ONE_TABLE_HEAD = ('[federation]\nname = "u"\ncompute = ["a", "b", "c"]\n[parties.b]\naddress = "127.0.0.1:2"\n'
                  '[parties.c]\naddress = "127.0.0.1:3"\n[parties.a]\naddress = "127.0.0.1:1"\n')


def one_table_executor(directory: Any, url: str, relation: str, name: str, password: str) -> Any:
    """Party a's LocalExecutor over its one table `name` = `relation` at `url` (password from the
    environment variable, as a node reads it), for tests of what a source itself returns."""
    import os

    from executors.local_duckdb import LocalExecutor
    from fedsql.config import parse_config

    fed = parse_config(ONE_TABLE_HEAD + f'[parties.a.tables.{name}]\nsource = "{url}"\ntable = "{relation}"\n',
                       directory / "f.toml")
    variable = f"FEDSQL_SOURCE_PASSWORD_A_{name.upper()}"
    os.environ[variable] = password
    try:
        return LocalExecutor(fed.party("a"))
    finally:
        os.environ.pop(variable)
