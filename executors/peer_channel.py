"""Share traffic between nodes: one gRPC message per peer per round.

Inbound messages land in a Mailbox keyed by (query, sender, tag); the MPC
code blocks on exactly the message it needs, with the query's deadline, so
ordering across peers never matters. Payloads are a small self-describing
binary format (never pickle) validated on decode.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import OrderedDict

import grpc
import numpy as np

from executors.proto import peer_pb2, peer_pb2_grpc


class TransportError(Exception):
    """Base of share-traffic failures; messages name the party, never data."""


class PeerTimeout(TransportError):
    pass


class PeerUnavailable(TransportError):
    pass


class QueryCancelled(TransportError):
    pass


class MessageError(TransportError):
    pass


_ALLOWED_DTYPES = {"<u8", "<i8", "<u4", "<i4", "|u1", "|b1", "<f8"}
_FINISHED_KEEP = 4096


def encode_arrays(arrays: list[np.ndarray]) -> bytes:
    parts = [struct.pack("<I", len(arrays))]
    for a in arrays:
        a = np.ascontiguousarray(a)
        dt = a.dtype.str.encode()
        parts.append(struct.pack("<B", len(dt)) + dt + struct.pack("<B", a.ndim))
        parts.append(struct.pack(f"<{a.ndim}Q", *a.shape))
        raw = a.tobytes()
        parts.append(struct.pack("<Q", len(raw)))
        parts.append(raw)
    return b"".join(parts)


def decode_arrays(payload: bytes) -> list[np.ndarray]:
    """Inverse of encode_arrays; any inconsistency raises MessageError."""
    try:
        view = memoryview(payload)
        (count,), pos = struct.unpack_from("<I", view, 0), 4
        if count > 10_000:
            raise MessageError("message declares too many arrays")
        out = []
        for _ in range(count):
            (dlen,) = struct.unpack_from("<B", view, pos)
            pos += 1
            dtype = bytes(view[pos:pos + dlen]).decode("ascii")
            pos += dlen
            if dtype not in _ALLOWED_DTYPES:
                raise MessageError(f"message has an unsupported array type {dtype!r}")
            (ndim,) = struct.unpack_from("<B", view, pos)
            pos += 1
            if ndim > 4:
                raise MessageError("message array has too many dimensions")
            shape = struct.unpack_from(f"<{ndim}Q", view, pos)
            pos += 8 * ndim
            (nbytes,) = struct.unpack_from("<Q", view, pos)
            pos += 8
            itemsize = np.dtype(dtype).itemsize
            if nbytes != int(np.prod(shape, dtype=np.uint64)) * itemsize or pos + nbytes > len(view):
                raise MessageError("message array size does not match its shape")
            out.append(np.frombuffer(view[pos:pos + nbytes], dtype=dtype).reshape(shape).copy())
            pos += nbytes
        if pos != len(view):
            raise MessageError("message has trailing bytes")
        return out
    except struct.error:
        raise MessageError("message is truncated") from None


class Mailbox:
    """Thread-safe store of inbound messages, woken by arrivals and cancellation."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._messages: dict[tuple[str, str, str], bytes] = {}
        self._cancelled: OrderedDict[str, str] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()

    def put(self, query_id: str, sender: str, tag: str, payload: bytes) -> None:
        with self._cond:
            if query_id in self._finished or query_id in self._cancelled:
                return  # late message of a finished query: drop
            key = (query_id, sender, tag)
            if key in self._messages:
                raise MessageError(f"duplicate message {tag!r} from '{sender}' (replay?)")
            self._messages[key] = payload
            self._cond.notify_all()

    def get(self, query_id: str, sender: str, tag: str, deadline: float) -> bytes:
        key = (query_id, sender, tag)
        with self._cond:
            while True:
                if query_id in self._cancelled:
                    raise QueryCancelled(f"query cancelled: {self._cancelled[query_id]}")
                if key in self._messages:
                    return self._messages.pop(key)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerTimeout(
                        f"party '{sender}' sent nothing for step {tag} before the query deadline; "
                        "it may be down or overloaded"
                    )
                self._cond.wait(min(remaining, 1.0))

    def cancel(self, query_id: str, reason: str) -> None:
        with self._cond:
            self._cancelled[query_id] = reason
            while len(self._cancelled) > _FINISHED_KEEP:
                self._cancelled.popitem(last=False)
            self._purge(query_id)
            self._cond.notify_all()

    def drop(self, query_id: str) -> None:
        with self._cond:
            self._finished[query_id] = None
            while len(self._finished) > _FINISHED_KEEP:
                self._finished.popitem(last=False)
            self._purge(query_id)

    def _purge(self, query_id: str) -> None:
        for key in [k for k in self._messages if k[0] == query_id]:
            del self._messages[key]

    def pending(self) -> int:
        with self._cond:
            return len(self._messages)


class PeerServicer(peer_pb2_grpc.PeerServicer):
    def __init__(self, mailbox: Mailbox, known_parties: set[str] | None = None):
        self.mailbox = mailbox
        self.known = known_parties

    def Send(self, request, context):
        if self.known is not None and request.sender not in self.known:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"unknown sender '{request.sender}'")
        try:
            self.mailbox.put(request.query_id, request.sender, request.tag, request.payload)
        except MessageError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return peer_pb2.Ack()


def add_peer_servicer(server: grpc.Server, mailbox: Mailbox, known_parties: set[str] | None = None) -> None:
    peer_pb2_grpc.add_PeerServicer_to_server(PeerServicer(mailbox, known_parties), server)


class PeerLinks:
    """One reusable gRPC channel per peer."""

    def __init__(self, me: str, addresses: dict[str, str], channel_options=None, credentials=None):
        self.me = me
        self.addresses = dict(addresses)
        opts = channel_options or [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]
        self._channels = {
            p: (grpc.secure_channel(a, credentials, options=opts) if credentials else grpc.insecure_channel(a, options=opts))
            for p, a in addresses.items()
        }
        self._stubs = {p: peer_pb2_grpc.PeerStub(ch) for p, ch in self._channels.items()}

    def send(self, to: str, query_id: str, tag: str, payload: bytes, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PeerTimeout(f"query deadline passed before sending step {tag} to party '{to}'")
        try:
            self._stubs[to].Send(
                peer_pb2.PeerMessage(query_id=query_id, sender=self.me, tag=tag, payload=payload),
                timeout=remaining,
                wait_for_ready=False,
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise PeerTimeout(f"party '{to}' did not accept step {tag} before the query deadline") from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise PeerUnavailable(f"party '{to}' is not reachable at {self.addresses[to]}") from None
            raise TransportError(f"party '{to}' rejected step {tag}: {exc.details()}") from None

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()


class Channel:
    """What the MPC code uses: send/recv of array lists, bound to one query and deadline."""

    def __init__(self, me: str, query_id: str, links: PeerLinks, mailbox: Mailbox, deadline: float):
        self.me = me
        self.query_id = query_id
        self.links = links
        self.mailbox = mailbox
        self.deadline = deadline
        self.bytes_sent = 0
        self.messages_sent = 0

    def send(self, to: str, tag: str, arrays: list[np.ndarray]) -> None:
        payload = encode_arrays(arrays)
        self.bytes_sent += len(payload)
        self.messages_sent += 1
        self.links.send(to, self.query_id, tag, payload, self.deadline)

    def recv(self, frm: str, tag: str) -> list[np.ndarray]:
        return decode_arrays(self.mailbox.get(self.query_id, frm, tag, self.deadline))
