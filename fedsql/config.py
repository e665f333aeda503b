"""Federation configuration: TOML file → validated, immutable model.

Every node of a federation loads its own copy of the same file; the planner is
deterministic over this model, which is what lets each party compile every
query itself and compare plan hashes. Errors say the file, the key and the fix.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsql.dp_config import DPPolicy, parse_dp_policy
from fedsql.errors import ConfigError
from fedsql.permissions import PRIVATE, PUBLIC, Principal, as_principal, check_role, describe, implied, parse_permissions
from fedsql.settings import MODES

LEVELS = ("private", "aggregate", "join_key", "group_key", "public")
"""The single-name column levels (a level is a permission set: fedsql/permissions.py)."""

_RANK = {name: i for i, name in enumerate(LEVELS)}
APPROVALS = ("auto", "manual", "template")
"""How an owner authorises other parties' queries over a table (fedsql/approvals.py):
run at once, hold each query for a decision, or run queries of an approved shape."""
DEFAULT_APPROVAL_TIMEOUT = 86400.0
"""Seconds a held query waits for its owner's decision by default (a working day and night)."""
RESERVED_NAMES = {"main", "temp", "system", "information_schema", "pg_catalog", "memory"}
SOURCE_FORMATS = {".parquet": "parquet", ".csv": "csv"}
DATABASE_SCHEMES = ("postgresql", "mysql", "sqlite", "duckdb", "flightsql", "spark")
"""URL schemes of database sources (connectors/sources/): `table` names the relation inside."""


def level_at_least(level: str, required: str) -> bool:
    """True when level name `level` permits everything `required` permits (`join_key` and
    `group_key` both imply `aggregate`, not each other). Policy checks ask
    fedsql.permissions.permits instead; this compares two names."""
    return implied(required) <= implied(level)


@dataclass(frozen=True)
class TableConfig:
    party: str
    name: str
    source: Path | str  # a file, directory or glob (Path), or a database URL without its password (str)
    format: str  # parquet, csv, or a database kind: postgresql, sqlite, duckdb
    levels: dict[str, frozenset[str]]  # column → permissions of every other party (`columns`)
    # "party" or "party:role" → column → permissions replacing (party) or adding to (role) `columns`
    grants: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    dp: DPPolicy | None = None  # [parties.P.tables.T.dp] (fedsql/dp_config.py, docs/dp.md)
    unique: tuple[tuple[str, ...], ...] = ()  # declared unique keys (an oblivious join's primary-key side)
    relation: str | None = None  # `table`: the relation inside a database source, e.g. "public.accounts"
    approval: str = "auto"  # auto | manual | template: the table's own key, else its party's (fedsql/approvals.py)

    @property
    def is_database(self) -> bool:
        return self.format in DATABASE_SCHEMES

    @property
    def qualified(self) -> str:
        return f"{self.party}.{self.name}"

    def permissions(self, column: str, viewer: Principal | str | None = None) -> frozenset[str]:
        """What `viewer` may do with `column`: everything for the owner; else the party's grant
        (or `columns` when it has none for the column), plus the grants of each of its user's roles
        (docs/decisions.md D-ROLES: roles only add, and only to their own party's users)."""
        if viewer is None:
            return self.levels.get(column, PRIVATE)
        who = as_principal(viewer)
        if who.party == self.party:
            return PUBLIC
        party_grant = self.grants.get(who.party, {})
        out = party_grant[column] if column in party_grant else self.levels.get(column, PRIVATE)
        for key in who.grant_keys()[1:]:
            out = out | self.grants.get(key, {}).get(column, PRIVATE)
        return out

    def level(self, column: str, issuer: Principal | str | None = None) -> str:
        """`column`'s permissions for `issuer` as one name (`aggregate`, `join_key+group_key`), for catalogs."""
        return describe(self.permissions(column, issuer))


@dataclass(frozen=True)
class SinkConfig:
    """A database of the party's own that its users may INSERT results into (`sink.NAME`)."""

    name: str
    source: str  # the URL as configured (never a password)
    kind: str  # postgresql, mysql, sqlite, duckdb
    relation: str  # "schema.table" or "table" inside it


