"""A modified issuer whose planner skips the whole-statement DP rules (issue #11, findings 2, 3).

It plans attack queries as if no DP table sat in a subquery and as if any expression were
fine over DP rows, and sends them to the owner: the defence must hold at the DP table's
owner, which compiles every plan itself.
"""

from __future__ import annotations

from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    import planner.compile as compile_mod

    compile_mod.require_dp_coverage = lambda *args, **kwargs: None
    compile_mod.guard_dp_expressions = lambda ast, fed, issuer: ast
    record({"patched": "planner.compile DP checks"})
