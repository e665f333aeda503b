"""WAN emulation for benchmarks and tests: per-link one-way latency and bandwidth on peer messages.

Real federations run between organisations over WAN links, where rounds and bytes, not CPU,
decide the time. `FEDSQL_NET="rtt=20ms,bw=100mbit"` (read by every node and in-process
transport at the start of a query; off when unset, never on by default) delays every message a
party sends: a link to each peer carries one message at a time at the given bandwidth, and a
message arrives one one-way latency (rtt / 2) after its last byte left. The sender does not
wait (as with a socket buffer), so a party's messages to two peers travel in parallel, and a
round of the MPC, where every party sends and then receives, costs one one-way latency.

    >>> NetProfile.parse("rtt=20ms, bw=100mbit")
    NetProfile(rtt_s=0.02, bits_per_s=100000000.0)
    >>> NetProfile.parse("rtt=0.5s").bits_per_s is None
    True

A failed delivery (a peer gone) is raised at the party's next send; a message that never
arrives ends at the query's deadline as without emulation.
"""

from __future__ import annotations

import heapq
import itertools
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

ENV = "FEDSQL_NET"

_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_RATE_UNITS = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}
_ITEM = re.compile(r"(rtt|bw)=([0-9]+(?:\.[0-9]+)?)([a-z]+)")

Deliver = Callable[[str, str, bytes, float], None]
"""(to, tag, payload, deadline): how a transport hands one message to a peer."""


class NetProfileError(ValueError):
    """FEDSQL_NET is malformed; the message says what is accepted."""


@dataclass(frozen=True)
class NetProfile:
    rtt_s: float
    bits_per_s: float | None = None  # None: latency only

    @property
    def one_way_s(self) -> float:
        return self.rtt_s / 2

    @classmethod
    def parse(cls, text: str) -> "NetProfile":
        """`rtt=<n><us|ms|s>[,bw=<n><kbit|mbit|gbit|kbps|mbps|gbps>]`, in any order."""
        values: dict[str, float] = {}
        for item in (part.strip().lower() for part in text.split(",")):
            m = _ITEM.fullmatch(item)
            units = _TIME_UNITS if m and m.group(1) == "rtt" else _RATE_UNITS
            if not m or m.group(3) not in units or m.group(1) in values:
                raise NetProfileError(
                    f"{ENV}={text!r}: cannot read {item!r}; write e.g. {ENV}=\"rtt=20ms,bw=100mbit\" "
                    "(rtt in us/ms/s, bw in kbit/mbit/gbit or kbps/mbps/gbps, each at most once)")
            values[m.group(1)] = float(m.group(2)) * units[m.group(3)]
        if "rtt" not in values:
            raise NetProfileError(f"{ENV}={text!r} names no rtt; write e.g. {ENV}=\"rtt=20ms,bw=100mbit\"")
        if values.get("bw", 1.0) <= 0:
            raise NetProfileError(f"{ENV}={text!r}: the bandwidth must be above zero; write e.g. "
                                  f"{ENV}=\"rtt=20ms,bw=100mbit\"")
        return cls(values["rtt"], values.get("bw"))

    def lower_bound_s(self, rounds: int, bytes_sent: int, links: int = 2) -> float:
        """What no implementation of this traffic can beat on this network: one one-way latency
        per MPC round (each round's messages wait for the last round's), plus the time the
        party's busiest link needs for its share of `bytes_sent` (at least 1/`links` of it, as
        the party's `links` peer links carry in parallel)."""
        wire = 8 * bytes_sent / (links * self.bits_per_s) if self.bits_per_s else 0.0
        return rounds * self.one_way_s + wire


def from_environment() -> NetProfile | None:
    """The profile of FEDSQL_NET, or None when it is unset or empty."""
    text = os.environ.get(ENV, "").strip()
    return NetProfile.parse(text) if text else None


class DelayedLinks:
    """Wraps a transport's `deliver`: per destination, messages leave one after another at the
    link's rate and arrive one one-way latency later, delivered in order by one thread."""

    def __init__(self, profile: NetProfile, deliver: Deliver) -> None:
        self.profile = profile
        self._deliver = deliver
        self._free_at: dict[str, float] = {}
        self._queue: list[tuple[float, int, str, str, bytes, float]] = []
        self._order = itertools.count()
        self._cv = threading.Condition()
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None

    def __call__(self, to: str, tag: str, payload: bytes, deadline: float) -> None:
        if self._error is not None:
            raise self._error
        payload = bytes(payload)  # kept until it leaves: a copy, not views of arrays that may change
        now = time.monotonic()
        wire = 8 * len(payload) / self.profile.bits_per_s if self.profile.bits_per_s else 0.0
        with self._cv:
            leaves = max(now, self._free_at.get(to, now)) + wire
            self._free_at[to] = leaves
            heapq.heappush(self._queue, (leaves + self.profile.one_way_s, next(self._order), to, tag, payload,
                                         deadline))
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="fedsql-netem", daemon=True)
                self._worker.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    if not self._queue:
                        self._cv.wait(timeout=5.0)
                        if not self._queue:
                            self._worker = None
                            return
                        continue
                    wait = self._queue[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cv.wait(timeout=wait)
                _, _, to, tag, payload, deadline = heapq.heappop(self._queue)
            try:
                self._deliver(to, tag, payload, deadline)
            except BaseException as exc:  # noqa: BLE001 - surfaced at the sender's next send
                self._error = exc
