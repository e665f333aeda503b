"""Policy check: refuse any plan that uses a column beyond what its owner permits.

Rules (docs/configuration.md, "Column permissions"), applied to every member table the issuer
does not own; each asks fedsql.permissions.permits through `require`:
- predicates need `filter`;
- aggregate arguments need `aggregate` (COUNT(*) needs nothing);
- group labels that reach the result need `group_key`;
- row values (non-aggregate queries, their ORDER BY too) need `public`.
"""

from __future__ import annotations

from typing import Iterable

from fedsql.errors import PolicyViolation
from fedsql.permissions import HasPermissions, Principal, as_principal, describe, permits
from planner.analyze import QueryBlock

_RULES = {
    "where": ("filter", "a WHERE predicate needs permission 'filter'"),
    "aggregate": ("aggregate", "revealing an aggregate over it needs permission 'aggregate'"),
    "group": ("group_key", "a GROUP BY key reaches the result, so it needs permission 'group_key'"),
    "row": ("public", "a non-aggregate query reveals row values, which needs permission 'public'"),
}


def who(viewer: Principal | str, as_issuer: bool = True) -> str:
    """`issuer 'bank' (user 'ann', roles analyst)` or `party 'h3'`, for refusals."""
    v = as_principal(viewer)
    text = f"{'issuer' if as_issuer else 'party'} '{v.party}'"
    if v.user:
        text += f" (user '{v.user}'" + (f", roles {', '.join(v.roles)})" if v.roles else ", no roles)")
    return text


def require(member: HasPermissions, column: str, viewer: Principal | str, permission: str, rule: str, fix: str,
            as_issuer: bool = True) -> None:
    """Refuse unless `member`'s owner grants `permission` on `column` to `viewer`; the message
    names the owner, the column, what the viewer has, what is missing and why it is needed."""
    if permits(member, column, viewer, permission):
        return
    has = describe(member.permissions(column, viewer))
    raise PolicyViolation(
        f"refused by the policy of party '{member.party}': column {member.qualified}.{column} is '{has}' for "
        f"{who(viewer, as_issuer)}, which lacks permission '{permission}': {rule}. {fix}"
    )


_VIEWER_RULES = {
    # role: (level each viewer needs, what it sees, how to avoid it)
    "group": ("group_key", "the GROUP BY keys are opened to the compute parties ({viewers}) after a shuffle",
              "Use SET fedsql.mode = 'oblivious' (the keys then reach the issuer only)"),
    "join": ("join_key", "the join's match structure (which rows pair up) is opened to {viewers}",
             "Use SET fedsql.mode = 'oblivious' (a sort-based PK-FK join that opens no match; one side's key "
             "must be declared unique)"),
}


def check_viewers(uses: Iterable[tuple[object, str]], issuer: Principal | str, viewers: tuple[str, ...], mode: str,
                  role: str) -> None:
    """A level binds every party that *sees* a value, not only the issuer (docs/decisions.md D13):
    each viewer of an opened GROUP BY key (role "group") or of a join's match structure (role
    "join") needs the role's level. `uses`: (member table config, column) pairs; the owner itself
    may always see its column, and the issuer's own levels are checked by the caller's rules."""
    required, sees, instead = _VIEWER_RULES[role]
    issuer_party = as_principal(issuer).party
    for member, column in uses:
        for viewer in viewers:
            if viewer in (member.party, issuer_party):
                continue
            require(member, column, viewer, required,
                    f"in '{mode}' mode {sees.format(viewers=', '.join(viewers))}, so each of them needs it",
                    f"{instead}, or ask '{member.party}' to grant '{required}' to '{viewer}'.", as_issuer=False)


def check_group_key_viewers(uses: Iterable[tuple[object, str]], issuer: Principal | str, viewers: tuple[str, ...],
                            mode: str) -> None:
    """GROUP BY keys opened to the compute parties (`sizes`/`reveal`: shuffle, then open)."""
    check_viewers(uses, issuer, viewers, mode, "group")


def check_policy(block: QueryBlock, issuer: Principal | str, noised: frozenset[str] = frozenset(),
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
                require(member, column, issuer, required, rule,
                        f"Use an aggregate over a permitted column, or ask '{member.party}' to grant "
                        f"'{required}' (docs/configuration.md, grants).")
    if key_viewers:
        check_group_key_viewers([(m, c) for m in block.table.members if m.qualified not in noised
                                 for c in sorted(block.uses.get("group", ()))], issuer, key_viewers, mode)
