"""Policy check: refuse any plan that uses a column beyond its owner's level.

Rules (docs/architecture.md §2), applied to every member table the issuer does not own:
- predicates need `aggregate` or above;
- aggregate arguments need `aggregate` or above (COUNT(*) needs nothing);
- group labels that reach the result need `group_key` or `public`;
- row values (non-aggregate queries, their ORDER BY too) need `public`.
"""

from __future__ import annotations

from typing import Iterable

from fedsql.config import level_at_least
from fedsql.errors import PolicyViolation
from planner.analyze import QueryBlock

_RULES = {
    "where": ("aggregate", "a WHERE predicate may only use columns at level 'aggregate' or above"),
    "aggregate": ("aggregate", "an aggregate may only be revealed over columns at level 'aggregate' or above"),
    "group": ("group_key", "a GROUP BY key reaches the result, so it needs level 'group_key' or 'public'"),
    "row": ("public", "a non-aggregate query reveals row values, which needs level 'public'"),
}


def check_group_key_viewers(uses: Iterable[tuple[object, str]], issuer: str, viewers: tuple[str, ...],
                            mode: str) -> None:
    """GROUP BY keys opened to the compute parties (`sizes`/`reveal`: shuffle, then open) are
    revealed to each of them, not only to the issuer: every viewer needs the key's level.
    `uses`: (member table config, column) pairs; the owner itself may always see its column."""
    for member, column in uses:
        for viewer in viewers:
            if viewer in (member.party, issuer):
                continue
            level = member.level(column, viewer)
            if not level_at_least(level, "group_key"):
                raise PolicyViolation(
                    f"refused by the policy of party '{member.party}': column {member.qualified}.{column} is "
                    f"'{level}' for party '{viewer}', and in '{mode}' mode the GROUP BY keys are opened to the "
                    f"compute parties ({', '.join(viewers)}) after a shuffle, so each of them needs level "
                    f"'group_key' or 'public'. Use SET fedsql.mode = 'oblivious' (the keys then reach the issuer "
                    f"only), or ask '{member.party}' to raise the level."
                )


def check_policy(block: QueryBlock, issuer: str, noised: frozenset[str] = frozenset(),
                 key_viewers: tuple[str, ...] = (), mode: str = "sizes") -> None:
    """Raise PolicyViolation naming party, table, column, level and rule.

    `noised`: member tables (qualified) with a DP policy whose every influence on the
    result is DP-noised (planner/passes/dp.py). docs/architecture.md §2: a column at any level,
    `private` included, may then be used in WHERE, in aggregate arguments and as a
    group key over the owner's declared public groups; rows are refused by the DP pass.
    """
    for member in block.table.members:
        if member.qualified in noised:
            continue
        for role in ("row", "group", "aggregate", "where"):
            required, rule = _RULES[role]
            for column in sorted(block.uses.get(role, ())):
                level = member.level(column, issuer)
                if not level_at_least(level, required):
                    raise PolicyViolation(
                        f"refused by the policy of party '{member.party}': column "
                        f"{member.qualified}.{column} is '{level}' for issuer '{issuer}', and {rule}. "
                        f"Use an aggregate over a permitted column, or ask '{member.party}' to raise the level."
                    )
    if key_viewers:
        check_group_key_viewers([(m, c) for m in block.table.members if m.qualified not in noised
                                 for c in sorted(block.uses.get("group", ()))], issuer, key_viewers, mode)
