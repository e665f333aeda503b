"""Rewrite rules: SQL as people write it → the shape the planner places well (issue #12).

Each rule is a pure function `rule(ast, ctx) -> ast` in a module of its own, in the style
of sqlglot's optimizer; `RULES` is their one order, applied once by planner/compile.py
after CTEs and FROM-subqueries are merged (planner/passes/inline_subqueries.py: sqlglot's
merge_subqueries) and before analysis. Every rule keeps the result of the query for every
input (tests/test_rules.py checks this against DuckDB) and is deterministic, so every
party rewrites the same text to the same tree and the plan hashes agree.

1. join_using       JOIN … USING (k) → JOIN … ON l.k = r.k, with `k` resolved to the side SQL takes it from
2. group_all        GROUP BY ALL → the select items that aggregate nothing
3. group_alias      GROUP BY a select alias → the aliased expression
4. or_factor        conjuncts common to every OR branch move out of it (Q19)
5. equivalence      same-party equalities implied by equi-joins; redundant cross-party ones dropped (Q5, Q9)
6. implied_filters  each table's part of a cross-table OR, as its own filter (Q7)
7. label_choice     a GROUP BY column → an equal column the issuer may see as a label (Q3)
8. within_group     PERCENTILE_CONT(q) WITHIN GROUP (ORDER BY x) → QUANTILE_CONT(x, q)
"""

from __future__ import annotations

from typing import Callable

from sqlglot import exp

from planner.rules.context import RuleContext  # noqa: F401 - re-exported
from planner.rules.equivalence import equivalence
from planner.rules.group_alias import group_alias
from planner.rules.group_all import group_all
from planner.rules.implied_filters import implied_filters
from planner.rules.join_using import join_using
from planner.rules.label_choice import label_choice
from planner.rules.or_factor import or_factor
from planner.rules.within_group import within_group

Rule = Callable[[exp.Expression, RuleContext], exp.Expression]

# or_factor before equivalence and implied_filters: it exposes Q19's join equality and leaves
# the per-table conjuncts in the branches; label_choice last: it reads the final equalities.
RULES: tuple[Rule, ...] = (join_using, group_all, group_alias, or_factor, equivalence, implied_filters, label_choice,
                           within_group)


def apply_rules(ast: exp.Expression, ctx: RuleContext) -> exp.Expression:
    """The statement rewritten by every rule in order (the input is not modified)."""
    for rule in RULES:
        ast = rule(ast, ctx)
    return ast
