"""Issue #14 item 2: a table read from a Flight SQL endpoint (here another fedsql federation's node).

Federation B runs its own nodes; its party p1 serves Flight SQL with passwords (`flight_password`
listener, TLS with p1's node certificate) and account `alice`. Federation A's p1 declares its
table `t` as `source = "grpc+tls://alice@…?tls_root_certificate=…&tls_server_name=…"`, table
`p1.t`: the password sits in A's p1 secrets file, B's certificate is pinned. A union aggregate
over A equals DuckDB over the pooled rows, and the GROUP BY fragment reaches B as SQL (B's
audit log). A wrong password and a certificate that is not the pinned one are clear errors
naming the party, table and source, never the password. On the code before this change A does
not load (`grpc+tls://` sources were "not supported yet").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pytest

import fedsql
from tests.adversarial.harness import running, standard_federation

pytestmark = pytest.mark.e2e
pytest.importorskip("adbc_driver_flightsql.dbapi")

PASSWORD = "flight-source-pw!"
QUERY = "SELECT k, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY k"


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, int]]:
    from connectors import flight_sql as fs
    from fedsql.config import load_config
    from fedsql.users import Accounts, Authenticator

    config, _ = standard_federation(tmp_path_factory.mktemp("remote_fed"))
    with running(config) as fed_b:
        fed = load_config(config)
        Accounts.of(fed, "p1").add("alice", PASSWORD)
        files = fs.party_flight_tls(fed, "p1")
        server = fs.start_flight_server(fed, "p1", fed.parties["p1"].address, "127.0.0.1:0",
                                        tls_certificates=files["tls_certificates"],
                                        auth=Authenticator(Accounts.of(fed, "p1")))
        try:
            yield fed_b, fed, server.port
        finally:
            server.shutdown()


def _federation(directory: Path, fed_b: Any, port: int, password: str, pin: Path) -> tuple[Path, dict[str, Any]]:
    from fedsql import tls

    config, data = standard_federation(directory)
    url = (f"grpc+tls://alice@127.0.0.1:{port}?tls_root_certificate={pin}"
           f"&tls_server_name={tls.server_name('p1')}")
    text = config.read_text().replace('source = "p1_t.parquet"', f'source = "{url}"\ntable = "p1.t"', 1)
    config.write_text(text, encoding="utf-8")
    secrets = config.parent / ".fedsql" / "p1" / "secrets.toml"
    secrets.parent.mkdir(parents=True, exist_ok=True)
    secrets.write_text(f'[tables.t]\npassword = "{password}"\n')
    secrets.chmod(0o600)
    return config, data


def test_union_aggregate_over_a_flight_sql_source(remote: tuple[Any, Any, int], tmp_path: Path) -> None:
    from fedsql import tls

    fed_b_running, fed_b, port = remote
    config, data = _federation(tmp_path, fed_b, port, PASSWORD, tls.paths(fed_b, "p1").certificate)
    db = duckdb.connect()
    db.register("t", data["t"])  # B's p1.t is A's p1.t (same seed): the pooled rows
    want = sorted(((k, n, int(s)) for k, n, s in db.execute(QUERY).fetchall()), key=repr)
    with running(config) as fed_a, fed_a.connect("p1") as conn:
        got = sorted(((k, n, int(s)) for k, n, s in conn.execute(QUERY).fetchall()), key=repr)
        assert got == want
        with fed_a.connect("p2") as other:  # another party's query reads p1's part through the source too
            assert sorted(((k, n, int(s)) for k, n, s in other.execute(QUERY).fetchall()), key=repr) == want
        assert PASSWORD not in fed_a.node_log("p1")
    records = [json.loads(line) for line in (fed_b_running.state_dir("p1") / "audit.log").read_text().splitlines()]
    pushed = [r["sql"] for r in records if r.get("event") == "query" and r.get("user") == "alice"]
    assert any("GROUP BY" in sql and 'FROM "p1"."t"' in sql for sql in pushed)  # the fragment ran at B, as SQL


def test_wrong_password_and_unpinned_certificate(remote: tuple[Any, Any, int], tmp_path: Path) -> None:
    from fedsql import tls

    _, fed_b, port = remote
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    config, _ = _federation(wrong, fed_b, port, "not-the-password", tls.paths(fed_b, "p1").certificate)
    with running(config) as fed_a, fed_a.connect("p2") as conn:
        with pytest.raises(fedsql.OperationalError, match="party 'p1': table 't' .*refused the login") as info:
            conn.execute(QUERY)
        assert "not-the-password" not in str(info.value) and "not-the-password" not in fed_a.node_log("p1")
    other = tmp_path / "other"
    other.mkdir()
    config, _ = _federation(other, fed_b, port, PASSWORD, tls.paths(fed_b, "p2").certificate)  # not B's p1 cert
    with running(config) as fed_a, fed_a.connect("p2") as conn:
        with pytest.raises(fedsql.OperationalError, match="party 'p1': table 't' .*cannot connect"):
            conn.execute(QUERY)
