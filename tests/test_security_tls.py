"""Identity and transport: mutual TLS with pinned certificates, who may call what,
plans every party verifies (issue #6, items 1 and 2).

Runs against the session federation (p1, p2, p3), whose keys `start_federation`
created; the test process loads those keys to act as a client, as a peer node,
or as a stranger with a certificate of its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest

import fedsql
from executors.proto import peer_pb2, peer_pb2_grpc
from fedsql import errors, tls
from fedsql.client import NodeClient
from fedsql.config import load_config
from fedsql.proto import node_pb2 as pb
from fedsql.proto import node_pb2_grpc as rpc

pytestmark = pytest.mark.e2e

SQL = "SELECT g, COUNT(*) AS n, SUM(x) AS sx FROM t GROUP BY g ORDER BY g"


@pytest.fixture(scope="module")
def fed(federation: tuple[Path, Any]):
    return load_config(federation[0])


def _stranger_channel(fed, target: str, name: str | None = None) -> grpc.Channel:
    """A TLS channel with a self-made certificate that claims to be `name`'s node."""
    key, cert = tls._self_signed(f"fedsql node {name or 'p1'}", tls.server_name(name or "p1"), fed.name)
    creds = grpc.ssl_channel_credentials(tls.certificate_of(fed, target), key, cert)
    return grpc.secure_channel(fed.parties[target].address, creds,
                               options=[("grpc.ssl_target_name_override", tls.server_name(target))])


def _run_request(fed, issuer: str = "p1", sql: str = SQL, plan_hash: str | None = None, qid: str = "q-test"):
    import time

    from fedsql.catalog import decode_described
    from planner.compile import compile_query  # the planner every node runs

    if plan_hash is None:
        schemas = {}

        def schema_of(party: str, table: str):
            key = (party, table)
            if key not in schemas:
                client = rpc.NodeStub(tls.Identity(fed, "p1").secure_channel(party))
                reply = client.Describe(pb.DescribeRequest(tables=[table]), timeout=10)
                schemas[key] = decode_described(party, table, reply.tables)
            return schemas[key]

        plan_hash = compile_query(sql, fed, issuer, {}, schema_of).plan.hash
    return pb.RunRequest(query_id=qid, issuer=issuer, sql=sql, settings={}, plan_hash=plan_hash,
                         deadline_unix=time.time() + 20)


# -- transport ---------------------------------------------------------------------------


def test_plaintext_client_refused(fed) -> None:
    client = NodeClient(fed.parties["p1"].address, party="p1", secure=False)
    with pytest.raises(errors.PartyUnavailable):
        client.health(timeout=3)
    client.close()


