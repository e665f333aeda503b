"""Arrow Flight SQL endpoint of a party's node, for BI tools (ADBC, JDBC, Superset, DBeaver).

There is no Flight SQL server library for Python, so this is one on top of
`pyarrow.flight.FlightServerBase`: it decodes the Flight SQL commands (protobuf
`Any` messages in descriptors, tickets and action bodies) and answers them
from two sources only:

* the party's own node (`fedsql.client.NodeClient`) for every statement, so
  queries take exactly the path the shell and the DB-API take (planning,
  policy checks, MPC, DP, audit) and nothing here can bypass a policy;
* the federation config for the list of tables, and the node's own `DESCRIBE`
  (through the same client) for their columns, types and this party's levels
  (catalog = federation, db schema = party, plus one schema holding the
  federated union tables): no channel to a peer, no node key, no cache here.

A statement runs when the client asks for its FlightInfo (its schema is only
known once it ran); the result's stream from the node (fedsql/result_meta.py ResultStream: the
header came, the rows wait in the node's call) is kept under a random ticket until the client
fetches it, and DoGet streams its record batches as they arrive (a `GeneratorStream` with exactly
the FlightInfo's schema), so a large result is never held whole here. Session settings (`SET fedsql.mode = ...`) are kept per
client session: the `arrow_flight_session_id` cookie when the client sends
it, else the client's connection (gRPC peer), which is what one ADBC or JDBC
connection is.
"""

from __future__ import annotations

import json
import logging
import secrets
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from fedsql import errors  # first: fedsql/__init__ imports connectors.dbapi (import cycle otherwise)
from connectors.dbapi import sql_segments, substitute_parameters  # noqa: I001
from connectors.flightsql import FlightSession_pb2 as session_pb
from connectors.flightsql import FlightSql_pb2 as fsql
from connectors.flightsql.metadata import (  # re-exported: the spec's shapes, for tests and tools
    CATALOGS_SCHEMA,
    DB_SCHEMAS_SCHEMA,
    HANDLE_IDLE_SECONDS,
    KEYS_SCHEMA,
    PRIMARY_KEYS_SCHEMA,
    SQL_INFO_SCHEMA,
    SQL_INFO_VALUE_TYPE,
    TABLE_TYPE,
    TABLE_TYPES_SCHEMA,
    TABLES_SCHEMA,
    TABLES_SCHEMA_WITH_SCHEMA,
    Catalog,
    _matches,
    arrow_schema,
    duckdb_to_arrow,
    like_to_regex,
    sql_info_table,
)
from fedsql import hidden_params
from fedsql.client import NodeClient
from fedsql.config import Federation, load_config
from fedsql.settings import SETTINGS, check_setting
from fedsql.scratch import IssuerLocal
from fedsql.users import Accounts, Authenticator, LoginThrottle, decode_basic

__all__ = [
    "CATALOGS_SCHEMA", "DB_SCHEMAS_SCHEMA", "KEYS_SCHEMA", "PRIMARY_KEYS_SCHEMA", "SQL_INFO_SCHEMA",
    "SQL_INFO_VALUE_TYPE", "TABLE_TYPES_SCHEMA", "TABLES_SCHEMA", "TABLES_SCHEMA_WITH_SCHEMA",
    "FedSqlFlightServer", "arrow_schema", "duckdb_to_arrow", "flight_error", "like_to_regex",
    "normalise_names", "run_flight", "sql_info_table", "start_flight_server", "start_party_flight",
]

log = logging.getLogger("fedsql.flight")

SESSION_COOKIE = "arrow_flight_session_id"
RESULT_TTL_SECONDS = 600.0
"""A result not fetched within this time is dropped and its node call stopped (clients fetch at once)."""
MAX_PENDING_RESULTS = 64
MAX_SESSIONS = 10_000
MAX_PARAMETER_SETS = 1_000
_TYPE_PREFIX = "type.googleapis.com/"

# -- errors -------------------------------------------------------------------------


def flight_error(exc: BaseException) -> Exception:
    """fedsql error → the Flight error whose gRPC code makes ADBC/JDBC raise the matching
    DB-API class (PERMISSION_DENIED/INVALID_ARGUMENT → ProgrammingError, UNIMPLEMENTED →
    NotSupportedError, UNAVAILABLE/DEADLINE/CANCELLED/UNKNOWN → OperationalError,
    INTERNAL → InternalError). fedsql messages are safe to show; anything else is
    logged here and reported without details (no message, no traceback, no path)."""
    if isinstance(exc, flight.FlightError):
        return exc
    if not isinstance(exc, errors.Error):
        log.exception("internal error in the Flight SQL endpoint")
        return flight.FlightInternalError(
            f"InternalError: internal error in the Flight SQL endpoint ({type(exc).__name__}); it was logged")
    message = f"{exc.kind}: {exc}"
    if isinstance(exc, errors.PolicyViolation):
        return flight.FlightUnauthorizedError(message)
    if isinstance(exc, (errors.ProgrammingError, errors.InterfaceError, errors.DataError)):
        return pa.ArrowInvalid(message)
    if isinstance(exc, errors.NotSupportedError):
        return pa.ArrowNotImplementedError(message)
    if isinstance(exc, errors.PartyUnavailable):
        return flight.FlightUnavailableError(message)
    if isinstance(exc, errors.QueryTimeout):
        return flight.FlightTimedOutError(message)
    if isinstance(exc, errors.QueryCancelled):
        return flight.FlightCancelledError(message)
    if isinstance(exc, errors.InternalError):
        return flight.FlightInternalError(message)
    return flight.FlightServerError(message)


