"""Party identities and mutual TLS: keys, pinned certificates, gRPC credentials.

Design (docs/security.md, docs/decisions.md D-TLS): every party creates its own
key pair and a *self-signed* certificate (`fedsql keys CONFIG --party NAME`);
the private key never leaves the party. The federation pins each party's
certificate — the file at `parties.NAME.certificate`, optionally checked
against `parties.NAME.certificate_sha256` written into the shared config — so
there is no federation CA whose holder could mint any party's identity.

* Node certificates are end-entity certificates (CA:FALSE, no keyCertSign):
  trusting party B's certificate never lets B vouch for a certificate in A's
  name. Their subject alternative name is `<party>.fedsql`, which a dialing
  node demands (`grpc.ssl_target_name_override`) of the peer it meant to reach.
* A node serves only TLS and requires a client certificate. It trusts the
  federation's node certificates (peers) and its own party's *client*
  certificate (its users' shell / DB-API / Flight front), nothing else.
* Each RPC then checks the presented certificate itself (`identify`): peer RPCs
  need the certificate of the party named as sender/issuer, client RPCs need
  the own client certificate. The TLS layer only proves "someone listed".

Files (defaults, relative to the config file's directory):
  .fedsql/certs/<party>.crt      public: give it to every other party
  .fedsql/<party>/node.key       secret: the node's private key (0600)
  .fedsql/<party>/client.crt     the party's client certificate
  .fedsql/<party>/client.key     secret: its key (0600), for the party's users
"""

from __future__ import annotations

import datetime
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsql import errors
from fedsql.config import Federation
from fedsql.state import certificates_dir, write_private
from fedsql.state import state_dir as _state_dir

SERVER_NAME_SUFFIX = ".fedsql"
CLIENT_NAME_SUFFIX = ".client.fedsql"
VALID_DAYS = 3650


def server_name(party: str) -> str:
    return f"{party}{SERVER_NAME_SUFFIX}"


def state_dir(fed: Federation, party: str) -> Path:
    """`<config dir>/.fedsql/<party>/`: the party's private state (keys, audit, DP ledger)."""
    return _state_dir(fed.path, party)


@dataclass(frozen=True)
class IdentityPaths:
    certificate: Path
    private_key: Path
    client_certificate: Path
    client_key: Path
    certificate_sha256: str | None


def paths(fed: Federation, party: str) -> IdentityPaths:
    """Where party's identity files are: config keys, else the defaults above."""
    cfg = fed.party(party)
    base = fed.path.parent

    def pick(attr: str, default: Path) -> Path:
        value = getattr(cfg, attr, None)
        if not value:
            return default
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base / p)

    own = state_dir(fed, party)
    return IdentityPaths(
        certificate=pick("certificate", certificates_dir(fed.path) / f"{party}.crt"),
        private_key=pick("private_key", own / "node.key"),
        client_certificate=pick("client_certificate", own / "client.crt"),
        client_key=pick("client_key", own / "client.key"),
        certificate_sha256=(getattr(cfg, "certificate_sha256", None) or None),
    )


# -- generation ---------------------------------------------------------------------


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _self_signed(common_name: str, dns_name: str, federation: str) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM): ECDSA P-256, end entity, self-signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"fedsql federation {federation}"[:64]),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
    ])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                          data_encipherment=False, key_agreement=True, key_cert_sign=False,
                          crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER encoding, hex (what `certificate_sha256` pins)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise errors.ConfigError(f"not a PEM certificate: {exc}") from None
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def create_keys(fed: Federation, party: str, force: bool = False) -> list[Path]:
    """`fedsql keys`: create the party's node key + certificate and client key + certificate.

    Refuses to overwrite existing files unless `force` (a new certificate has to be
    re-distributed to every other party)."""
    p = paths(fed, party)
    existing = [f for f in (p.private_key, p.certificate, p.client_key, p.client_certificate) if f.exists()]
    if existing and not force:
        raise errors.ConfigError(
            f"party '{party}' already has identity files ({', '.join(str(f) for f in existing)}); "
            "use --force to replace them (then give the new certificate to every other party)"
        )
    key, cert = _self_signed(f"fedsql node {party}", server_name(party), fed.name)
    ckey, ccert = _self_signed(f"fedsql client of {party}", f"{party}{CLIENT_NAME_SUFFIX}", fed.name)
    write_private(p.private_key, key)
    _write_public(p.certificate, cert)
    write_private(p.client_key, ckey)
    write_private(p.client_certificate, ccert)
    return [p.private_key, p.certificate, p.client_key, p.client_certificate]


