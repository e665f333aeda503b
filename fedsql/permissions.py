"""The owners' policy model: what a column permits, to whom (docs/configuration.md, "Column permissions").

A column carries a *set* of permissions for each viewer. Six permissions exist:

- `filter`: the column may decide which rows count (WHERE, join filters, CASE inside an aggregate);
- `aggregate`: aggregates over it may be revealed (implies `filter`: SUM(CASE …) is a filter);
- `join_key`: it may be matched against other parties' keys (implies `aggregate`);
- `group_key`: its values may label revealed groups (implies `aggregate`);
- `payload`: its values may be revealed row by row for the rows that match a cross-party join
  (enrichment), and only to the issuer;
- `public`: its row values may be revealed (implies all of the above).

A policy names them as a string (today's levels: `private` is the empty set, each other name is
that permission with what it implies) or a list of names, whose union it is, e.g.
`["join_key", "group_key"]`. Every check asks one question, `permits(member, column, viewer, p)`.

Grants are keyed by the issuing party (`bank`) or by one of its user roles (`bank:analyst`); a
user's permissions are the party's plus those of each of its roles (docs/decisions.md D-ROLES).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

PERMISSIONS = ("filter", "aggregate", "join_key", "group_key", "payload", "public")
"""Weakest first; `public` (row values) implies every other."""

_IMPLIES: dict[str, frozenset[str]] = {
    "private": frozenset(),
    "filter": frozenset({"filter"}),
    "aggregate": frozenset({"filter", "aggregate"}),
    "join_key": frozenset({"filter", "aggregate", "join_key"}),
    "group_key": frozenset({"filter", "aggregate", "group_key"}),
    "payload": frozenset({"payload"}),
    "public": frozenset(PERMISSIONS),
}
NAMES = tuple(_IMPLIES)
"""Names a policy may use: `private` and the five permissions."""

PRIVATE: frozenset[str] = _IMPLIES["private"]
PUBLIC: frozenset[str] = _IMPLIES["public"]

PERMITS = {
    "filter": "use in a WHERE or join predicate, or a CASE inside an aggregate",
    "aggregate": "reveal aggregates over it",
    "join_key": "match it against other parties' keys",
    "group_key": "label revealed groups with its values",
    "payload": "reveal its values on the rows that match a join, to the issuer",
    "public": "reveal its row values",
}

ROLE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def implied(name: str) -> frozenset[str]:
    """The permissions one policy name stands for (a level keeps its meaning: it and what it implies)."""
    return _IMPLIES[name]


def parse_permissions(value: Any) -> frozenset[str]:
    """A policy value (`"aggregate"` or `["join_key", "group_key"]`) → its permission set.

    Raises ValueError with a message saying what is wrong and what to write instead."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f'expected a name or a list of names (e.g. "aggregate" or ["join_key", "group_key"]), '
                         f"got {value!r}")
    unknown = [n for n in names if n not in _IMPLIES]
    if unknown:
        raise ValueError(f"unknown permission {unknown[0]!r}; use one of {', '.join(NAMES)}, or a list of them")
    if "private" in names and len(names) > 1:
        raise ValueError(f'"private" means no permission; it cannot be combined with others in {names!r}')
    out: frozenset[str] = frozenset()
    for n in names:
        out |= _IMPLIES[n]
    return out


def describe(perms: frozenset[str]) -> str:
    """The shortest name for a permission set: a level's name when it is one (`aggregate`), else
    the names joined by '+' (`join_key+group_key`, `filter`); used in catalogs and messages."""
    for name, implied_set in _IMPLIES.items():
        if perms == implied_set:
            return name
    names = [p for p in PERMISSIONS if p in perms]
    # drop names another listed name already implies (join_key covers aggregate and filter)
    return "+".join(n for n in names if not any(n in _IMPLIES[m] and m != n for m in names))


def check_role(role: str) -> str:
    """A role name is 1-64 of A-Z a-z 0-9 _ . - : it goes into grants keys (`party:role`), plans and audit records."""
    if not isinstance(role, str) or not ROLE_RE.fullmatch(role):
        raise ValueError(f"invalid role name {role!r}: use 1-64 letters, digits or _ . - (e.g. analyst)")
    return role


@dataclass(frozen=True)
class Principal:
    """Who a permission is asked for: a party, and — for the issuer of a query — the account a
    front end checked and its roles (sorted). Compute parties that see opened keys are parties alone."""

    party: str
    user: str = ""
    roles: tuple[str, ...] = ()

    def grant_keys(self) -> tuple[str, ...]:
        """The `grants` keys that apply: `party`, then `party:role` for each role."""
        return (self.party,) + tuple(f"{self.party}:{r}" for r in self.roles)


def as_principal(viewer: "Principal | str") -> Principal:
    """A bare party name is the party alone (no user, no roles): compute parties, certificate logins."""
    return viewer if isinstance(viewer, Principal) else Principal(viewer)


class HasPermissions(Protocol):
    """A table config or derived table: what a policy check asks about."""

    party: str

    @property
    def qualified(self) -> str: ...

    def permissions(self, column: str, viewer: "Principal | str | None" = None) -> frozenset[str]: ...


def permits(member: HasPermissions, column: str, viewer: "Principal | str", permission: str) -> bool:
    """Does `member`'s owner grant `permission` on `column` to `viewer`? The one question every policy check asks."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    return permission in member.permissions(column, viewer)
