"""How the MPC engine and the runtime talk to the other parties: the Transport protocol.

`Transport` is all a party's run needs from a channel: who it is (`me`), the plan agreement
(`agree`), `send` / `recv` of array lists by tag, the key-derivation `binding`, and byte and
message counters. `exchange` is one round on any Transport. Two implementations share the
inbound side (a Mailbox keyed by (query, sender, tag); the code blocks on exactly the message
it needs, with the query's deadline, so ordering across peers never matters):

- executors/peer_channel.py `Channel` (also `GrpcTransport` here): one gRPC message per peer
  per round, mutual TLS, what nodes use;
- `InProcessTransport`: parties in threads of one process, messages put straight into the
  peer's Mailbox — no sockets, for operator unit tests (`run_in_process`).

Both encode payloads as the same protobuf `ArrayList` (executors/peer_arrays.py, never
pickle), validated on decode, so an in-process test exercises the same wire checks. This module
imports no gRPC (tests/test_import_graph.py): the MPC engine depends only on it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from executors import netem
from executors.peer_arrays import decode_arrays, encode_arrays
from executors.transport_errors import MessageError, PeerTimeout, QueryCancelled, TransportError

AGREE_TAG = "agree"
"""Tag of the plan-hash agreement, the only message a Channel carries unbound."""



def step_name(tag: str) -> str:
    """A wire tag without its plan-hash binding (for messages people read)."""
    return tag.rsplit(":", 1)[-1]



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


@runtime_checkable
class Transport(Protocol):
    """What the MPC context (executors/mpc/context.py) and the runtime (executors/runtime.py)
    need from a channel to the other parties of one query."""

    me: str
    query_id: str
    bytes_sent: int
    messages_sent: int

    @property
    def binding(self) -> bytes:
        """Query and agreed plan, as key-derivation context (executors/mpc/prg.py bound_key)."""
        ...

    def agree(self, participants: list[str] | tuple[str, ...], plan_hash: str, timeout: float) -> list[str]:
        """The plan-agreement round; returns the participants whose plan hash differs."""
        ...

    def send(self, to: str, tag: str, arrays: list[np.ndarray]) -> None:
        """Send `arrays` to party `to` as this query's message `tag` (bound to the agreed plan)."""
        ...

    def recv(self, frm: str, tag: str) -> list[np.ndarray]:
        """Block until party `frm`'s message `tag` arrives (by the deadline, else PeerTimeout)."""
        ...


def exchange(transport: Transport, tag: str, sends: dict[str, list[np.ndarray]],
             recv_from: list[str]) -> dict[str, list[np.ndarray]]:
    """One round under `tag`: at most one message to each peer, then the expected messages."""
    for to, arrays in sends.items():
        transport.send(to, tag, arrays)
    return {frm: transport.recv(frm, tag) for frm in recv_from}


class MailboxTransport:
    """A Transport whose inbound side is a Mailbox: send/recv of array lists, bound to one
    query and deadline. Subclasses say how a payload reaches a peer (`_deliver`): over gRPC
    (executors/peer_channel.py Channel) or straight into the peer's Mailbox (InProcessTransport).

    Unbound (`plan_hash` None) it carries only the plan agreement (`agree`); once bound,
    every tag travels as `<plan hash>:<tag>`, so a party running another plan under the
    same query never receives this plan's messages. Tests and benchmarks that run no
    plan pass a `plan_hash` to start bound."""

    def __init__(self, me: str, query_id: str, mailbox: Mailbox, deadline: float,
                 plan_hash: str | None = None):
        self.me = me
        self.query_id = query_id
        self.mailbox = mailbox
        self.deadline = deadline
        self.plan_hash = plan_hash
        if mailbox is not None:
            mailbox.hold(query_id)  # the run drops the query when it ends
        self.bytes_sent = 0
        self.messages_sent = 0
        self.net = netem.from_environment()
        if self.net is not None:  # WAN emulation, for benchmarks and tests only (executors/netem.py)
            self._deliver = netem.DelayedLinks(self.net, self._deliver)  # type: ignore[method-assign]

    def _deliver(self, to: str, tag: str, payload: bytes, deadline: float) -> None:
        """Hand one encoded message for this query to party `to` by `deadline`."""
        raise NotImplementedError

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
            self._deliver(p, AGREE_TAG, payload, deadline)
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
        self._deliver(to, wire, payload, self.deadline)

    def recv(self, frm: str, tag: str) -> list[np.ndarray]:
        payload = self.mailbox.get(self.query_id, frm, f"{self._bound()}:{tag}", self.deadline)
        try:
            return decode_arrays(payload)
        except MessageError as exc:  # say who sent it and for which step (never its bytes)
            raise MessageError(f"party '{frm}' sent a malformed message for step {tag}: {exc}") from None


