"""A DP owner whose engine fails data-dependently inside a DP query (issue #11, finding 3).

Stands for any failure the planner did not foresee (a DuckDB overflow, a memory limit):
the owner's fragment raises an error whose text names a protected value. What reaches the
issuer must carry no such detail, and the budget must stay charged.
"""

from __future__ import annotations

from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    import fedsql.node as node_mod
    from fedsql import errors

    honest = node_mod.PartyRun

    class FailingRun(honest):
        def run(self):
            if self.plan.dp is not None and self.plan.dp.charges:
                record({"failed": True})
                raise errors.DataError(f"Out of Range Error: Overflow in multiplication of INT32 "
                                       f"({params['secret']} * 2000000000)!")
            return super().run()

    node_mod.PartyRun = FailingRun
