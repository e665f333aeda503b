"""Run functions at three compute parties (and optional outsiders) over real gRPC on loopback.

Each party has its own gRPC server (127.0.0.1, ephemeral port), Mailbox and
PeerLinks, exactly as in a node; parties run concurrently in threads. A failure
at one party cancels the query at all others (no waiting for the deadline), and
every wait is bounded, so a broken protocol fails instead of hanging.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import grpc

from executors.mpc import MPC
from executors.peer_channel import GRPC_OPTIONS, Channel, Mailbox, PeerLinks, add_peer_servicer

COMPUTE = ("c0", "c1", "c2")
TEST_PLAN = "0" * 64
"""The plan hash the harness's channels are bound to (they run functions, not plans: a node's
run binds its channel only after the plan agreement, executors/runtime.py)."""


class Federation:
    """Loopback peers: `run_mpc(fn)` calls fn(mpc) at each compute party and returns the three results."""

    def __init__(self, compute: tuple[str, ...] = COMPUTE, others: tuple[str, ...] = ("d0",)):
        self.compute = tuple(compute)
        self.parties = self.compute + tuple(others)
        self.mailboxes = {p: Mailbox() for p in self.parties}
        self.servers: dict[str, grpc.Server] = {}
        self.addresses: dict[str, str] = {}
        for p in self.parties:
            server = grpc.server(ThreadPoolExecutor(max_workers=4), options=GRPC_OPTIONS)
            add_peer_servicer(server, self.mailboxes[p], known_parties=set(self.parties))
            port = server.add_insecure_port("127.0.0.1:0")
            server.start()
            self.servers[p] = server
            self.addresses[p] = f"127.0.0.1:{port}"
        self.links = {p: PeerLinks(p, {q: a for q, a in self.addresses.items() if q != p}) for p in self.parties}

    def stop(self, party: str) -> None:
        """Kill one party's server (to simulate a dead node)."""
        self.servers[party].stop(grace=None).wait(5)

    def channels(self, timeout: float) -> dict[str, Channel]:
        qid = uuid.uuid4().hex[:12]
        deadline = time.monotonic() + timeout
        return {p: Channel(p, qid, self.links[p], self.mailboxes[p], deadline, plan_hash=TEST_PLAN)
                for p in self.parties}

    def run(self, fns: dict[str, Callable[[Channel], Any]], timeout: float = 30.0) -> dict[str, Any]:
        """Run fns[party](channel) concurrently; re-raise the first failure (by party order)."""
        chans = self.channels(timeout)
        qid = next(iter(chans.values())).query_id
        results: dict[str, Any] = {}
        errors: dict[str, BaseException] = {}

        def body(p: str) -> None:
            try:
                results[p] = fns[p](chans[p])
            except BaseException as exc:  # noqa: BLE001 - propagated below
                errors[p] = exc
                for q in self.parties:
                    if q != p:
                        self.mailboxes[q].cancel(qid, f"party '{p}' failed")

        threads = {p: threading.Thread(target=body, args=(p,), daemon=True) for p in fns}
        for t in threads.values():
            t.start()
        end = time.monotonic() + timeout + 10
        for p, t in threads.items():
            t.join(max(0.0, end - time.monotonic()))
            if t.is_alive():
                for q in self.parties:
                    self.mailboxes[q].cancel(qid, "test harness timeout")
                raise TimeoutError(f"party '{p}' did not finish within {timeout + 10:.0f}s")
        for p in self.parties:
            self.mailboxes[p].drop(qid)
        if errors:
            from executors.transport_errors import QueryCancelled

            firsts = [e for e in errors.values() if not isinstance(e, QueryCancelled)] or list(errors.values())
            raise firsts[0]
        return results

    def run_mpc(self, fn: Callable[[MPC], Any], timeout: float = 30.0,
                others: dict[str, Callable[[Channel], Any]] | None = None) -> list[Any]:
        """fn(mpc) at each compute party (after key setup); others[p](channel) at outsiders."""

        def compute_party(ch: Channel) -> Any:
            mpc = MPC(ch, self.compute)
            mpc.setup()
            return fn(mpc)

        fns: dict[str, Callable[[Channel], Any]] = {p: compute_party for p in self.compute}
        fns.update(others or {})
        res = self.run(fns, timeout)
        return [res[p] for p in self.compute]

    def close(self) -> None:
        for links in self.links.values():
            links.close()
        for s in self.servers.values():
            s.stop(grace=None)
