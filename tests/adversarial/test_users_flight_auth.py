"""Issue #15 item 1: user accounts and the Flight SQL password flow, attacked from outside.

The endpoint under test is the party's password listener (`flight_password`), started
in-process next to p1's real node. The attacker is the test process: a BI client
without the party's client certificate, guessing passwords, replaying stale tokens,
sending malformed credentials.
"""

from __future__ import annotations

import base64
import json
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest

pa = pytest.importorskip("pyarrow")
flight = pytest.importorskip("pyarrow.flight")
adbc = pytest.importorskip("adbc_driver_flightsql.dbapi")

from connectors import flight_sql as fs  # noqa: E402
from fedsql import tls  # noqa: E402
from fedsql.audit import audit_path  # noqa: E402
from fedsql.config import load_config  # noqa: E402
from fedsql.users import LOGIN_FAILURE, Accounts, Authenticator, LoginThrottle  # noqa: E402

PASSWORD = "correct horse battery!"


@pytest.fixture(scope="module")
def fed(federation: tuple[Path, dict[str, Any]]) -> Any:
    fed = load_config(federation[0])
    accounts = Accounts.of(fed, "p1")
    for name in ("alice", "bob", "carol"):
        if not accounts.exists(name):
            accounts.add(name, PASSWORD)
    return fed


def _start(fed: Any, **auth_kwargs: Any) -> fs.FedSqlFlightServer:
    throttle = auth_kwargs.pop("throttle", None) or LoginThrottle(free=3, base=30.0)
    auth = Authenticator(Accounts.of(fed, "p1"), throttle=throttle, **auth_kwargs)
    files = fs.party_flight_tls(fed, "p1")
    return fs.start_flight_server(fed, "p1", fed.parties["p1"].address, "127.0.0.1:0",
                                  tls_certificates=files["tls_certificates"], auth=auth)


@pytest.fixture(scope="module")
def endpoint(fed: Any) -> Iterator[fs.FedSqlFlightServer]:
    server = _start(fed)
    try:
        yield server
    finally:
        server.shutdown()


def _tls(fed: Any) -> dict[str, str]:
    return {"adbc.flight.sql.client_option.tls_root_certs": tls.paths(fed, "p1").certificate.read_text(),
            "adbc.flight.sql.client_option.tls_override_hostname": tls.server_name("p1")}


def _adbc(fed: Any, server: fs.FedSqlFlightServer, user: str, password: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return adbc.connect(f"grpc+tls://127.0.0.1:{server.port}",
                            db_kwargs={**_tls(fed), "username": user, "password": password})


def _raw(fed: Any, server: fs.FedSqlFlightServer) -> Any:
    return flight.FlightClient(f"grpc+tls://127.0.0.1:{server.port}",
                               tls_root_certs=tls.paths(fed, "p1").certificate.read_bytes(),
                               override_hostname=tls.server_name("p1"))


def _scalar(conn: Any, sql: str) -> Any:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()[0]


def _audit_queries(fed: Any) -> list[dict[str, Any]]:
    lines = audit_path(fed, "p1").read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == "query"]


def test_good_password_runs_queries_and_the_audit_record_names_the_user(fed: Any, endpoint: Any,
                                                                        federation: Any) -> None:
    _, data = federation
    with _adbc(fed, endpoint, "alice", PASSWORD) as conn:
        assert _scalar(conn, "SELECT COUNT(*) FROM p1.t WHERE id >= 0") == data["p1.t"].num_rows
    mine = [e for e in _audit_queries(fed) if e.get("sql", "").startswith("SELECT COUNT(*) FROM p1.t WHERE id >= 0")]
    assert mine and mine[-1]["user"] == "alice" and mine[-1]["role"] == "issuer"
    assert PASSWORD not in audit_path(fed, "p1").read_text(encoding="utf-8")