def ensure_local_keys(fed: Federation, parties: list[str]) -> list[str]:
    """For federations run on one machine (`fedsql up`, demo, tests): create the identity
    of every listed party that has none yet. A party with a certificate but no key is
    someone else's and is left alone (its node will fail with a clear error)."""
    created = []
    for party in parties:
        p = paths(fed, party)
        if not p.certificate.exists() and not p.private_key.exists():
            create_keys(fed, party, force=True)
            created.append(party)
    return created


def pin_in_config(fed: Federation, parties: list[str]) -> list[str]:
    """Write `certificate_sha256` into the federation file for `parties` that have no pin yet.

    For local federations (`fedsql up`, the demo, tests) whose keys were just made here: from
    then on a certificate file swapped under `.fedsql/certs/` is refused, because the trust
    decision lives in the federation file. The line goes right under the party's
    `[parties.NAME]` header; a party written another way (inline table, dotted keys) is
    left unpinned and returned, so the caller can say so. Returns the parties left unpinned."""
    import re

    text = fed.path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    unpinned = []
    for party in parties:
        if paths(fed, party).certificate_sha256:
            continue
        header = re.compile(r'^\s*\[\s*parties\s*\.\s*("?)' + re.escape(party) + r'\1\s*\]\s*(#.*)?$')
        at = next((i for i, line in enumerate(lines) if header.match(line.rstrip("\r\n"))), None)
        if at is None:
            unpinned.append(party)
            continue
        fp = fingerprint(paths(fed, party).certificate.read_bytes())
        lines.insert(at + 1, f'certificate_sha256 = "{fp}"   # pinned by fedsql when it made this key\n')
    new_text = "".join(lines)
    if new_text != text:
        tmp = fed.path.with_name(fed.path.name + ".tmp")
        tmp.write_text(new_text, encoding="utf-8")
        from fedsql.config import load_config

        try:
            load_config(tmp)  # never leave a federation file that does not load
        except errors.Error:
            tmp.unlink(missing_ok=True)
            return list(parties)
        os.replace(tmp, fed.path)
    return unpinned


# -- loading ------------------------------------------------------------------------


