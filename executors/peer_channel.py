"""Share traffic between nodes: one gRPC message per peer per round.

Inbound messages land in a Mailbox keyed by (query, sender, tag); the MPC
code blocks on exactly the message it needs, with the query's deadline, so
ordering across peers never matters. Payloads are a small self-describing
binary format (never pickle) validated on decode.

A query is named by its issuer and the issuer's query id (`query_key`), so no
party can pick another issuer's id to collide with, cancel or replay its query.
A Channel carries nothing until every participant has shown it the same plan
hash (`Channel.agree`); afterwards every tag is bound to that hash, so traffic
of a different plan under the same query can never be taken for this one's.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

import grpc
import numpy as np

from executors.proto import peer_pb2, peer_pb2_grpc
from executors.transport_errors import (  # noqa: F401 - re-exported: the old home of these names
    MessageError, PeerTimeout, PeerUnavailable, QueryCancelled, TransportError,
)

MAX_MESSAGE_BYTES = 1 << 30
MESSAGE_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
"""Every fedsql gRPC channel and server: one message carries a whole column (10^6 rows and more)
or a whole result."""
GRPC_OPTIONS = MESSAGE_OPTIONS

_MAGIC = b"FSA1"
_ALLOWED_DTYPES = frozenset({"<u8", "<i8", "<u4", "<i4", "<u2", "<i2", "|u1", "|i1", "|b1", "<f8"})
_MAX_ARRAYS = 100_000
_MAX_NDIM = 4
_MAX_DIM = 1 << 40
AGREE_TAG = "agree"
"""Tag of the plan-hash agreement, the only message a Channel carries unbound."""


def query_key(issuer: str, query_id: str) -> str:
    """The internal name of a query: `issuer/query_id`. Query ids are chosen by the issuer's
    client, so only the pair is unique; party names are identifiers (no '/')."""
    return f"{issuer}/{query_id}"


def key_issuer(key: str) -> str:
    """The issuer named in a query key ('' if it is not one)."""
    return key.split("/", 1)[0] if "/" in key else ""


def step_name(tag: str) -> str:
    """A wire tag without its plan-hash binding (for messages people read)."""
    return tag.rsplit(":", 1)[-1]


def encode_arrays(arrays: list[np.ndarray]) -> bytes:
    """Serialise arrays (little-endian, allowed dtypes only) without pickle."""
    parts: list = [_MAGIC, struct.pack("<I", len(arrays))]
    for arr in arrays:
        a = np.ascontiguousarray(arr)
        dt = a.dtype.str
        if dt not in _ALLOWED_DTYPES:
            raise MessageError(f"cannot send arrays of type {dt!r}")
        if a.ndim > _MAX_NDIM:
            raise MessageError(f"cannot send arrays with more than {_MAX_NDIM} dimensions")
        dtb = dt.encode("ascii")
        parts.append(struct.pack(f"<B{len(dtb)}sB{a.ndim}Q", len(dtb), dtb, a.ndim, *a.shape))
        parts.append(memoryview(a).cast("B") if a.size else b"")
    return b"".join(parts)


def decode_arrays(payload: bytes) -> list[np.ndarray]:
    """Inverse of encode_arrays; any inconsistency raises MessageError."""
    view = memoryview(payload)
    try:
        if bytes(view[:4]) != _MAGIC:
            raise MessageError("peer message has an unknown format (bad magic); are both nodes the same fedsql version?")
        (count,) = struct.unpack_from("<I", view, 4)
        pos = 8
        if count > _MAX_ARRAYS:
            raise MessageError(f"peer message declares {count} arrays (limit {_MAX_ARRAYS})")
        out = []
        for _ in range(count):
            (dlen,) = struct.unpack_from("<B", view, pos)
            pos += 1
            dtype = bytes(view[pos:pos + dlen]).decode("ascii", errors="replace")
            if len(dtype) != dlen:
                raise MessageError("peer message is truncated")
            pos += dlen
            if dtype not in _ALLOWED_DTYPES:
                raise MessageError(f"peer message has an unsupported array type {dtype!r}")
            (ndim,) = struct.unpack_from("<B", view, pos)
            pos += 1
            if ndim > _MAX_NDIM:
                raise MessageError(f"peer message array has {ndim} dimensions (limit {_MAX_NDIM})")
            shape = struct.unpack_from(f"<{ndim}Q", view, pos)
            pos += 8 * ndim
            itemsize = np.dtype(dtype).itemsize
            nbytes = itemsize
            for s in shape:  # Python ints: no overflow; a zero dimension makes it empty
                nbytes *= s
            if nbytes > len(view):
                raise MessageError("peer message array size does not match the message length")
            if pos + nbytes > len(view):
                raise MessageError("peer message is truncated")
            if any(s > _MAX_DIM for s in shape):  # e.g. (0, 2**60): empty, but numpy refuses the shape
                raise MessageError("peer message array has an impossible dimension")
            try:
                out.append(np.frombuffer(view[pos:pos + nbytes], dtype=dtype).reshape(shape).copy())
            except ValueError:
                raise MessageError("peer message array does not match its shape") from None
            pos += nbytes
        if pos != len(view):
            raise MessageError("peer message has trailing bytes")
        return out
    except struct.error:
        raise MessageError("peer message is truncated") from None


# -- inbound side ---------------------------------------------------------------

_FINISHED_KEEP = 4096  # remember this many finished/cancelled query ids to drop late messages


class Mailbox:
    """Thread-safe store of inbound messages, woken by arrivals and cancellation."""

    def __init__(self, stale_after: float = 3600.0, max_pending_bytes: int = 2 << 30) -> None:
        self._cond = threading.Condition()
        self._messages: dict[tuple[str, str, str], bytes] = {}
        self._cancelled: OrderedDict[str, str] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._consumed: dict[str, set[tuple[str, str]]] = {}  # per query: (sender, tag) already taken
        self._arrived: dict[str, float] = {}  # first message of a query not yet finished
        self._waiting: dict[str, int] = {}
        self._held: set[str] = set()  # queries a run here has open (Channel) until drop()
        self._bytes = 0
        self.stale_after = stale_after
        self.max_pending_bytes = max_pending_bytes
        self._next_sweep = time.monotonic() + 10.0

    def put(self, query_id: str, sender: str, tag: str, payload: bytes) -> None:
        if not query_id or not sender or not tag:
            raise MessageError("message without query id, sender or step tag")
        with self._cond:
            if query_id in self._finished or query_id in self._cancelled:
                return  # late message of a finished query: drop
            key = (query_id, sender, tag)
            if key in self._messages or (sender, tag) in self._consumed.get(query_id, ()):
                raise MessageError(f"duplicate message {step_name(tag)!r} from '{sender}' (replay?)")
            self._sweep()
            if self._bytes + len(payload) > self.max_pending_bytes:
                raise MessageError("too much undelivered share traffic at this node; message refused")
            self._messages[key] = payload
            self._bytes += len(payload)
            self._arrived.setdefault(query_id, time.monotonic())
            self._cond.notify_all()

    def _sweep(self) -> None:
        """Forget messages of queries that never started here (their issuer died before
        asking this node to run) once they are older than `stale_after`."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 10.0
        for qid, first in list(self._arrived.items()):
            if now - first > self.stale_after and not self._waiting.get(qid) and qid not in self._held:
                self._purge(qid)

    def get(self, query_id: str, sender: str, tag: str, deadline: float) -> bytes:
        return self.get_first(query_id, [sender], tag, deadline)[1]

    def get_first(self, query_id: str, senders: list[str], tag: str, deadline: float,
                  even_if_cancelled: bool = False) -> tuple[str, bytes]:
        """The first of the senders' messages `tag` to arrive: (sender, payload). With
        `even_if_cancelled`, a message that is already here is returned although the query was
        cancelled meanwhile (the plan agreement reports what a peer said rather than the
        cancellation that followed it)."""
        if not senders:
            raise ValueError("get_first needs at least one sender")
        with self._cond:
            self._waiting[query_id] = self._waiting.get(query_id, 0) + 1
            try:
                while True:
                    if query_id in self._cancelled and not even_if_cancelled:
                        raise QueryCancelled(f"query cancelled: {self._cancelled[query_id]}")
                    for sender in senders:
                        payload = self._messages.pop((query_id, sender, tag), None)
                        if payload is not None:
                            self._bytes -= len(payload)
                            self._consumed.setdefault(query_id, set()).add((sender, tag))
                            return sender, payload
                    if query_id in self._cancelled:
                        raise QueryCancelled(f"query cancelled: {self._cancelled[query_id]}")
                    if query_id in self._finished:  # its messages are dropped: waiting would hang
                        raise QueryCancelled(f"query {query_id} has already finished here; a query id runs once")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        names = " or ".join(f"'{s}'" for s in senders)
                        raise PeerTimeout(
                            f"party {names} sent nothing for step {step_name(tag)} before the query deadline; "
                            "it may be down or overloaded"
                        )
                    self._cond.wait(min(remaining, 1.0))
            finally:
                left = self._waiting.get(query_id, 1) - 1
                if left > 0:
                    self._waiting[query_id] = left
                else:
                    self._waiting.pop(query_id, None)

    def cancel(self, query_id: str, reason: str) -> None:
        """Wake the query's waiters with QueryCancelled; later messages are dropped. Messages
        already here are freed now, or by drop() when a run of the query has it open here."""
        with self._cond:
            self._cancelled[query_id] = reason
            while len(self._cancelled) > _FINISHED_KEEP:
                self._cancelled.popitem(last=False)
            if not self._waiting.get(query_id) and query_id not in self._held:
                self._purge(query_id)
            self._cond.notify_all()

    def finished(self, query_id: str) -> bool:
        """True when a run of this query already ended here (its id cannot run again)."""
        with self._cond:
            return query_id in self._finished

    def hold(self, query_id: str) -> None:
        """A run of this query starts here: keep its messages until drop()."""
        with self._cond:
            self._held.add(query_id)

    def drop(self, query_id: str) -> None:
        with self._cond:
            self._held.discard(query_id)
            self._finished[query_id] = None
            while len(self._finished) > _FINISHED_KEEP:
                self._finished.popitem(last=False)
            self._purge(query_id)

    def _purge(self, query_id: str) -> None:
        for key in [k for k in self._messages if k[0] == query_id]:
            self._bytes -= len(self._messages.pop(key))
        self._consumed.pop(query_id, None)
        self._arrived.pop(query_id, None)

    def pending(self) -> int:
        with self._cond:
            return len(self._messages)


