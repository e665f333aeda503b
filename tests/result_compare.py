"""One way to compare a fedsql result with DuckDB's: same names, same rows (order when asked).

Integers and decimals must be equal exactly; DOUBLE values within the
fixed-point tolerance (docs/decisions.md D5); NULL only equals NULL.
"""

from __future__ import annotations

import math
from typing import Any


def rows(table: Any) -> list[tuple]:
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [tuple(c[r] for c in cols) for r in range(table.num_rows)]


def equal(a: Any, b: Any, abs_tol: float = 1e-3, rel_tol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        if math.isnan(float(a)) and math.isnan(float(b)):
            return True
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=abs_tol)
    return a == b


def sort_key(row: tuple) -> tuple:
    return tuple((v is None, str(type(v)), str(v)) for v in row)


def assert_matches(got: Any, want: Any, sql: str, ordered: bool | None = None, abs_tol: float = 1e-3,
                   rel_tol: float = 1e-9) -> None:
    """`got` (Arrow) equals `want` (Arrow, from DuckDB); row order matters when `ordered`
    (default: when the SQL has ORDER BY)."""
    assert got.column_names == want.column_names, (sql, got.column_names, want.column_names)
    g, w = rows(got), rows(want)
    assert len(g) == len(w), (sql, g, w)
    if not (("ORDER BY" in without_windows(sql).upper()) if ordered is None else ordered):
        g, w = sorted(g, key=sort_key), sorted(w, key=sort_key)
    for x, y in zip(g, w):
        assert all(equal(a, b, abs_tol, rel_tol) for a, b in zip(x, y)), (sql, x, y)


def without_windows(sql: str) -> str:
    """`sql` without its `OVER (...)` clauses: an ORDER BY inside a window does not order the result."""
    out, i, upper = [], 0, sql.upper()
    while True:
        j = upper.find("OVER", i)
        k = upper.find("(", j) if j >= 0 else -1
        if j < 0 or k < 0 or upper[j + 4:k].strip():
            out.append(sql[i:] if j < 0 or k < 0 else sql[i:j + 4])
            if j < 0 or k < 0:
                return "".join(out)
            i = j + 4
            continue
        out.append(sql[i:j])
        depth = 0
        for pos in range(k, len(sql)):
            depth += {"(": 1, ")": -1}.get(sql[pos], 0)
            if depth == 0:
                break
        i = pos + 1


def duckdb_arrow(ref: Any, sql: str) -> Any:
    result = ref.sql(sql).arrow()
    return result if hasattr(result, "num_rows") else result.read_all()


def pooled_duckdb(tables: dict[str, Any]) -> Any:
    """DuckDB over the pooled data: every "party.table" Arrow table as schema.table."""
    import duckdb

    ref = duckdb.connect()
    for name, table in tables.items():
        schema, t = name.split(".")
        ref.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        ref.register("tmp", table)
        ref.execute(f'CREATE TABLE "{schema}"."{t}" AS SELECT * FROM tmp')
        ref.unregister("tmp")
    return ref


def assert_cases_match(conn: Any, ref: Any, cases: list[tuple[str, str]]) -> None:
    """Run (sql, mode) cases; each accepted result must equal DuckDB's, and at most a quarter
    may be refused (`NotSupportedError`, naming the construct) — else the run proves little."""
    import fedsql

    cur = conn.cursor()
    refused: list[str] = []
    try:
        for sql, mode in cases:
            cur.execute(f"SET fedsql.mode = '{mode}'")
            try:
                cur.execute(sql)
            except fedsql.NotSupportedError as exc:
                refused.append(f"{mode}: {sql}: {exc}")
                continue
            assert_matches(cur.fetch_arrow_table(), duckdb_arrow(ref, sql), f"{mode}: {sql}")
    finally:
        cur.execute("SET fedsql.mode = 'sizes'")
    assert len(refused) <= len(cases) // 4, "too many refusals to prove much:\n" + "\n".join(refused)