SINK_KINDS = ("postgresql", "mysql", "sqlite", "duckdb")  # Flight SQL and Spark sources are read-only


@dataclass(frozen=True)
class PartyConfig:
    name: str
    address: str
    flight: str | None
    tables: dict[str, TableConfig]
    # Flight SQL endpoint with user name + password (TLS, no client certificate); fedsql/users.py
    flight_password: str | None = None
    # identity files (fedsql/tls.py; unset = defaults under <config dir>/.fedsql/)
    certificate: str | None = None
    certificate_sha256: str | None = None
    private_key: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None
    max_rows_per_query: int | None = None  # overrides federation.max_rows_per_query for this node
    # where COPY … TO writes (fedsql/export.py); relative to the config file; unset: .fedsql/<party>/exports
    export_directory: str | None = None
    sinks: dict[str, SinkConfig] = field(default_factory=dict)  # INSERT INTO sink.NAME (fedsql/scratch.py)
    approval: str = "auto"  # the default of its tables (each may set its own)
    approval_timeout_seconds: float = DEFAULT_APPROVAL_TIMEOUT  # how long a held query waits for a decision
    # the owner's web console (fedsql/console/): "host:port", served over TLS when console_tls
    console: str | None = None
    console_tls: bool = False

    @property
    def is_helper(self) -> bool:
        return not self.tables


@dataclass(frozen=True)
class FederatedTable:
    name: str
    members: tuple[tuple[str, str], ...]  # (party, table)


def default_memory_mb() -> int:
    """A quarter of this machine's memory (at least 1 GB): three nodes of a local federation
    (`fedsql up`, the demo) then stay below the machine's RAM together, and a node alone on its
    machine keeps room for DuckDB's own buffers and the OS."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8192
    return max(1024, total // (4 << 20))


@dataclass(frozen=True)
class Federation:
    name: str
    path: Path
    compute: tuple[str, str, str]
    parties: dict[str, PartyConfig]
    federated: dict[str, FederatedTable]
    deadline_seconds: float = 300.0
    fixed_point_bits: int = 20
    default_mode: str = "sizes"
    max_rows_per_query: int = 50_000_000
    max_concurrent_queries: int = 32
    # per node: DuckDB's memory limit, and the bound on one query's secret tables
    max_memory_mb: int = field(default_factory=lambda: default_memory_mb())

    def rows_limit(self, party: str) -> int:
        """Most rows one query may make `party`'s node hold in one local table or shared column."""
        own = self.parties[party].max_rows_per_query if party in self.parties else None
        return own or self.max_rows_per_query

    def table(self, party: str, name: str) -> TableConfig:
        return self.parties[party].tables[name]

    @property
    def federated_schema(self) -> str:
        """The schema name catalogs show the union tables under: `federated`, unless a party has
        that name (then `federated_tables`). The DB-API, Flight SQL and SQLAlchemy all use it."""
        return "federated" if "federated" not in self.parties else "federated_tables"

    def party(self, name: str) -> PartyConfig:
        if name not in self.parties:
            raise ConfigError(
                f"party '{name}' is not in federation '{self.name}' ({self.path}); "
                f"parties are: {', '.join(sorted(self.parties))}"
            )
        return self.parties[name]


def _err(path: Path, where: str, problem: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {problem}")


def _expect(path: Path, where: str, value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise _err(path, where, f"expected {what}, got {type(value).__name__} {value!r}")
    return value


def check_known_keys(path: Path, where: str, raw: dict, known: set[str] | frozenset[str]) -> None:
    """An unknown key is an error naming it, a close known key, and all known keys: a typo
    (`flght = …`) must not silently switch a feature off."""
    import difflib

    unknown = sorted(set(raw) - set(known))
    if not unknown:
        return
    hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, known, 1)) else repr(k)
             for k in unknown]
    raise _err(path, where, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                            f"known keys: {', '.join(sorted(known))}")


