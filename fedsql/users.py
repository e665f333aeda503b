"""User accounts of one party: password hashes, login throttling, bearer tokens.

BI tools (JDBC/ODBC/ADBC Flight SQL drivers) log in with a user name and a
password; the party's client certificate stays the other way in. Accounts live
in the party's private state directory (`.fedsql/<party>/users.json`, 0600,
replaced atomically), never in the shared config:

    {"version": 1, "users": {"alice": {"kdf": "scrypt", "n": 32768, "r": 8, "p": 1,
                                        "salt": "<base64>", "hash": "<base64>"}}}

Passwords are hashed with scrypt (memory-hard; `cryptography`, already a
dependency) under a random per-user salt; the parameters are stored per entry,
so raising them later keeps old entries verifiable. Verification is constant
time and an unknown user costs the same scrypt run as a known one, so neither
timing nor messages say whether a user exists (docs/decisions.md, D-USERS).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsql import errors

SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES = 2 ** 15, 8, 3, 32
"""scrypt cost: one of OWASP's equivalent minimums (N=2^15, r=8, p=3): 32 MiB per check, so
concurrent logins cannot exhaust the node's memory as N=2^17 (128 MiB each) could."""
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
FILE_NAME = "users.json"

LOGIN_FAILURE = "invalid user name or password (after repeated failures, wait before retrying)"
"""The one message for every refused login: wrong password, unknown user or locked out alike."""


def users_path(fed: Any, party: str) -> Path:
    """`.fedsql/<party>/users.json`: the party's accounts (private state, like its keys)."""
    from fedsql.tls import state_dir

    return state_dir(fed, party) / FILE_NAME


def check_name(name: str) -> str:
    """A user name is 1-64 of A-Z a-z 0-9 _ . @ -: it goes into audit records and log lines."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise errors.InterfaceError(
            f"invalid user name {name!r}: use 1-64 letters, digits or _ . @ - (e.g. alice or a.smith@bank)")
    return name


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise errors.InterfaceError(
            f"the password must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
    return password


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(salt: bytes, n: int, r: int, p: int) -> Any:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p)


def hash_password(password: str) -> dict[str, Any]:
    """A new entry for `password`: random salt, current parameters."""
    salt = secrets.token_bytes(16)
    key = _scrypt(salt, SCRYPT_N, SCRYPT_R, SCRYPT_P).derive(password.encode("utf-8"))
    return {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt), "hash": _b64(key)}


_DUMMY = {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
          "salt": _b64(b"\0" * 16), "hash": _b64(b"\0" * KEY_BYTES)}


def _matches(entry: dict[str, Any], password: str) -> bool:
    """Constant-time check of `password` against one entry (Scrypt.verify compares in constant time)."""
    from cryptography.exceptions import InvalidKey

    try:
        n, r, p = int(entry["n"]), int(entry["r"]), int(entry["p"])
        if entry.get("kdf") != "scrypt" or not (2 <= n <= 2 ** 20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False  # an entry fedsql did not write: never let it make us allocate gigabytes
        kdf = _scrypt(base64.b64decode(entry["salt"]), n, r, p)
        kdf.verify(password.encode("utf-8"), base64.b64decode(entry["hash"]))
        return True
    except (InvalidKey, KeyError, ValueError, TypeError):
        return False


class Accounts:
    """The accounts file of one party; re-read when it changes, so `fedsql user` acts at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[str, dict[str, Any]] = {}

    @classmethod
    def of(cls, fed: Any, party: str) -> "Accounts":
        fed.party(party)
        return cls(users_path(fed, party))

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._users = None, {}
            return self._users
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # every write is a new file (os.replace): new inode
        if stamp != self._stamp:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                users = data["users"]
                if not isinstance(users, dict):
                    raise TypeError
            except (OSError, ValueError, KeyError, TypeError):
                raise errors.ConfigError(
                    f"{self.path} is not a fedsql accounts file; restore it from a backup or remove it and "
                    f"add the users again with `fedsql user add`") from None
            self._stamp, self._users = stamp, users
        return self._users

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._load())

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._load()

    def version(self, name: str) -> str | None:
        """Changes whenever the user's password does (its salt); None when there is no such user.
        A token remembers it, so `fedsql user passwd` or `remove` ends the user's sessions."""
        with self._lock:
            entry = self._load().get(name)
        return str(entry.get("salt")) if isinstance(entry, dict) else None

    def verify(self, name: str, password: str) -> bool:
        """True when `password` is `name`'s; an unknown user costs one scrypt run too."""
        with self._lock:
            entry = self._load().get(name) if isinstance(name, str) else None
        ok = _matches(entry or _DUMMY, password if isinstance(password, str) else "")
        return ok and entry is not None

    def _write(self, users: dict[str, dict[str, Any]]) -> None:
        """Atomic 0600 replace: a crash leaves the old or the new file, never half of one."""
        from fedsql.state import write_private

        write_private(self.path, json.dumps({"version": 1, "users": users}, indent=1, sort_keys=True).encode())
        self._stamp = None

    def _update(self, change: Any) -> None:
        """Read-modify-write under an exclusive lock file, so two `fedsql user` runs never lose
        each other's change."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._lock:
                self._stamp = None
                users = dict(self._load())
                change(users)
                self._write(users)
        finally:
            os.close(fd)

    def add(self, name: str, password: str) -> None:
        check_name(name)
        check_password(password)
        entry = hash_password(password)

        def change(users: dict[str, Any]) -> None:
            if name in users:
                raise errors.InterfaceError(f"user '{name}' already exists; change the password with `fedsql user passwd`")
            users[name] = entry
        self._update(change)

    def passwd(self, name: str, password: str) -> None:
        check_password(password)
        entry = hash_password(password)

        def change(users: dict[str, Any]) -> None:
            if name not in users:
                raise errors.InterfaceError(f"no user '{name}'; add it with `fedsql user add`")
            users[name] = entry
        self._update(change)

    def remove(self, name: str) -> None:
        def change(users: dict[str, Any]) -> None:
            if users.pop(name, None) is None:
                raise errors.InterfaceError(f"no user '{name}' (`fedsql user list` shows them)")
        self._update(change)


class LoginThrottle:
    """Growing delay after failed logins, per user name and per peer address.

    After `free` failures a key is locked for `base` seconds, doubling with each
    further failure up to `cap`. A locked key is refused without checking the
    password, with the same message as a wrong password; the name is tracked
    whether or not the user exists, so lockout does not reveal existence either.
    A success clears the user's and the address's count.
    """

    def __init__(self, free: int = 5, base: float = 1.0, cap: float = 300.0) -> None:
        self.free, self.base, self.cap = free, base, cap
        self._lock = threading.Lock()
        self._state: dict[str, tuple[int, float]] = {}  # key → (failures, locked until)

    def locked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(self._state.get(k, (0, 0.0))[1] > now for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._state) > 100_000:  # bounded: forget the oldest locks
                for k in [k for k, (_, until) in self._state.items() if until <= now]:
                    del self._state[k]
            for k in keys:
                failures = self._state.get(k, (0, 0.0))[0] + 1
                until = now + min(self.cap, self.base * 2 ** (failures - self.free)) if failures >= self.free else 0.0
                self._state[k] = (failures, until)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._state.pop(k, None)


@dataclass
class _Token:
    user: str
    version: str
    expires: float


class Tokens:
    """Random bearer tokens held in memory (a restart logs everyone out), with expiry.

    Stored under their SHA-256, so the lookup's timing says nothing about a token's prefix."""

    def __init__(self, ttl: float = 3600.0, max_tokens: int = 100_000) -> None:
        self.ttl, self.max_tokens = ttl, max_tokens
        self._lock = threading.Lock()
        self._by_digest: dict[bytes, _Token] = {}

    def issue(self, user: str, version: str = "") -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            if len(self._by_digest) >= self.max_tokens:
                for k in [k for k, t in self._by_digest.items() if t.expires <= now]:
                    del self._by_digest[k]
                while len(self._by_digest) >= self.max_tokens:
                    del self._by_digest[min(self._by_digest, key=lambda k: self._by_digest[k].expires)]
            self._by_digest[hashlib.sha256(token.encode()).digest()] = _Token(user, version, now + self.ttl)
        return token

    def revoke(self, token: str) -> None:
        """Forget `token` (logout): it is refused from now on."""
        with self._lock:
            self._by_digest.pop(hashlib.sha256(token.encode("utf-8", "replace")).digest(), None)

    def user_of(self, token: str) -> tuple[str, str] | None:
        """The token's (user, account version); None when unknown or expired (then dropped)."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        with self._lock:
            entry = self._by_digest.get(digest)
            if entry is None:
                return None
            if entry.expires <= time.monotonic():
                del self._by_digest[digest]
                return None
            return entry.user, entry.version


