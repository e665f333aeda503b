"""The secure expression tree a plan carries: built by the planner (planner/secure_expr.py),
evaluated under MPC by the compute parties (executors/secure_eval.py).

Values carry a scale (1, 10^s for decimals, 2^f for doubles) that multiplies on `*`;
predicates are two secret bits per row (definitely true, definitely false).
"""

from __future__ import annotations

from dataclasses import dataclass

from plan.physical import Encoding


@dataclass(frozen=True)
class LocalLeaf:
    """A single-party subexpression its owner computes and shares."""

    party: str
    sql: str
    name: str  # column name in the party's shared table
    encoding: Encoding


@dataclass(frozen=True)
class SNode:
    """Secure expression node. op: col | const | add | sub | mul | neg | lt | le | gt | ge | eq | ne |
    and | or | not | case."""

    op: str
    args: tuple["SNode", ...] = ()
    column: str = ""  # for op == col
    value: int = 0  # for op == const, already scaled
    encoding: Encoding = Encoding("int")


BOOL = Encoding("bool", 0, "BOOLEAN")

HASHED = Encoding("hash", 0, "VARCHAR")
"""Strings in cross-party comparisons: 61 bits of MD5 computed by the owner (equality only)."""


def scale_factor(enc: Encoding) -> int:
    if enc.kind == "decimal":
        return 10**enc.scale
    if enc.kind == "fixed":
        return 1 << enc.scale
    return 1
