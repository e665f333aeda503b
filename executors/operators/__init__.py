"""Secure relational operators: functions `(mpc, inputs, step, *, check_memory) -> SecretTable`.

Each runs at the three compute parties in lockstep on the secret tables it reads (`inputs`,
by name) and returns the step's output table; the interpreter (executors/runtime.py
PartyRun) only dispatches to them (`SECURE_OPERATORS`) and keeps the tables. They use the
MPC engine's operations only (executors/mpc/), never share internals, so each can be tested
against plaintext on the in-process transport (executors/transport.py, tests/test_operators_*.py).
"""

from __future__ import annotations

from executors.operators.base import MemoryCheck, SecureOperator, no_memory_limit
from executors.operators.dp import bound_per_unit, partition_select
from executors.operators.joins import oblivious_join, oblivious_semi_join, secure_join
from plan.physical import BoundPerUnit, ObliviousJoin, ObliviousSemiJoin, PartitionSelect, SecureJoin

SECURE_OPERATORS: dict[type, SecureOperator] = {
    SecureJoin: secure_join,
    ObliviousJoin: oblivious_join,
    ObliviousSemiJoin: oblivious_semi_join,
    BoundPerUnit: bound_per_unit,
    PartitionSelect: partition_select,
}
"""Step class → the operator that computes it at the compute parties."""

__all__ = ["MemoryCheck", "SECURE_OPERATORS", "SecureOperator", "bound_per_unit", "no_memory_limit",
           "oblivious_join", "oblivious_semi_join", "partition_select", "secure_join"]
