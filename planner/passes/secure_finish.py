"""Pass: HAVING and ORDER BY … LIMIT over secret aggregates, before anything is opened.

Without it, the issuer's node would receive every group and filter or cut them
itself. With it, HAVING becomes a secret flag (only the number of passing
groups is opened, after a shuffle) and ORDER BY … LIMIT k an oblivious sort
of the groups of which only the first k are opened — the issuer gets exactly
the result. Expressions must be arithmetic/comparisons over COUNT, SUM, MIN,
MAX and numeric group keys; anything else stays at the issuer (and the
leakage report says so).
"""

from __future__ import annotations

from sqlglot import exp

from plan.physical import Encoding, RevealColumn, SecureFinish, ValidityPrep
from plan.expressions import BOOL, SNode
from planner.secure_expr import ARITH, COMPARE, product_encoding, sum_encoding


def _literal(node: exp.Literal) -> SNode | None:
    if node.is_string:
        return None
    text = node.name
    if "e" in text.lower():
        return None
    if "." in text:
        whole, frac = text.split(".", 1)
        scale = len(frac)
        return SNode("const", value=int(whole + frac), encoding=Encoding("decimal", scale, f"DECIMAL(38,{scale})"))
    return SNode("const", value=int(text), encoding=Encoding("int"))


def to_snode(node: exp.Expression, columns: dict[str, tuple[str, Encoding]], canonical) -> SNode | None:
    """SQL over aggregates/keys → SNode over the combined table's columns, or None if not expressible."""
    key = canonical(node)
    if key in columns:
        name, enc = columns[key]
        if enc.kind in ("string", "float_bits", "hash"):
            return None
        return SNode("col", column=name, encoding=enc)
    if isinstance(node, exp.Paren):
        return to_snode(node.this, columns, canonical)
    if isinstance(node, exp.Literal):
        return _literal(node)
    if isinstance(node, exp.Neg):
        a = to_snode(node.this, columns, canonical)
        return None if a is None else SNode("neg", (a,), encoding=a.encoding)
    if type(node) in ARITH or type(node) in COMPARE or isinstance(node, (exp.And, exp.Or)):
        a, b = to_snode(node.left, columns, canonical), to_snode(node.right, columns, canonical)
        if a is None or b is None:
            return None
        try:
            if type(node) in ARITH:
                op = ARITH[type(node)]
                enc = product_encoding(a.encoding, b.encoding) if op == "mul" else sum_encoding(a.encoding, b.encoding)
                return SNode(op, (a, b), encoding=enc)
            if type(node) in COMPARE:
                sum_encoding(a.encoding, b.encoding)
                return SNode(COMPARE[type(node)], (a, b), encoding=BOOL)
        except Exception:  # noqa: BLE001 - incompatible scales: leave it to the issuer
            return None
        return SNode("and" if isinstance(node, exp.And) else "or", (a, b), encoding=BOOL)
    if isinstance(node, exp.Not):
        a = to_snode(node.this, columns, canonical)
        return None if a is None else SNode("not", (a,), encoding=BOOL)
    return None


def plan_secure_finish(ast: exp.Select, reveal: tuple[RevealColumn, ...], replacements: dict[str, str],
                       canonical, step_id: str, input_id: str) -> SecureFinish | None:
    """A SecureFinish step when the query's HAVING / ORDER BY+LIMIT can run under MPC, else None."""
    having = ast.args.get("having")
    order = ast.args.get("order")
    limit = ast.args.get("limit")
    offset = ast.args.get("offset")
    if having is None and limit is None:
        return None
    if offset is not None and limit is None:
        return None
    by_name = {c.name: c for c in reveal}
    columns: dict[str, tuple[str, Encoding]] = {}
    preps: list[ValidityPrep] = []
    for key, repl in replacements.items():
        name = repl.strip('"')
        col = by_name.get(name)
        if col is None or not repl.startswith('"') or col.how == "local_key":
            continue  # e.g. AVG's division, or keys only the issuer holds: not expressible
        columns[key] = (col.source, col.encoding)
        if col.how == "key":
            preps.append(ValidityPrep(col.source, "copy", col.count))
        elif col.how == "sum_or_null":
            preps.append(ValidityPrep(col.source, "count", col.count))
        elif col.how == "minmax":
            preps.append(ValidityPrep(col.source, "sentinel", ""))
    # aliases of the select list may be used in HAVING and ORDER BY
    for item in ast.expressions:
        if isinstance(item, exp.Alias):
            target = to_snode(item.this, columns, canonical)
            if target is not None and target.op == "col":
                columns[canonical(exp.column(item.alias))] = (target.column, target.encoding)
    having_node = None
    if having is not None:
        having_node = to_snode(having.this, columns, canonical)
        if having_node is None:
            return None
    orders: list[tuple[SNode, bool, bool]] = []
    if limit is not None:
        if order is None:
            return None
        for o in order.expressions:
            target = o.this
            if isinstance(target, exp.Literal) and not target.is_string:  # ORDER BY 2
                pos = int(target.name)
                if not 1 <= pos <= len(ast.expressions):
                    return None
                target = ast.expressions[pos - 1].unalias()
            node = to_snode(target, columns, canonical)
            if node is None:
                return None
            desc = bool(o.args.get("desc"))
            nulls_first = o.args.get("nulls_first")
            orders.append((node, desc, bool(nulls_first) if nulls_first is not None else False))
        try:
            count = int(limit.expression.name) if limit.expression is not None else int(limit.name)
            skip = int(offset.expression.name) if offset is not None else 0
        except (AttributeError, ValueError):
            return None
    else:
        count, skip = -1, 0
    return SecureFinish(step_id, input_id, tuple(preps), having_node, tuple(orders), count, skip)


def finish_leakage(step: SecureFinish, compute) -> tuple[str, ...]:
    out = []
    if step.having is not None:
        out.append(f"to {', '.join(compute)}: how many groups pass HAVING (evaluated under MPC, after a shuffle)")
    if step.limit >= 0:
        out.append("ORDER BY … LIMIT ran under MPC (oblivious sort): groups beyond the limit are never opened")
    return tuple(out)