TOP_LEVEL_KEYS = frozenset({"federation", "parties", "federated"})
FEDERATION_KEYS = frozenset({"name", "compute", "deadline_seconds", "fixed_point_bits", "default_mode",
                             "max_rows_per_query", "max_concurrent_queries", "max_memory_mb"})
PARTY_KEYS = frozenset({"address", "flight", "flight_password", "tables", "certificate", "certificate_sha256", "private_key",
                        "client_certificate", "client_key", "max_rows_per_query",
                        "export_directory", "sinks", "console", "approval", "approval_timeout_seconds"})


def _check_address(path: Path, where: str, address: Any) -> str:
    _expect(path, where, address, str, 'a "host:port" string')
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _err(path, where, f'expected "host:port" with a port 1-65535, got {address!r}')
    return address


def _check_flight_address(path: Path, where: str, address: Any) -> str:
    """The Flight SQL endpoint's "host:port". It always serves mutual TLS, so a URI scheme is
    refused unless it says so: "grpc://" would have served plaintext without authentication."""
    _expect(path, where, address, str, 'a "host:port" string')
    scheme, sep, rest = address.partition("://")
    if sep:
        if scheme.lower() != "grpc+tls":
            raise _err(path, where, f"{address!r} asks for {scheme}://, but the Flight SQL endpoint serves only "
                                    f'TLS; write {where.rsplit(".", 1)[-1]} = "{rest}"')
        address = rest
    return _check_address(path, where, address)


def _check_levels(path: Path, where: str, raw: Any) -> dict[str, frozenset[str]]:
    """`column = "level"` or `column = ["permission", ...]` → column → permission set."""
    _expect(path, where, raw, dict, 'a table of column = "level" or column = ["permission", ...]')
    out = {}
    for col, value in raw.items():
        try:
            out[col] = parse_permissions(value)
        except ValueError as exc:
            raise _err(path, f"{where}.{col}", str(exc)) from None
    return out


