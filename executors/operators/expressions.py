"""Row expressions on shares (a projection step): each output column is an expression of the
input's columns (plan/expressions.py trees, evaluated by executors/secure_eval.py)."""

from __future__ import annotations

from typing import Mapping

from executors.mpc import MPC
from executors.operators.base import MemoryCheck, no_memory_limit
from executors.secure_eval import Evaluator
from executors.secure_table import SecretTable
from plan.physical import SecureEval


def secure_eval(mpc: MPC, inputs: Mapping[str, SecretTable], step: SecureEval, *,
                check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """The input with `step.outputs` added (or replaced) in order, each the value part of its
    expression (NULL as 0); a later output may use an earlier one, e.g. a row flag. Nothing is
    opened."""
    table = inputs[step.input]
    out = SecretTable(n=table.n, secret=dict(table.secret), public=dict(table.public), order_of=table.order_of)
    evaluator = Evaluator(mpc, out)  # it reads `out`, so it sees the outputs made so far
    for name, node in step.outputs:
        out.secret[name] = evaluator.number(node).value
    return out
