"""A curious compute party that records every single value it opens under MPC (`ops.reveal` of a
one-element column): e.g. what the uniqueness check of an oblivious join lets it learn."""

from __future__ import annotations

from typing import Callable


def apply(params: dict, record: Callable[[dict], None]) -> None:
    from executors import mpc

    honest_reveal = mpc.reveal

    def reveal(ctx, x, to):
        out = honest_reveal(ctx, x, to)
        if out is not None and len(out) == 1:
            record({"opened": int(out[0])})
        return out

    mpc.reveal = reveal
