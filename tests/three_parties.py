"""Run a function at three compute parties concurrently over real gRPC on loopback."""

from __future__ import annotations

import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import grpc

from executors.peer_channel import Channel, Mailbox, PeerLinks, add_peer_servicer
from executors.secure_ops import MPC

PARTIES = ("c0", "c1", "c2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreeParties:
    """Three gRPC peer servers in this process; `run(fn)` calls fn(mpc) at each party."""

    def __init__(self) -> None:
        self.addresses = {p: f"127.0.0.1:{_free_port()}" for p in PARTIES}
        self.mailboxes = {p: Mailbox() for p in PARTIES}
        self.servers = []
        for p in PARTIES:
            server = grpc.server(ThreadPoolExecutor(max_workers=8), options=[
                ("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)])
            add_peer_servicer(server, self.mailboxes[p])
            server.add_insecure_port(self.addresses[p])
            server.start()
            self.servers.append(server)
        self.links = {p: PeerLinks(p, {q: a for q, a in self.addresses.items() if q != p}) for p in PARTIES}
        self.pool = ThreadPoolExecutor(max_workers=3)

    def channels(self, timeout: float = 60.0) -> dict[str, Channel]:
        qid = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        return {p: Channel(p, qid, self.links[p], self.mailboxes[p], deadline) for p in PARTIES}

    def run(self, fn: Callable[[MPC], Any], timeout: float = 60.0) -> list[Any]:
        chans = self.channels(timeout)

        def party(p: str) -> Any:
            mpc = MPC(chans[p], PARTIES)
            mpc.setup()
            return fn(mpc)

        futures = [self.pool.submit(party, p) for p in PARTIES]
        return [f.result(timeout=timeout + 5) for f in futures]

    def close(self) -> None:
        for links in self.links.values():
            links.close()
        for s in self.servers:
            s.stop(0)
        self.pool.shutdown()
