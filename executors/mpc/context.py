"""Per-query MPC context of one compute party: index, keys, rounds, stats.

Keys: party i draws a fresh AES key k_i and sends it to party i-1, so party i
holds k_i (shared with i-1) and k_{i+1} (shared with i+1); key k_j is known to
exactly the parties j-1 and j. Zero-sharings (F_{k_i} - F_{k_{i+1}}) and masks
known to a pair then cost no communication.

Rounds: every communication step gets the next tag "r<n>" at all three parties,
so they stay in lockstep as long as they call the same ops in the same order.
"""

from __future__ import annotations

import numpy as np

from executors.mpc.prg import PRG, bound_key, fresh_key, private_prg
from executors.transport import Transport, exchange
from executors.transport_errors import MessageError


class MPC:
    """The MPC state of one compute party for one query."""

    def __init__(self, channel: Transport, compute: tuple[str, str, str]):
        compute = tuple(compute)
        if len(compute) != 3 or len(set(compute)) != 3:
            raise ValueError(f"MPC needs exactly three distinct compute parties, got {compute}")
        if channel.me not in compute:
            raise ValueError(f"party '{channel.me}' is not one of the compute parties {compute}")
        self.channel = channel
        self.compute = compute
        self.me = channel.me
        self.i = compute.index(self.me)
        self.prev = compute[(self.i - 1) % 3]
        self.next = compute[(self.i + 1) % 3]
        self.rounds = 0
        self._step = 0
        self._bytes0 = channel.bytes_sent
        self._keys: dict[int, PRG] = {}
        self.private = private_prg()

    # -- setup and keys ----------------------------------------------------------

    def setup(self) -> None:
        """Agree pairwise keys: one round, each party sends one fresh key to its predecessor.
        The PRGs run on the keys bound to the query and its agreed plan hash (bound_key)."""
        key = fresh_key()
        got = self.exchange({self.prev: [np.frombuffer(key, dtype=np.uint8)]}, [self.next], tag="keys")
        (other,) = got[self.next] if len(got[self.next]) == 1 else (None,)
        if other is None or other.dtype != np.uint8 or other.shape != (16,):
            raise MessageError(f"party '{self.next}' sent a malformed key-agreement message")
        context = self.channel.binding
        self._keys = {self.i: PRG(bound_key(key, context)), (self.i + 1) % 3: PRG(bound_key(other.tobytes(), context))}

    def prg(self, j: int) -> PRG:
        """The PRG of key k_j (held by parties j-1 and j)."""
        try:
            return self._keys[j % 3]
        except KeyError:
            raise RuntimeError(f"party {self.i} does not hold key k_{j % 3} (or setup() was not called)") from None

    def zero_arith(self, n: int) -> np.ndarray:
        """This party's part of a fresh arithmetic zero-sharing (sums to 0 over the three)."""
        return self.prg(self.i).words(n) - self.prg(self.i + 1).words(n)

    def zero_bool(self, n: int, dtype=np.uint64) -> np.ndarray:
        """This party's part of a fresh XOR zero-sharing."""
        out = self.prg(self.i).words(n, dtype)
        out ^= self.prg(self.i + 1).words(n, dtype)
        return out

    # -- communication -------------------------------------------------------------

    def party(self, k: int) -> str:
        """Name of compute party k (mod 3)."""
        return self.compute[k % 3]

    def next_tag(self) -> str:
        self._step += 1
        return f"r{self._step}"

    def exchange(self, sends: dict[str, list[np.ndarray]], recv_from: list[str],
                 tag: str | None = None) -> dict[str, list[np.ndarray]]:
        """One round: at most one message to each peer, then the expected messages.

        Every party calls this once per round, even if it sends and receives
        nothing, so the tags stay aligned.
        """
        tag = tag or self.next_tag()
        self.rounds += 1
        return exchange(self.channel, tag, sends, recv_from)

    def reshare_prev(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The resharing round of mul/and: send to i-1, receive the same shapes from i+1."""
        got = self.exchange({self.prev: arrays}, [self.next])[self.next]
        _check_like(got, arrays, self.next)
        return got

    @property
    def bytes_sent(self) -> int:
        return self.channel.bytes_sent - self._bytes0

    @property
    def messages_sent(self) -> int:
        return self.channel.messages_sent

    def stats(self) -> dict[str, int]:
        return {"rounds": self.rounds, "bytes_sent": self.bytes_sent}


def _check_like(got: list[np.ndarray], want: list[np.ndarray], sender: str) -> None:
    """A peer's message must have the shapes and dtypes this protocol step expects."""

    if len(got) != len(want) or any(g.shape != w.shape or g.dtype != w.dtype for g, w in zip(got, want)):
        raise MessageError(f"party '{sender}' sent a message of unexpected shape for this step; "
                           "are all compute parties running the same plan?")


def check_arrays(got: list[np.ndarray], specs: list[tuple[tuple, np.dtype]], sender: str) -> list[np.ndarray]:
    """Validate a received message against (shape, dtype) specs."""

    if len(got) != len(specs) or any(g.shape != tuple(s) or g.dtype != np.dtype(d) for g, (s, d) in zip(got, specs)):
        raise MessageError(f"party '{sender}' sent a message of unexpected shape for this step; "
                           "are all compute parties running the same plan?")
    return got