def _read(path: Path, what: str, party: str, fed: Federation, fix: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise errors.ConfigError(f"{what} of party '{party}' not found at {path}; {fix}") from None
    except OSError as exc:
        raise errors.ConfigError(f"cannot read the {what} of party '{party}' at {path}: {exc}") from None


def _keys_cmd(fed: Federation, party: str) -> str:
    return f"`fedsql keys {fed.path} --party {party}`"


def certificate_of(fed: Federation, party: str) -> bytes:
    p = paths(fed, party)
    pem = _read(p.certificate, "the certificate", party, fed,
                f"party '{party}' creates it with {_keys_cmd(fed, party)} and gives it to every other party "
                f"(local federations: `fedsql up {fed.path}` creates missing keys)")
    fp = fingerprint(pem)
    if p.certificate_sha256 and fp != p.certificate_sha256.lower().replace(":", ""):
        raise errors.ConfigError(
            f"the certificate of party '{party}' at {p.certificate} has SHA-256 {fp}, but "
            f"parties.{party}.certificate_sha256 in {fed.path} pins {p.certificate_sha256}; refusing it"
        )
    return pem


class Identity:
    """Everything one process needs to speak mutual TLS as (or to) a party.

    `Identity(fed, party)` = the node of `party`; `.client(fed, party)` = a user of it.
    """

    def __init__(self, fed: Federation, party: str, *, node: bool = True):
        self.fed = fed
        self.party = party
        p = paths(fed, party)
        if node:
            self.key = _read(p.private_key, "the private key", party, fed,
                             f"create the party's keys with {_keys_cmd(fed, party)}")
            self.cert = certificate_of(fed, party)
        else:
            fix = f"create the party's keys with {_keys_cmd(fed, party)} (or copy its client.key/client.crt here)"
            self.key = _read(p.client_key, "the client key", party, fed, fix)
            self.cert = _read(p.client_certificate, "the client certificate", party, fed, fix)
        self._peer_certs: dict[str, bytes] | None = None
        self._by_fp: dict[str, str] | None = None
        self._cache: dict[bytes, str | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def client(cls, fed: Federation, party: str) -> "Identity":
        return cls(fed, party, node=False)

    # -- trust ----------------------------------------------------------------------

    def peer_certificates(self) -> dict[str, bytes]:
        if self._peer_certs is None:
            self._peer_certs = {p: certificate_of(self.fed, p) for p in self.fed.parties}
        return self._peer_certs

    def _fingerprints(self) -> dict[str, str]:
        """fingerprint → identity name: "<party>" for nodes, "client:<me>" for own clients."""
        if self._by_fp is None:
            out = {fingerprint(pem): p for p, pem in self.peer_certificates().items()}
            if len(out) != len(self.peer_certificates()):
                raise errors.ConfigError(f"{self.fed.path}: two parties share the same certificate")
            client = paths(self.fed, self.party).client_certificate
            if client.exists():
                out.setdefault(fingerprint(client.read_bytes()), f"client:{self.party}")
            self._by_fp = out
        return self._by_fp

    def check(self) -> None:
        """Load every certificate now, so a node with a missing one fails at start-up."""
        self._fingerprints()

    # -- credentials ----------------------------------------------------------------

    def server_credentials(self) -> Any:
        import grpc

        roots = list(self.peer_certificates().values())
        client = paths(self.fed, self.party).client_certificate
        if client.exists():
            roots.append(client.read_bytes())
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=b"".join(roots),
                                           require_client_auth=True)

    def channel_credentials(self, target: str) -> tuple[Any, list[tuple[str, Any]]]:
        """(credentials, extra channel options) to dial `target`'s node as this identity;
        only `target`'s pinned certificate is trusted and its name is required."""
        import grpc

        root = certificate_of(self.fed, target)
        creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=self.key,
                                             certificate_chain=self.cert)
        return creds, [("grpc.ssl_target_name_override", server_name(target))]

    def secure_channel(self, target: str, options: list[tuple[str, Any]] | None = None) -> Any:
        import grpc

        creds, extra = self.channel_credentials(target)
        return grpc.secure_channel(self.fed.parties[target].address, creds, options=list(options or []) + extra)

    # -- authentication of a call ---------------------------------------------------

    def identify(self, context: Any) -> str | None:
        """Who is calling: a party name (its node certificate), "client:<me>", or None."""
        try:
            auth = context.auth_context() or {}
        except Exception:  # noqa: BLE001 - no auth context: not authenticated
            return None
        pems = auth.get("x509_pem_cert") or []
        if not pems:
            return None
        pem = pems[0]
        with self._lock:
            if pem in self._cache:
                return self._cache[pem]
        try:
            who = self._fingerprints().get(fingerprint(pem))
        except errors.Error:
            who = None
        with self._lock:
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[pem] = who
        return who


def client_channel(fed: Federation, party: str, options: list[tuple[str, Any]] | None = None) -> Any:
    """A TLS channel to `party`'s own node with the party's client certificate."""
    return Identity.client(fed, party).secure_channel(party, options)
