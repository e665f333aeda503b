"""UNION ALL of secret tables (the fragments of one table at several parties)."""

from __future__ import annotations

from typing import Mapping

from executors.mpc import MPC
from executors.operators.base import MemoryCheck, no_memory_limit
from executors.secure_table import SecretTable, concat_tables
from fedsql import errors
from plan.physical import SecureUnion


def secure_union(mpc: MPC, inputs: Mapping[str, SecretTable], step: SecureUnion, *,
                 check_memory: MemoryCheck = no_memory_limit) -> SecretTable:
    """The inputs' rows one after another, in `step.inputs` order (local, nothing opened). Every
    input has the same columns: the planner shares each fragment with one column list."""
    tables = [inputs[i] for i in step.inputs]
    names = set(tables[0].secret) if tables else set()
    if not tables or any(set(t.secret) != names or t.public for t in tables):
        raise errors.InternalError(f"{step.id}: a secure union needs inputs with the same secret columns "
                                   "and no public ones")
    return concat_tables(tables)
