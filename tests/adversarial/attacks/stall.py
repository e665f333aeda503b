"""A node whose own part of every query stalls (params: seconds) before it starts.

Its peers then wait on its share traffic, which is how a long or stuck query looks to them.
"""

from __future__ import annotations

import time
from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    from executors.runtime import PartyRun

    honest = PartyRun.run
    seconds = float(params.get("seconds", 60))

    def run(self, *args, **kwargs):
        record({"stalled": seconds})
        time.sleep(seconds)
        return honest(self, *args, **kwargs)

    PartyRun.run = run
