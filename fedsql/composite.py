"""Run a composite statement (planner/compose.py): its parts as queries of their own, then the
combine step in the issuer's DuckDB over their results, exactly as DuckDB would compute it.

The node supplies `run_part`, which plans, audits and runs one part (itself possibly composite).
"""

from __future__ import annotations

from typing import Callable

import pyarrow as pa

from executors.local_duckdb import run_over_tables
from planner.compose import Composite, Part
from planner.validate import OutputSchema

RunPart = Callable[[Part, int, int], tuple[pa.Table, list[str]]]  # (part, index, how many)
MAX_DEPTH = 8  # parts within parts: a UNION inside a derived table inside a CTE ...


def run(composite: Composite, run_part: RunPart,
        output: OutputSchema | None = None) -> tuple[pa.Table, list[str]]:
    """The statement's result and leakage lines; `output`: the user's statement's names and
    types, which the combine step's outputs take (a rewritten window query names them otherwise)."""
    tables: dict[str, pa.Table] = {}
    leakage: list[str] = []
    whats = composite.leakage()
    for i, part in enumerate(composite.parts):
        table, part_leakage = run_part(part, i, len(composite.parts))
        tables[part.name] = table
        leakage.append(whats[i])
        leakage += [f"  {line}" for line in part_leakage]
    table = run_over_tables(composite.combine, tables)
    if output is not None and len(output) == table.num_columns:
        table = table.rename_columns([name for name, _ in output])
    return table, leakage


def explain(composite: Composite, explain_part: Callable[[Part], list[str]]) -> list[str]:
    """EXPLAIN of a composite: each part's plan, then the step at the issuer."""
    lines: list[str] = []
    for part in composite.parts:
        lines.append(f"{part.what}, a query of its own: {part.sql}")
        lines += [f"  {line}" for line in explain_part(part)]
    lines.append(f"then at the issuer, in its own DuckDB over those results: {composite.combine}")
    return lines

