"""Property-based fuzzing of peer message handling (issue #6, item 6).

`decode_arrays` over random and mutated payloads returns arrays or raises
`MessageError` — nothing else, no huge allocation, no hang. The Mailbox refuses
replays, drops late messages, forgets messages of queries that never ran, and
caps undelivered bytes. A live node fed garbage stays healthy. Bounded: < 30 s.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executors.peer_arrays import decode_arrays, encode_arrays
from executors.peer_channel import Channel, Mailbox, PeerServicer
from executors.transport_errors import MessageError, PeerTimeout, QueryCancelled

from executors.proto import peer_pb2

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

DTYPES = [np.uint64, np.int64, np.uint32, np.int32, np.uint8, np.bool_, np.float64]


def _decode_or_message_error(payload: bytes) -> list[np.ndarray] | None:
    try:
        out = decode_arrays(payload)
    except MessageError as exc:
        assert str(exc)
        return None
    total = sum(a.nbytes for a in out)
    assert total <= len(payload), "decoded more bytes than were sent"
    return out


arrays_strategy = st.lists(
    # ndim >= 1: encode_arrays sends 0-d arrays as shape (1,) (np.ascontiguousarray)
    st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 5), min_size=1, max_size=3)).map(
        lambda t: (np.arange(int(np.prod(t[1], dtype=np.int64))) % 7).astype(t[0]).reshape(t[1])
    ),
    max_size=5,
)


@FUZZ
@given(arrays_strategy)
def test_roundtrip(arrays: list[np.ndarray]) -> None:
    out = decode_arrays(bytes(encode_arrays(arrays)))
    assert len(out) == len(arrays)
    for a, b in zip(arrays, out):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(payload: bytes) -> None:
    _decode_or_message_error(payload)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_as_a_header(header: bytes) -> None:
    _decode_or_message_error(peer_pb2.ArrayList(header=header, data=b"\0" * 16).SerializeToString())


@FUZZ
@given(arrays_strategy, st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["flip", "cut", "extend", "insert"]))
def test_mutated_valid_messages(arrays: list[np.ndarray], where: int, byte: int, how: str) -> None:
    payload = bytearray(bytes(encode_arrays(arrays)))
    i = where % (len(payload) + 1)
    if how == "flip" and payload:
        payload[i % len(payload)] ^= byte or 1
    elif how == "cut":
        payload = payload[:i]
    elif how == "extend":
        payload += bytes([byte]) * (1 + where % 9)
    else:
        payload[i:i] = bytes([byte])
    _decode_or_message_error(bytes(payload))


@FUZZ
@given(st.lists(st.integers(0, 12), max_size=6), st.lists(st.integers(0, 6), max_size=6),
       st.lists(st.integers(0, 2**64 - 1), max_size=12), st.binary(max_size=64))
def test_arbitrary_header_fields(dtypes: list[int], ndims: list[int], dims: list[int], data: bytes) -> None:
    """Any combination of header fields, consistent or not: arrays or MessageError, quickly."""
    header = peer_pb2.ArrayHeader(dtype=dtypes, ndim=ndims, dim=dims).SerializeToString()
    _decode_or_message_error(peer_pb2.ArrayList(header=header, data=data).SerializeToString())


def _list(header: bytes, data: bytes = b"") -> bytes:
    return peer_pb2.ArrayList(header=header, data=data).SerializeToString()


def _header(**fields: Any) -> bytes:
    return peer_pb2.ArrayHeader(**fields).SerializeToString()


@pytest.mark.parametrize("body", [
    # shape whose product overflows 64 bits with no data behind it
    _list(_header(dtype=[peer_pb2.UINT64], ndim=[2], dim=[1 << 32, 1 << 32])),
    _list(_header(dtype=[peer_pb2.UINT64], ndim=[4], dim=[(1 << 64) - 1, (1 << 64) - 1, 2, 2])),
    # many arrays declared, nothing behind them
    _list(_header(dtype=[peer_pb2.UINT64] * 200_000, ndim=[1] * 200_000, dim=[1] * 200_000)),
    # a header of millions of one-byte entries: refused by its size before it is parsed
    _list(b"\x08\x01" * (3 << 20)),
    # unknown element types (could smuggle objects / unknown kinds)
    _list(_header(dtype=[77], ndim=[1], dim=[1]), b"\x00" * 8),
    # too many dimensions
    _list(_header(dtype=[peer_pb2.UINT64], ndim=[200], dim=[1] * 200), b"\x00" * 8),
    b"\x0a",
    b"\x0a\xff\xff\xff\xff\x0f",
])
def test_adversarial_headers(body: bytes) -> None:
    """Each is refused within a second, without a large allocation (b"" is a valid empty list)."""
    start = time.monotonic()
    assert _decode_or_message_error(body) is None
    assert time.monotonic() - start < 1


# -- the mailbox ----------------------------------------------------------------------------


def test_replay_while_pending_and_after_delivery_refused() -> None:
    box = Mailbox()
    box.put("q", "p2", "r1", b"a")
    with pytest.raises(MessageError, match="replay"):
        box.put("q", "p2", "r1", b"a")
    assert box.get("q", "p2", "r1", time.monotonic() + 1) == b"a"
    with pytest.raises(MessageError, match="replay"):
        box.put("q", "p2", "r1", b"b")
    box.put("q", "p3", "r1", b"c")  # same tag from another sender is another message
    box.drop("q")
    box.put("q", "p2", "r2", b"late")  # late message of a finished query: silently dropped
    assert box.pending() == 0


def test_messages_of_cancelled_and_unknown_queries() -> None:
    box = Mailbox()
    box.put("unknown", "p2", "r1", b"x" * 10)
    assert box.pending() == 1
    box.cancel("unknown", "aborted")
    assert box.pending() == 0
    box.put("unknown", "p2", "r2", b"y")  # after cancel: dropped
    assert box.pending() == 0
    with pytest.raises(QueryCancelled):
        box.get("unknown", "p2", "r2", time.monotonic() + 1)


def test_messages_of_queries_that_never_ran_are_forgotten() -> None:
    box = Mailbox(stale_after=0.0)
    box.put("never-ran", "p2", "r1", b"x")
    box._next_sweep = 0.0  # the sweep runs at most every 10 s; force it
    box.put("other", "p2", "r1", b"y")
    assert box.pending() == 1


def test_undelivered_bytes_are_capped() -> None:
    box = Mailbox(max_pending_bytes=100)
    box.put("q", "p2", "r1", b"x" * 60)
    with pytest.raises(MessageError, match="too much"):
        box.put("q", "p2", "r2", b"x" * 60)
    box.get("q", "p2", "r1", time.monotonic() + 1)
    box.put("q", "p2", "r2", b"x" * 60)  # room again once delivered


@pytest.mark.parametrize("missing", [("", "p2", "r1"), ("q", "", "r1"), ("q", "p2", "")])
def test_message_without_ids_refused(missing: tuple[str, str, str]) -> None:
    with pytest.raises(MessageError):
        Mailbox().put(*missing, b"x")


def test_get_times_out_naming_the_sender() -> None:
    with pytest.raises(PeerTimeout, match="'p3'"):
        Mailbox().get("q", "p3", "r9", time.monotonic() + 0.05)


def test_wrong_payload_surfaces_as_message_error_on_receive() -> None:
    box = Mailbox()
    box.put("q", "p2", "h:r1", b"not an array message")
    chan = Channel("p1", "q", links=None, mailbox=box, deadline=time.monotonic() + 1,  # type: ignore[arg-type]
                   plan_hash="h")
    with pytest.raises(MessageError):
        chan.recv("p2", "r1")


class _Ctx:
    def __init__(self, who: str | None) -> None:
        self.who = who
        self.aborted: tuple[Any, str] | None = None

    def abort(self, code: Any, details: str) -> None:
        self.aborted = (code, details)
        raise RuntimeError("aborted")


@FUZZ
@given(st.text(max_size=20), st.text(max_size=20), st.sampled_from([None, "p1", "p2", "p3"]))
def test_servicer_accepts_only_the_authenticated_sender(sender: str, tag: str, who: str | None) -> None:
    from executors.proto import peer_pb2

    box = Mailbox()
    servicer = PeerServicer(box, {"p2", "p3"}, identify=lambda ctx: ctx.who)
    ctx = _Ctx(who)
    try:
        servicer.Send(peer_pb2.PeerMessage(query_id="q", sender=sender, tag=tag, payload=b"x").SerializeToString(), ctx)
        accepted = True
    except RuntimeError:
        accepted = False
    if accepted:
        assert sender == who and sender in {"p2", "p3"} and tag
    else:
        assert ctx.aborted is not None


@FUZZ
@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30), st.binary(max_size=300))
def test_the_hand_written_envelope_is_protobufs(query_id: str, sender: str, tag: str, payload: bytes) -> None:
    """encode_message writes exactly PeerMessage's bytes, and decode_message reads them back the
    way protobuf does (the payload as a view, not a copy)."""
    from executors.peer_arrays import decode_message, encode_message
    from executors.proto import peer_pb2

    raw = encode_message(query_id, sender, tag, payload)
    assert raw == peer_pb2.PeerMessage(query_id=query_id, sender=sender, tag=tag, payload=payload).SerializeToString()
    q, s, t, view = decode_message(raw)
    assert (q, s, t, bytes(view)) == (query_id, sender, tag, payload)


@FUZZ
@given(st.binary(max_size=200))
def test_garbage_envelopes_are_message_errors(raw: bytes) -> None:
    """Whatever bytes a modified peer sends as the envelope: a MessageError, or fields protobuf
    would read the same way — never another exception, never a read past the end."""
    from google.protobuf.message import DecodeError

    from executors.peer_arrays import decode_message
    from executors.proto import peer_pb2

    try:
        q, s, t, view = decode_message(raw)
    except MessageError:
        return
    parsed = peer_pb2.PeerMessage()
    try:
        parsed.ParseFromString(raw)
    except DecodeError:
        raise AssertionError("accepted what protobuf refuses") from None
    assert (parsed.query_id, parsed.sender, parsed.tag, parsed.payload) == (q, s, t, bytes(view))


# -- a live node fed garbage ------------------------------------------------------------------


@pytest.mark.e2e
def test_node_survives_garbage_share_traffic(federation: tuple[Path, Any], conn: Any) -> None:
    import random

    import grpc

    from executors.proto import peer_pb2, peer_pb2_grpc
    from fedsql import tls
    from fedsql.config import load_config

    fed = load_config(federation[0])
    rng = random.Random(5)
    with tls.Identity(fed, "p2").secure_channel("p1") as ch:
        stub = peer_pb2_grpc.PeerStub(ch)
        for i in range(200):
            payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
            try:
                stub.Send(peer_pb2.PeerMessage(query_id=f"garbage-{i % 7}", sender="p2", tag=f"r{i}",
                                               payload=payload), timeout=5)
            except grpc.RpcError as exc:
                assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM t")
    assert cur.fetchone()[0] == 200
