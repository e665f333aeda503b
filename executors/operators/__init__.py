"""Secure relational operators: functions `(mpc, inputs, step, *, check_memory) -> SecretTable`.

Each runs at the three compute parties in lockstep on the secret tables it reads (`inputs`,
by name) and returns the step's output table; the interpreter (executors/runtime.py
PartyRun) only dispatches to them (`SECURE_OPERATORS`) and keeps the tables. They use the
MPC engine's operations only (executors/mpc/), never share internals, so each can be tested
against plaintext on the in-process transport (executors/transport.py, tests/test_operators_*.py).
One module per job: joins, grouping, distinct, expressions, finish, union, noise, dp.
"""

from __future__ import annotations

from executors.operators.base import MemoryCheck, SecureOperator, no_memory_limit
from executors.operators.distinct import distinct_mark
from executors.operators.dp import bound_per_unit, partition_select
from executors.operators.expressions import secure_eval
from executors.operators.finish import secure_finish
from executors.operators.grouping import group_combine, oblivious_group
from executors.operators.joins import oblivious_join, oblivious_semi_join, secure_join
from executors.operators.noise import add_noise
from executors.operators.union import secure_union
from plan.physical import (
    AddNoise, BoundPerUnit, DistinctMark, GroupCombine, ObliviousGroup, ObliviousJoin, ObliviousSemiJoin,
    PartitionSelect, SecureEval, SecureFinish, SecureJoin, SecureUnion,
)

SECURE_OPERATORS: dict[type, SecureOperator] = {
    SecureUnion: secure_union,
    GroupCombine: group_combine,
    ObliviousGroup: oblivious_group,
    DistinctMark: distinct_mark,
    SecureEval: secure_eval,
    SecureFinish: secure_finish,
    AddNoise: add_noise,
    SecureJoin: secure_join,
    ObliviousJoin: oblivious_join,
    ObliviousSemiJoin: oblivious_semi_join,
    BoundPerUnit: bound_per_unit,
    PartitionSelect: partition_select,
}
"""Step class → the operator that computes it at the compute parties."""

__all__ = ["MemoryCheck", "SECURE_OPERATORS", "SecureOperator", "add_noise", "bound_per_unit", "distinct_mark",
           "group_combine", "no_memory_limit", "oblivious_group", "oblivious_join", "oblivious_semi_join",
           "partition_select", "secure_eval", "secure_finish", "secure_join", "secure_union"]
