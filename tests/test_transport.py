"""The in-process Transport (executors/transport.py): same semantics as the gRPC one, no sockets."""

from __future__ import annotations

import numpy as np
import pytest

from executors import mpc as ops
from executors.mpc import MPC
from executors.peer_channel import Channel
from executors.transport import InProcessTransport, Transport, run_in_process
from executors.transport_errors import MessageError, PeerTimeout

C = ("c0", "c1", "c2")


def test_both_implementations_are_transports() -> None:
    assert isinstance(Channel("a", "q", None, None, 0.0, "h"), Transport)
    assert isinstance(InProcessTransport("a", "q", {"a": None}, 0.0, "h"), Transport)


def test_mpc_runs_on_the_in_process_transport() -> None:
    x = np.array([3, 5, 7], dtype=np.int64)

    def party(t: InProcessTransport) -> list[int]:
        m = MPC(t, C)
        m.setup()
        s = ops.share_input(m, "c0", x.astype(np.uint64) if t.me == "c0" else None, 3)
        return ops.reveal(m, ops.mul(m, s, s), None).view(np.int64).tolist()

    out = run_in_process({p: party for p in C})
    assert all(v == [9, 25, 49] for v in out.values())


def test_plan_agreement_and_binding() -> None:
    hashes = {"c0": "a" * 64, "c1": "a" * 64, "c2": "b" * 64}

    def party(t: InProcessTransport) -> list[str]:
        return t.agree(C, hashes[t.me], timeout=5.0)

    out = run_in_process({p: party for p in C}, plan_hash=None)
    assert out["c2"] and "c2" in out["c0"] and "c2" in out["c1"]


def test_unbound_traffic_and_duplicates_are_refused() -> None:
    def unbound(t: InProcessTransport) -> None:
        t.send("c1", "x", [np.zeros(1, np.uint64)])

    with pytest.raises(RuntimeError, match="agreed on the plan"):
        run_in_process({"c0": unbound, "c1": lambda t: None}, plan_hash=None)

    def twice(t: InProcessTransport) -> None:
        if t.me == "c0":
            t.send("c1", "x", [np.zeros(1, np.uint64)])
            t.send("c1", "x", [np.zeros(1, np.uint64)])

    with pytest.raises(MessageError, match="duplicate"):
        run_in_process({"c0": twice, "c1": twice})


def test_a_silent_party_times_out_instead_of_hanging() -> None:
    with pytest.raises(PeerTimeout, match="'c1' sent nothing"):
        run_in_process({"c0": lambda t: t.recv("c1", "x"), "c1": lambda t: None}, timeout=0.5)