class PeerServicer(peer_pb2_grpc.PeerServicer):
    """`identify(context)` (when given) names the authenticated party of the connection
    (its pinned TLS certificate); a message is accepted only from the sender it names."""

    def __init__(self, mailbox: Mailbox, known_parties: set[str] | None = None,
                 identify: Callable[[Any], str | None] | None = None):
        self.mailbox = mailbox
        self.known = known_parties
        self.identify = identify

    def Send(self, request, context):
        if self.known is not None and request.sender not in self.known:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"unknown sender '{request.sender}'")
        if self.identify is not None:
            who = self.identify(context)
            if who is None or who != request.sender:
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"the connection's certificate is {'not a party of this federation' if who is None else repr(who)}, "
                    f"but the message claims sender '{request.sender}'; refused",
                )
        try:
            self.mailbox.put(request.query_id, request.sender, request.tag, request.payload)
        except MessageError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return peer_pb2.Ack()


def add_peer_servicer(server: grpc.Server, mailbox: Mailbox, known_parties: set[str] | None = None,
                      identify: Callable[[Any], str | None] | None = None) -> None:
    peer_pb2_grpc.add_PeerServicer_to_server(PeerServicer(mailbox, known_parties, identify), server)


RECONNECT_GRACE = 5.0
"""Seconds an RPC to an unreachable peer may wait for its channel to reconnect (a node
that was just restarted) before the peer counts as unavailable."""


