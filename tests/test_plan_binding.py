"""Share traffic is bound to one agreed plan (issue #11, High 4), over real gRPC.

The agreement round names the participants whose plan hash differs; an unbound channel
carries nothing else; parties bound to different plans never receive each other's share
messages, and their PRG streams (HKDF of the pairwise key with query and plan) differ.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import numpy as np
import pytest

from executors.mpc.prg import bound_key
from executors.peer_channel import Channel
from executors.transport_errors import PeerTimeout
from tests.mpc_harness import COMPUTE, Federation


def _channels(fed: Federation, hashes: dict[str, str | None], timeout: float = 5.0) -> dict[str, Channel]:
    deadline = time.monotonic() + timeout
    return {p: Channel(p, "p0/q1", fed.links[p], fed.mailboxes[p], deadline, plan_hash=h) for p, h in hashes.items()}


def test_agreement_names_the_parties_with_another_plan() -> None:
    fed = Federation(others=())
    try:
        chans = _channels(fed, {p: None for p in COMPUTE})
        claimed = {"c0": "a" * 64, "c1": "a" * 64, "c2": "b" * 64}
        results: dict[str, list[str]] = {}
        threads = [threading.Thread(target=lambda p=p: results.__setitem__(p, chans[p].agree(COMPUTE, claimed[p], 5)))
                   for p in COMPUTE]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert results["c2"] in (["c0"], ["c1"]) and results["c0"] == ["c2"]
        assert chans["c0"].plan_hash is None and chans["c2"].plan_hash is None  # nobody bound
        with pytest.raises(RuntimeError, match="agreed"):
            chans["c0"].send("c1", "r1", [np.zeros(1, np.uint64)])
    finally:
        fed.close()


def test_parties_bound_to_different_plans_never_combine_shares() -> None:
    from executors.mpc import MPC, reveal, share_input

    fed = Federation(others=())
    try:
        chans = _channels(fed, {"c0": "a" * 64, "c1": "a" * 64, "c2": "b" * 64}, timeout=3)

        def party(p: str):
            mpc = MPC(chans[p], COMPUTE)
            mpc.setup()
            return reveal(mpc, share_input(mpc, "c0", np.arange(4) if p == "c0" else None, 4), None)

        with cf.ThreadPoolExecutor(3) as pool:
            futures = {p: pool.submit(party, p) for p in COMPUTE}
            for p in COMPUTE:
                with pytest.raises(PeerTimeout):  # c2's messages go to another plan's tags
                    futures[p].result(30)
    finally:
        fed.close()


def test_bound_keys_depend_on_query_and_plan() -> None:
    key = bytes(16)
    a = bound_key(key, b"p1/q\n" + b"a" * 64)
    assert a == bound_key(key, b"p1/q\n" + b"a" * 64) and len(a) == 16
    assert a != bound_key(key, b"p1/q\n" + b"b" * 64) and a != bound_key(key, b"p2/q\n" + b"a" * 64)
