"""Expressions evaluated under MPC, and the split of SQL expressions into local and secure parts.

A SQL expression over columns of several parties is cut at its maximal
single-party subtrees: each becomes a *local column* its owner computes in
DuckDB before sharing; only the operators above them run under MPC. Values
carry a scale (1, 10^s for decimals, 2^f for doubles) that multiplies on
`*`, so products need no truncation; comparisons align scales first.

Predicates use SQL three-valued logic as two secret bits per row: `t`
(definitely true) and `f` (definitely false); WHERE keeps rows with `t`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from fedsql.errors import UnsupportedSql
from planner.parse import DIALECT
from planner.physical import Encoding


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


ARITH = {exp.Add: "add", exp.Sub: "sub", exp.Mul: "mul"}
COMPARE = {exp.LT: "lt", exp.LTE: "le", exp.GT: "gt", exp.GTE: "ge", exp.EQ: "eq", exp.NEQ: "ne"}
BOOL = Encoding("bool", 0, "BOOLEAN")


def scale_factor(enc: Encoding) -> int:
    if enc.kind == "decimal":
        return 10**enc.scale
    if enc.kind == "fixed":
        return 1 << enc.scale
    return 1


def product_encoding(a: Encoding, b: Encoding) -> Encoding:
    """Encoding of a*b without truncation: scales add."""
    if a.kind == "fixed" or b.kind == "fixed":
        if a.kind == "decimal" or b.kind == "decimal":
            raise UnsupportedSql("multiplying DOUBLE by DECIMAL across parties is not supported yet; cast one side")
        return Encoding("fixed", a.scale + b.scale if a.kind == b.kind else max(a.scale, b.scale), "DOUBLE")
    if a.kind == "decimal" or b.kind == "decimal":
        return Encoding("decimal", a.scale + b.scale, f"DECIMAL(38,{a.scale + b.scale})")
    return Encoding("int", 0, "BIGINT")


def sum_encoding(a: Encoding, b: Encoding) -> Encoding:
    """Common encoding for +, -, comparisons: the finer scale."""
    if a.kind == b.kind and a.scale == b.scale:
        return a
    if "fixed" in (a.kind, b.kind):
        if "decimal" in (a.kind, b.kind):
            raise UnsupportedSql("mixing DOUBLE and DECIMAL across parties is not supported yet; cast one side")
        return a if a.kind == "fixed" else b
    kind = "decimal" if "decimal" in (a.kind, b.kind) else a.kind
    scale = max(a.scale, b.scale)
    return Encoding(kind, scale, f"DECIMAL(38,{scale})" if kind == "decimal" else a.type)


def split_expression(
    node: exp.Expression,
    party_of: Callable[[exp.Expression], str | None],
    leaf: Callable[[str, exp.Expression], LocalLeaf],
) -> SNode:
    """Cut `node` into local leaves (via `leaf(party, subtree)`) and secure operators.

    `party_of(subtree)` is the one party whose columns the subtree uses, or None
    when it uses several (or none: constants go to the first party by caller's choice).
    """
    party = party_of(node)
    if party is not None:
        lf = leaf(party, node)
        return SNode("col", column=lf.name, encoding=lf.encoding)
    if isinstance(node, exp.Paren):
        return split_expression(node.this, party_of, leaf)
    if type(node) in ARITH:
        a = split_expression(node.left, party_of, leaf)
        b = split_expression(node.right, party_of, leaf)
        op = ARITH[type(node)]
        enc = product_encoding(a.encoding, b.encoding) if op == "mul" else sum_encoding(a.encoding, b.encoding)
        return SNode(op, (a, b), encoding=enc)
    if isinstance(node, exp.Neg):
        a = split_expression(node.this, party_of, leaf)
        return SNode("neg", (a,), encoding=a.encoding)
    if type(node) in COMPARE:
        a = split_expression(node.left, party_of, leaf)
        b = split_expression(node.right, party_of, leaf)
        sum_encoding(a.encoding, b.encoding)  # refuses incompatible scales
        return SNode(COMPARE[type(node)], (a, b), encoding=BOOL)
    if isinstance(node, (exp.And, exp.Or)):
        a = split_expression(node.left, party_of, leaf)
        b = split_expression(node.right, party_of, leaf)
        return SNode("and" if isinstance(node, exp.And) else "or", (a, b), encoding=BOOL)
    if isinstance(node, exp.Not):
        return SNode("not", (split_expression(node.this, party_of, leaf),), encoding=BOOL)
    if isinstance(node, exp.Case) and not node.this and len(node.args.get("ifs") or []) == 1:
        cond_if = node.args["ifs"][0]
        cond = split_expression(cond_if.this, party_of, leaf)
        then = split_expression(cond_if.args["true"], party_of, leaf)
        default = node.args.get("default")
        other = split_expression(default, party_of, leaf) if default is not None else SNode("const", value=0)
        return SNode("case", (cond, then, other), encoding=sum_encoding(then.encoding, other.encoding))
    raise UnsupportedSql(
        f"the expression {node.sql(dialect=DIALECT)} combines columns of several parties in a way not supported "
        "under MPC yet (supported: + - * comparisons AND OR NOT and CASE WHEN c THEN a ELSE b)"
    )
