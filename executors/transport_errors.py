"""Share-traffic failures, in a leaf module that imports nothing (no gRPC).

The MPC engine (executors/mpc/) raises MessageError on a malformed peer message and
callers catch TransportError; they must not pull in gRPC to do so (issue #18: the MPC
engine runs on any Transport, executors/transport.py); every module imports them from here.
"""

from __future__ import annotations


class TransportError(Exception):
    """Base of share-traffic failures; messages name the party, never data."""


class PeerTimeout(TransportError):
    """A peer sent nothing (or accepted nothing) before the query deadline."""


class PeerUnavailable(TransportError):
    """A peer is not reachable."""


class QueryCancelled(TransportError):
    """The query was cancelled (here or by a failing peer) while waiting."""


class MessageError(TransportError):
    """A peer message is malformed, duplicated or does not fit the protocol step."""


__all__ = ["TransportError", "PeerTimeout", "PeerUnavailable", "QueryCancelled", "MessageError"]