def call_with_reconnect(method: Callable[..., Any], request: Any, deadline: float,
                        reconnect: Callable[[], Callable[..., Any]] | None = None) -> Any:
    """Call a unary gRPC method by the monotonic `deadline`. On UNAVAILABLE (no connection
    right now, e.g. the channel is still backing off after the peer restarted) try once more
    — on a fresh channel when `reconnect` gives one (no backoff to sit out) — waiting for it
    to be ready for at most RECONNECT_GRACE seconds; a peer that is really down is reported
    as UNAVAILABLE within that grace, not at the query deadline."""
    remaining = deadline - time.monotonic()
    try:
        return method(request, timeout=max(remaining, 0.001), wait_for_ready=False)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        first = exc
    grace = min(RECONNECT_GRACE, deadline - time.monotonic())
    if grace <= 0:
        raise first
    if reconnect is not None:
        method = reconnect()
    try:
        return method(request, timeout=grace, wait_for_ready=True)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() < deadline - 0.05:
            raise first from None  # still unreachable after the grace: it is down
        raise


class PeerLinks:
    """One reusable gRPC channel per peer."""

    def __init__(self, me: str, addresses: dict[str, str], channel_options=None, credentials=None):
        """`credentials`: None (plaintext, in-process tests only), one ChannelCredentials for
        every peer, or {peer: (ChannelCredentials, extra channel options)} (the node: each
        peer's pinned certificate and TLS name)."""
        self.me = me
        self.addresses = dict(addresses)
        opts = list(channel_options or MESSAGE_OPTIONS)

        def open_channel(p: str, a: str) -> grpc.Channel:
            if isinstance(credentials, dict):
                creds, extra = credentials[p]
                return grpc.secure_channel(a, creds, options=opts + list(extra))
            if credentials is not None:
                return grpc.secure_channel(a, credentials, options=opts)
            return grpc.insecure_channel(a, options=opts)

        self._open = open_channel
        self._lock = threading.Lock()
        self._channels = {p: open_channel(p, a) for p, a in addresses.items()}
        self._stubs = {p: peer_pb2_grpc.PeerStub(ch) for p, ch in self._channels.items()}
        self._retired: list[grpc.Channel] = []

    def reconnect(self, to: str, failed: Any) -> Any:
        """A fresh channel to `to` (unless another thread already replaced `failed`); returns
        its Send. The old channel is kept open (others may still use it) until close()."""
        with self._lock:
            if self._stubs[to] is failed:
                self._retired.append(self._channels[to])
                del self._retired[:-8]
                self._channels[to] = self._open(to, self.addresses[to])
                self._stubs[to] = peer_pb2_grpc.PeerStub(self._channels[to])
            return self._stubs[to].Send

    def send(self, to: str, query_id: str, tag: str, payload: bytes, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PeerTimeout(f"query deadline passed before sending step {step_name(tag)} to party '{to}'")
        message = peer_pb2.PeerMessage(query_id=query_id, sender=self.me, tag=tag, payload=payload)
        stub = self._stubs[to]
        try:
            call_with_reconnect(stub.Send, message, deadline, lambda: self.reconnect(to, stub))
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise PeerTimeout(
                    f"party '{to}' did not accept step {step_name(tag)} before the query deadline") from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise PeerUnavailable(f"party '{to}' is not reachable at {self.addresses[to]}") from None
            raise TransportError(f"party '{to}' rejected step {step_name(tag)}: {exc.details()}") from None

    def close(self) -> None:
        for ch in [*self._channels.values(), *self._retired]:
            ch.close()


class Channel:
    """What the MPC code uses: send/recv of array lists, bound to one query and deadline.

    Unbound (`plan_hash` None) it carries only the plan agreement (`agree`); once bound,
    every tag travels as `<plan hash>:<tag>`, so a party running another plan under the
    same query never receives this plan's messages. Tests and benchmarks that run no
    plan pass a `plan_hash` to start bound."""

    def __init__(self, me: str, query_id: str, links: PeerLinks, mailbox: Mailbox, deadline: float,
                 plan_hash: str | None = None):
        self.me = me
        self.query_id = query_id
        self.links = links
        self.mailbox = mailbox
        self.deadline = deadline
        self.plan_hash = plan_hash
        if mailbox is not None:
            mailbox.hold(query_id)  # the run drops the query when it ends
        self.bytes_sent = 0
        self.messages_sent = 0

    @property
    def binding(self) -> bytes:
        """Query and agreed plan, as key-derivation context (executors/mpc/prg.py bound_key)."""
        return f"{self.query_id}\n{self._bound()}".encode()

    def _bound(self) -> str:
        if self.plan_hash is None:
            raise RuntimeError("share traffic before the participants agreed on the plan")
        return self.plan_hash

    def agree(self, participants: list[str] | tuple[str, ...], plan_hash: str, timeout: float) -> list[str]:
        """One round: send `plan_hash` to every other participant, receive theirs. Returns the
        participants whose hash differs (or who sent something else); binds the channel to
        the hash when there is none. Waits at most `timeout` seconds (and the deadline)."""
        others = [p for p in dict.fromkeys(participants) if p != self.me]
        mine = plan_hash.encode()
        deadline = min(self.deadline, time.monotonic() + timeout)
        payload = encode_arrays([np.frombuffer(mine, dtype=np.uint8)])
        for p in others:
            self.bytes_sent += len(payload)
            self.messages_sent += 1
            self.links.send(p, self.query_id, AGREE_TAG, payload, deadline)
        differ, waiting = [], list(others)
        while waiting:
            sender, raw = self.mailbox.get_first(self.query_id, waiting, AGREE_TAG, deadline, even_if_cancelled=True)
            waiting.remove(sender)
            try:
                got = decode_arrays(raw)
            except MessageError:
                got = []
            if len(got) != 1 or got[0].dtype != np.uint8 or got[0].tobytes() != mine:
                differ.append(sender)
                break  # refuse at once: one differing participant is enough
        if not differ:
            self.plan_hash = plan_hash
        return differ

    def send(self, to: str, tag: str, arrays: list[np.ndarray]) -> None:
        wire = f"{self._bound()}:{tag}"
        payload = encode_arrays(arrays)
        self.bytes_sent += len(payload)
        self.messages_sent += 1
        self.links.send(to, self.query_id, wire, payload, self.deadline)

    def recv(self, frm: str, tag: str) -> list[np.ndarray]:
        return decode_arrays(self.mailbox.get(self.query_id, frm, f"{self._bound()}:{tag}", self.deadline))