def test_plaintext_peer_message_refused(fed) -> None:
    with grpc.insecure_channel(fed.parties["p2"].address) as ch:
        with pytest.raises(grpc.RpcError) as info:
            peer_pb2_grpc.PeerStub(ch).Send(peer_pb2.PeerMessage(query_id="q", sender="p1", tag="t"), timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("target", ["p1", "p2"])
def test_unknown_certificate_refused_at_handshake(fed, target: str) -> None:
    with _stranger_channel(fed, target) as ch:
        with pytest.raises(grpc.RpcError) as info:
            rpc.NodeStub(ch).Health(pb.Empty(), timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_refuses_a_node_with_another_certificate(fed) -> None:
    """Dialing p1's address while expecting p2's certificate fails: the name is pinned."""
    ident = tls.Identity(fed, "p3")
    creds, _ = ident.channel_credentials("p2")
    with grpc.secure_channel(fed.parties["p1"].address, creds,
                             options=[("grpc.ssl_target_name_override", tls.server_name("p2"))]) as ch:
        with pytest.raises(grpc.RpcError):
            rpc.NodeStub(ch).Health(pb.Empty(), timeout=3)


def test_own_client_certificate_works(federation, fed) -> None:
    with fedsql.connect(str(federation[0]), party="p2") as conn:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM t")
        assert cur.fetchone()[0] == 200


def test_peer_certificate_cannot_act_as_client(fed) -> None:
    """p2's node certificate is trusted by p1, but not for issuing queries at p1."""
    with tls.Identity(fed, "p2").secure_channel("p1") as ch:
        stub = rpc.NodeStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Execute(pb.ExecuteRequest(sql="SELECT COUNT(*) FROM t"), timeout=10))
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "client certificate of party 'p1'" in info.value.details()
        assert stub.Health(pb.Empty(), timeout=5).party == "p1"  # health is fine for peers


def test_client_certificate_of_another_party_refused(fed) -> None:
    creds, extra = tls.Identity.client(fed, "p2").channel_credentials("p1")
    with grpc.secure_channel(fed.parties["p1"].address, creds, options=extra) as ch:
        with pytest.raises(grpc.RpcError) as info:
            rpc.NodeStub(ch).Health(pb.Empty(), timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # not even in p1's trust store


def test_client_certificate_cannot_act_as_peer(fed) -> None:
    client = Path(tls.paths(fed, "p1").client_certificate)
    assert client.exists()
    with tls.client_channel(fed, "p1") as ch:
        with pytest.raises(grpc.RpcError) as info:
            rpc.NodeStub(ch).Run(_run_request(fed), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as info:
            peer_pb2_grpc.PeerStub(ch).Send(peer_pb2.PeerMessage(query_id="q", sender="p1", tag="t"), timeout=3)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_peer_cannot_send_shares_in_another_partys_name(fed) -> None:
    with tls.Identity(fed, "p2").secure_channel("p1") as ch:
        stub = peer_pb2_grpc.PeerStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.Send(peer_pb2.PeerMessage(query_id="q-spoof", sender="p3", tag="r1"), timeout=3)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "claims sender 'p3'" in info.value.details()
        stub.Send(peer_pb2.PeerMessage(query_id="q-spoof", sender="p2", tag="r1"), timeout=3)  # own name: fine


# -- plans every party verifies ------------------------------------------------------------


@pytest.mark.parametrize("target", ["p2", "p3"])
def test_tampered_plan_hash_refused_by_every_party(fed, target: str) -> None:
    good = _run_request(fed)
    bad = pb.RunRequest()
    bad.CopyFrom(good)
    bad.plan_hash = "0" * 64
    bad.query_id = f"q-tampered-{target}"
    with tls.Identity(fed, "p1").secure_channel(target) as ch:
        reply = rpc.NodeStub(ch).Run(bad, timeout=30)
    assert not reply.ok
    assert reply.error.kind == "PlanMismatch"
    assert "differs from the plan" in reply.error.message and target in reply.error.message


@pytest.mark.parametrize("target", ["p2", "p3"])
def test_hash_of_another_query_refused(fed, target: str) -> None:
    """The issuer sends a harmless query's hash with a different SQL text."""
    other = _run_request(fed, sql="SELECT COUNT(*) FROM t")
    req = _run_request(fed, plan_hash=other.plan_hash, qid=f"q-swap-{target}")
    with tls.Identity(fed, "p1").secure_channel(target) as ch:
        reply = rpc.NodeStub(ch).Run(req, timeout=30)
    assert not reply.ok and reply.error.kind == "PlanMismatch"


@pytest.mark.parametrize("target,claimed", [("p2", "p3"), ("p3", "p2")])
def test_request_claiming_another_issuer_refused(fed, target: str, claimed: str) -> None:
    """p1 asks `target` to run a query in `claimed`'s name (with a correct plan hash for it)."""
    req = _run_request(fed, issuer=claimed, qid=f"q-claim-{target}")
    with tls.Identity(fed, "p1").secure_channel(target) as ch:
        with pytest.raises(grpc.RpcError) as info:
            rpc.NodeStub(ch).Run(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"node certificate of party '{claimed}'" in info.value.details()


def test_refusals_are_audited(fed) -> None:
    from fedsql.audit import audit_path, read_entries

    test_tampered_plan_hash_refused_by_every_party(fed, "p2")
    entries = read_entries(audit_path(fed, "p2"))
    refused = [e for e in entries if e["event"] == "refused" and e.get("query_id") == "q-tampered-p2"]
    assert refused and refused[-1]["error"]["kind"] == "PlanMismatch"
    assert refused[-1]["claimed_plan_hash"] == "0" * 64 and refused[-1]["issuer"] == "p1"


# -- keys and configuration -----------------------------------------------------------------


def _bare_config(tmp_path: Path) -> Path:
    from fedsql.launcher import free_ports

    ports = free_ports(3)
    cfg = tmp_path / "federation.toml"
    cfg.write_text("[federation]\nname = 'x'\n" + "".join(
        f"[parties.p{i}]\naddress = '127.0.0.1:{p}'\n" for i, p in enumerate(ports, 1)))
    return cfg


def _fedsql(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fedsql.cli", *args], capture_output=True, text=True, timeout=60)


def test_node_without_keys_says_which_command_to_run(tmp_path: Path) -> None:
    cfg = _bare_config(tmp_path)
    proc = _fedsql("node", str(cfg), "--party", "p1")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"fedsql keys {cfg} --party p1" in proc.stderr


def test_node_without_a_peer_certificate_names_it(tmp_path: Path) -> None:
    cfg = _bare_config(tmp_path)
    assert _fedsql("keys", str(cfg), "--party", "p1").returncode == 0
    proc = _fedsql("node", str(cfg), "--party", "p1")
    assert proc.returncode == 2 and "certificate of party 'p2' not found" in proc.stderr


def test_keys_refuses_to_overwrite_and_prints_the_pin(tmp_path: Path) -> None:
    cfg = _bare_config(tmp_path)
    first = _fedsql("keys", str(cfg), "--party", "p2")
    assert first.returncode == 0
    fp = tls.fingerprint((tmp_path / ".fedsql" / "certs" / "p2.crt").read_bytes())
    assert fp in first.stdout
    assert (tmp_path / ".fedsql" / "p2" / "node.key").stat().st_mode & 0o077 == 0
    again = _fedsql("keys", str(cfg), "--party", "p2")
    assert again.returncode == 2 and "--force" in again.stderr


def test_pinned_fingerprint_mismatch_refused(tmp_path: Path) -> None:
    cfg = _bare_config(tmp_path)
    tls.create_keys(load_config(cfg), "p1")
    cfg.write_text(cfg.read_text().replace("[parties.p1]\n", "[parties.p1]\ncertificate_sha256 = '" + "ab" * 32 + "'\n"))
    fed = load_config(cfg)
    with pytest.raises(errors.ConfigError, match="pins"):
        tls.certificate_of(fed, "p1")
    cfg.write_text(cfg.read_text().replace("ab" * 32, "zz"))
    with pytest.raises(errors.ConfigError, match="certificate_sha256"):
        load_config(cfg)


def test_garbage_certificate_is_a_config_error(tmp_path: Path) -> None:
    cfg = _bare_config(tmp_path)
    fed = load_config(cfg)
    tls.create_keys(fed, "p1")
    tls.paths(fed, "p1").certificate.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(errors.ConfigError, match="not a PEM certificate"):
        tls.certificate_of(fed, "p1")


def test_local_federations_pin_their_certificates(federation) -> None:
    """`fedsql up` / start_federation pins the keys it runs with in the federation file, so a
    certificate file swapped under .fedsql/certs/ is refused (issue #11: pins were optional)."""
    fed = load_config(federation[0])
    for party in fed.parties:
        pin = tls.paths(fed, party).certificate_sha256
        assert pin == tls.fingerprint(tls.paths(fed, party).certificate.read_bytes())


def test_a_swapped_certificate_is_refused_once_pinned(tmp_path: Path) -> None:
    cfg = _bare_config(tmp_path)
    fed = load_config(cfg)
    tls.ensure_local_keys(fed, list(fed.parties))
    assert tls.pin_in_config(fed, list(fed.parties)) == []
    fed = load_config(cfg)
    tls.Identity(fed, "p1").check()
    key, cert = tls._self_signed("fedsql node p2", tls.server_name("p2"), fed.name)  # an impostor's certificate
    tls.paths(fed, "p2").certificate.write_bytes(cert)
    with pytest.raises(errors.ConfigError, match="pins"):
        tls.Identity(fed, "p1").check()


def test_pinning_leaves_a_party_it_cannot_place(tmp_path: Path) -> None:
    cfg = _bare_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("[parties.p3]\naddress = ", "[parties]\np3.address = "))
    fed = load_config(cfg)
    tls.ensure_local_keys(fed, list(fed.parties))
    assert tls.pin_in_config(fed, list(fed.parties)) == ["p3"]
    fed = load_config(cfg)
    assert tls.paths(fed, "p1").certificate_sha256 and not tls.paths(fed, "p3").certificate_sha256
