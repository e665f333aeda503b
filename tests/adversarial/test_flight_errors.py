"""Low (issue #11): Flight SQL errors carried Python tracebacks with the server's paths and source.

A client of p1's Flight SQL endpoint sends statements that fail; what it gets back is fedsql's
message (and, for the INVALID_ARGUMENT/UNIMPLEMENTED codes, pyarrow's fixed stub naming no
server file), never the server's paths, source lines or internal frames. Details go to the log.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from fedsql import errors, tls
from fedsql.launcher import free_ports
from tests.adversarial.harness import REPO, running, standard_federation

pytestmark = pytest.mark.e2e
adbc = pytest.importorskip("adbc_driver_flightsql.dbapi")
flight = pytest.importorskip("pyarrow.flight")


def _server_details(message: str) -> list[str]:
    found = [str(REPO)] if str(REPO) in message else []
    found += re.findall(r'File "[^"<]*\.py"', message)  # a server file (pyarrow's own .pyx stub is fixed)
    return found + [w for w in ("connectors/", "fedsql/", "planner/", "executors/") if w in message]


def test_flight_errors_carry_fedsqls_message_only(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    config, _ = standard_federation(tmp_path)
    text = config.read_text(encoding="utf-8")
    p1 = re.search(r'\[parties\.p1\]\naddress = "[^"]+"\n', text)
    config.write_text(text[:p1.end()] + f'flight = "127.0.0.1:{port}"\n' + text[p1.end():], encoding="utf-8")
    with running(config) as fed:
        paths = tls.paths(fed.fed, "p1")
        options = {
            "adbc.flight.sql.client_option.tls_root_certs": paths.certificate.read_text(),
            "adbc.flight.sql.client_option.tls_override_hostname": tls.server_name("p1"),
            "adbc.flight.sql.client_option.mtls_cert_chain": paths.client_certificate.read_text(),
            "adbc.flight.sql.client_option.mtls_private_key": paths.client_key.read_text(),
        }
        with adbc.connect(f"grpc+tls://127.0.0.1:{port}", db_kwargs=options) as conn:
            for sql, kind in (("SELEC 1", "SqlSyntaxError"), ("SELECT id FROM p2.t", "PolicyViolation"),
                              ("SELECT COUNT(*) FROM nosuch", "UnknownObjectError")):
                with conn.cursor() as cur, pytest.raises(Exception) as info:
                    cur.execute(sql)
                assert kind in str(info.value)
                assert not _server_details(str(info.value)), str(info.value)


def test_an_internal_failure_reaches_the_client_without_details() -> None:
    from connectors.flight_sql import _guarded

    failures = [ValueError(f"boom at {REPO}/secret"), pa.ArrowInvalid("inner"), errors.SqlSyntaxError("bad")]

    class Server(flight.FlightServerBase):
        @_guarded
        def do_action(self, context, action):
            raise failures[int(action.type)]

    server = Server("grpc://127.0.0.1:0")  # a bare test server: only the guard is under test
    threading.Thread(target=server.serve, daemon=True).start()
    try:
        client = flight.connect(f"grpc://127.0.0.1:{server.port}")
        for i in range(len(failures)):
            with pytest.raises(Exception) as info:
                list(client.do_action(flight.Action(str(i), b"")))
            assert not _server_details(str(info.value)), str(info.value)
            assert "boom" not in str(info.value) and "secret" not in str(info.value)
    finally:
        server.shutdown()
