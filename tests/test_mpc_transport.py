"""Transport: payload format validation, mailbox semantics, dead/slow peers."""

from __future__ import annotations

import struct
import threading
import time

import numpy as np
import pytest

from executors.peer_channel import (
    Channel, Mailbox, MessageError, PeerLinks, PeerTimeout, PeerUnavailable, QueryCancelled, TransportError,
    decode_arrays, encode_arrays,
)
from tests.mpc_harness import Federation


def test_roundtrip_many_dtypes_and_shapes():
    arrays = [np.arange(10, dtype=np.uint64), np.array([-1, 2], dtype=np.int64), np.zeros((3, 4), np.uint32),
              np.arange(7, dtype=np.uint8), np.zeros(0, np.uint64), np.array([True, False]), np.array([1.5])]
    out = decode_arrays(encode_arrays(arrays))
    assert len(out) == len(arrays)
    for a, b in zip(arrays, out):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    out[0][0] = 99  # decoded arrays are writable copies


@pytest.mark.parametrize("mutate, what", [
    (lambda p: b"XXXX" + p[4:], "format"),
    (lambda p: p[:-3], "truncated"),
    (lambda p: p + b"\0", "trailing"),
    (lambda p: p[:9] + b"<O8" + p[12:], "unsupported"),  # object dtype must never be accepted
    (lambda p: p[:8] + b"\x01" + p[9:], "unsupported"),  # dtype length corrupted
    (lambda p: p[:4] + struct.pack("<I", 10**9) + p[8:], "arrays"),
    (lambda p: p[:14] + struct.pack("<Q", 2**40) + p[22:], "size"),
])
def test_malformed_payload_raises_message_error(mutate, what):
    good = encode_arrays([np.arange(5, dtype=np.uint64)])
    with pytest.raises(MessageError) as err:
        decode_arrays(mutate(good))
    assert what in str(err.value) or "truncated" in str(err.value)


def test_encode_refuses_object_arrays():
    with pytest.raises(MessageError):
        encode_arrays([np.array(["a"], dtype=object)])


def test_mailbox_timeout_names_sender_and_hides_data():
    mb = Mailbox()
    mb.put("q", "alice", "r2", b"secret-bytes")
    t0 = time.monotonic()
    with pytest.raises(PeerTimeout) as err:
        mb.get("q", "bob", "r2", time.monotonic() + 0.2)
    assert time.monotonic() - t0 < 1.5
    assert "'bob'" in str(err.value) and "secret" not in str(err.value)
    assert mb.get("q", "alice", "r2", time.monotonic() + 1) == b"secret-bytes"


def test_mailbox_cancel_wakes_waiters_and_drop_frees():
    mb = Mailbox()
    caught = []

    def waiter():
        try:
            mb.get("q", "bob", "r1", time.monotonic() + 10)
        except QueryCancelled as exc:
            caught.append(str(exc))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    mb.cancel("q", "party 'carol' failed")
    t.join(2)
    assert caught and "carol" in caught[0]
    mb.put("q2", "a", "r1", b"x")
    mb.drop("q2")
    assert mb.pending() == 0
    mb.put("q2", "a", "r1", b"late")  # late message of a finished query is dropped
    assert mb.pending() == 0


def test_duplicate_message_rejected():
    mb = Mailbox()
    mb.put("q", "a", "r1", b"x")
    with pytest.raises(MessageError, match="'a'"):
        mb.put("q", "a", "r1", b"x")


def test_unreachable_peer_raises_unavailable_naming_it():
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    links = PeerLinks("me", {"ghost": f"127.0.0.1:{port}"})
    ch = Channel("me", "q", links, Mailbox(), time.monotonic() + 30, plan_hash="h")
    t0 = time.monotonic()
    with pytest.raises(PeerUnavailable, match="'ghost'"):
        ch.send("ghost", "r1", [np.zeros(3, np.uint64)])
    assert time.monotonic() - t0 < 25  # well before the deadline (after a short reconnect grace)
    links.close()


def test_malformed_message_over_grpc_raises_message_error():
    fed = Federation(others=())
    try:
        chans = fed.channels(5)
        fed.links["c0"].send("c1", chans["c1"].query_id, f"{chans['c1'].plan_hash}:r1", b"garbage",
                             time.monotonic() + 5)
        with pytest.raises(MessageError):
            chans["c1"].recv("c0", "r1")
        assert issubclass(MessageError, TransportError)
    finally:
        fed.close()


def test_dead_compute_peer_fails_query_within_deadline():
    from executors.mpc import mul, share_input

    fed = Federation(others=())
    fed.stop("c2")
    t0 = time.monotonic()

    def party(mpc):
        x = share_input(mpc, "c0", np.arange(10) if mpc.i == 0 else None, 10)
        return mul(mpc, x, x)

    try:
        with pytest.raises((PeerUnavailable, PeerTimeout)) as err:
            fed.run({p: (lambda ch, p=p: _mpc_run(ch, fed.compute, party)) for p in ("c0", "c1")}, timeout=3)
        assert "'c2'" in str(err.value)
        assert time.monotonic() - t0 < 8
    finally:
        fed.close()


def _mpc_run(ch, compute, fn):
    from executors.mpc import MPC

    mpc = MPC(ch, compute)
    mpc.setup()
    return fn(mpc)