def _check_grant_key(path: Path, where: str, key: str, parties: set[str]) -> str:
    """A grants key: an issuing party, or `party:role` for the users of that party with the role."""
    party, sep, role = key.partition(":")
    if party not in parties:
        raise _err(path, f"{where}.{key}", f"{party!r} is not a party of this federation; grants are keyed by "
                                           f'party ("bank") or by a role of its users ("bank:analyst"); '
                                           f"parties are: {', '.join(sorted(parties))}")
    if sep:
        try:
            check_role(role)
        except ValueError as exc:
            raise _err(path, f"{where}.{key}", str(exc)) from None
    return key


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1): only this machine reaches them."""
    import ipaddress

    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_console_address(path: Path, where: str, value: Any) -> tuple[str, bool]:
    """(host:port, tls) of the owner's console. Plain HTTP would carry passwords and the audit
    chain in clear text, so it is allowed only on a loopback address; `https://` serves TLS with
    the node certificate anywhere."""
    _expect(path, where, value, str, 'a "host:port" string, e.g. "127.0.0.1:8088" or "https://10.0.0.5:8443"')
    scheme, sep, rest = value.partition("://")
    tls = False
    if sep:
        if scheme.lower() not in ("http", "https"):
            raise _err(path, where, f"{value!r}: the console speaks http:// (loopback only) or https://, not {scheme}://")
        tls, value = scheme.lower() == "https", rest
    address = _check_address(path, where, value)
    host = address.rpartition(":")[0]
    if not tls and not is_loopback(host):
        raise _err(path, where, f"{address!r} is not a loopback address, and plain HTTP would send passwords and "
                                f"the audit chain in clear text; serve it over TLS with the node certificate "
                                f'(console = "https://{address}") or bind it to loopback (console = '
                                f'"127.0.0.1:{address.rpartition(":")[2]}")')
    return address, tls


def _file_source(path: Path, where: str, text: str, fmt: Any) -> tuple[Path, str]:
    """A Parquet/CSV file, a directory of them (hive-partitioned datasets) or a glob."""
    source = Path(text)
    if not source.is_absolute():
        source = (path.parent / source).resolve()
    if fmt is None:
        if any(ch in text for ch in "*?["):
            fmt = SOURCE_FORMATS.get(Path(text).suffix.lower())
        elif source.is_dir():
            found = {SOURCE_FORMATS[f.suffix.lower()] for f in source.rglob("*") if f.suffix.lower() in SOURCE_FORMATS}
            if len(found) != 1:
                raise _err(path, f"{where}.source", f"directory {source} holds {'no' if not found else 'both'} "
                                                    'Parquet and CSV files; set format = "parquet" or "csv"')
            fmt = found.pop()
        else:
            fmt = SOURCE_FORMATS.get(source.suffix.lower())
    if fmt not in SOURCE_FORMATS.values():
        raise _err(path, f"{where}.source", f"unsupported file type {source.suffix!r}; use .parquet or .csv, "
                                            "a directory or glob of them, or a database URL "
                                            "(postgresql://, sqlite:///, duckdb:///) with table = ...")
    return source, fmt


def _database_source(path: Path, where: str, url: str, raw: dict) -> tuple[str, str, str]:
    """(url, kind, relation) of a database source; a password in the shared file is refused."""
    from connectors.sources.url import SourceURLError, parse_source_url

    try:
        parsed = parse_source_url(url)
    except SourceURLError as exc:
        raise _err(path, f"{where}.source", str(exc)) from None
    if "table" not in raw:
        raise _err(path, where, f'missing "table": the relation inside {parsed.display}, e.g. table = "public.accounts"')
    relation = _expect(path, f"{where}.table", raw["table"], str, 'a string like "schema.table"')
    parts = relation.split(".")
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise _err(path, f"{where}.table", f'expected "table" or "schema.table", got {relation!r}')
    if "format" in raw:
        raise _err(path, f"{where}.format", f"format is for files; {parsed.kind} sources have no format key")
    return parsed.display, parsed.kind, relation


def _load_sink(path: Path, party: str, name: str, raw: Any) -> SinkConfig:
    where = f"parties.{party}.sinks.{name}"
    _expect(path, where, raw, dict, "a table")
    check_known_keys(path, where, raw, {"source", "table"})
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", name):
        raise _err(path, where, "a sink name is letters, digits and '_' (at most 63, not starting with a digit)")
    text = _expect(path, f"{where}.source", raw.get("source"), str, 'a database URL ("postgresql://user@host:port/db")')
    url, kind, relation = _database_source(path, where, text, raw)
    if kind not in SINK_KINDS:
        raise _err(path, f"{where}.source", f"{kind} sources cannot be sinks; use a postgresql://, mysql:// "
                                            "(mariadb://), sqlite:/// or duckdb:/// database")
    return SinkConfig(name, url, kind, relation)


def _check_approval(path: Path, where: str, value: Any) -> str:
    if value not in APPROVALS:
        raise _err(path, where, f"unknown approval {value!r}; use one of {', '.join(map(repr, APPROVALS))} "
                                "(docs/configuration.md#approvals)")
    return value


def _load_table(path: Path, party: str, name: str, raw: Any, parties: set[str],
                approval: str = "auto") -> TableConfig:
    where = f"parties.{party}.tables.{name}"
    _expect(path, where, raw, dict, "a table")
    check_known_keys(path, where, raw, {"source", "table", "columns", "grants", "dp", "format", "unique", "approval"})
    if "approval" in raw:
        approval = _check_approval(path, f"{where}.approval", raw["approval"])
    if "source" not in raw:
        raise _err(path, where, 'missing "source" (a .parquet or .csv path, a directory or glob of them, '
                                'or a database URL with table = "...")')
    text = _expect(path, f"{where}.source", raw["source"], str, "a file path or a database URL")
    source: Path | str
    relation = None
    if "://" in text:
        source, fmt, relation = _database_source(path, where, text, raw)
    else:
        if "table" in raw:
            raise _err(path, f"{where}.table", "table names a relation inside a database source; "
                                               "a file source has none (remove it)")
        source, fmt = _file_source(path, where, text, raw.get("format"))
    levels = _check_levels(path, f"{where}.columns", raw.get("columns", {}))
    grants_raw = raw.get("grants", {})
    _expect(path, f"{where}.grants", grants_raw, dict, 'a table of ISSUER = { column = "level" } '
                                                       '(ISSUER: a party, or "party:role")')
    grants = {
        _check_grant_key(path, f"{where}.grants", key, parties): _check_levels(path, f"{where}.grants.{key}", g)
        for key, g in grants_raw.items()
    }
    dp = parse_dp_policy(raw["dp"], f"{where}.dp", path) if "dp" in raw else None
    unique_raw = _expect(path, f"{where}.unique", raw.get("unique", []), list,
                         'a list of unique keys, e.g. ["id"] or [["a", "b"]]')
    unique = []
    for key in unique_raw:
        cols = [key] if isinstance(key, str) else key
        if not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols):
            raise _err(path, f"{where}.unique", f"expected a column name or a list of column names, got {key!r}")
        unique.append(tuple(cols))
    return TableConfig(party, name, source, fmt, levels, grants, dp, tuple(unique), relation, approval)


def _check_limit(path: Path, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _err(path, where, "expected a positive integer")
    return value


def parse_config(text: str, path: Path) -> Federation:
    """Validate a configuration text; `path` anchors relative sources and messages."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    check_known_keys(path, "top level", raw, TOP_LEVEL_KEYS)
    if "federation" not in raw:
        raise _err(path, "[federation]", "missing: the file needs a [federation] table (name, compute, limits)")
    fed = _expect(path, "[federation]", raw.get("federation"), dict, "a [federation] table")
    check_known_keys(path, "[federation]", fed, FEDERATION_KEYS)
    name = _expect(path, "federation.name", fed.get("name", path.stem), str, "a string")
    parties_raw = _expect(path, "[parties]", raw.get("parties"), dict, "[parties.NAME] tables")
    if not parties_raw:
        raise _err(path, "[parties]", "no parties declared")
    parties: dict[str, PartyConfig] = {}
    addresses: dict[str, str] = {}
    for pname, praw in parties_raw.items():
        where = f"parties.{pname}"
        if pname.lower() in RESERVED_NAMES or not pname.isidentifier():
            raise _err(path, where, f"party name {pname!r} must be an identifier and not one of {sorted(RESERVED_NAMES)}")
        _expect(path, where, praw, dict, "a table")
        check_known_keys(path, where, praw, PARTY_KEYS)
        if "address" not in praw:
            raise _err(path, where, 'missing "address" ("host:port" of the node)')
        address = _check_address(path, f"{where}.address", praw["address"])
        if address in addresses:
            raise _err(path, f"{where}.address", f"{address} is also used by party '{addresses[address]}'")
        addresses[address] = pname
        flight = praw.get("flight")
        if flight is not None:
            flight = _check_flight_address(path, f"{where}.flight", flight)
        flight_password = praw.get("flight_password")
        if flight_password is not None:
            flight_password = _check_flight_address(path, f"{where}.flight_password", flight_password)
            if flight_password in (flight, address):
                raise _err(path, f"{where}.flight_password", "needs a port of its own (not the node's or flight's)")
        console = praw.get("console")
        console_tls = False
        if console is not None:
            console, console_tls = _check_console_address(path, f"{where}.console", console)
            if console in (address, flight, flight_password):
                raise _err(path, f"{where}.console", "needs a port of its own (not the node's or a Flight SQL endpoint's)")
        tables_raw = _expect(path, f"{where}.tables", praw.get("tables", {}), dict, "a table")
        approval = _check_approval(path, f"{where}.approval", praw.get("approval", "auto"))
        tables = {t: _load_table(path, pname, t, traw, set(parties_raw), approval) for t, traw in tables_raw.items()}
        sinks_raw = _expect(path, f"{where}.sinks", praw.get("sinks", {}), dict, "a table")
        identity: dict[str, Any] = {"sinks": {n: _load_sink(path, pname, n, r) for n, r in sinks_raw.items()},
                                    "approval": approval}
        if "approval_timeout_seconds" in praw:
            timeout = praw["approval_timeout_seconds"]
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
                raise _err(path, f"{where}.approval_timeout_seconds", "expected a positive number of seconds")
            identity["approval_timeout_seconds"] = float(timeout)
        for key in ("certificate", "certificate_sha256", "private_key", "client_certificate", "client_key",
                    "export_directory"):
            if key in praw:
                identity[key] = _expect(path, f"{where}.{key}", praw[key], str, "a string")
        if "certificate_sha256" in identity:
            pin = identity["certificate_sha256"].lower().replace(":", "")
            if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
                raise _err(path, f"{where}.certificate_sha256", "expected 64 hex digits (`fedsql keys` prints it)")
            identity["certificate_sha256"] = pin
        if "max_rows_per_query" in praw:
            identity["max_rows_per_query"] = _check_limit(path, f"{where}.max_rows_per_query", praw["max_rows_per_query"])
        parties[pname] = PartyConfig(pname, address, flight, tables, flight_password=flight_password,
                                     console=console, console_tls=console_tls, **identity)

    compute_raw = fed.get("compute")
    if compute_raw is None:
        if len(parties) != 3:
            raise _err(
                path,
                "federation.compute",
                f"there are {len(parties)} parties; name the three compute parties, "
                'e.g. compute = ["a", "b", "c"] (add a helper party with no tables when there are two)',
            )
        compute_raw = list(parties)
    _expect(path, "federation.compute", compute_raw, list, "a list of three party names")
    if len(compute_raw) != 3 or len(set(compute_raw)) != 3:
        raise _err(path, "federation.compute", f"needs exactly three distinct parties, got {compute_raw}")
    for p in compute_raw:
        if p not in parties:
            raise _err(path, "federation.compute", f"unknown party {p!r}")

    federated: dict[str, FederatedTable] = {}
    for fname, fraw in _expect(path, "[federated]", raw.get("federated", {}), dict, "a table").items():
        where = f"federated.{fname}"
        _expect(path, where, fraw, dict, 'a table with union = ["party.table", ...]')
        check_known_keys(path, where, fraw, {"union"})
        union = _expect(path, f"{where}.union", fraw.get("union"), list, 'a list like ["h1.t", "h2.t"]')
        members = []
        for ref in union:
            party, _, table = str(ref).partition(".")
            if party not in parties or table not in parties[party].tables:
                raise _err(path, f"{where}.union", f"{ref!r} is not a declared party.table")
            members.append((party, table))
        if not members:
            raise _err(path, f"{where}.union", "is empty")
        if fname in parties:
            raise _err(path, where, f"name {fname!r} clashes with a party name")
        federated[fname] = FederatedTable(fname, tuple(members))

    deadline = fed.get("deadline_seconds", 300.0)
    if not isinstance(deadline, (int, float)) or deadline <= 0:
        raise _err(path, "federation.deadline_seconds", "expected a positive number of seconds")
    bits = fed.get("fixed_point_bits", 20)
    if not isinstance(bits, int) or not 8 <= bits <= 30:
        raise _err(path, "federation.fixed_point_bits", "expected an integer from 8 to 30")
    mode = fed.get("default_mode", "sizes")
    if mode not in MODES:
        raise _err(path, "federation.default_mode", f"expected one of {', '.join(map(repr, MODES))}")
    limits = {}
    for key in ("max_rows_per_query", "max_concurrent_queries", "max_memory_mb"):
        if key in fed:
            limits[key] = _check_limit(path, f"federation.{key}", fed[key])
    return Federation(
        **limits,
        name=name,
        path=path,
        compute=tuple(compute_raw),  # type: ignore[arg-type]
        parties=parties,
        federated=federated,
        deadline_seconds=float(deadline),
        fixed_point_bits=bits,
        default_mode=mode,
    )


def load_config(path: str | Path) -> Federation:
    """Load and validate a federation file; raises ConfigError with the fix."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ConfigError(f"{p}: configuration file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read configuration: {exc}") from None
    return parse_config(text, p)
