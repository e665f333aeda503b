"""Share traffic between nodes over gRPC: the Transport (executors/transport.py) nodes use.

One gRPC message per peer per round. Inbound messages land in the node's Mailbox
(executors/transport.py, with the plan agreement; payloads: executors/peer_arrays.py; shared with the
in-process transport); this module adds the gRPC sending side (PeerLinks), the receiving
servicer and `Channel`.

A query is named by its issuer and the issuer's query id (`query_key`), so no
party can pick another issuer's id to collide with, cancel or replay its query.
A Channel carries nothing until every participant has shown it the same plan
hash (`Channel.agree`); afterwards every tag is bound to that hash, so traffic
of a different plan under the same query can never be taken for this one's.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import grpc

from executors.peer_arrays import decode_message, encode_message
from executors.proto import peer_pb2
from executors.transport import Mailbox, MailboxTransport, step_name
from executors.transport_errors import MessageError, PeerTimeout, PeerUnavailable, TransportError

MAX_MESSAGE_BYTES = 1 << 30
MESSAGE_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
"""Every fedsql gRPC channel and server: one message carries a whole column (10^6 rows and more)
or a whole result."""
GRPC_OPTIONS = MESSAGE_OPTIONS

def query_key(issuer: str, query_id: str) -> str:
    """The internal name of a query: `issuer/query_id`. Query ids are chosen by the issuer's
    client, so only the pair is unique; party names are identifiers (no '/')."""
    return f"{issuer}/{query_id}"


def key_issuer(key: str) -> str:
    """The issuer named in a query key ('' if it is not one)."""
    return key.split("/", 1)[0] if "/" in key else ""


# -- inbound side ---------------------------------------------------------------

SEND_METHOD = "/fedsql.peer.Peer/Send"
"""The one peer RPC (executors/proto/peer.proto). Its request travels as raw PeerMessage bytes,
written and read by executors/peer_arrays.py encode_message / decode_message: protobuf's own
(de)serialisation copied every share column twice more on each side."""


class PeerServicer:
    """`identify(context)` (when given) names the authenticated party of the connection
    (its pinned TLS certificate); a message is accepted only from the sender it names."""

    def __init__(self, mailbox: Mailbox, known_parties: set[str] | None = None,
                 identify: Callable[[Any], str | None] | None = None):
        self.mailbox = mailbox
        self.known = known_parties
        self.identify = identify

    def Send(self, raw: bytes, context):
        try:
            query_id, sender, tag, payload = decode_message(raw)
        except MessageError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if self.known is not None and sender not in self.known:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"unknown sender '{sender}'")
        if self.identify is not None:
            who = self.identify(context)
            if who is None or who != sender:
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"the connection's certificate is {'not a party of this federation' if who is None else repr(who)}, "
                    f"but the message claims sender '{sender}'; refused",
                )
        try:
            self.mailbox.put(query_id, sender, tag, payload)
        except MessageError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return peer_pb2.Ack()


def add_peer_servicer(server: grpc.Server, mailbox: Mailbox, known_parties: set[str] | None = None,
                      identify: Callable[[Any], str | None] | None = None) -> None:
    servicer = PeerServicer(mailbox, known_parties, identify)
    handler = grpc.unary_unary_rpc_method_handler(servicer.Send, request_deserializer=None,
                                                  response_serializer=peer_pb2.Ack.SerializeToString)
    service, method = SEND_METHOD.rsplit("/", 1)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.strip("/"), {method: handler}),))


def _send_stub(channel: grpc.Channel) -> Callable[..., Any]:
    return channel.unary_unary(SEND_METHOD, request_serializer=None, response_deserializer=peer_pb2.Ack.FromString)


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
        self._stubs = {p: _send_stub(ch) for p, ch in self._channels.items()}
        self._retired: list[grpc.Channel] = []

    def reconnect(self, to: str, failed: Any) -> Any:
        """A fresh channel to `to` (unless another thread already replaced `failed`); returns
        its Send. The old channel is kept open (others may still use it) until close()."""
        with self._lock:
            if self._stubs[to] is failed:
                self._retired.append(self._channels[to])
                del self._retired[:-8]
                self._channels[to] = self._open(to, self.addresses[to])
                self._stubs[to] = _send_stub(self._channels[to])
            return self._stubs[to]

    def send(self, to: str, query_id: str, tag: str, payload: bytes, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PeerTimeout(f"query deadline passed before sending step {step_name(tag)} to party '{to}'")
        message = encode_message(query_id, self.me, tag, payload)
        stub = self._stubs[to]
        try:
            call_with_reconnect(stub, message, deadline, lambda: self.reconnect(to, stub))
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


class Channel(MailboxTransport):
    """The gRPC Transport (executors/transport.py) a node uses: messages go out through the
    node's PeerLinks (mutual TLS) and come in through its PeerServicer into its Mailbox."""

    def __init__(self, me: str, query_id: str, links: PeerLinks, mailbox: Mailbox, deadline: float,
                 plan_hash: str | None = None):
        self.links = links
        super().__init__(me, query_id, mailbox, deadline, plan_hash)

    def _deliver(self, to: str, tag: str, payload: bytes, deadline: float) -> None:
        self.links.send(to, self.query_id, tag, payload, deadline)


GrpcTransport = Channel