def decode_basic(value: str) -> tuple[str, str]:
    """`Basic <base64(user:password)>` → (user, password); padding optional (the ADBC Go driver omits it)."""
    raw = value.strip()
    raw = raw + "=" * (-len(raw) % 4)
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise errors.AuthenticationError("malformed Basic credentials: send base64 of user:password") from None
    user, sep, password = text.partition(":")
    if not sep:
        raise errors.AuthenticationError("malformed Basic credentials: send base64 of user:password")
    return user, password


class Authenticator:
    """Password logins of one party: accounts + throttle + tokens, shared by its front ends."""

    def __init__(self, accounts: Accounts, token_ttl: float = 3600.0, throttle: LoginThrottle | None = None) -> None:
        self.accounts = accounts
        self.tokens = Tokens(token_ttl)
        self.throttle = throttle or LoginThrottle()

    def login(self, user: str, password: str, peer: str | None = None) -> str:
        """Check the password and return the (checked) user name; AuthenticationError otherwise.

        `peer` (a gRPC peer string) adds a per-address count; without it only the user name is
        counted (a shared "unknown address" key would let one client lock everyone out)."""
        valid = isinstance(user, str) and NAME_RE.fullmatch(user) is not None
        # names no account can have share one key: the throttle's memory stays bounded
        keys = (f"user:{user if valid else '(invalid)'}",) + ((f"peer:{_peer_host(peer)}",) if peer else ())
        if self.throttle.locked(*keys):
            raise errors.AuthenticationError(LOGIN_FAILURE)
        if not self.accounts.verify(user, password):
            self.throttle.failed(*keys)
            raise errors.AuthenticationError(LOGIN_FAILURE)
        self.throttle.succeeded(*keys)
        return user

    def issue_token(self, user: str) -> str:
        return self.tokens.issue(user, self.accounts.version(user) or "")

    def revoke_token(self, token: str) -> None:
        self.tokens.revoke(token)

    def token_user(self, token: str) -> str | None:
        """The user of a live token whose account still has the password it logged in with."""
        found = self.tokens.user_of(token)
        if found is None or self.accounts.version(found[0]) != found[1]:
            return None
        return found[0]


def _peer_host(peer: str) -> str:
    """`ipv4:1.2.3.4:5678` / `ipv6:[::1]:5678` → the address without the port (one client, many ports)."""
    rest = peer.partition(":")[2] if peer.startswith(("ipv4:", "ipv6:")) else peer
    return rest.rsplit(":", 1)[0] if ":" in rest else rest