def test_wrong_password_and_unknown_user_are_refused_alike(fed: Any, endpoint: Any) -> None:
    messages = []
    for user, password in (("bob", "not the password"), ("nobody-here", "not the password")):
        with pytest.raises(Exception) as caught:
            with _adbc(fed, endpoint, user, password) as conn:
                _scalar(conn, "SELECT 1")
        messages.append(str(caught.value))
    assert all(LOGIN_FAILURE in m for m in messages), messages
    assert all("Traceback" not in m for m in messages)


def test_repeated_wrong_passwords_lock_the_user_out(fed: Any) -> None:
    server = _start(fed)  # own throttle: 3 free failures, then 30 s
    try:
        client = _raw(fed, server)
        for _ in range(3):
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.authenticate_basic_token("carol", "guess-guess")
        # now even the right password is refused, with the same words
        with pytest.raises(flight.FlightUnauthenticatedError, match="invalid user name or password"):
            client.authenticate_basic_token("carol", PASSWORD)
        # a user never seen is locked the same way: lockout does not tell who exists
        for _ in range(3):
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.authenticate_basic_token("ghost", "guess-guess")
        with pytest.raises(flight.FlightUnauthenticatedError, match="invalid user name or password"):
            client.authenticate_basic_token("ghost", "guess-guess")
    finally:
        server.shutdown()


def test_one_client_cannot_lock_out_other_users(fed: Any) -> None:
    """The endpoint cannot see peer addresses (pyarrow middleware): failures for some names
    must not lock other names (no shared "unknown address" bucket)."""
    server = _start(fed, throttle=LoginThrottle(free=2, base=30.0))
    try:
        client = _raw(fed, server)
        for name in ("u1", "u2", "u3", "u4", "u1", "u2"):
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.authenticate_basic_token(name, "guess-guess")
        assert client.authenticate_basic_token("alice", PASSWORD)[1].startswith(b"Bearer ")
    finally:
        server.shutdown()


def test_authenticator_counts_per_address_when_it_knows_it(fed: Any) -> None:
    from fedsql import errors

    auth = Authenticator(Accounts.of(fed, "p1"), throttle=LoginThrottle(free=3, base=30.0))
    for name in ("x1", "x2", "x3"):  # one guess per name, all from one address
        with pytest.raises(errors.AuthenticationError):
            auth.login(name, "guess-guess", "ipv4:10.0.0.9:5000")
    with pytest.raises(errors.AuthenticationError, match="invalid user name or password"):
        auth.login("alice", PASSWORD, "ipv4:10.0.0.9:6001")  # same host, other port: locked
    assert auth.login("alice", PASSWORD, "ipv4:10.0.0.10:5000") == "alice"  # another host is not


def test_expired_token_is_refused(fed: Any) -> None:
    server = _start(fed, token_ttl=1.0)
    try:
        client = _raw(fed, server)
        header = client.authenticate_basic_token("alice", PASSWORD)
        assert header[0] == b"authorization" and header[1].startswith(b"Bearer ")
        options = flight.FlightCallOptions(headers=[header])
        assert list(client.list_actions(options=options))
        time.sleep(1.3)
        with pytest.raises(flight.FlightUnauthenticatedError, match="expired"):
            list(client.list_actions(options=options))
        forged = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer " + b"A" * 43)])
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(client.list_actions(options=forged))
    finally:
        server.shutdown()


def test_basic_without_padding_on_the_first_call(fed: Any, endpoint: Any) -> None:
    raw = base64.b64encode(f"alice:{PASSWORD}".encode()).decode().rstrip("=")
    assert len(f"alice:{PASSWORD}") % 3  # the encoding really has padding to drop
    client = _raw(fed, endpoint)
    options = flight.FlightCallOptions(headers=[(b"authorization", f"Basic {raw}".encode())])
    assert [a.type for a in client.list_actions(options=options)]


