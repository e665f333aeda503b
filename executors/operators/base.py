"""What every secure operator shares: its signature and the memory guard it is given."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

from executors.mpc import MPC
from executors.secure_table import SecretTable

MemoryCheck = Callable[[int, int, str], None]
"""`check(rows, columns, what)`: raise ResourceLimitExceeded before a rows × columns secret
table is allocated past the party's limit (executors/runtime.py PartyRun._check_memory)."""


def no_memory_limit(rows: int, columns: int, what: str) -> None:
    """The MemoryCheck of a run without a limit (unit tests)."""


class SecureOperator(Protocol):
    """`(mpc, inputs, step, *, check_memory) -> SecretTable`, run at each compute party."""

    def __call__(self, mpc: MPC, inputs: Mapping[str, SecretTable], step: Any, *,
                 check_memory: MemoryCheck = no_memory_limit) -> SecretTable: ...
