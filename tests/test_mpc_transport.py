"""Transport: payload format validation, mailbox semantics, dead/slow peers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from executors.peer_arrays import decode_arrays, encode_arrays
from executors.peer_channel import Channel, Mailbox, PeerLinks
from executors.transport_errors import MessageError, PeerTimeout, PeerUnavailable, QueryCancelled, TransportError
from executors.peer_arrays import MAX_ARRAYS, MAX_HEADER_BYTES
from executors.proto import peer_pb2
from tests.mpc_harness import Federation


def test_roundtrip_many_dtypes_and_shapes():
    arrays = [np.arange(10, dtype=np.uint64), np.array([-1, 2], dtype=np.int64), np.zeros((3, 4), np.uint32),
              np.arange(7, dtype=np.uint8), np.zeros(0, np.uint64), np.array([True, False]), np.array([1.5])]
    out = decode_arrays(bytes(encode_arrays(arrays)))
    assert len(out) == len(arrays)
    for a, b in zip(arrays, out):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    out[0][0] = 99  # decoded arrays are writable copies


def _message(dtypes, ndims, dims, data: bytes, header: bytes | None = None) -> bytes:
    """An ArrayList built field by field, as a modified node could send it."""
    head = peer_pb2.ArrayHeader(dtype=dtypes, ndim=ndims, dim=dims).SerializeToString() if header is None else header
    return peer_pb2.ArrayList(header=head, data=data).SerializeToString()


U64 = peer_pb2.UINT64


@pytest.mark.parametrize("payload, what", [
    (b"\xff\xff\xff", "not valid protobuf"),
    (_message([U64], [1], [5], b"\0" * 37), "truncated"),
    (_message([U64], [1], [5], b"\0" * 41), "trailing"),
    (_message([99], [1], [5], b"\0" * 40), "unsupported"),  # an unknown element type
    (_message([peer_pb2.DTYPE_UNSPECIFIED], [1], [5], b"\0" * 40), "unsupported"),
    (_message([U64] * 2, [1], [5], b"\0" * 40), "different numbers"),
    (_message([U64], [2], [5], b"\0" * 40), "dimension counts"),
    (_message([U64], [9] , [1] * 9, b"\0" * 8), "dimensions"),
    (_message([U64] * (MAX_ARRAYS + 1), [0] * (MAX_ARRAYS + 1), [], b"\0" * 8 * (MAX_ARRAYS + 1)), "arrays"),
    (_message([U64], [1], [2**40], b"\0" * 40), "need"),
    (_message([U64], [2], [0, 2**60], b""), "impossible"),
    (_message([U64], [2], [2**32, 2**32], b""), "need"),
    (_message([], [], [], b"", header=b"\x08" * (MAX_HEADER_BYTES + 1)), "header has"),
    (_message([], [], [], b"", header=b"\xff\xff"), "header is not valid"),
    (_message([peer_pb2.BOOL], [1], [3], b"\x00\x01\x07"), "0 or 1"),
])
def test_malformed_payload_raises_message_error(payload, what):
    with pytest.raises(MessageError) as err:
        decode_arrays(payload)
    assert what in str(err.value)


def test_a_valid_hand_built_message_decodes():
    """The checks above refuse only what is wrong: the same fields, consistent, decode."""
    out = decode_arrays(_message([U64, peer_pb2.BOOL], [1, 2], [2, 1, 2], b"\1" + b"\0" * 15 + b"\1\0"))
    assert out[0].tolist() == [1, 0] and out[1].tolist() == [[True, False]]


def test_encoding_is_plain_protobuf():
    """encode_arrays writes the ArrayList in one join; it must be exactly what protobuf writes."""
    for arrays in ([], [np.zeros(0, np.uint64)], [np.arange(300, dtype=np.uint8)], [np.arange(70000, dtype=np.int64)] * 2):
        payload = bytes(encode_arrays(arrays))
        parsed = peer_pb2.ArrayList()
        parsed.ParseFromString(payload)
        assert parsed.SerializeToString() == payload


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