def test_no_credentials_or_only_garbage_is_refused(fed: Any, endpoint: Any) -> None:
    client = _raw(fed, endpoint)
    with pytest.raises(flight.FlightUnauthenticatedError, match="needs a user name and password"):
        list(client.list_actions())
    garbage = flight.FlightCallOptions(headers=[(b"authorization", b"Basic !!!not-base64!!!")])
    with pytest.raises(flight.FlightUnauthenticatedError, match="malformed Basic"):
        list(client.list_actions(options=garbage))


def test_removed_user_or_new_password_ends_its_tokens(fed: Any, endpoint: Any) -> None:
    accounts = Accounts.of(fed, "p1")
    accounts.add("dave", PASSWORD)
    client = _raw(fed, endpoint)
    options = flight.FlightCallOptions(headers=[client.authenticate_basic_token("dave", PASSWORD)])
    assert list(client.list_actions(options=options))
    accounts.passwd("dave", PASSWORD + "2")  # a new password ends the old sessions
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.list_actions(options=options))
    options = flight.FlightCallOptions(headers=[client.authenticate_basic_token("dave", PASSWORD + "2")])
    assert list(client.list_actions(options=options))
    accounts.remove("dave")
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.list_actions(options=options))


def test_sessions_are_not_shared_between_users(fed: Any, endpoint: Any) -> None:
    with _adbc(fed, endpoint, "alice", PASSWORD) as a, _adbc(fed, endpoint, "bob", PASSWORD) as b:
        with a.cursor() as cur:
            cur.execute("SET fedsql.mode = 'sizes'")
        options = json.loads(b.adbc_connection.get_option("adbc.flight.sql.session.options"))
        assert "fedsql.mode" not in options


def test_dbapi_user_and_password(fed: Any, federation: Any) -> None:
    import fedsql
    from fedsql import errors

    config, data = federation
    with fedsql.connect(str(config), "p1", user="bob", password=PASSWORD) as conn:
        assert conn.execute("SELECT COUNT(*) FROM p1.t WHERE id >= -1").fetchone()[0] == data["p1.t"].num_rows
    mine = [e for e in _audit_queries(fed) if e.get("sql", "").startswith("SELECT COUNT(*) FROM p1.t WHERE id >= -1")]
    assert mine and mine[-1]["user"] == "bob"
    for user, password in (("bob", "wrong-password"), ("nobody-here", "wrong-password")):
        with pytest.raises(errors.AuthenticationError, match="invalid user name or password"):
            fedsql.connect(str(config), "p1", user=user, password=password)
    with pytest.raises(errors.InterfaceError, match="both user and password"):
        fedsql.connect(str(config), "p1", user="bob")


def test_sqlalchemy_url_user_password() -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from connectors.sqlalchemy_dialect import FedsqlDialect

    url = sqlalchemy.engine.make_url("fedsql://alice:pw%40x@/tmp/fed.toml?party=p1")
    assert FedsqlDialect().create_connect_args(url)[1] == {
        "config": "tmp/fed.toml", "party": "p1", "user": "alice", "password": "pw@x"}
    legacy = sqlalchemy.engine.make_url("fedsql://p1@/tmp/fed.toml")
    assert FedsqlDialect().create_connect_args(legacy)[1] == {"config": "tmp/fed.toml", "party": "p1"}


