"""Parquet and CSV sources: a file, a directory (hive-partitioned) or a glob, as a DuckDB view.

These stay views in the node's locked DuckDB (fedsql/locked_duckdb.py), which may read exactly
these files: a file is allowed by path, a directory or glob by its directory.
"""

from __future__ import annotations

from pathlib import Path

from fedsql.config import TableConfig

GLOB_CHARS = "*?["


def is_glob(path: Path) -> bool:
    return any(ch in str(path) for ch in GLOB_CHARS)


def pattern(table: TableConfig) -> str:
    """What DuckDB reads: the file, every matching file under a directory, or the glob."""
    path = Path(table.source)
    if not is_glob(path) and path.is_dir():
        return str(path.resolve() / "**" / f"*.{table.format}")
    return str(path.resolve()) if not is_glob(path) else str(path)


def view_sql(table: TableConfig) -> str:
    """The SELECT the table's view is over."""
    text = pattern(table).replace("'", "''")
    many = pattern(table) != str(Path(table.source).resolve())
    hive = ", hive_partitioning = true" if many else ""
    if table.format == "parquet":
        return f"SELECT * FROM read_parquet('{text}'{hive})"
    return f"SELECT * FROM read_csv('{text}', header = true{hive})"


def allowed(table: TableConfig) -> tuple[list[Path], list[Path]]:
    """(files, directories) the node's DuckDB must be able to read for this table."""
    path = Path(table.source)
    if is_glob(path):
        base = Path(*[p for p in path.parts[: next(i for i, p in enumerate(path.parts) if is_glob(Path(p)))]])
        return [], [base.resolve()]
    if path.is_dir():
        return [], [path.resolve()]
    return [path.resolve()], []


def missing(table: TableConfig) -> str | None:
    """Why the source cannot be read, or None."""
    path = Path(table.source)
    if is_glob(path):
        base = allowed(table)[1][0]
        return None if base.is_dir() else f"the glob's directory {base} does not exist"
    if path.is_dir() or path.is_file():
        return None
    return f"source {path} does not exist"
