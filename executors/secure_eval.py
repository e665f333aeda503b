"""Evaluate secure expressions (planner/secure_expr.py SNode trees) over a shared table.

Numbers are (value, validity) pairs of arithmetic shares — validity None means
"never NULL"; NULL values are carried as 0. Predicates are (t, f) pairs of 0/1
shares: definitely true / definitely false, which is SQL's three-valued logic
with multiplications only. Scales are aligned by public factors before + − and
comparisons; products keep the summed scale (no truncation).
"""

from __future__ import annotations

from dataclasses import dataclass

from executors import mpc as ops
from executors.mpc import MPC, AShare
from executors.secure_table import SecretTable
from plan.physical import Encoding
from plan.expressions import SNode, scale_factor


@dataclass
class Num:
    value: AShare
    valid: AShare | None
    enc: Encoding


@dataclass
class Truth:
    t: AShare
    f: AShare


def _ones(mpc: MPC, n: int) -> AShare:
    return ops.constant(mpc, n, 1)


def _both_valid(mpc: MPC, a: AShare | None, b: AShare | None) -> AShare | None:
    if a is None:
        return b
    if b is None:
        return a
    return ops.mul(mpc, a, b)


def _align(a: Num, b: Num) -> tuple[AShare, AShare]:
    fa, fb = scale_factor(a.enc), scale_factor(b.enc)
    if fa == fb:
        return a.value, b.value
    if fb % fa == 0:
        return ops.mul_public(a.value, fb // fa), b.value
    if fa % fb == 0:
        return a.value, ops.mul_public(b.value, fa // fb)
    return ops.mul_public(a.value, fb), ops.mul_public(b.value, fa)


class Evaluator:
    def __init__(self, mpc: MPC, table: SecretTable):
        self.mpc = mpc
        self.table = table
        self.n = table.n

    def number(self, node: SNode) -> Num:
        v = self.eval(node)
        if isinstance(v, Truth):
            return Num(v.t, ops.add(v.t, v.f), node.encoding)
        return v

    def truth(self, node: SNode) -> Truth:
        v = self.eval(node)
        if isinstance(v, Truth):
            return v
        # a boolean column or 0/1 number: true where 1 and valid
        valid = v.valid if v.valid is not None else _ones(self.mpc, self.n)
        t = ops.mul(self.mpc, v.value, valid) if v.valid is not None else v.value
        return Truth(t, ops.sub(valid, t))

    def eval(self, node: SNode):
        op = node.op
        mpc = self.mpc
        if op == "col":
            valid = self.table.secret.get(node.column + "__v")
            value = self.table.secret[node.column]
            return Num(value, valid, node.encoding)
        if op == "const":
            return Num(ops.constant(mpc, self.n, int(node.value) & 0xFFFFFFFFFFFFFFFF), None, node.encoding)
        if op in ("add", "sub"):
            a, b = self.number(node.args[0]), self.number(node.args[1])
            x, y = _align(a, b)
            value = ops.add(x, y) if op == "add" else ops.sub(x, y)
            return Num(value, _both_valid(mpc, a.valid, b.valid), node.encoding)
        if op == "neg":
            a = self.number(node.args[0])
            return Num(ops.neg(a.value), a.valid, node.encoding)
        if op == "mul":
            a, b = self.number(node.args[0]), self.number(node.args[1])
            if a.valid is not None and b.valid is not None:
                value, valid = ops.mul_many(mpc, [a.value, a.valid], [b.value, b.valid])
            else:
                value, valid = ops.mul(mpc, a.value, b.value), a.valid if a.valid is not None else b.valid
            return Num(value, valid, node.encoding)
        if op in ("lt", "le", "gt", "ge", "eq", "ne"):
            a, b = self.number(node.args[0]), self.number(node.args[1])
            x, y = _align(a, b)
            bit = ops.compare_many(mpc, [(op, x, y)])[0]
            c = ops.b2a_bit(mpc, bit)
            valid = _both_valid(mpc, a.valid, b.valid)
            if valid is None:
                return Truth(c, ops.sub(_ones(mpc, self.n), c))
            t = ops.mul(mpc, c, valid)
            return Truth(t, ops.sub(valid, t))
        if op in ("and", "or"):
            a, b = self.truth(node.args[0]), self.truth(node.args[1])
            tt, ff = ops.mul_many(mpc, [a.t, a.f], [b.t, b.f])
            if op == "and":  # t = t1 t2, f = f1 + f2 - f1 f2
                return Truth(tt, ops.sub(ops.add(a.f, b.f), ff))
            return Truth(ops.sub(ops.add(a.t, b.t), tt), ff)
        if op == "not":
            a = self.truth(node.args[0])
            return Truth(a.f, a.t)
        if op == "truth":
            return Num(self.truth(node.args[0]).t, None, node.encoding)
        if op == "valid":
            a = self.number(node.args[0])
            return Num(a.valid if a.valid is not None else _ones(mpc, self.n), None, node.encoding)
        if op == "null":
            zero = ops.zeros(self.n)
            return Num(zero, zero, node.encoding)
        if op == "isnull":
            a = self.number(node.args[0])
            if a.valid is None:
                return Truth(ops.zeros(self.n), _ones(mpc, self.n))
            return Truth(ops.sub(_ones(mpc, self.n), a.valid), a.valid)
        if op == "coalesce":
            a, b = self.number(node.args[0]), self.number(node.args[1])
            if a.valid is None:
                return a
            x, y = _align(a, b)
            value = ops.add(y, ops.mul(mpc, a.valid, ops.sub(x, y)))  # a where a is valid, else b
            vb = b.valid if b.valid is not None else _ones(mpc, self.n)
            valid = ops.add(vb, ops.mul(mpc, a.valid, ops.sub(_ones(mpc, self.n), vb)))
            return Num(value, valid, node.encoding)
        if op == "nullif":
            a, b = self.number(node.args[0]), self.number(node.args[1])
            x, y = _align(a, b)
            same = ops.b2a_bit(mpc, ops.compare_many(mpc, [("eq", x, y)])[0])
            bvalid = b.valid if b.valid is not None else _ones(mpc, self.n)
            hit = ops.mul(mpc, same, bvalid)  # NULLIF(a, NULL) = a
            avalid = a.valid if a.valid is not None else _ones(mpc, self.n)
            return Num(a.value, ops.mul(mpc, avalid, ops.sub(_ones(mpc, self.n), hit)), node.encoding)
        if op == "case":
            cond = node.args[0]
            c = self.truth(cond).t if cond.encoding.kind == "bool" else self.number(cond).value
            a, b = self.number(node.args[1]), self.number(node.args[2])
            x, y = _align(a, b)
            value = ops.add(y, ops.mul(mpc, c, ops.sub(x, y)))
            valid = None
            if a.valid is not None or b.valid is not None:
                va = a.valid if a.valid is not None else _ones(mpc, self.n)
                vb = b.valid if b.valid is not None else _ones(mpc, self.n)
                valid = ops.add(vb, ops.mul(mpc, c, ops.sub(va, vb)))
            return Num(value, valid, node.encoding)
        raise ValueError(f"unknown secure expression op {op!r}")