class InProcessTransport(MailboxTransport):
    """A party of an in-process federation: a send puts the encoded message straight into
    the receiver's Mailbox (the same duplicate, size and deadline checks as over gRPC)."""

    def __init__(self, me: str, query_id: str, mailboxes: dict[str, Mailbox], deadline: float,
                 plan_hash: str | None = None):
        super().__init__(me, query_id, mailboxes[me], deadline, plan_hash)
        self.mailboxes = mailboxes

    def _deliver(self, to: str, tag: str, payload: bytes, deadline: float) -> None:
        if time.monotonic() >= deadline:
            raise PeerTimeout(f"query deadline passed before sending step {step_name(tag)} to party '{to}'")
        if to not in self.mailboxes:
            raise TransportError(f"party '{to}' is not part of this in-process federation")
        self.mailboxes[to].put(self.query_id, self.me, tag, bytes(payload))


IN_PROCESS_PLAN = "0" * 64
"""The plan hash in-process transports start bound to when they run functions, not plans."""


def run_in_process(fns: dict[str, Callable[[InProcessTransport], Any]], timeout: float = 30.0,
                   plan_hash: str | None = IN_PROCESS_PLAN) -> dict[str, Any]:
    """Run fns[party](transport) for each party in its own thread over in-process transports;
    return {party: result}. A failure at one party cancels the query at the others (nobody
    waits for the deadline) and the first failure, by party order, is re-raised; a party still
    running after `timeout` (+ grace) fails the run instead of hanging it."""
    parties = list(fns)
    mailboxes = {p: Mailbox() for p in parties}
    qid = uuid.uuid4().hex[:12]
    deadline = time.monotonic() + timeout
    transports = {p: InProcessTransport(p, qid, mailboxes, deadline, plan_hash) for p in parties}
    results: dict[str, Any] = {}
    failures: dict[str, BaseException] = {}

    def body(p: str) -> None:
        try:
            results[p] = fns[p](transports[p])
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failures[p] = exc
            for q in parties:
                if q != p:
                    mailboxes[q].cancel(qid, f"party '{p}' failed")

    threads = {p: threading.Thread(target=body, args=(p,), daemon=True, name=f"in-process-{p}") for p in parties}
    for t in threads.values():
        t.start()
    end = deadline + 5.0
    for p, t in threads.items():
        t.join(max(0.0, end - time.monotonic()))
        if t.is_alive():
            for q in parties:
                mailboxes[q].cancel(qid, "in-process run timed out")
            t.join(5.0)
            failures.setdefault(p, PeerTimeout(f"party '{p}' did not finish within {timeout} s"))
    if failures:
        # report a party that really failed, not the others' "cancelled because it failed"
        ordered = [failures[p] for p in parties if p in failures]
        raise next((e for e in ordered if not isinstance(e, QueryCancelled)), ordered[0])
    return results


def __getattr__(name: str) -> Any:
    """`GrpcTransport` is executors/peer_channel.py's Channel, loaded only when asked for
    (this module itself must not import gRPC)."""
    if name == "GrpcTransport":
        from executors.peer_channel import Channel

        return Channel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