# pyarrow sends the traceback of any non-Flight exception a handler raises to the client (the
# status detail "Python exception: Traceback ..."). So the guard is compiled under a neutral file
# name and raises a fresh exception without context: the client sees fedsql's message and, for the
# INVALID_ARGUMENT/UNIMPLEMENTED codes (which have no Flight error class), one frame of this stub.
_GUARD_SOURCE = """
def guard(method, convert, flight_errors):
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            mapped = convert(exc)
        if not isinstance(mapped, flight_errors):
            mapped = mapped.__class__(str(mapped))  # fresh: no traceback, no context
        raise mapped.with_traceback(None) from None
    return wrapper
"""
_guard_namespace: dict[str, Any] = {}
exec(compile(_GUARD_SOURCE, "<fedsql flight endpoint>", "exec"), _guard_namespace)  # noqa: S102 - fixed text


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an RPC handler so every failure leaves as a mapped Flight error, never a traceback."""
    wrapper = _guard_namespace["guard"](method, flight_error, flight.FlightError)
    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


# -- protobuf Any helpers -----------------------------------------------------------------


def pack(message: Message) -> bytes:
    """Serialise a Flight SQL message wrapped in google.protobuf.Any, as the spec requires."""
    wrapped = any_pb2.Any()
    wrapped.Pack(message)
    return wrapped.SerializeToString()


def unpack(data: bytes) -> Message:
    """Decode an Any-wrapped Flight SQL message (command, ticket or action body)."""
    wrapped = any_pb2.Any()
    try:
        wrapped.ParseFromString(data)
    except DecodeError:
        raise errors.InterfaceError("not a Flight SQL request (malformed protobuf)") from None
    name = wrapped.type_url[len(_TYPE_PREFIX):] if wrapped.type_url.startswith(_TYPE_PREFIX) else ""
    prefix = fsql.DESCRIPTOR.package + "."
    cls = getattr(fsql, name[len(prefix):], None) if name.startswith(prefix) else None
    if cls is None:
        raise errors.NotSupportedError(f"unsupported Flight SQL request {wrapped.type_url or '(empty)'}")
    message = cls()
    wrapped.Unpack(message)
    return message


# -- sessions, prepared statements, pending results -----------------------------------


@dataclass
class Session:
    settings: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # the logged-in user it belongs to (password endpoint)
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class Prepared:
    sql: str
    n_params: int
    session: Session
    dataset_schema: pa.Schema
    parameter_sets: list[tuple[Any, ...]] | None = None
    last_used: float = field(default_factory=time.monotonic)


class PendingResult:
    """A statement's rows waiting for DoGet: the schema the FlightInfo announced (with the leakage
    report in its metadata) and the record batches, read from the node's stream as DoGet sends
    them (or from a table: several parameter sets of a prepared statement)."""

    def __init__(self, schema: pa.Schema, batches: Any, total_rows: int | None, close: Callable[[], None]) -> None:
        self.schema = schema
        self.total_rows = total_rows if total_rows is not None else -1
        self.source = batches  # the node's ResultStream, or a table's batches
        self._batches = iter(batches)
        self._close = close

    @classmethod
    def of_stream(cls, result: Any, leakage: list[str]) -> "PendingResult":
        schema = result.schema
        if leakage:
            schema = schema.with_metadata({**(schema.metadata or {}), b"fedsql:leakage": json.dumps(leakage).encode()})
        return cls(schema, result, result.total_rows, result.close)

    @classmethod
    def of_table(cls, table: pa.Table) -> "PendingResult":
        return cls(table.schema, table.to_batches(), table.num_rows, lambda: None)

    def next_batch(self) -> pa.RecordBatch | None:
        """The next batch under the announced schema (the same columns; metadata as announced)."""
        batch = next(self._batches, None)
        return None if batch is None else pa.RecordBatch.from_arrays(batch.columns, schema=self.schema)

    def read_all(self) -> pa.Table:
        try:
            return pa.Table.from_batches(list(iter(self.next_batch, None)), schema=self.schema)
        finally:
            self.close()

    def close(self) -> None:
        self._close()


class Sessions:
    """Session state keyed by cookie or by connection (see module docstring)."""

    def __init__(self) -> None:
        self._by_key: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, key: str, user: str | None = None) -> tuple[Session, bool]:
        """The session under `key` (created when missing, for `user`) and whether it is new."""
        with self._lock:
            session = self._by_key.get(key)
            created = session is None
            if session is None:
                self._expire()
                session = self._by_key[key] = Session(user=user)
            session.last_used = time.monotonic()
            return session, created

    def alias(self, key: str, session: Session) -> None:
        with self._lock:
            self._by_key[key] = session

    def close(self, session: Session) -> None:
        with self._lock:
            for key in [k for k, s in self._by_key.items() if s is session]:
                del self._by_key[key]

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._by_key.items() if now - s.last_used > HANDLE_IDLE_SECONDS]:
            del self._by_key[key]
        while len(self._by_key) >= MAX_SESSIONS:
            del self._by_key[min(self._by_key, key=lambda k: self._by_key[k].last_used)]


class _SessionMiddleware(flight.ServerMiddleware):
    def __init__(self, cookie: str | None) -> None:
        self.cookie = cookie
        self.issue: str | None = None  # set by the handler when it opens a session

    def sending_headers(self) -> dict[str, str]:
        return {"set-cookie": f"{SESSION_COOKIE}={self.issue}"} if self.issue else {}


class _SessionMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Reads the session cookie of each call (see `FedSqlFlightServer._session`)."""

    def start_call(self, info: Any, headers: dict[str, list[str]]) -> _SessionMiddleware:
        return _SessionMiddleware(_cookie(headers, SESSION_COOKIE))


