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


_VIEWER_RULES = {
    # role: (level each viewer needs, what it sees, how to avoid it)
    "group": ("group_key", "the GROUP BY keys are opened to the compute parties ({viewers}) after a shuffle",
              "Use SET fedsql.mode = 'oblivious' (the keys then reach the issuer only)"),
    "join": ("join_key", "the join's match structure (which rows pair up) is opened to {viewers}",
             "Use SET fedsql.mode = 'oblivious' (a sort-based PK-FK join that opens no match; one side's key "
             "must be declared unique)"),
}


def check_viewers(uses: Iterable[tuple[object, str]], issuer: str, viewers: tuple[str, ...], mode: str,
                  role: str) -> None:
    """A level binds every party that *sees* a value, not only the issuer (docs/decisions.md D13):
    each viewer of an opened GROUP BY key (role "group") or of a join's match structure (role
    "join") needs the role's level. `uses`: (member table config, column) pairs; the owner itself
    may always see its column, and the issuer's own levels are checked by the caller's rules."""
    required, sees, instead = _VIEWER_RULES[role]
    for member, column in uses:
        for viewer in viewers:
            if viewer in (member.party, issuer):
                continue
            level = member.level(column, viewer)
            if not level_at_least(level, required):
                raise PolicyViolation(
                    f"refused by the policy of party '{member.party}': column {member.qualified}.{column} is "
                    f"'{level}' for party '{viewer}', and in '{mode}' mode {sees.format(viewers=', '.join(viewers))}"
                    f", so each of them needs level '{required}' or 'public'. {instead}, or ask "
                    f"'{member.party}' to raise the level for '{viewer}'."
                )


def check_group_key_viewers(uses: Iterable[tuple[object, str]], issuer: str, viewers: tuple[str, ...],
                            mode: str) -> None:
    """GROUP BY keys opened to the compute parties (`sizes`/`reveal`: shuffle, then open)."""
    check_viewers(uses, issuer, viewers, mode, "group")


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