def test_the_node_serves_both_endpoints_from_the_config(tmp_path: Path) -> None:
    """`flight` and `flight_password` in the config: the real node process starts both; the
    password endpoint refuses the client certificate alone and accepts an account."""
    from fedsql.launcher import free_ports
    from tests.adversarial.harness import running, standard_federation

    config, data = standard_federation(tmp_path)
    cert_port, pw_port = free_ports(2)
    text = config.read_text().replace(
        '[parties.p1]\n', f'[parties.p1]\nflight = "127.0.0.1:{cert_port}"\nflight_password = "127.0.0.1:{pw_port}"\n', 1)
    config.write_text(text)
    fed = load_config(config)
    tls.ensure_local_keys(fed, list(fed.parties))
    Accounts.of(fed, "p1").add("erin", PASSWORD)
    with running(config) as running_fed:
        assert running_fed.fed.parties["p1"].flight_password == f"127.0.0.1:{pw_port}"
        server = type("Endpoint", (), {"port": pw_port})()
        with _adbc(fed, server, "erin", PASSWORD) as conn:
            assert _scalar(conn, "SELECT COUNT(*) FROM p1.t WHERE id >= -2") == data["p1.t"].num_rows
        assert '"user":"erin"' in running_fed.audit_text("p1").replace(" ", "")
        client = _raw(fed, server)
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(client.list_actions())


def test_shell_user_option_asks_for_the_password(fed: Any, federation: Any, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: Any) -> None:
    from fedsql import cli

    config, data = federation
    monkeypatch.setattr("getpass.getpass", lambda prompt="": PASSWORD)
    code = cli.main(["shell", str(config), "--party", "p1", "--user", "carol",
                     "-c", "SELECT COUNT(*) FROM p1.t WHERE id >= -3;"])
    out = capsys.readouterr()
    assert code == 0, out.err
    mine = [e for e in _audit_queries(fed) if e.get("sql", "").startswith("SELECT COUNT(*) FROM p1.t WHERE id >= -3")]
    assert mine and mine[-1]["user"] == "carol"
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "wrong-password")
    assert cli.main(["shell", str(config), "--party", "p1", "--user", "carol", "-c", "SELECT 1;"]) != 0
    err = capsys.readouterr().err
    assert "invalid user name or password" in err and "Traceback" not in err


def test_one_users_ticket_or_prepared_handle_is_useless_to_another(fed: Any, endpoint: Any) -> None:
    """A result ticket or prepared-statement handle that leaks (a log, a proxy) does not let
    another account fetch the rows or run the statement."""
    from connectors.flightsql import FlightSql_pb2 as fsql

    client = _raw(fed, endpoint)
    alice = flight.FlightCallOptions(headers=[client.authenticate_basic_token("alice", PASSWORD)])
    bob = flight.FlightCallOptions(headers=[client.authenticate_basic_token("bob", PASSWORD)])
    query = flight.FlightDescriptor.for_command(fs.pack(fsql.CommandStatementQuery(query="SELECT COUNT(*) FROM p1.t")))
    ticket = client.get_flight_info(query, options=alice).endpoints[0].ticket
    with pytest.raises(pa.ArrowException, match="unknown or expired ticket"):
        client.do_get(ticket, options=bob).read_all()
    assert client.do_get(ticket, options=alice).read_all().num_rows == 1  # still alice's
    body = fs.pack(fsql.ActionCreatePreparedStatementRequest(query="SELECT COUNT(*) FROM p1.t"))
    result = next(iter(client.do_action(flight.Action("CreatePreparedStatement", body), options=alice)))
    created = fs.unpack(result.body.to_pybytes())
    prepared = flight.FlightDescriptor.for_command(fs.pack(fsql.CommandPreparedStatementQuery(
        prepared_statement_handle=created.prepared_statement_handle)))
    with pytest.raises(pa.ArrowException, match="unknown or closed prepared statement"):
        client.get_flight_info(prepared, options=bob)
    assert client.get_flight_info(prepared, options=alice).total_records == 1


def test_refused_queries_name_the_user_and_malformed_names_are_refused(fed: Any, federation: Any) -> None:
    import fedsql
    from fedsql import errors
    from fedsql.client import NodeClient

    config, _ = federation
    with fedsql.connect(str(config), "p1", user="alice", password=PASSWORD) as conn:
        with pytest.raises(errors.PolicyViolation):
            conn.execute("SELECT id FROM p2.t WHERE id > 7")
    lines = [json.loads(x) for x in audit_path(fed, "p1").read_text(encoding="utf-8").splitlines()]
    refused = [e for e in lines if e.get("event") == "refused" and "WHERE id > 7" in e.get("sql", "")]
    assert refused and refused[-1]["user"] == "alice"
    # the test process holding p1's client certificate sends a user name built to forge log lines
    with NodeClient(fed.parties["p1"].address, party="p1", config_path=str(config)) as client:
        with pytest.raises(errors.InterfaceError, match="invalid user name"):
            client.execute("SELECT COUNT(*) FROM p1.t", user='x", "event": "forged')


