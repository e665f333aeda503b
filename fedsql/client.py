"""gRPC client of one party's node: the single place that speaks the wire protocol.

The shell, the DB-API and the launcher all go through `NodeClient`, so grpc
failures are mapped to fedsql's PEP 249 errors exactly once, with messages that
say which node is unreachable and how to start it.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Callable

import grpc

from fedsql import errors, result_meta
from executors.peer_channel import MESSAGE_OPTIONS  # messages of up to 1 GiB
from fedsql.proto import node_pb2, node_pb2_grpc

DEADLINE_GRACE_SECONDS = 5.0
"""Extra time the client waits past a statement's timeout so the node's own, clearer timeout error wins."""

ProgressCallback = Callable[[float, str], None]


def _channel_options() -> list[tuple[str, Any]]:
    return [
        *MESSAGE_OPTIONS,
        # Fail fast instead of waiting for a node that is down.
        ("grpc.enable_retries", 0),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


class NodeClient:
    """Connection to one node's `Node` service.

    `party` and `config_path` also select the identity: nodes speak only mutual
    TLS, so the client presents the party's client certificate and trusts only the
    party's pinned node certificate (fedsql/tls.py). Without them (or with
    `secure=False`) the channel is plaintext, which every node refuses.
    """

    def __init__(
        self,
        address: str,
        party: str | None = None,
        config_path: str | None = None,
        default_timeout: float | None = None,
        secure: bool = True,
    ) -> None:
        self.address = address
        self.party = party
        self.config_path = config_path
        self.default_timeout = default_timeout
        if secure and party and config_path:
            from fedsql import tls
            from fedsql.config import load_config

            fed = load_config(config_path)
            creds, extra = tls.Identity.client(fed, party).channel_credentials(party)
            self._channel = grpc.secure_channel(address, creds, options=_channel_options() + extra)
        else:
            self._channel = grpc.insecure_channel(address, options=_channel_options())
        self._stub = node_pb2_grpc.NodeStub(self._channel)

    # -- error mapping -------------------------------------------------------

    def _who(self) -> str:
        return f"party '{self.party}' node at {self.address}" if self.party else f"node at {self.address}"

    def _map_rpc_error(self, exc: grpc.RpcError, timeout: float | None) -> errors.Error:
        code = exc.code() if hasattr(exc, "code") else None
        details = (exc.details() if hasattr(exc, "details") else None) or ""
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return errors.AuthenticationError(f"{self._who()} refused this client: {details}")
        low = details.lower()
        if code == grpc.StatusCode.UNAVAILABLE and any(
            w in low for w in ("handshake", "certificate", "ssl", "tls", "hostname", "verification")
        ):
            return errors.AuthenticationError(
                f"TLS with {self._who()} failed ({details.splitlines()[0][:200]}); check that this client has "
                f"the party's client.key/client.crt and its current node certificate (`fedsql keys` creates them)"
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            cfg = self.config_path or "CONFIG"
            return errors.PartyUnavailable(
                f"cannot reach {self._who()} (is it running? start the federation with "
                f"`fedsql up {cfg}`"
                + (f" or this node alone with `fedsql node {cfg} --party {self.party}`" if self.party else "")
                + ")"
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            limit = f" of {timeout:g} s" if timeout else ""
            return errors.QueryTimeout(f"no answer from {self._who()} within the deadline{limit}")
        if code == grpc.StatusCode.CANCELLED:
            return errors.QueryCancelled(f"request to {self._who()} was cancelled")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return errors.OperationalError(f"{self._who()}: message too large: {details}")
        name = code.name if code is not None else "UNKNOWN"
        return errors.OperationalError(f"{self._who()} failed ({name}): {details or 'no details'}")

    # -- calls ---------------------------------------------------------------

    def health(self, timeout: float = 5.0) -> dict[str, str]:
        """Ask the node who it is; raises PartyUnavailable when it does not answer."""
        try:
            reply = self._stub.Health(node_pb2.Empty(), timeout=timeout)
        except grpc.RpcError as exc:
            mapped = self._map_rpc_error(exc, timeout)
            if isinstance(mapped, errors.QueryTimeout):
                mapped = errors.PartyUnavailable(f"{self._who()} did not answer a health check within {timeout:g} s")
            raise mapped from None
        return {"party": reply.party, "federation": reply.federation, "version": reply.version}

    def execute(
        self,
        sql: str,
        settings: dict[str, str] | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        query_id: str | None = None,
        user: str | None = None,
        hidden_params: bytes | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """Run one statement and read its whole result: (pyarrow.Table, meta dict). For callers
        that want every row at once (catalog answers, tools, tests); `stream` is the same call
        read lazily, with the same arguments."""
        with self.stream(sql, settings, timeout, on_progress, query_id, user, hidden_params) as result:
            return result.read_all(), result.meta

    def stream(
        self,
        sql: str,
        settings: dict[str, str] | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        query_id: str | None = None,
        user: str | None = None,
        hidden_params: bytes | None = None,
    ) -> result_meta.ResultStream:
        """Run one statement; returns once the node sent the result's header: a ResultStream with
        the meta dict (fedsql/result_meta.py to_dict, the leakage report rendered as text) and the
        row count, whose record batches are read from the call as they arrive. `user`: the account
        a front end (Flight SQL, DB-API) checked the password of, for the issuer's audit record.
        `hidden_params`: the values of the statement's ? marks under SET fedsql.hidden_params = on
        (fedsql/hidden_params.py encode).

        `timeout` bounds the statement up to its result's header (the rows then come at the
        reader's pace). Ctrl-C while waiting or reading cancels the query at the node (and so at
        every party) before re-raising KeyboardInterrupt; closing the stream early cancels the call.
        """

        qid = query_id or uuid.uuid4().hex
        timeout = timeout if timeout is not None else self.default_timeout
        request = node_pb2.ExecuteRequest(
            sql=sql,
            settings=dict(settings or {}),
            query_id=qid,
            timeout_seconds=float(timeout or 0.0),
            user=user or "",
            hidden_params=hidden_params or b"",
        )
        # The timeout bounds the statement, up to its result's header, as when the whole result came
        # at once; its rows then stream without a deadline, at the pace of the reader. So no gRPC
        # deadline (it would cover the whole stream): a timer cancels a call without a header.
        call = self._stub.Execute(request)
        expired = threading.Event()
        timer = None
        if timeout:
            def expire() -> None:
                expired.set()
                call.cancel()  # the node sees the client gone and aborts the query at every party

            timer = threading.Timer(timeout + DEADLINE_GRACE_SECONDS, expire)
            timer.daemon = True
            timer.start()

        def events() -> Any:
            try:
                yield from call
            except grpc.RpcError as exc:
                if expired.is_set():
                    raise errors.QueryTimeout(f"no answer from {self._who()} within the deadline of "
                                              f"{timeout:g} s") from None
                raise self._map_rpc_error(exc, timeout) from None

        def cancel(reason: str | None) -> None:
            call.cancel()
            if reason is not None:  # the query itself stops, at every party
                try:
                    self.cancel(qid, reason=reason)
                except errors.Error:
                    pass

        try:
            return result_meta.ResultStream(events(), self._who(), on_progress=on_progress, cancel=cancel)
        finally:
            if timer is not None:
                timer.cancel()

    def cancel(self, query_id: str, reason: str = "") -> None:
        """Ask the node to cancel a running query at every party (best effort)."""
        try:
            self._stub.Cancel(node_pb2.CancelRequest(query_id=query_id, reason=reason), timeout=5.0)
        except grpc.RpcError as exc:
            raise self._map_rpc_error(exc, 5.0) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "NodeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
