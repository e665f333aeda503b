"""Run a benchmark function at three compute parties, each its own OS process on loopback gRPC.

`run_three(fn, *args)` starts three spawned processes with a gRPC peer server
each (the same transport nodes use), sets up one MPC context per party and
calls `fn(mpc, *args)` there; it returns the three results. The function must
be importable (module level) so spawn can pickle it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import sys
import time
from typing import Any, Callable

PARTIES = ("c0", "c1", "c2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(k: int) -> list[int]:
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _party(me: str, addresses: dict[str, str], fn: Callable, args: tuple, ready, out) -> None:
    sys.path.insert(0, ROOT)
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from executors.mpc import MPC
    from executors.peer_channel import GRPC_OPTIONS, Channel, Mailbox, PeerLinks, add_peer_servicer

    mailbox = Mailbox()
    server = grpc.server(ThreadPoolExecutor(max_workers=4), options=GRPC_OPTIONS)
    add_peer_servicer(server, mailbox, known_parties=set(PARTIES))
    server.add_insecure_port(addresses[me])
    server.start()
    ready.wait()
    links = PeerLinks(me, {p: a for p, a in addresses.items() if p != me})
    channel = Channel(me, "bench", links, mailbox, time.monotonic() + 3600, plan_hash="bench")
    mpc = MPC(channel, PARTIES)
    mpc.setup()
    try:
        out.put((me, fn(mpc, *args)))
    except Exception as exc:  # noqa: BLE001 - report, do not hang the parent
        out.put((me, {"error": f"{type(exc).__name__}: {exc}"}))
    time.sleep(0.5)  # let the peers drain their last messages
    server.stop(0)
    links.close()


def run_three(fn: Callable[..., Any], *args: Any, timeout: float = 3600) -> dict[str, Any]:
    addresses = {p: f"127.0.0.1:{port}" for p, port in zip(PARTIES, free_ports(3))}
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_party, args=(p, addresses, fn, args, ready, out)) for p in PARTIES]
    for proc in procs:
        proc.start()
    time.sleep(1.0)
    ready.set()
    results = dict(out.get(timeout=timeout) for _ in PARTIES)
    for proc in procs:
        proc.join(timeout=30)
    return results
