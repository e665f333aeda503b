"""High 6 and Low (issue #11): Flight SQL in plaintext, and tracebacks in Flight SQL errors.

With `flight = "grpc://127.0.0.1:P"` the node served Flight SQL in plaintext with no client
authentication: anyone reaching the port read p1's rows as p1. The attacker here is any
process on the network with no certificate. Now the configuration is refused at load with a
message saying what to write, and the endpoint has no plaintext mode at all.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fedsql import errors
from fedsql.config import load_config
from fedsql.launcher import free_ports
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e
adbc = pytest.importorskip("adbc_driver_flightsql.dbapi")


def _with_flight(tmp_path: Path, address: str) -> Path:
    config, _ = standard_federation(tmp_path)
    text = config.read_text(encoding="utf-8")
    p1 = re.search(r'\[parties\.p1\]\naddress = "[^"]+"\n', text)
    config.write_text(text[:p1.end()] + f'flight = "{address}"\n' + text[p1.end():], encoding="utf-8")
    return config


def test_a_plaintext_flight_address_is_refused_and_nobody_reads_rows_without_a_certificate(tmp_path: Path) -> None:
    port = free_ports(1)[0]
    config = _with_flight(tmp_path, f"grpc://127.0.0.1:{port}")
    leaked, refused = None, None
    try:
        with running(config):
            # the attacker: a plain connection, no certificate at all
            with adbc.connect(f"grpc://127.0.0.1:{port}") as conn, conn.cursor() as cur:
                cur.execute("SELECT id FROM p1.t")
                leaked = cur.fetchall()
    except errors.ConfigError as exc:
        refused = exc
    assert leaked is None, f"read {len(leaked)} rows of p1 without a certificate"
    assert refused is not None
    message = str(refused)
    assert "parties.p1.flight" in message and "TLS" in message and f'flight = "127.0.0.1:{port}"' in message


def test_grpc_tls_scheme_is_accepted_as_host_port(tmp_path: Path) -> None:
    config = _with_flight(tmp_path, "grpc+tls://127.0.0.1:32010")
    assert load_config(config).parties["p1"].flight == "127.0.0.1:32010"


def test_the_endpoint_has_no_plaintext_mode(tmp_path: Path) -> None:
    from connectors import flight_sql as fs

    config, _ = standard_federation(tmp_path)
    fed = load_config(config)
    for location, kwargs in (("127.0.0.1:0", {}), ("grpc://127.0.0.1:0", {"tls_certificates": [(b"c", b"k")],
                                                                          "client_ca": b"c"})):
        with pytest.raises(errors.ConfigError, match="TLS"):
            fs.start_flight_server(fed, "p1", fed.parties["p1"].address, location, **kwargs)


def test_fedsql_flight_prints_the_tls_url_clients_use(tmp_path: Path) -> None:
    """Issue #15 item 7: `fedsql flight` printed a grpc:// URL for its TLS endpoint (clients using
    it were refused). The line names grpc+tls:// for both listeners, and an ADBC client given
    exactly the printed URL connects."""
    import os
    import select
    import subprocess
    import sys
    import warnings

    from fedsql import tls

    cert_port, pw_port = free_ports(2)
    config = _with_flight(tmp_path, f"127.0.0.1:{cert_port}")
    text = config.read_text(encoding="utf-8").replace(
        f'flight = "127.0.0.1:{cert_port}"\n', f'flight = "127.0.0.1:{cert_port}"\nflight_password = "127.0.0.1:{pw_port}"\n')
    config.write_text(text, encoding="utf-8")
    fed = load_config(config)
    tls.ensure_local_keys(fed, list(fed.parties))
    env = {k: v for k, v in os.environ.items() if k != "FEDSQL_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "fedsql.cli", "flight", str(config), "--party", "p1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        assert f"grpc+tls://127.0.0.1:{cert_port} (client certificate)" in line, line
        assert f"grpc+tls://127.0.0.1:{pw_port} (user name and password)" in line, line
        assert "grpc://" not in line
        url = re.search(r"grpc\+tls://127\.0\.0\.1:\d+", line).group(0)
        p = tls.paths(fed, "p1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            conn = adbc.connect(url, db_kwargs={
                "adbc.flight.sql.client_option.tls_root_certs": p.certificate.read_text(),
                "adbc.flight.sql.client_option.tls_override_hostname": tls.server_name("p1"),
                "adbc.flight.sql.client_option.mtls_cert_chain": p.client_certificate.read_text(),
                "adbc.flight.sql.client_option.mtls_private_key": p.client_key.read_text()})
        with conn:
            catalogs = conn.adbc_get_objects(depth="catalogs").read_all().to_pylist()
            assert [c["catalog_name"] for c in catalogs] == [fed.name]  # answered without the node
    finally:
        proc.terminate()
        proc.wait(timeout=30)