class _AuthMiddleware(flight.ServerMiddleware):
    def __init__(self, user: str, token: str | None) -> None:
        self.user = user
        self.token = token  # a token issued by this call (Basic credentials), sent back as Bearer

    def sending_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}


class _AuthMiddlewareFactory(flight.ServerMiddlewareFactory):
    """User name + password endpoint: every call carries `authorization: Basic …` (answered with a
    bearer token; Handshake or the first call) or `authorization: Bearer <token>`. A call without
    valid credentials is refused before any handler runs."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    def start_call(self, info: Any, headers: dict[str, list[str]]) -> _AuthMiddleware:
        values = headers.get("authorization") or headers.get("Authorization") or []
        value = values[0] if values else ""
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            user = self.auth.token_user(credentials.strip())
            if user is None:
                raise flight.FlightUnauthenticatedError(
                    "AuthenticationError: the session token is unknown or expired; log in again with the "
                    "user name and password")
            return _AuthMiddleware(user, None)
        if scheme.lower() == "basic":
            try:
                name, password = decode_basic(credentials)
                # pyarrow's middleware does not see the peer address: the count is per user name here
                user = self.auth.login(name, password)
            except errors.AuthenticationError as exc:
                raise flight.FlightUnauthenticatedError(f"AuthenticationError: {exc}") from None
            return _AuthMiddleware(user, self.auth.issue_token(user))
        raise flight.FlightUnauthenticatedError(
            "AuthenticationError: this Flight SQL endpoint needs a user name and password (HTTP Basic, then the "
            "bearer token it returns); ask the party's operator for an account (`fedsql user add`)")


class _HandshakeOnly(flight.ServerAuthHandler):
    """Lets `Handshake` succeed: the credentials travel in its headers and `_AuthMiddlewareFactory`
    checks them (and every later call's); pyarrow's own token check is not used."""

    def authenticate(self, outgoing: Any, incoming: Any) -> None:
        return None

    def is_valid(self, token: bytes) -> str:
        return ""


def _cookie(headers: dict[str, list[str]], name: str) -> str | None:
    for value in headers.get("cookie", []):
        for part in value.split(";"):
            key, _, val = part.strip().partition("=")
            if key == name and val:
                return val
    return None


# -- SQL helpers --------------------------------------------------------------------------


def count_parameters(sql: str) -> int:
    return sum(1 for kind, _ in sql_segments(sql) if kind == "qmark")


def normalise_names(sql: str, fed: Federation, federated_schema: str) -> str:
    """Accept the names BI tools generate from the catalog: drop a leading catalog
    (`testfed.p1.t` → `p1.t`) and the pseudo schema of union tables (`federated.t` → `t`).

    The text is left untouched unless such a name occurs.
    """
    lowered = sql.lower()
    if fed.name.lower() not in lowered and federated_schema.lower() not in lowered:
        return sql
    import sqlglot
    from sqlglot import exp

    try:
        trees = sqlglot.parse(sql, read="duckdb")
    except Exception:  # noqa: BLE001 - the node reports syntax errors itself
        return sql
    if len(trees) != 1 or trees[0] is None:
        return sql
    changed = False
    for node in trees[0].find_all(exp.Table, exp.Column):
        if node.args.get("catalog") is not None and node.catalog.lower() == fed.name.lower():
            node.set("catalog", None)
            changed = True
        db = node.text("db")
        if db and db not in fed.parties and db.lower() in (federated_schema.lower(), fed.name.lower()):
            node.set("db", None)
            changed = True
    return trees[0].sql(dialect="duckdb") if changed else sql


# -- the server ------------------------------------------------------------------------------


class FedSqlFlightServer(flight.FlightServerBase):
    """Flight SQL front of one party's node; see the module docstring."""

    def __init__(self, fed: Federation, party: str, node_address: str, location: str,
                 tls_certificates: list[tuple[bytes, bytes]] | None = None,
                 execute_timeout: float | None = None, client_ca: bytes | None = None,
                 auth: Authenticator | None = None) -> None:
        fed.party(party)
        # two ways in, one per listener (gRPC cannot ask for a client certificate without requiring it):
        # client_ca: only clients holding the party's client certificate; auth: user name + password
        if not tls_certificates or not location.startswith("grpc+tls://") or (client_ca is None) == (auth is None):
            raise errors.ConfigError(
                f"party '{party}': the Flight SQL endpoint serves only TLS: give a grpc+tls:// location, "
                f"the node's certificate and either the party's client certificate (party_flight_tls(fed, "
                f"'{party}')) or the party's accounts (auth=...)")
        middleware: dict[str, flight.ServerMiddlewareFactory] = {"session": _SessionMiddlewareFactory()}
        if auth is not None:
            middleware["auth"] = _AuthMiddlewareFactory(auth)
        super().__init__(location, tls_certificates=tls_certificates, verify_client=client_ca is not None,
                         root_certificates=client_ca, middleware=middleware,
                         auth_handler=_HandshakeOnly() if auth is not None else None)
        self.auth = auth
        self.fed = fed
        self.party = party
        self._router = IssuerLocal.router(fed, party)
        self.node = NodeClient(node_address, party=party, config_path=str(fed.path),
                               default_timeout=execute_timeout)
        self.catalog = Catalog(fed, party, self.node)
        self.sessions = Sessions()
        self._prepared: dict[bytes, Prepared] = {}
        self._results: dict[bytes, tuple[float, PendingResult, str | None]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="fedsql-flight")

    # -- sessions and execution ------------------------------------------------

    def _session(self, context: flight.ServerCallContext) -> Session:
        """The caller's session: its cookie's, else its connection's. A new connection
        session is offered a cookie too, so cookie-aware clients keep it across
        reconnects; clients that ignore cookies stay keyed by connection."""
        middleware = context.get_middleware("session")
        user = self._user(context)
        owner = f"user:{user or ''}:"  # a session (and its prepared statements) is one user's
        if middleware is not None and middleware.cookie:
            return self.sessions.get(owner + "cookie:" + middleware.cookie, user)[0]
        session, created = self.sessions.get(owner + "peer:" + context.peer(), user)
        if created and middleware is not None:
            middleware.issue = secrets.token_urlsafe(18)
            self.sessions.alias(owner + "cookie:" + middleware.issue, session)
        return session

    def _user(self, context: flight.ServerCallContext) -> str | None:
        """The logged-in user (password endpoint); None on the client-certificate endpoint."""
        middleware = context.get_middleware("auth")
        return middleware.user if middleware is not None else None

    def _execute(self, context: flight.ServerCallContext, sql: str, session: Session,
                 hidden: bytes | None = None) -> PendingResult:
        """Run one statement at the own node until its result's header came (its rows wait in the
        node's call); cancel it there if the client goes away. `hidden`: the bound ? values under
        SET fedsql.hidden_params = on (never put into the SQL)."""
        sql = normalise_names(sql, self.fed, self.catalog.federated_schema)
        query_id = uuid.uuid4().hex
        extra = {"hidden_params": hidden} if hidden is not None else {}
        future = self._pool.submit(self.node.stream, sql, dict(session.settings), None, None, query_id,
                                   self._user(context), **extra)
        while True:
            try:
                result = future.result(timeout=0.2)
                break
            except FutureTimeout:
                if context.is_cancelled():
                    self._pool.submit(self._cancel_quietly, query_id)
                    future.add_done_callback(lambda f: f.exception() is None and f.result().close())
                    raise errors.QueryCancelled("the Flight SQL client cancelled the query") from None
        meta = result.meta
        if meta.get("kind") == "set":
            session.settings = {str(k): str(v) for k, v in (meta.get("settings") or {}).items()}
        try:
            return PendingResult.of_stream(result, list(meta.get("leakage") or []))
        except BaseException:
            result.close()
            raise

    def _cancel_quietly(self, query_id: str) -> None:
        try:
            self.node.cancel(query_id, reason="the Flight SQL client cancelled the query")
        except errors.Error:
            pass

    def _execute_prepared(self, context: flight.ServerCallContext, prepared: Prepared) -> PendingResult:
        prepared.last_used = time.monotonic()
        if prepared.n_params == 0:
            return self._execute(context, prepared.sql, prepared.session)
        if not prepared.parameter_sets:
            raise errors.ProgrammingError(
                f"the statement has {prepared.n_params} ? parameter(s) but none were bound")
        if prepared.session.settings.get("fedsql.hidden_params") == "on":
            runs = [lambda row=row: self._execute(context, prepared.sql, prepared.session,
                                                  hidden_params.encode(list(row)))
                    for row in prepared.parameter_sets]
        else:
            runs = [lambda row=row: self._execute(context, substitute_parameters(prepared.sql, row), prepared.session)
                    for row in prepared.parameter_sets]
        if len(runs) == 1:
            return runs[0]()
        tables = [run().read_all() for run in runs]  # one result of several sets: joined here
        try:
            return PendingResult.of_table(pa.concat_tables(tables, promote_options="permissive"))
        except pa.ArrowInvalid:
            raise errors.DataError("the parameter sets gave results of different types") from None

    def _infer_schema(self, sql: str, session: Session) -> pa.Schema:
        """Output schema without running the query (no MPC, no DP budget): the same
        deterministic planner the node uses, over the owners' public schemas."""
        from planner.compile import compile_query

        sql = normalise_names(sql, self.fed, self.catalog.federated_schema)
        routed = self._router.route(sql)
        if routed is not None:
            return self._routed_schema(sql, routed, session)
        who = self.auth.accounts.principal(self.party, session.user) if self.auth is not None else self.party
        compiled = compile_query(sql, self.fed, who, dict(session.settings), self.catalog.schema_of)
        if compiled.kind == "set":
            return pa.schema([])
        if compiled.kind == "explain":
            return pa.schema([pa.field("plan", pa.utf8())])
        return arrow_schema(compiled.plan.output)

    def _routed_schema(self, sql: str, routed: Any, session: Session) -> pa.Schema:
        """Schema of a statement the node answers itself (catalog, SELECT 1, scratch). JDBC takes a
        prepared statement with an empty dataset schema for an update (executeUpdate: no result
        set), so a reading one must report its columns: the node runs it (a catalog answer), or
        its `LIMIT 0` form for scratch reads; nothing is written, audited or sent to other parties.
        Writes (CREATE/INSERT/DROP scratch, COPY, sinks) keep the empty schema of an update."""
        reads = routed.kind in ("show_tables", "describe", "information_schema") or (
            routed.kind == "local" and not routed.target)
        if not reads:
            return pa.schema([])
        if routed.kind == "local" and not routed.explain:
            from sqlglot import exp

            sql = exp.select("*").from_(routed.ast.subquery("__fedsql_probe")).limit(0).sql(dialect="duckdb")
        result = self.node.stream(sql, dict(session.settings), None, None, uuid.uuid4().hex, session.user)
        try:
            return result.schema
        finally:
            result.close()

    def _store_result(self, result: PendingResult, user: str | None) -> bytes:
        handle = secrets.token_bytes(16)
        now = time.monotonic()
        dropped = []
        with self._lock:
            for key in [k for k, (t, _, _) in self._results.items() if now - t > RESULT_TTL_SECONDS]:
                dropped.append(self._results.pop(key)[1])
            while len(self._results) >= MAX_PENDING_RESULTS:
                dropped.append(self._results.pop(min(self._results, key=lambda k: self._results[k][0]))[1])
            self._results[handle] = (now, result, user)
        for old in dropped:  # their node calls stop
            old.close()
        return handle

    def _prepared_statement(self, context: flight.ServerCallContext, handle: bytes) -> Prepared:
        """The caller's prepared statement: another user's handle is as unknown as a closed one."""
        with self._lock:
            prepared = self._prepared.get(handle)
        if prepared is None or prepared.session.user != self._user(context):
            raise errors.ProgrammingError("unknown or closed prepared statement handle")
        return prepared

    def _info(self, descriptor: flight.FlightDescriptor, schema: pa.Schema, ticket: bytes,
              rows: int = -1) -> flight.FlightInfo:
        endpoint = flight.FlightEndpoint(ticket, [])
        return flight.FlightInfo(schema, descriptor, [endpoint], rows, -1)

    # -- Flight RPCs ----------------------------------------------------------------

    @_guarded
    def get_flight_info(self, context: flight.ServerCallContext,
                        descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        command = self._command(descriptor)
        if isinstance(command, (fsql.CommandStatementQuery, fsql.CommandPreparedStatementQuery)):
            if isinstance(command, fsql.CommandStatementQuery):
                result = self._execute(context, command.query, self._session(context))
            else:
                prepared = self._prepared_statement(context, command.prepared_statement_handle)
                result = self._execute_prepared(context, prepared)
            handle = self._store_result(result, self._user(context))
            ticket = pack(fsql.TicketStatementQuery(statement_handle=handle))
            return self._info(descriptor, result.schema, ticket, result.total_rows)
        # metadata: the ticket is the command itself, answered at DoGet
        return self._info(descriptor, self._metadata_schema(command), descriptor.command)

    @_guarded
    def get_schema(self, context: flight.ServerCallContext,
                   descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        command = self._command(descriptor)
        if isinstance(command, fsql.CommandStatementQuery):
            return flight.SchemaResult(self._infer_schema(command.query, self._session(context)))
        if isinstance(command, fsql.CommandPreparedStatementQuery):
            return flight.SchemaResult(self._prepared_statement(context, command.prepared_statement_handle).dataset_schema)
        return flight.SchemaResult(self._metadata_schema(command))

    @_guarded
    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.RecordBatchStream:
        command = unpack(ticket.ticket)
        if isinstance(command, fsql.TicketStatementQuery):
            with self._lock:
                entry = self._results.get(command.statement_handle)
                if entry is not None and entry[2] == self._user(context):
                    del self._results[command.statement_handle]
                else:
                    entry = None  # another user's ticket is as unknown as an expired one
            if entry is None:
                raise errors.ProgrammingError("unknown or expired ticket: run the statement again")
            result = entry[1]
            return flight.GeneratorStream(result.schema, _streamed(result))
        return flight.RecordBatchStream(self._metadata(command, self._user(context)))

    @_guarded
    def do_put(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor,
               reader: flight.MetadataRecordBatchReader, writer: flight.FlightMetadataWriter) -> None:
        command = self._command(descriptor)
        if isinstance(command, fsql.CommandPreparedStatementQuery):
            params = _read_parameters(reader)
            self._bind(self._prepared_statement(context, command.prepared_statement_handle), params)
            return
        if isinstance(command, fsql.CommandStatementUpdate):
            self._execute(context, command.query, self._session(context)).close()
        elif isinstance(command, fsql.CommandPreparedStatementUpdate):
            prepared = self._prepared_statement(context, command.prepared_statement_handle)
            params = _read_parameters(reader)
            if params is not None and params.num_columns:
                self._bind(prepared, params)
            self._execute_prepared(context, prepared).close()
        else:
            raise errors.NotSupportedError(f"DoPut with {type(command).__name__} is not supported")
        writer.write(pa.py_buffer(fsql.DoPutUpdateResult(record_count=-1).SerializeToString()))

    def _bind(self, prepared: Prepared, params: pa.Table | None) -> None:
        if params is None:
            params = pa.table({})
        if params.num_columns != prepared.n_params:
            raise errors.ProgrammingError(
                f"the statement has {prepared.n_params} ? parameter(s) but {params.num_columns} were bound")
        if params.num_rows > MAX_PARAMETER_SETS:
            raise errors.NotSupportedError(f"at most {MAX_PARAMETER_SETS} parameter sets per execution")
        columns = [col.to_pylist() for col in params.columns]
        prepared.parameter_sets = list(zip(*columns)) if columns else []
        prepared.last_used = time.monotonic()

    def list_actions(self, context: flight.ServerCallContext) -> list[tuple[str, str]]:
        return [
            ("CreatePreparedStatement", "Create a prepared statement (parameters: ?)"),
            ("ClosePreparedStatement", "Close a prepared statement"),
            ("SetSessionOptions", "Set session options (fedsql.mode)"),
            ("GetSessionOptions", "Get session options"),
            ("CloseSession", "Close the session"),
        ]

    @_guarded
    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> list[flight.Result]:
        body = action.body.to_pybytes() if action.body is not None else b""
        handler = {
            "CreatePreparedStatement": self._create_prepared,
            "ClosePreparedStatement": self._close_prepared,
            "SetSessionOptions": self._set_session_options,
            "GetSessionOptions": self._get_session_options,
            "CloseSession": self._close_session,
        }.get(action.type)
        if handler is None:
            raise errors.NotSupportedError(f"action '{action.type}' is not supported (fedsql is read-only, "
                                           "without transactions)")
        return [flight.Result(pa.py_buffer(out)) for out in handler(context, body)]

    # -- actions ------------------------------------------------------------------------

    def _create_prepared(self, context: flight.ServerCallContext, body: bytes) -> list[bytes]:
        request = unpack(body)
        if not isinstance(request, fsql.ActionCreatePreparedStatementRequest):
            raise errors.InterfaceError("CreatePreparedStatement needs an ActionCreatePreparedStatementRequest")
        if request.HasField("transaction_id"):
            raise errors.NotSupportedError("fedsql has no transactions")
        session = self._session(context)
        n_params = count_parameters(request.query)
        dataset_schema = self._dataset_schema(request.query, n_params, session)
        handle = uuid.uuid4().bytes
        with self._lock:
            self._expire_prepared()
            self._prepared[handle] = Prepared(request.query, n_params, session, dataset_schema)
        parameter_schema = pa.schema([pa.field(f"parameter_{i + 1}", pa.null()) for i in range(n_params)])
        result = fsql.ActionCreatePreparedStatementResult(
            prepared_statement_handle=handle,
            dataset_schema=dataset_schema.serialize().to_pybytes(),
            parameter_schema=parameter_schema.serialize().to_pybytes() if n_params else b"",
        )
        return [pack(result)]

    def _dataset_schema(self, sql: str, n_params: int, session: Session) -> pa.Schema:
        """Planner's output schema; errors surface now unless parameters may explain
        them (then at execution, with the real values)."""
        probe = substitute_parameters(sql, [None] * n_params) if n_params else sql
        try:
            return self._infer_schema(probe, session)
        except errors.Error:
            if n_params:
                return pa.schema([])
            raise
        except Exception:  # noqa: BLE001 - a planner gap must not block execution
            log.warning("could not infer the schema of a prepared statement", exc_info=True)
            return pa.schema([])

    def _expire_prepared(self) -> None:
        now = time.monotonic()
        for key in [k for k, p in self._prepared.items() if now - p.last_used > HANDLE_IDLE_SECONDS]:
            del self._prepared[key]

    def _close_prepared(self, context: flight.ServerCallContext, body: bytes) -> list[bytes]:
        request = unpack(body)
        if not isinstance(request, fsql.ActionClosePreparedStatementRequest):
            raise errors.InterfaceError("ClosePreparedStatement needs an ActionClosePreparedStatementRequest")
        with self._lock:
            self._prepared.pop(request.prepared_statement_handle, None)
        return []

    def _set_session_options(self, context: flight.ServerCallContext, body: bytes) -> list[bytes]:
        request = session_pb.SetSessionOptionsRequest()
        request.ParseFromString(body)
        session = self._session(context)
        result = session_pb.SetSessionOptionsResult()
        for name, value in request.session_options.items():
            kind = value.WhichOneof("option_value")
            if kind is None:
                session.settings.pop(name, None)
            elif kind != "string_value" or not name.startswith("fedsql."):
                result.errors[name].value = (session_pb.SetSessionOptionsResult.INVALID_NAME
                                             if not name.startswith("fedsql.")
                                             else session_pb.SetSessionOptionsResult.INVALID_VALUE)
            else:
                try:  # the same check as SET (fedsql/settings.py)
                    session.settings[name] = check_setting(name, value.string_value)
                except errors.Error:
                    result.errors[name].value = (session_pb.SetSessionOptionsResult.INVALID_NAME
                                                 if name not in SETTINGS
                                                 else session_pb.SetSessionOptionsResult.INVALID_VALUE)
        return [result.SerializeToString()]

    def _get_session_options(self, context: flight.ServerCallContext, body: bytes) -> list[bytes]:
        result = session_pb.GetSessionOptionsResult()
        for name, value in self._session(context).settings.items():
            result.session_options[name].string_value = value
        return [result.SerializeToString()]

    def _close_session(self, context: flight.ServerCallContext, body: bytes) -> list[bytes]:
        session = self._session(context)
        with self._lock:
            for key in [k for k, p in self._prepared.items() if p.session is session]:
                del self._prepared[key]
        self.sessions.close(session)
        return [session_pb.CloseSessionResult(status=session_pb.CloseSessionResult.CLOSED).SerializeToString()]

    # -- metadata commands -------------------------------------------------------------

    def _command(self, descriptor: flight.FlightDescriptor) -> Message:
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            raise errors.NotSupportedError("only Flight SQL command descriptors are supported")
        return unpack(descriptor.command)

    def _metadata_schema(self, command: Message) -> pa.Schema:
        schemas = {
            fsql.CommandGetCatalogs: CATALOGS_SCHEMA,
            fsql.CommandGetDbSchemas: DB_SCHEMAS_SCHEMA,
            fsql.CommandGetTableTypes: TABLE_TYPES_SCHEMA,
            fsql.CommandGetSqlInfo: SQL_INFO_SCHEMA,
            fsql.CommandGetPrimaryKeys: PRIMARY_KEYS_SCHEMA,
            fsql.CommandGetExportedKeys: KEYS_SCHEMA,
            fsql.CommandGetImportedKeys: KEYS_SCHEMA,
            fsql.CommandGetCrossReference: KEYS_SCHEMA,
        }
        if isinstance(command, fsql.CommandGetTables):
            return TABLES_SCHEMA_WITH_SCHEMA if command.include_schema else TABLES_SCHEMA
        schema = schemas.get(type(command))
        if schema is None:
            raise errors.NotSupportedError(f"{type(command).__name__} is not supported")
        return schema

    def _metadata(self, command: Message, user: str | None = None) -> pa.Table:
        if isinstance(command, fsql.CommandGetCatalogs):
            return pa.Table.from_pylist([{"catalog_name": self.fed.name}], schema=CATALOGS_SCHEMA)
        if isinstance(command, fsql.CommandGetDbSchemas):
            return self._db_schemas(command)
        if isinstance(command, fsql.CommandGetTables):
            return self._tables(command, user)
        if isinstance(command, fsql.CommandGetTableTypes):
            return pa.Table.from_pylist([{"table_type": TABLE_TYPE}], schema=TABLE_TYPES_SCHEMA)
        if isinstance(command, fsql.CommandGetSqlInfo):
            return sql_info_table(command.info)
        # fedsql declares no keys: the answer is empty, in the spec's schema
        return self._metadata_schema(command).empty_table()

    def _catalog_matches(self, command: Message) -> bool:
        return not command.HasField("catalog") or command.catalog == self.fed.name

    def _db_schemas(self, command: fsql.CommandGetDbSchemas) -> pa.Table:
        pattern = like_to_regex(command.db_schema_filter_pattern
                                if command.HasField("db_schema_filter_pattern") else None)
        names = [s for s in self.catalog.db_schemas() if _matches(pattern, s)] if self._catalog_matches(command) else []
        rows = [{"catalog_name": self.fed.name, "db_schema_name": s} for s in names]
        return pa.Table.from_pylist(rows, schema=DB_SCHEMAS_SCHEMA)

    def _tables(self, command: fsql.CommandGetTables, user: str | None = None) -> pa.Table:
        """GetTables; with include_schema, each column's level as `user` has it (its roles' grants)."""
        schema = TABLES_SCHEMA_WITH_SCHEMA if command.include_schema else TABLES_SCHEMA
        if not self._catalog_matches(command) or (command.table_types and TABLE_TYPE not in command.table_types):
            return schema.empty_table()
        db_pattern = like_to_regex(command.db_schema_filter_pattern
                                   if command.HasField("db_schema_filter_pattern") else None)
        name_pattern = like_to_regex(command.table_name_filter_pattern
                                     if command.HasField("table_name_filter_pattern") else None)
        rows = []
        for entry in self.catalog.tables():
            if not (_matches(db_pattern, entry.db_schema) and _matches(name_pattern, entry.name)):
                continue
            row: dict[str, Any] = {"catalog_name": self.fed.name, "db_schema_name": entry.db_schema,
                                   "table_name": entry.name, "table_type": TABLE_TYPE}
            if command.include_schema:
                row["table_schema"] = self.catalog.table_schema(entry, user).serialize().to_pybytes()
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=schema)

    # -- lifecycle -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop serving and release the node connections (results not fetched stop at the node)."""
        super().shutdown()
        with self._lock:
            pending, self._results = list(self._results.values()), {}
        for _, result, _ in pending:
            result.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.node.close()


def _streamed(result: PendingResult) -> Any:
    """DoGet's batches as the node sends them; a failure midway leaves as a mapped Flight error (no
    traceback), and the node's call stops however the client's stream ends."""
    step = _guarded(result.next_batch)
    try:
        while (batch := step()) is not None:
            yield batch
    finally:
        result.close()


def _read_parameters(reader: flight.MetadataRecordBatchReader) -> pa.Table | None:
    """Bound parameter sets of a DoPut; None when the client sent no data at all."""
    try:
        return reader.read_all()
    except (OSError, pa.ArrowException) as exc:
        if "never sent a data message" in str(exc):
            return None
        raise errors.InterfaceError(f"malformed parameter stream: {exc}") from None


def _location(location: str) -> str:
    """`host:port` (or `grpc+tls://host:port`) → the TLS URI to serve; any other scheme is refused."""
    scheme, sep, rest = location.partition("://")
    if sep and scheme.lower() != "grpc+tls":
        raise errors.ConfigError(
            f"Flight SQL location {location!r}: the endpoint serves only mutual TLS; give \"{rest}\" (host:port)")
    return "grpc+tls://" + (rest if sep else location)


def start_flight_server(fed: Federation, party: str, node_address: str, location: str,
                        tls_certificates: list[tuple[bytes, bytes]] | None = None,
                        client_ca: bytes | None = None, auth: Authenticator | None = None) -> FedSqlFlightServer:
    """Start the Flight SQL endpoint of `party` (serving in a background thread).

    `location` is "host:port" (port 0 picks a free one; see `.port`); `tls_certificates`
    is [(cert_pem, key_pem)] and `client_ca` the only client certificate accepted, as
    `party_flight_tls(fed, party)` gives them: the endpoint has no plaintext mode.
    With `auth` instead of `client_ca` it asks for a user name and password (no client
    certificate). Stop it with `.shutdown()`.
    """
    uri = _location(location)
    try:
        server = FedSqlFlightServer(fed, party, node_address, uri, tls_certificates=tls_certificates,
                                    client_ca=client_ca, auth=auth)
    except (OSError, pa.ArrowException) as exc:
        raise errors.OperationalError(
            f"party '{party}': cannot serve Flight SQL on {location} ({exc}); "
            f"stop what uses the port or change parties.{party}.flight in {fed.path}"
        ) from None
    thread = threading.Thread(target=server.serve, name=f"fedsql-flight-{party}", daemon=True)
    thread.start()
    log.info("party %s: Flight SQL endpoint on %s (node %s)", party, uri, node_address)
    return server


def party_flight_tls(fed: Federation, party: str) -> dict:
    """The node's certificate for the endpoint and the party's client certificate as the
    only accepted client identity: the same mutual TLS as the node's own client port."""
    from fedsql import tls

    p = tls.paths(fed, party)
    try:
        cert, key, client = p.certificate.read_bytes(), p.private_key.read_bytes(), p.client_certificate.read_bytes()
    except OSError:
        raise errors.ConfigError(
            f"party '{party}': the Flight SQL endpoint needs the party's keys; run `fedsql keys {fed.path} "
            f"--party {party}`"
        ) from None
    return {"tls_certificates": [(cert, key)], "client_ca": client}


class PartyFlight:
    """The Flight SQL listeners of one party: `flight` (client certificate) and/or
    `flight_password` (user name + password), both forwarding to the party's node."""

    def __init__(self, servers: list[FedSqlFlightServer]) -> None:
        self.servers = servers

    def shutdown(self) -> None:
        for server in self.servers:
            server.shutdown()


def start_party_flight(fed: Federation, party: str, node_address: str, token_ttl: float = 3600.0,
                       throttle: LoginThrottle | None = None) -> PartyFlight:
    """Start what `parties.<party>.flight` / `.flight_password` configure; `throttle`: the node's
    one count of failed logins, shared with its console (a guesser gets no extra tries there)."""
    pcfg = fed.party(party)
    tls_files = party_flight_tls(fed, party)
    servers: list[FedSqlFlightServer] = []
    try:
        if pcfg.flight:
            servers.append(start_flight_server(fed, party, node_address, pcfg.flight, **tls_files))
        if pcfg.flight_password:
            accounts = Accounts.of(fed, party)
            if not accounts.names():
                log.warning("party %s: the Flight SQL password endpoint has no accounts yet; add them with "
                            "`fedsql user add %s --party %s NAME`", party, fed.path, party)
            auth = Authenticator(accounts, token_ttl=token_ttl, throttle=throttle)
            servers.append(start_flight_server(fed, party, node_address, pcfg.flight_password,
                                               tls_certificates=tls_files["tls_certificates"], auth=auth))
    except BaseException:
        PartyFlight(servers).shutdown()
        raise
    return PartyFlight(servers)


def run_flight(config_path: str, party: str) -> None:
    """`fedsql flight CONFIG --party P`: serve P's Flight SQL endpoint until SIGINT/SIGTERM."""
    fed = load_config(config_path)
    pcfg = fed.party(party)
    if not pcfg.flight and not pcfg.flight_password:
        raise errors.ConfigError(
            f"{fed.path}: parties.{party}.flight is not set; add e.g. flight = \"127.0.0.1:32010\" (client "
            f"certificate) or flight_password = \"127.0.0.1:32011\" (user name and password)"
        )
    server = start_party_flight(fed, party, pcfg.address)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, lambda signum, frame: stop.set())
        except ValueError:
            pass  # not the main thread
    where = " and ".join(f"grpc+tls://{a} ({how})" for a, how in ((pcfg.flight, "client certificate"),
                         (pcfg.flight_password, "user name and password")) if a)
    print(f"fedsql: party '{party}' Flight SQL endpoint at {where} (node {pcfg.address})", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
