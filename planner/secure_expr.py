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

from typing import Callable

from sqlglot import exp

from fedsql.errors import UnsupportedSql
from planner.parse import DIALECT
from plan.expressions import BOOL, LocalLeaf, SNode
from plan.physical import Encoding


ARITH = {exp.Add: "add", exp.Sub: "sub", exp.Mul: "mul"}
COMPARE = {exp.LT: "lt", exp.LTE: "le", exp.GT: "gt", exp.GTE: "ge", exp.EQ: "eq", exp.NEQ: "ne"}


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




def _check_compare(op: str, a: "SNode", b: "SNode", node: exp.Expression) -> None:
    if "hash" in (a.encoding.kind, b.encoding.kind):
        if op not in ("eq", "ne") or a.encoding.kind != b.encoding.kind:
            raise UnsupportedSql(
                f"{node.sql(dialect=DIALECT)}: strings of different parties can only be compared with = or <>"
            )
    else:
        sum_encoding(a.encoding, b.encoding)  # refuses incompatible scales


TEMPORAL = {"date", "timestamp"}
DAYS = Encoding("int", 0, "BIGINT")
"""DATE - DATE and date_diff('day', …): a number of days, as in DuckDB."""


def _temporal_arith(op: str, a: Encoding, b: Encoding, node: exp.Expression) -> Encoding:
    """DuckDB's day arithmetic on dates: DATE - DATE is BIGINT days, DATE ± INTEGER a DATE. Dates are
    days since 1970 in the ring, so both are plain ring arithmetic; nothing else is (a TIMESTAMP
    difference is an INTERVAL, which has no ring form)."""
    kinds = (a.kind, b.kind)
    if op == "sub" and kinds == ("date", "date"):
        return DAYS
    if op in ("add", "sub") and kinds == ("date", "int") or op == "add" and kinds == ("int", "date"):
        return Encoding("date", 0, "DATE")
    what = "two dates" if kinds == ("date", "date") else "TIMESTAMP values" if "timestamp" in kinds else "dates"
    raise UnsupportedSql(
        f"{node.sql(dialect=DIALECT)}: under MPC, arithmetic on {what} of several parties is limited to "
        "DATE - DATE, date_diff('day', a, b) and DATE ± whole days; compare timestamps directly, or CAST them "
        "to DATE at their owner")


def _as_type(node: exp.Expression, duck_type: str, party_of: Callable[[exp.Expression], str | None],
             leaf: Callable[[str, exp.Expression], LocalLeaf]) -> SNode:
    """`node` as a DATE or TIMESTAMP, cast by its owner (a single party's subtree) before sharing."""
    party = party_of(node)
    if party is not None:
        lf = leaf(party, exp.Cast(this=node.copy(), to=exp.DataType.build(duck_type)))
        return SNode("col", column=lf.name, encoding=lf.encoding)
    out = split_expression(node, party_of, leaf)
    want = "date" if duck_type == "DATE" else "timestamp"
    if out.encoding.kind != want:
        raise UnsupportedSql(
            f"{node.sql(dialect=DIALECT)} combines several parties' values and is not a {duck_type}; compare or "
            f"subtract values of one type (CAST at the owner)")
    return out