def test_passwords_and_tokens_reach_no_log_error_or_audit_record(fed: Any, endpoint: Any, federation: Any,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Every login path — good, wrong, malformed, forged or expired token, the DB-API — leaves the
    password, its Basic encoding and the bearer token out of the endpoint's log, the node's log,
    the audit file and every error message."""
    import logging

    import fedsql

    config, _ = federation
    secret = "Zq7-unique-secret-pw!"
    accounts = Accounts.of(fed, "p1")
    if not accounts.exists("frank"):
        accounts.add("frank", secret)
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    client = _raw(fed, endpoint)
    header = client.authenticate_basic_token("frank", secret)
    token = header[1].decode().split(" ", 1)[1]
    options = flight.FlightCallOptions(headers=[header])
    query = flight.FlightDescriptor.for_command(fs.pack(fs.fsql.CommandStatementQuery(
        query="SELECT COUNT(*) FROM p1.t WHERE id >= -4")))
    assert client.do_get(client.get_flight_info(query, options=options).endpoints[0].ticket,
                         options=options).read_all().num_rows == 1
    basic = base64.b64encode(f"frank:{secret}x".encode()).decode()
    for headers in ([(b"authorization", f"Basic {basic}".encode())],
                    [(b"authorization", f"Bearer {token}x".encode())],
                    [(b"authorization", f"Basic {secret}".encode())]):
        with pytest.raises(flight.FlightError) as caught:
            list(client.list_actions(options=flight.FlightCallOptions(headers=headers)))
        seen.append(str(caught.value))
    with pytest.raises(Exception) as caught:
        fedsql.connect(str(config), "p1", user="frank", password=secret + "x")
    seen.append(str(caught.value))
    with pytest.raises(Exception) as caught:
        with _adbc(fed, endpoint, "frank", secret + "x") as conn:
            _scalar(conn, "SELECT 1")
    seen.append(str(caught.value))
    texts = {"errors": "\n".join(seen), "endpoint log": caplog.text,
             "audit": audit_path(fed, "p1").read_text(encoding="utf-8"),
             "node log": (Path(config).parent / "logs" / "p1.log").read_text(encoding="utf-8", errors="replace")}
    for where, text in texts.items():
        for needle in (secret, basic, base64.b64encode(f"frank:{secret}".encode()).decode().rstrip("="), token):
            assert needle not in text, f"a credential is in the {where}"


def test_adbc_client_after_its_token_expired_is_told_to_log_in_again(fed: Any, federation: Any) -> None:
    """The ADBC driver keeps the bearer token of its login: once it expires, its next statement is
    refused as unauthenticated, saying so (not a generic failure), and a new connection works."""
    _, data = federation
    server = _start(fed, token_ttl=1.5)
    try:
        with _adbc(fed, server, "alice", PASSWORD) as conn:
            assert _scalar(conn, "SELECT COUNT(*) FROM p1.t WHERE id >= -5") == data["p1.t"].num_rows
            time.sleep(2.0)
            with pytest.raises(adbc.Error, match="unknown or expired") as caught:
                _scalar(conn, "SELECT COUNT(*) FROM p1.t WHERE id >= -5")
            assert PASSWORD not in str(caught.value)
        with _adbc(fed, server, "alice", PASSWORD) as conn:
            assert _scalar(conn, "SELECT 1") == 1
    finally:
        server.shutdown()