def _no_hash(*nodes: "SNode") -> None:
    for n in nodes:
        if n.encoding.kind == "hash":
            raise UnsupportedSql("strings of several parties can only be compared for equality under MPC")


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
        _no_hash(a, b)
        op = ARITH[type(node)]
        if {a.encoding.kind, b.encoding.kind} & TEMPORAL:
            return SNode(op, (a, b), encoding=_temporal_arith(op, a.encoding, b.encoding, node))
        enc = product_encoding(a.encoding, b.encoding) if op == "mul" else sum_encoding(a.encoding, b.encoding)
        return SNode(op, (a, b), encoding=enc)
    if isinstance(node, exp.DateDiff):
        unit = node.args.get("unit")
        if unit is not None and unit.name.upper() not in ("DAY", "DAYS", "D"):
            raise UnsupportedSql(
                f"{node.sql(dialect=DIALECT)}: date_diff over several parties' values counts days only under MPC "
                "('day'); compute other units at one party, or use 'day'")
        later = _as_type(node.this, "DATE", party_of, leaf)
        earlier = _as_type(node.expression, "DATE", party_of, leaf)
        return SNode("sub", (later, earlier), encoding=DAYS)
    if isinstance(node, exp.Neg):
        a = split_expression(node.this, party_of, leaf)
        return SNode("neg", (a,), encoding=a.encoding)
    if type(node) in COMPARE:
        a = split_expression(node.left, party_of, leaf)
        b = split_expression(node.right, party_of, leaf)
        kinds = (a.encoding.kind, b.encoding.kind)
        if kinds == ("date", "timestamp"):  # DuckDB compares a DATE as its midnight TIMESTAMP
            a = _as_type(node.left, "TIMESTAMP", party_of, leaf)
        elif kinds == ("timestamp", "date"):
            b = _as_type(node.right, "TIMESTAMP", party_of, leaf)
        _check_compare(COMPARE[type(node)], a, b, node)
        return SNode(COMPARE[type(node)], (a, b), encoding=BOOL)
    if isinstance(node, exp.Between):
        x = node.this
        low = exp.GTE(this=x.copy(), expression=node.args["low"].copy())
        high = exp.LTE(this=x.copy(), expression=node.args["high"].copy())
        return split_expression(exp.And(this=low, expression=high), party_of, leaf)
    if isinstance(node, exp.In) and not node.args.get("query") and node.expressions:
        ors = [exp.EQ(this=node.this.copy(), expression=e.copy()) for e in node.expressions]
        cond = ors[0]
        for o in ors[1:]:
            cond = exp.Or(this=cond, expression=o)
        return split_expression(cond, party_of, leaf)
    if isinstance(node, exp.Coalesce):
        args = [node.this, *node.expressions]
        out = split_expression(args[-1], party_of, leaf)
        for arg in reversed(args[:-1]):
            a = split_expression(arg, party_of, leaf)
            _no_hash(a, out)
            out = SNode("coalesce", (a, out), encoding=sum_encoding(a.encoding, out.encoding))
        return out
    if isinstance(node, exp.Nullif):
        a = split_expression(node.this, party_of, leaf)
        b = split_expression(node.expression, party_of, leaf)
        _check_compare("eq", a, b, node)
        return SNode("nullif", (a, b), encoding=a.encoding)
    if isinstance(node, exp.If):
        case = exp.Case(ifs=[exp.If(this=node.this.copy(), true=node.args["true"].copy())],
                        default=node.args.get("false").copy() if node.args.get("false") else None)
        return split_expression(case, party_of, leaf)
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        return SNode("isnull", (split_expression(node.this, party_of, leaf),), encoding=BOOL)
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Boolean):  # x IS TRUE / IS FALSE
        a = split_expression(node.this, party_of, leaf)
        base = a if node.expression.this else SNode("not", (a,), encoding=BOOL)
        return SNode("coalesce", (base, SNode("const", value=0, encoding=BOOL)), encoding=BOOL)
    if isinstance(node, (exp.And, exp.Or)):
        a = split_expression(node.left, party_of, leaf)
        b = split_expression(node.right, party_of, leaf)
        return SNode("and" if isinstance(node, exp.And) else "or", (a, b), encoding=BOOL)
    if isinstance(node, exp.Not):
        return SNode("not", (split_expression(node.this, party_of, leaf),), encoding=BOOL)
    if isinstance(node, exp.Case) and not node.this and node.args.get("ifs"):
        ifs = node.args["ifs"]
        default = node.args.get("default")
        other = split_expression(default, party_of, leaf) if default is not None else None
        for cond_if in reversed(ifs):  # CASE WHEN a THEN x WHEN b THEN y ELSE z: nested from the end
            cond = split_expression(cond_if.this, party_of, leaf)
            then = split_expression(cond_if.args["true"], party_of, leaf)
            if other is None:  # no ELSE: NULL
                other = SNode("null", encoding=then.encoding)
            _no_hash(then, other)
            other = SNode("case", (cond, then, other), encoding=sum_encoding(then.encoding, other.encoding))
        return other
    rewritten = _as_case(node)
    if rewritten is not None:
        return split_expression(rewritten, party_of, leaf)
    raise UnsupportedSql(
        f"the expression {node.sql(dialect=DIALECT)} must run under MPC (it combines several parties' columns, or "
        "reads a LEFT JOIN's NULL-padded side) and is not supported there yet (supported: + - * comparisons "
        "AND OR NOT IS [NOT] NULL/TRUE/FALSE COALESCE NULLIF IN BETWEEN, CASE, GREATEST LEAST ABS, DATE - DATE, "
        "date_diff('day', a, b) and DATE ± days)"
    )


def _as_case(node: exp.Expression) -> exp.Expression | None:
    """GREATEST/LEAST (NULLs ignored, as DuckDB), ABS and the simple CASE x WHEN v … as the searched
    CASE the secure operators run, with DuckDB's semantics; None for anything else.

    >>> _as_case(exp.func("greatest", exp.column("a"), exp.column("b"))).sql()
    'CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a WHEN a >= b THEN a ELSE b END'
    >>> _as_case(exp.Abs(this=exp.column("x"))).sql()
    'CASE WHEN x < 0 THEN -x ELSE x END'
    """
    if isinstance(node, (exp.Greatest, exp.Least)):
        args = [node.this, *node.expressions]
        cmp = exp.GTE if isinstance(node, exp.Greatest) else exp.LTE
        out = args[0]
        for b in args[1:]:
            a = out
            out = exp.Case(ifs=[exp.If(this=exp.Is(this=a.copy(), expression=exp.Null()), true=b.copy()),
                                exp.If(this=exp.Is(this=b.copy(), expression=exp.Null()), true=a.copy()),
                                exp.If(this=cmp(this=a.copy(), expression=b.copy()), true=a.copy())],
                           default=b.copy())
        return out
    if isinstance(node, exp.Abs):
        x = node.this
        return exp.Case(ifs=[exp.If(this=exp.LT(this=x.copy(), expression=exp.Literal.number(0)),
                                    true=exp.Neg(this=x.copy()))], default=x.copy())
    if isinstance(node, exp.Case) and node.this is not None and node.args.get("ifs"):
        subject = node.this
        ifs = [exp.If(this=exp.EQ(this=subject.copy(), expression=i.this.copy()), true=i.args["true"].copy())
               for i in node.args["ifs"]]
        default = node.args.get("default")
        return exp.Case(ifs=ifs, default=default.copy() if default is not None else None)
    return None
